"""The dynamical core of the testbed world: dinosaur primitive equations with Held-Suarez forcing.

One :class:`CoreConfig` fixes resolution, sigma levels, time step and the
Held-Suarez parameters; :class:`HeldSuarezCore` builds the JAX model from it
and advances a spectral state by whole 6-hour windows. The same compiled
function is used for every window, so an integration restarted from a saved
state reproduces an uninterrupted one bit for bit (JAX on CPU, float32).
States travel as plain numpy arrays (``ModelState``) saved in ``.npz`` files.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fuxiops.errors import DataError

#: Physical constants used by post-processing (the same as dinosaur's SI specs).
RD = 287.0  # gas constant of dry air, J kg-1 K-1
CP = 1004.0  # heat capacity at constant pressure, J kg-1 K-1
KAPPA = 2.0 / 7.0
GRAVITY = 9.80616
HOURS_PER_WINDOW = 6

#: Spectral truncation -> number of Gaussian latitudes (quadratic grids, as ECMWF's "TQ").
TRUNCATIONS: dict[int, int] = {21: 32, 31: 48, 42: 64, 63: 96, 85: 128}


#: Persistent XLA compilation cache (``$FUXIOPS_JAX_CACHE``, default the user cache folder): the
#: compiled 6-hour steps are reused by later processes (a 1-day build saves most of its JIT time);
#: the cached executables are the same XLA programs, so results are unchanged bit for bit.
JAX_CACHE_ENV = "FUXIOPS_JAX_CACHE"


def _jax_cache_dir() -> str:
    from platformdirs import user_cache_dir
    return os.environ.get(JAX_CACHE_ENV) or str(Path(user_cache_dir("fuxiops", appauthor=False)) / "jax")


def _configure_jax() -> None:
    """CPU, float32 and the persistent compilation cache (environment set before JAX starts)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("JAX_ENABLE_X64", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _jax_cache_dir())


@dataclass(frozen=True)
class HeldSuarezParams:
    """Held and Suarez (1994) forcing parameters (their symbols, SI-like units)."""

    sigma_b: float = 0.7
    #: Rayleigh friction rate in the boundary layer, 1/day.
    kf_per_day: float = 1.0
    #: Newtonian cooling rate in the free atmosphere, 1/day.
    ka_per_day: float = 1.0 / 40.0
    #: Newtonian cooling rate at the equatorial surface, 1/day.
    ks_per_day: float = 1.0 / 4.0
    min_t: float = 200.0
    max_t: float = 315.0
    #: Equator-pole equilibrium temperature difference, K.
    delta_t_y: float = 60.0
    #: Equilibrium static stability parameter, K.
    delta_theta_z: float = 10.0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CoreConfig:
    """Resolution and numerics of one configuration of the core (truth or NWP)."""

    truncation: int = 42
    layers: int = 20
    dt_minutes: float = 20.0
    hs: HeldSuarezParams = field(default_factory=HeldSuarezParams)
    #: e-folding time (nondimensional, dinosaur's default) of the exponential scale-selective filter.
    filter_tau: float = 0.010938
    filter_order: int = 18

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise DataError(f"unsupported truncation T{self.truncation}; allowed: "
                            f"{', '.join(f'T{t}' for t in TRUNCATIONS)}")
        if not 5 <= self.layers <= 60:
            raise DataError(f"layers must be in 5..60, got {self.layers}")
        steps = HOURS_PER_WINDOW * 60.0 / self.dt_minutes
        if abs(steps - round(steps)) > 1e-9 or steps < 1:
            raise DataError(f"dt_minutes={self.dt_minutes} must divide the 6-hour output interval")

    @property
    def steps_per_window(self) -> int:
        return int(round(HOURS_PER_WINDOW * 60.0 / self.dt_minutes))

    @property
    def gaussian_lats(self) -> int:
        return TRUNCATIONS[self.truncation]

    @property
    def sigma_centers(self) -> np.ndarray:
        """Equidistant sigma layers (Held-Suarez's choice), top to bottom."""
        b = np.linspace(0.0, 1.0, self.layers + 1)
        return (b[1:] + b[:-1]) / 2

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hs"] = self.hs.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CoreConfig":
        d = dict(d)
        hs = HeldSuarezParams(**d.pop("hs", {}))
        return cls(hs=hs, **d)


#: The truth (nature run): T42, 20 equidistant sigma layers, 20-minute steps.
TRUTH_CORE = CoreConfig()
#: The operational NWP: cheaper (T21, 10 layers, 60-minute steps) and with perturbed physics:
#: 20 % stronger boundary-layer friction, faster free-atmosphere cooling, a 4 K larger
#: equator-pole contrast and a slightly weaker static stability.
NWP_CORE = CoreConfig(truncation=21, layers=10, dt_minutes=60.0,
                      hs=HeldSuarezParams(kf_per_day=1.2, ka_per_day=1.0 / 35.0, delta_t_y=64.0,
                                          delta_theta_z=9.0))


@dataclass
class ModelState:
    """A spectral model state as numpy float32 arrays (dinosaur's modal layout).

    ``vorticity``, ``divergence``, ``temperature_variation``: (layers, M, L);
    ``log_surface_pressure``: (1, M, L) in nondimensional units (log of ps / 1 unit).
    """

    vorticity: np.ndarray
    divergence: np.ndarray
    temperature_variation: np.ndarray
    log_surface_pressure: np.ndarray

    FIELDS = ("vorticity", "divergence", "temperature_variation", "log_surface_pressure")

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def save(self, path: Path, **meta: np.ndarray | int | float | str) -> None:
        """Write atomically (write aside + rename), so a kill never leaves a half state."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **self.arrays(), **{f"meta_{k}": np.asarray(v) for k, v in meta.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> tuple["ModelState", dict[str, Any]]:
        try:
            with np.load(path, allow_pickle=False) as z:
                state = cls(**{k: np.asarray(z[k], dtype=np.float32) for k in cls.FIELDS})
                meta = {k[5:]: z[k][()] for k in z.files if k.startswith("meta_")}
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"cannot read model state {path}: {e}") from e
        return state, meta


@dataclass
class NodalFields:
    """Post-processed model fields on the Gaussian grid, (layers, lat, lon) latitude north -> south."""

    u: np.ndarray
    v: np.ndarray
    t: np.ndarray
    ps: np.ndarray  # (lat, lon), Pa
    lat: np.ndarray  # degrees, descending
    lon: np.ndarray  # degrees, ascending from 0
    sigma: np.ndarray  # layer centres


class HeldSuarezCore:
    """dinosaur sigma-coordinate primitive equations + Held-Suarez forcing, on CPU in float32."""

    def __init__(self, config: CoreConfig = TRUTH_CORE) -> None:
        _configure_jax()
        import jax
        from dinosaur import (coordinate_systems, held_suarez, primitive_equations, scales,
                              sigma_coordinates, spherical_harmonic, time_integration)

        if not jax.config.jax_compilation_cache_dir:  # JAX was started before us
            jax.config.update("jax_compilation_cache_dir", _jax_cache_dir())
        self.config = config
        units = scales.units
        self._units = units
        self.coords = coordinate_systems.CoordinateSystem(
            horizontal=spherical_harmonic.Grid.construct(max_wavenumber=config.truncation,
                                                         gaussian_nodes=config.gaussian_lats // 2),
            vertical=sigma_coordinates.SigmaCoordinates.equidistant(config.layers))
        self.specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
        self.ref_temps = np.full((config.layers,), self.specs.nondimensionalize(288.0 * units.degK))
        orography = np.zeros(self.coords.horizontal.nodal_shape)  # the Held-Suarez world is flat
        hs = config.hs
        day = units.day
        eq = primitive_equations.PrimitiveEquations(
            self.ref_temps, primitive_equations.truncated_modal_orography(orography, self.coords),
            self.coords, self.specs)
        forcing = held_suarez.HeldSuarezForcing(
            coords=self.coords, physics_specs=self.specs, reference_temperature=self.ref_temps,
            p0=1e5 * units.pascal, sigma_b=hs.sigma_b, kf=hs.kf_per_day / day, ka=hs.ka_per_day / day,
            ks=hs.ks_per_day / day, minT=hs.min_t * units.degK, maxT=hs.max_t * units.degK,
            dTy=hs.delta_t_y * units.degK, dThz=hs.delta_theta_z * units.degK)
        self._forcing = forcing
        ode = time_integration.compose_equations([eq, forcing])
        self.dt = self.specs.nondimensionalize(config.dt_minutes * units.minute)
        step = time_integration.imex_rk_sil3(ode, self.dt)
        # The filter damps by exp(-dt/tau) per step at the truncation limit: with tau fixed in
        # (nondimensional) time, the damping per hour does not depend on the step size.
        filt = time_integration.exponential_step_filter(self.coords.horizontal, self.dt,
                                                        tau=config.filter_tau, order=config.filter_order)
        step = time_integration.step_with_filters(step, [filt])
        self._window = jax.jit(time_integration.repeated(step, config.steps_per_window))
        self._batched_window = jax.jit(jax.vmap(time_integration.repeated(step, config.steps_per_window)))
        self._jax = jax
        self._pe = primitive_equations

    # ----------------------------------------------------------------- states
    def rest_state(self, seed: int = 0) -> ModelState:
        """An isothermal (288 K) atmosphere at rest with a small surface-pressure bump (HS initial state)."""
        from dinosaur import primitive_equations_states
        init, _ = primitive_equations_states.isothermal_rest_atmosphere(
            self.coords, self.specs, p0=1e5 * self._units.pascal, p1=5e3 * self._units.pascal)
        return self._to_numpy(init(rng_key=self._jax.random.PRNGKey(seed)))

    def _to_jax(self, s: ModelState) -> Any:
        jnp = self._jax.numpy
        return self._pe.State(vorticity=jnp.asarray(s.vorticity), divergence=jnp.asarray(s.divergence),
                              temperature_variation=jnp.asarray(s.temperature_variation),
                              log_surface_pressure=jnp.asarray(s.log_surface_pressure))

    @staticmethod
    def _to_numpy(s: Any) -> ModelState:
        return ModelState(*(np.asarray(getattr(s, k), dtype=np.float32) for k in ModelState.FIELDS))

    def check_state(self, s: ModelState, what: str = "model state") -> None:
        want = self.coords.modal_shape
        if s.vorticity.shape != want:
            raise DataError(f"{what} has spectral shape {s.vorticity.shape}, this core "
                            f"(T{self.config.truncation} L{self.config.layers}) needs {want}")

    # ------------------------------------------------------------ integration
    def advance(self, s: ModelState, windows: int = 1) -> ModelState:
        """Integrate ``windows`` x 6 hours (the same compiled 6-hour function each time)."""
        x = self._to_jax(s)
        for _ in range(windows):
            x = self._window(x)
        out = self._to_numpy(x)
        if not np.all(np.isfinite(out.vorticity)):
            raise DataError("the model state became non-finite (numerical instability)")
        return out

    def advance_batch(self, states: list[ModelState], windows: int = 1) -> list[ModelState]:
        """Advance several states together (vmap): forecasts of one cycle batch run at once."""
        jnp = self._jax.numpy
        stacked = self._pe.State(**{k: jnp.stack([getattr(s, k) for s in states]) for k in ModelState.FIELDS})
        for _ in range(windows):
            stacked = self._batched_window(stacked)
        if not bool(self._jax.numpy.isfinite(stacked.vorticity).all()):
            raise DataError("a batched forecast became non-finite (numerical instability)")
        return [ModelState(*(np.asarray(getattr(stacked, k)[i], dtype=np.float32) for k in ModelState.FIELDS))
                for i in range(len(states))]

    # -------------------------------------------------------- post-processing
    @cached_property
    def nodal_latlon(self) -> tuple[np.ndarray, np.ndarray]:
        lon, sin_lat = self.coords.horizontal.nodal_axes
        return np.rad2deg(np.arcsin(sin_lat)), np.rad2deg(lon)

    def nodal(self, s: ModelState) -> NodalFields:
        """u, v, T (K) on sigma layers and ps (Pa) on the Gaussian grid, latitude north -> south."""
        from dinosaur import spherical_harmonic
        g = self.coords.horizontal
        jnp = self._jax.numpy
        u, v = spherical_harmonic.vor_div_to_uv_nodal(g, jnp.asarray(s.vorticity), jnp.asarray(s.divergence))
        t = g.to_nodal(jnp.asarray(s.temperature_variation)) + self.ref_temps[:, None, None]
        lsp = g.to_nodal(jnp.asarray(s.log_surface_pressure))[0]
        vel = self.specs.dimensionalize(1.0, self._units.meter / self._units.second).magnitude
        temp = self.specs.dimensionalize(1.0, self._units.degK).magnitude
        pres = self.specs.dimensionalize(1.0, self._units.pascal).magnitude
        # dinosaur's nodal layout is (layer, lon, lat) with latitude ascending; ours is (layer, lat, lon), N->S.
        flip = lambda a: np.ascontiguousarray(np.swapaxes(np.asarray(a, dtype=np.float64), -1, -2)[..., ::-1, :])
        lat, lon = self.nodal_latlon
        return NodalFields(u=flip(u) * vel, v=flip(v) * vel, t=flip(t) * temp, ps=flip(np.exp(lsp)) * pres,
                           lat=lat[::-1].copy(), lon=lon.copy(), sigma=self.config.sigma_centers)

    def nondim_temperature(self, kelvin: float) -> float:
        return float(self.specs.nondimensionalize(kelvin * self._units.degK))

    def to_modal(self, nodal_n2s: np.ndarray) -> np.ndarray:
        """Our (..., lat N->S, lon) nodal array to dinosaur modal coefficients."""
        a = np.swapaxes(np.asarray(nodal_n2s)[..., ::-1, :], -1, -2)
        return np.asarray(self.coords.horizontal.to_modal(self._jax.numpy.asarray(a, dtype=np.float32)),
                          dtype=np.float32)

    @cached_property
    def total_wavenumber(self) -> np.ndarray:
        """Total wavenumber l of each modal coefficient, shape (M, L)."""
        _, l_idx = self.coords.horizontal.modal_axes
        m = self.coords.horizontal.modal_shape
        return np.broadcast_to(np.asarray(l_idx)[None, :], m).astype(np.float64)

    @cached_property
    def modal_mask(self) -> np.ndarray:
        return np.asarray(self.coords.horizontal.mask, dtype=bool)


def transfer_state(s: ModelState, src: CoreConfig, dst: CoreConfig) -> ModelState:
    """Map a state to another resolution: triangular spectral truncation (or zero padding) and
    linear interpolation in sigma between layer centres (constant beyond the end layers).

    Spectral coefficients are linear in the fields, so interpolating coefficients equals
    interpolating the fields; dinosaur orders rows m = 0, 1, -1, 2, -2, ... and columns l = 0, 1, ...
    """
    tr = dst.truncation
    rows, cols = 2 * tr + 1, tr + 2

    def horiz(a: np.ndarray) -> np.ndarray:
        out = np.zeros(a.shape[:-2] + (rows, cols), dtype=np.float32)
        r, c = min(rows, a.shape[-2]), min(cols, a.shape[-1])
        out[..., :r, :c] = a[..., :r, :c]
        m_abs = (np.arange(rows) + 1) // 2
        l_idx = np.arange(cols)
        keep = (l_idx[None, :] >= m_abs[:, None]) & (l_idx[None, :] <= min(tr, src.truncation))
        return out * keep

    s_src, s_dst = src.sigma_centers, dst.sigma_centers
    w = np.zeros((dst.layers, src.layers))
    for i, sg in enumerate(s_dst):
        if sg <= s_src[0]:
            w[i, 0] = 1.0
        elif sg >= s_src[-1]:
            w[i, -1] = 1.0
        else:
            k = int(np.searchsorted(s_src, sg)) - 1
            f = (sg - s_src[k]) / (s_src[k + 1] - s_src[k])
            w[i, k], w[i, k + 1] = 1.0 - f, f
    vert = lambda a: np.einsum("ij,j...->i...", w, a).astype(np.float32)
    return ModelState(vorticity=horiz(vert(s.vorticity)), divergence=horiz(vert(s.divergence)),
                      temperature_variation=horiz(vert(s.temperature_variation)),
                      log_surface_pressure=horiz(s.log_surface_pressure))


@lru_cache(maxsize=8)
def get_core(config: CoreConfig = TRUTH_CORE) -> HeldSuarezCore:
    """A shared core per configuration, so that its JIT-compiled steps are reused across builds."""
    return HeldSuarezCore(config)
