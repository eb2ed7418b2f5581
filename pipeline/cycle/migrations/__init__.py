"""Alembic migrations of the run catalog (run programmatically by ``fuxiops.pipeline.cycle.runs``)."""
