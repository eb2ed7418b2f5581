"""Climate diagnostics of a world: zonal means, the Held-Suarez jet check and a summary figure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr


@dataclass(frozen=True)
class JetCheck:
    """Upper-level (200-300 hPa mean) zonal-mean zonal wind maxima per hemisphere."""

    u_max_nh: float
    lat_nh: float
    u_max_sh: float
    lat_sh: float
    t_min: float
    t_max: float

    def problems(self, u_range: tuple[float, float] = (20.0, 40.0),
                 lat_range: tuple[float, float] = (25.0, 55.0)) -> list[str]:
        """What is outside the Held-Suarez climate (empty list: it looks right)."""
        out = []
        for hemi, u, lat in (("NH", self.u_max_nh, self.lat_nh), ("SH", self.u_max_sh, -self.lat_sh)):
            if not u_range[0] <= u <= u_range[1]:
                out.append(f"{hemi} jet {u:.1f} m/s outside {u_range} m/s")
            if not lat_range[0] <= lat <= lat_range[1]:
                out.append(f"{hemi} jet at {lat:.1f} deg outside {lat_range} deg")
        if self.t_min < 180.0 or self.t_max > 330.0:
            out.append(f"temperature range {self.t_min:.1f}..{self.t_max:.1f} K implausible")
        return out


def zonal_means(ds: xr.Dataset) -> xr.Dataset:
    """Time- and zonal-mean u and t (level, latitude)."""
    dims = [d for d in ("time", "step") if d in ds.dims]
    return ds[["u", "t"]].mean(dims + ["longitude"]).compute()


def jet_check(ds: xr.Dataset) -> JetCheck:
    zm = zonal_means(ds)
    up = zm["u"].sel(level=[lev for lev in (200, 250, 300) if lev in zm["level"].values]).mean("level")
    lat = zm["latitude"].values
    u = up.values
    nh, sh = lat > 0, lat < 0
    t = ds["t"]
    return JetCheck(float(u[nh].max()), float(lat[nh][np.argmax(u[nh])]), float(u[sh].max()),
                    float(lat[sh][np.argmax(u[sh])]), float(t.min().compute()), float(t.max().compute()))


def describe_figure(ds: xr.Dataset, out: Path, title: str = "testbed world") -> Path:
    """Zonal-mean zonal wind and temperature (latitude x pressure) to a PNG."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    zm = zonal_means(ds)
    lat, lev = zm["latitude"].values, zm["level"].values
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for ax, name, cmap, levels in ((axes[0], "u", "RdBu_r", np.arange(-40, 41, 4)),
                                   (axes[1], "t", "inferno", np.arange(180, 321, 5))):
        cs = ax.contourf(lat, lev, zm[name].values, levels=levels, cmap=cmap, extend="both")
        ax.contour(lat, lev, zm[name].values, levels=levels[::2], colors="k", linewidths=0.4)
        ax.set_yscale("log")
        ax.set_ylim(lev.max(), lev.min())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks([50, 100, 200, 300, 500, 700, 1000])
        ax.set_yticklabels(["50", "100", "200", "300", "500", "700", "1000"])
        ax.set_xlabel("latitude (deg)")
        ax.set_ylabel("pressure (hPa)")
        ax.set_title(f"zonal-mean {'zonal wind (m/s)' if name == 'u' else 'temperature (K)'}")
        fig.colorbar(cs, ax=ax)
    n = ds.sizes.get("time", 1)
    fig.suptitle(f"{title}: mean over {n} times")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
