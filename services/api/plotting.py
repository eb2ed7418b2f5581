"""Map and meteogram images (matplotlib, Agg, object API: safe in worker threads).

Maps use a fixed layout (``MAP_LAYOUT``) so that the forecaster page can turn
a click on the image into longitude/latitude exactly.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime
from typing import Sequence

import numpy as np

from fuxiops.services.api.variables import ApiVariable

#: Pixel size and axes box (figure fractions: left, bottom, width, height) of every map.
MAP_LAYOUT = {"width": 1000, "height": 560, "axes": [0.04, 0.10, 0.82, 410.0 / 560.0],
              "extent": [-180.0, 180.0, -90.0, 90.0]}
_DPI = 100
_render_lock = threading.Lock()

CMAPS = {"temperature": "RdYlBu_r", "speed": "viridis", "direction": "twilight", "pressure": "PuOr_r",
         "height": "Spectral_r", "precipitation": "Blues", "other": "cividis"}


def _png(fig: "object") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # type: ignore[arg-type]
    buf = io.BytesIO()
    canvas.print_png(buf)
    return buf.getvalue()


def render_map(field: np.ndarray, lat: np.ndarray, lon: np.ndarray, var: ApiVariable, units: str,
               valid: datetime, run_id: str, step: int, model: str, status: str,
               coast: Sequence[np.ndarray]) -> bytes:
    """A global map of ``field`` (lat x lon, API units) with coastlines, colour bar, units and valid time.

    ``status`` is shown in red when not empty (a degraded or cold-start run)."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    # Centre on Greenwich: columns 0..360 -> -180..180.
    lon180 = np.where(lon >= 180.0, lon - 360.0, lon)
    order = np.argsort(lon180, kind="stable")
    data = field[:, order]
    lo = lon180[order]
    if lat[0] < lat[-1]:
        data = data[::-1]
    dlon = float(lo[1] - lo[0]) if lo.size > 1 else 360.0
    dlat = float(abs(lat[0] - lat[1])) if lat.size > 1 else 180.0
    extent = (float(lo[0]) - dlon / 2, float(lo[-1]) + dlon / 2, float(min(lat.min() - dlat / 2, -90.0)),
              float(max(lat.max() + dlat / 2, 90.0)))
    finite = data[np.isfinite(data)]
    vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    if var.quantity == "direction":
        vmin, vmax = 0.0, 360.0
    if vmin == vmax:
        vmin, vmax = vmin - 1.0, vmax + 1.0
    with _render_lock:
        fig = Figure(figsize=(MAP_LAYOUT["width"] / _DPI, MAP_LAYOUT["height"] / _DPI), dpi=_DPI)
        ax = fig.add_axes(MAP_LAYOUT["axes"])
        im = ax.imshow(data, extent=extent, origin="upper", cmap=CMAPS.get(var.quantity, "viridis"),
                       vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
        if var.quantity in ("pressure", "height"):
            ax.contour(lo, lat if lat[0] < lat[-1] else lat[::-1], data[::-1] if lat[0] > lat[-1] else data,
                       levels=12, colors="k", linewidths=0.4, alpha=0.6)
        ax.add_collection(LineCollection(list(coast), colors="k", linewidths=0.5))
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_xticks(range(-180, 181, 60))
        ax.set_yticks(range(-90, 91, 30))
        ax.tick_params(labelsize=7)
        cax = fig.add_axes([0.88, MAP_LAYOUT["axes"][1], 0.022, MAP_LAYOUT["axes"][3]])
        cb = fig.colorbar(im, cax=cax)
        cb.set_label(f"{var.name} [{units}]", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        fig.text(0.04, 0.955, f"{var.long_name} [{units}]", fontsize=11, weight="bold")
        fig.text(0.04, 0.905, f"valid {valid:%a %Y-%m-%d %H:%M} UTC  (+{step} h)   run {run_id}   model {model}"
                 + (f"   RUN STATUS: {status.upper()}" if status else ""), fontsize=8.5,
                 color="firebrick" if status else "black")
        return _png(fig)


def render_meteogram(times: np.ndarray, panels: Sequence[tuple[str, str, np.ndarray]],
                     wind_dir: np.ndarray | None, lat: float, lon: float, run_id: str, model: str,
                     status: str) -> bytes:
    """Stacked time series (one panel per variable) at one grid point, 6-hourly markers, wind arrows."""
    from matplotlib.figure import Figure
    import matplotlib.dates as mdates

    t = times.astype("datetime64[s]").astype(datetime)
    n = max(1, len(panels))
    with _render_lock:
        fig = Figure(figsize=(9.0, 2.0 * n + 0.8), dpi=_DPI)
        axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
        colours = ["tab:red", "tab:green", "tab:purple", "tab:blue", "tab:orange"]
        for k, (ax, (label, units, y)) in enumerate(zip(axes, panels)):
            if label.startswith("precipitation"):
                ax.bar(t, y, width=0.2, color="tab:blue", align="edge")
            else:
                ax.plot(t, y, marker="o", ms=2.5, lw=1.2, color=colours[k % len(colours)])
            ax.set_ylabel(f"{label}\n[{units}]", fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if label.startswith("wind_speed") and wind_dir is not None:
                # Arrows point where the wind blows TO (direction is where it comes FROM).
                rad = np.deg2rad(wind_dir)
                ymid = np.full(len(t), np.nanmax(y) * 1.08 if np.isfinite(np.nanmax(y)) else 1.0)
                ax.quiver(mdates.date2num(t), ymid, -np.sin(rad), -np.cos(rad), angles="uv", scale=40, width=0.002,
                          color="0.3")
        axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%H UTC"))
        fig.suptitle(f"Meteogram {lat:.2f}°, {lon:.2f}°  -  run {run_id} ({model})"
                     + (f"  RUN STATUS: {status.upper()}" if status else ""), fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        return _png(fig)
