"""The operational cycle: Prefect flows, own-background state store, run catalog and fault tolerance.

Light at import: submodules pull in Prefect, SQLAlchemy, torch etc. only when used.
``runs`` (catalog), ``store`` (state store), ``workdir`` (per-lead checkpoints),
``steps`` (the cycle's steps as plain functions), ``flows`` (Prefect flows),
``deployments`` (schedules), ``cli`` / ``demo`` (command line).
"""
