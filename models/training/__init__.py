"""Training of the FuXiWeather2 networks: data, the four stages, the engine (resume, DDP)."""
