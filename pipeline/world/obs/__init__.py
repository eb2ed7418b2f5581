"""Observations of the testbed world: operators, BUFR writing and the raw/simulated generators."""
