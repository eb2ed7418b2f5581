"""fuxiops.pipeline: the operational cycle (Prefect flows), observation ingest and QC,
the testbed world, and product publishing."""
