"""Training of the FuXiWeather2 networks: data, the five stages, the engine (resume, DDP)."""
