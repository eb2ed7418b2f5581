"""Observation ingest and quality control: BUFR/CSV readers, the observation table, QC, gridded channels.

Modules: ``bufr`` (ecCodes access), ``readers`` (one per report type, in a
registry), ``schema`` (the table), ``flags`` (QC bits), ``obs_errors``
(sigma_o), ``qc`` (the chain), ``background`` (H(x_b)), ``report``
(JSON/Markdown), ``gridding`` (network inputs), ``decode`` (Dask),
``ingest`` (one cycle), ``encode`` (writing BUFR edition 4), ``cli``
(``fuxiops obs``).
"""
