"""fuxiops.models: FuXiWeather2 networks (assimilator, forecaster), checkpoints, training, inference."""
