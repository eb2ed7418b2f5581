"""fuxiops.models: FuXiWeather2 networks (assimilator, forecaster), checkpoints, training, inference.

The interfaces (:mod:`fuxiops.models.base`) import no torch; the torch
networks and runtimes live in their own modules and are loaded on demand.
"""

from fuxiops.models.base import (ASSIMILATOR_RUNTIMES, FORECASTER_RUNTIMES, Assimilator, CheckpointError,
                                 Forecaster, ModelCoords, load_assimilator, load_forecaster)

__all__ = ["Forecaster", "Assimilator", "ModelCoords", "CheckpointError", "FORECASTER_RUNTIMES",
           "ASSIMILATOR_RUNTIMES", "load_forecaster", "load_assimilator"]
