"""From a seed to the first state of a world: independent weather for different seeds.

A seed S picks, deterministically:

1. one of the shipped spun-up states (taken ``keep_every`` days apart in one
   long Held-Suarez run, so they share no weather);
2. a rotation of that state in longitude by a whole number of model grid
   columns (Held-Suarez forcing is zonally symmetric, so a rotated state is an
   equally likely state of the same climate; rotating nodal values of a
   band-limited field is exact);
3. a random large-scale temperature perturbation (total wavenumbers 1-20,
   about 0.5 K rms) that seeds chaos;

and then integrates ``decorrelation_days`` (default 5) before the first
output, so that even two seeds sharing a base state and rotation have drifted
apart. All random numbers come from ``numpy.random.default_rng([seed, tag])``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fuxiops.errors import DataError
from fuxiops.pipeline.world.model import TRUTH_CORE, HeldSuarezCore, ModelState, get_core, transfer_state
from fuxiops.pipeline.world.spinup import shipped_state_paths

PERTURBATION_K = 0.5
_TAG_CHOICE = 11


def rotate_longitude(core: HeldSuarezCore, s: ModelState, columns: int) -> ModelState:
    """Rotate a state eastward by ``columns`` nodal grid columns (exact for band-limited fields)."""
    g = core.coords.horizontal
    jnp = core._jax.numpy

    def rot(a: np.ndarray) -> np.ndarray:
        nodal = np.asarray(g.to_nodal(jnp.asarray(a)))  # (layer, lon, lat)
        return np.asarray(g.to_modal(jnp.asarray(np.roll(nodal, columns, axis=-2))), dtype=np.float32)

    return ModelState(*(rot(a) for a in s.arrays().values()))


def choose_base(seed: int, n_states: int, n_lon: int) -> tuple[int, int]:
    """(shipped state index, longitude shift in columns) for a seed."""
    rng = np.random.default_rng([int(seed), _TAG_CHOICE])
    return int(rng.integers(n_states)), int(rng.integers(n_lon))


def perturb(core: HeldSuarezCore, s: ModelState, seed: int, amplitude_k: float = PERTURBATION_K) -> ModelState:
    """Add a seeded large-scale temperature perturbation (l = 1..20) of about ``amplitude_k`` rms."""
    rng = np.random.default_rng([int(seed), _TAG_CHOICE + 1])
    l_tot = core.total_wavenumber
    band = core.modal_mask & (l_tot >= 1) & (l_tot <= 20)
    noise = rng.standard_normal(s.temperature_variation.shape).astype(np.float32) * band
    # orthonormal harmonics: nodal variance ~ sum of squared coefficients / (4 pi)
    rms = np.sqrt((noise[0] ** 2).sum() / (4 * np.pi))
    scale = core.nondim_temperature(amplitude_k) / max(float(rms), 1e-12)
    out = ModelState(**s.arrays())
    out.temperature_variation = (s.temperature_variation + noise * scale).astype(np.float32)
    return out


def initial_state(seed: int, core: HeldSuarezCore, decorrelation_days: int = 5,
                  library: list[Path] | None = None) -> ModelState:
    """The state at the first output time of the world with this seed (see module doc)."""
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    paths = library if library is not None else shipped_state_paths(TRUTH_CORE)
    if not paths:
        raise DataError("no shipped spun-up state found in pipeline/world/data/; run "
                        "`fuxiops world spinup` (takes about an hour) to create them")
    src_core = core if core.config == TRUTH_CORE else get_core(TRUTH_CORE)
    idx, shift = choose_base(seed, len(paths), src_core.coords.horizontal.nodal_shape[0])
    base, _ = ModelState.load(paths[idx])
    src_core.check_state(base, f"shipped state {paths[idx].name}")
    base = rotate_longitude(src_core, base, shift)
    if core.config != TRUTH_CORE:
        base = transfer_state(base, TRUTH_CORE, core.config)
    s = perturb(core, base, seed)
    return core.advance(s, windows=4 * decorrelation_days) if decorrelation_days > 0 else s

