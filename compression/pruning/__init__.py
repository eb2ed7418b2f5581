"""Structured pruning of the forecaster: the search space, EMO-PMS and its baselines."""
