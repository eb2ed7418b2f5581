"""Synthetic published runs in the products layout (docs/architecture.md), for tests, benchmarks and demos.

Fields are smooth, seeded and physically plausible (a meridional temperature
gradient, westerlies, pressure waves), so that maps look like weather and
tests can check values against an independent read of the Zarr store. The
run is streamed band by band into ``forecast.zarr`` (Zarr v2, Blosc-zstd, chunked as the products
writer chunks it), with a manifest listing product files with their real SHA-256, and published
atomically by a rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
import warnings
import zlib
from typing import Sequence

import numpy as np

from fuxiops.catalog import G0
from fuxiops.grids import get_grid
from fuxiops.state import coord_attrs, variable_attrs


def _fields(name: str, level: int | None, lat: np.ndarray, lon: np.ndarray, hours: int,
            rng: np.random.Generator) -> np.ndarray:
    la = np.deg2rad(lat)[:, None]
    lo = np.deg2rad(lon)[None, :]
    phase = hours / 24.0
    wave = np.cos(3 * lo - 0.6 * phase) * np.cos(la) ** 2
    noise = rng.standard_normal((lat.size, lon.size)).astype(np.float32)
    if name in ("t2m", "t"):
        base = 300.0 - 45.0 * np.sin(la) ** 2 + 4.0 * wave + 2.0 * np.cos(lo - 2 * np.pi * phase) * np.cos(la)
        if level is not None:
            base = base - 6.5e-3 * 7000.0 * np.log(1000.0 / level)
        out = base + 0.5 * noise
    elif name in ("u10", "u"):
        scale = 1.0 if level is None else 1.0 + (1000 - level) / 300.0
        out = scale * (12.0 * np.sin(2 * la) ** 2 - 4.0 + 5.0 * wave) + noise
    elif name in ("v10", "v"):
        scale = 1.0 if level is None else 1.0 + (1000 - level) / 300.0
        out = scale * 6.0 * np.sin(3 * lo - 0.6 * phase) * np.cos(la) + noise
    elif name == "msl":
        out = 101325.0 + 1200.0 * wave - 800.0 * np.sin(2 * la) ** 2 + 50.0 * noise
    elif name == "z":
        assert level is not None
        out = G0 * (7200.0 * np.log(1000.0 / level) + 120.0 * wave - 200.0 * np.sin(la) ** 2) + 10.0 * noise
    elif name == "r":
        out = np.clip(70.0 + 20.0 * wave + 5.0 * noise, 0.0, 100.0)
    elif name == "tp6":
        out = np.maximum(0.0, 3.0 * wave + noise) * (hours > 0)
    else:
        raise ValueError(f"no synthetic field for {name!r}")
    return np.broadcast_to(out, (lat.size, lon.size)).astype(np.float32)


def _write_file(path: Path, data: bytes) -> dict[str, object]:
    path.write_bytes(data)
    return {"name": path.name, "format": "grib2" if path.suffix == ".grib2" else "netcdf",
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_run(products: str | os.PathLike[str], run_id: str = "2023010100", grid: str = "5.625deg",
              surface: Sequence[str] = ("t2m", "u10", "v10", "msl"), upper_air: Sequence[str] = ("z", "t", "u", "v"),
              levels: Sequence[int] = (500, 850), steps: int = 41, step_hours: int = 6, seed: int = 0,
              status: str = "published", model: str = "fuxi-tiny-synthetic", product_files: bool = True,
              layout: str = "timeseries", tile: int = 90, progress: bool = False) -> Path:
    """Write a complete run ``{products}/{run_id}/`` and return its folder.

    ``layout="timeseries"`` chunks as the products writer does (all lead times of one level over
    ``tile`` x ``tile`` cells, Zarr v2, Blosc-zstd + shuffle); ``layout="fields"`` puts one field per chunk.
    """
    import xarray as xr
    import zarr
    from numcodecs import Blosc

    if layout not in ("timeseries", "fields"):
        raise ValueError(f"layout must be 'timeseries' or 'fields', got {layout!r}")
    g = get_grid(grid)
    lat, lon = g.latitudes, g.longitudes
    ref = datetime.strptime(run_id, "%Y%m%d%H")
    products = Path(products)
    products.mkdir(parents=True, exist_ok=True)
    final = products / run_id
    tmp = products / f".{run_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    store = tmp / "forecast.zarr"
    hours = np.arange(steps, dtype=np.int64) * step_hours
    valid = np.datetime64(ref, "ns") + hours.astype("timedelta64[h]").astype("timedelta64[ns]")
    units = f"hours since {ref:%Y-%m-%d %H:%M:%S}"
    coords: dict[str, object] = {
        "step": ("step", hours, {"long_name": "lead time", "standard_name": "forecast_period", "units": "hours"}),
        "valid_time": ("step", valid, {"long_name": "valid time", "standard_name": "time"}),
        "time": ((), np.datetime64(ref, "ns"), {"long_name": "reference time"}),
        "latitude": ("latitude", lat, coord_attrs()["latitude"]),
        "longitude": ("longitude", lon, coord_attrs()["longitude"]),
    }
    if upper_air:
        coords["level"] = ("level", np.array(levels, dtype=np.int64), coord_attrs()["level"])
    attrs = {"run_id": run_id, "reference_time": ref.strftime("%Y-%m-%dT%H:%M:%SZ"), "model": model,
             "status": status, "grid": grid}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset(coords=coords, attrs=attrs).to_zarr(store, mode="w-", consolidated=False, zarr_format=2,
                                                       encoding={"valid_time": {"units": units, "dtype": "int64"},
                                                                 "time": {"units": units, "dtype": "int64"}})
        group = zarr.open_group(str(store), mode="r+", zarr_format=2)
        codec = Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE)
        lat_t, lon_t = min(tile, lat.size), min(tile, lon.size)
        arrays = {}
        for name in list(upper_air) + list(surface):
            upper = name in upper_air
            shape = (steps, len(levels), lat.size, lon.size) if upper else (steps, lat.size, lon.size)
            if layout == "timeseries":
                chunks = (steps, 1, lat_t, lon_t) if upper else (steps, lat_t, lon_t)
            else:
                chunks = (1, 1, lat.size, lon.size) if upper else (1, lat.size, lon.size)
            dims = ["step", "level", "latitude", "longitude"] if upper else ["step", "latitude", "longitude"]
            arrays[name] = group.create_array(name, shape=shape, chunks=chunks, dtype="<f4", compressors=codec,
                                              filters=None, fill_value=np.float32(np.nan),
                                              attributes={**variable_attrs(name), "_ARRAY_DIMENSIONS": dims})
        # Bands of rows (tile-aligned): each chunk is written exactly once, memory stays one band.
        band = lat_t if layout == "timeseries" else lat.size
        starts = range(0, lat.size, band)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc=f"writing run {run_id}", unit="band")
        for i0 in starts:
            rows = slice(i0, min(lat.size, i0 + band))
            for name, arr in arrays.items():
                for k, lev in enumerate(levels if name in upper_air else [None]):
                    rng = np.random.default_rng([seed, i0, zlib.crc32(name.encode()), k])
                    slab = np.stack([_fields(name, lev, lat[rows], lon, int(h), rng) for h in hours])
                    if lev is None:
                        arr[:, rows, :] = slab
                    else:
                        arr[:, k, rows, :] = slab
        zarr.consolidate_metadata(str(store))
    files = []
    if product_files:
        frng = np.random.default_rng(seed + 1)
        body = frng.integers(0, 256, size=150_000, dtype=np.uint8).tobytes()
        files.append(_write_file(tmp / f"{run_id}-0h.grib2", b"GRIB" + body + b"7777"))
        files.append(_write_file(tmp / f"{run_id}-6h.grib2", b"GRIB" + body[::-1] + b"7777"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            small = xr.open_zarr(store, decode_timedelta=False).isel(step=slice(0, 2)).load()
        nc_path = tmp / f"{run_id}.nc"
        small.to_netcdf(nc_path)
        files.append(_write_file(nc_path, nc_path.read_bytes()))
    manifest = {"run_id": run_id, "cycle_time": attrs["reference_time"], "status": status,
                "model": {"name": model, "checkpoint": model, "grid": grid},
                "grid": grid, "steps": [s * step_hours for s in range(steps)], "files": files}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final
