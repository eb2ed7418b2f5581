"""The reanalysis (ERA5 analogue): the truth's model state plus known, documented errors.

Errors are applied to the spectral model state, so that the reanalysis is a
consistent atmosphere that the NWP can be started from, and then post-processed
exactly like the truth:

1. **warm bias** of ``bias_k`` (+1 K) in the lower troposphere: full size for
   sigma >= 0.7 (below about 700 hPa), tapering linearly to 0 at sigma 0.5;
2. **damped small scales**: every spectral coefficient of total wavenumber l is
   multiplied by exp(-(l / l_damp)^4) (l_damp = 35: 0.88 at l = 21, 0.13 at 42);
3. **spatially correlated random error**, independent between 6-hourly times:
   Gaussian spectral noise with amplitude ~ exp(-(l / l_noise)^2) (l_noise = 12,
   correlation length about 1000 km), scaled to ``t_noise_k`` rms in temperature,
   ``wind_noise_ms`` rms in wind (through a stream function) and
   ``ps_noise_pa`` rms in surface pressure.

Random numbers come from ``default_rng([seed, 21, time_index])``: the error at
a time does not depend on how the build was chunked or resumed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from fuxiops.pipeline.world.model import HeldSuarezCore, ModelState


@dataclass(frozen=True)
class ReanalysisErrors:
    bias_k: float = 1.0
    bias_sigma_full: float = 0.7
    bias_sigma_zero: float = 0.5
    l_damp: float = 35.0
    l_noise: float = 12.0
    t_noise_k: float = 0.5
    wind_noise_ms: float = 1.0
    ps_noise_pa: float = 50.0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class Reanalysis:
    """Turns truth model states into reanalysis model states (see module doc)."""

    def __init__(self, core: HeldSuarezCore, seed: int, errors: ReanalysisErrors = ReanalysisErrors()) -> None:
        self.core, self.seed, self.errors = core, int(seed), errors
        e = errors
        l_tot = core.total_wavenumber
        mask = core.modal_mask
        self._damp = (np.exp(-(l_tot / e.l_damp) ** 4) * mask).astype(np.float32)
        self._shape = (np.exp(-(l_tot / e.l_noise) ** 2) * mask * (l_tot >= 1)).astype(np.float64)
        sigma = core.config.sigma_centers
        taper = np.clip((sigma - e.bias_sigma_zero) / (e.bias_sigma_full - e.bias_sigma_zero), 0.0, 1.0)
        nlat, nlon = core.coords.horizontal.nodal_shape[1], core.coords.horizontal.nodal_shape[0]
        nodal_bias = core.nondim_temperature(e.bias_k) * taper[:, None, None] * np.ones((1, nlat, nlon))
        self._bias = core.to_modal(nodal_bias)
        units = core._units
        self._vel_unit = float(core.specs.nondimensionalize(1.0 * units.meter / units.second))
        self._t_unit = core.nondim_temperature(1.0)
        self._lsp = e.ps_noise_pa / 1.0e5  # d ln(ps) for a small ps error

    def _noise(self, rng: np.random.Generator, layers: int) -> np.ndarray:
        n = rng.standard_normal((layers,) + self._shape.shape) * self._shape
        return n

    @staticmethod
    def _rms(coeffs: np.ndarray) -> float:
        # orthonormal harmonics: mean square over the sphere = sum of squares / (4 pi)
        return float(np.sqrt((coeffs ** 2).sum() / (4 * np.pi * coeffs.shape[0])))

    def state(self, truth: ModelState, time_index: int) -> ModelState:
        """The reanalysis state at output time ``time_index`` (0-based, 6-hourly)."""
        e = self.errors
        rng = np.random.default_rng([self.seed, 21, int(time_index)])
        layers = truth.vorticity.shape[0]
        l_tot = self.core.total_wavenumber
        t_n = self._noise(rng, layers)
        t_n *= e.t_noise_k * self._t_unit / max(self._rms(t_n), 1e-30)
        psi = self._noise(rng, layers)
        # wind from a stream function psi: mean square |grad psi|^2 = sum l(l+1) psi_l^2 / (4 pi)
        grad_rms = float(np.sqrt((l_tot * (l_tot + 1) * psi ** 2).sum() / (4 * np.pi * layers)))
        psi *= e.wind_noise_ms * self._vel_unit / max(grad_rms, 1e-30)
        vort_n = -l_tot * (l_tot + 1) * psi
        p_n = self._noise(rng, 1)
        p_n *= self._lsp / max(self._rms(p_n), 1e-30)
        d = self._damp
        return ModelState(
            vorticity=((truth.vorticity + vort_n) * d).astype(np.float32),
            divergence=(truth.divergence * d).astype(np.float32),
            temperature_variation=((truth.temperature_variation + t_n) * d + self._bias).astype(np.float32),
            log_surface_pressure=((truth.log_surface_pressure + p_n) * d).astype(np.float32),
        )
