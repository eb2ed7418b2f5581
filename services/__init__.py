"""fuxiops.services: the REST API (Open-Meteo-style forecasts, OGC EDR, runs, maps, page)."""
