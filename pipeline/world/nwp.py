"""The operational NWP (HRES/GFS analogue): a cheaper, imperfect copy of the truth's core.

Configuration :data:`~fuxiops.pipeline.world.model.NWP_CORE`: T21 with 10 sigma
layers and 60-minute steps (the truth: T42 L20, 20 minutes) and perturbed
Held-Suarez parameters. Each cycle re-initialises from the reanalysis model
state (spectral truncation T42 -> T21 and linear interpolation in sigma) and
forecasts every 6 h out to ``max_lead_h``. All forecasts of one build day run
together as one vmapped batch. The forecast is a generator yielding one lead
time at a time, so memory does not grow with lead time.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from fuxiops.catalog import VariableSet
from fuxiops.grids import Grid
from fuxiops.pipeline.world.model import (HOURS_PER_WINDOW, CoreConfig, ModelState, get_core,
                                          transfer_state)
from fuxiops.pipeline.world.postprocess import Regridder, to_state_arrays


class NwpModel:
    """Forecasts from reanalysis states, post-processed onto the world's grid."""

    def __init__(self, config: CoreConfig, analysis_config: CoreConfig, grid: Grid, variables: VariableSet) -> None:
        self.core = get_core(config)
        self.analysis_config = analysis_config
        lat, lon = self.core.nodal_latlon
        self.regrid = Regridder(lat[::-1], lon, grid)
        self.variables = variables

    def initial(self, analysis: ModelState) -> ModelState:
        return transfer_state(analysis, self.analysis_config, self.core.config)

    def forecast(self, analyses: list[ModelState], max_lead_h: int) -> Iterator[tuple[int, list[dict[str, np.ndarray]]]]:
        """Yield (lead hours, [state arrays per forecast]) for leads 0, 6, ..., max_lead_h."""
        states = [self.initial(a) for a in analyses]
        lead = 0
        while True:
            yield lead, [to_state_arrays(self.core.nodal(s), self.regrid, self.variables) for s in states]
            if lead >= max_lead_h:
                return
            states = self.core.advance_batch(states, 1)
            lead += HOURS_PER_WINDOW
