"""The microwave temperature sounder (``mwts``) instrument model: channels and weighting functions.

One definition shared by the testbed world, which simulates the sounder's
brightness temperatures from truth/reanalysis temperature profiles
(``fuxiops.pipeline.world.obs``), and by the observation QC, which computes
the same quantity from the cycle background (H(x_b) in
``fuxiops.pipeline.obs.background``). Keeping one copy means O-B measures
the instrument's noise and bias, never a mismatch between two operators.

Physics: TB_c = sum_k W_c(p_k) T(p_k) over the model's pressure levels, with
Gaussian weighting functions in ln p around each channel's peak, weighted by
the trapezoid layer thickness in ln p and normalised to sum 1 (so an
isothermal profile gives TB = T in every channel). There is no surface
emission term, no zenith-angle dependence and no radiative transfer beyond
this weighting; satellite biases belong to the world's error model, not to
the operator. Numpy only: importing this module loads no JAX/dinosaur.
"""

from __future__ import annotations

import numpy as np

#: Microwave temperature sounder channels: (channel number, peak pressure hPa, ln-p half width).
#: Modelled on the oxygen-band channels of FY-3 MWTS-2 / AMSU-A (peaks 850 ... 100 hPa).
MWTS_CHANNELS: tuple[tuple[int, float, float], ...] = (
    (3, 850.0, 0.45), (5, 600.0, 0.45), (7, 400.0, 0.45), (9, 250.0, 0.45), (11, 150.0, 0.45), (13, 80.0, 0.5),
)


def mwts_weights(levels_hpa: np.ndarray,
                 channels: tuple[tuple[int, float, float], ...] = MWTS_CHANNELS) -> np.ndarray:
    """Weighting functions W[c, level]: Gaussian in ln p around each peak, trapezoid layer
    thickness in ln p, normalised to sum 1 (an isothermal profile gives TB = T)."""
    lev = np.asarray(levels_hpa, dtype=np.float64)
    lnp = np.log(lev)
    order = np.argsort(lnp)
    s = lnp[order]
    thick = np.empty_like(s)
    thick[1:-1] = (s[2:] - s[:-2]) / 2
    thick[0], thick[-1] = (s[1] - s[0]) / 2, (s[-1] - s[-2]) / 2
    dlnp = np.empty_like(thick)
    dlnp[order] = thick
    w = np.stack([np.exp(-((lnp - np.log(pc)) / hw) ** 2) * dlnp for _, pc, hw in channels])
    return w / w.sum(axis=1, keepdims=True)


def brightness_temperature(levels_hpa: np.ndarray, t_profile: np.ndarray,
                           channels: tuple[tuple[int, float, float], ...] = MWTS_CHANNELS) -> np.ndarray:
    """TB[c, n] for temperature columns ``t_profile[level, n]``."""
    return mwts_weights(levels_hpa, channels) @ np.asarray(t_profile, dtype=np.float64)


def channel_index(channel_numbers: np.ndarray,
                  channels: tuple[tuple[int, float, float], ...] = MWTS_CHANNELS) -> np.ndarray:
    """Row of each channel number in ``channels`` (-1 where the sounder has no such channel)."""
    num = np.asarray(channel_numbers, dtype=np.float64)
    out = np.full(num.shape, -1, dtype=np.int64)
    for c, (n, _, _) in enumerate(channels):
        out[num == n] = c
    return out
