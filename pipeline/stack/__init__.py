"""The native stack: PostgreSQL, Prefect server and worker, the API and a Dask cluster on one machine.

``fuxiops stack up`` starts the same services as ``docker-compose.yml`` as
plain processes bound to 127.0.0.1, records what it started in a state file,
and ``fuxiops stack down`` stops exactly those processes.
"""
