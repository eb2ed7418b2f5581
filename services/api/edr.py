"""OGC API - EDR query engine: collections of a run, parameter/level/time selection, point and area reads,
and CoverageJSON / GeoJSON encodings.

Two collections describe every run: ``single-level`` (2 m / 10 m / mean-sea-level fields, named as in
/v1/forecast) and ``pressure-level`` (families such as ``temperature`` with the vertical axis ``z`` in hPa).
Values are in the API's default units (°C, m/s, hPa, m, mm); nothing is interpolated: points use the
nearest grid cell, times must be model steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from fuxiops.services.api.errors import ApiError, bad_parameter
from fuxiops.services.api.geometry import (DISTANCE_UNITS, haversine_km, in_polygon, parse_bbox,
                                           parse_wkt)
from fuxiops.services.api.store.runs import OpenRun
from fuxiops.services.api.timeutil import select_times
from fuxiops.services.api.variables import UCUM, ApiVariable, Units, family

CollectionId = Literal["single-level", "pressure-level"]
COLLECTIONS: tuple[str, ...] = ("single-level", "pressure-level")
EDR_UNITS = Units(temperature="celsius", wind_speed="ms", precipitation="mm")
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84_WKT = ('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
             'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AXIS["Longitude",EAST],AXIS["Latitude",NORTH]]')
OUTPUT_FORMATS = ["CoverageJSON", "GeoJSON"]
QUERIES = ("position", "area", "cube", "radius")


# -- collection metadata -------------------------------------------------------------------------------------
def collection_parameters(run: OpenRun, cid: str) -> dict[str, list[ApiVariable]]:
    """Parameter name -> its variables (one per level for pressure-level families)."""
    out: dict[str, list[ApiVariable]] = {}
    for v in run.variables.values():
        if cid == "single-level" and v.level is None:
            out[v.name] = [v]
        elif cid == "pressure-level" and v.level is not None:
            out.setdefault(family(v), []).append(v)
    return out


def check_collection(cid: str) -> None:
    if cid not in COLLECTIONS:
        raise ApiError(404, f"unknown collection {cid!r}", parameter="collectionId", allowed=list(COLLECTIONS))


def parameter_json(name: str, var: ApiVariable) -> dict[str, Any]:
    units = var.units(EDR_UNITS)
    label = var.long_name if var.level is None else var.long_name.rsplit(" at ", 1)[0]
    return {"type": "Parameter", "id": name, "label": {"en": label}, "description": {"en": label},
            "unit": {"label": {"en": units}, "symbol": {"value": UCUM.get(units, units),
                                                        "type": "http://www.opengis.net/def/uom/UCUM/"}},
            "observedProperty": {"id": f"http://vocab.nerc.ac.uk/standard_name/{var.standard_name}/",
                                 "label": {"en": var.standard_name.replace("_", " ")}}}


def _link(href: str, rel: str, title: str | None = None, type_: str = "application/json") -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def collection_json(run: OpenRun, cid: str, base: str, instance: bool = False) -> dict[str, Any]:
    """EDR collection (or instance) metadata: extents, parameters and the query endpoints."""
    params = collection_parameters(run, cid)
    path = f"{base}edr/collections/{cid}" + (f"/instances/{run.info.run_id}" if instance else "")
    extent: dict[str, Any] = {
        "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]], "crs": CRS84_WKT},
        "temporal": {"interval": [[run.valid_iso[0], run.valid_iso[-1]]], "values": run.valid_iso,
                     "trs": 'TIMECRS["DateTime",TDATUM["Gregorian Calendar"],CS[TemporalDateTime,1],'
                            'AXIS["Time (T)",future]]'},
    }
    if cid == "pressure-level":
        levels = sorted({int(v.level) for vs in params.values() for v in vs if v.level is not None})
        extent["vertical"] = {"interval": [[str(max(levels)), str(min(levels))]] if levels else [],
                              "values": [str(lev) for lev in levels],
                              "vrs": 'VERTCRS["Pressure",VDATUM["Pressure"],CS[vertical,1],AXIS["Pressure (P)",'
                                     'down],UNIT["hPa",100]]'}
    queries = {}
    for q in QUERIES:
        variables: dict[str, Any] = {"title": f"{q.title()} query", "query_type": q,
                                     "output_formats": OUTPUT_FORMATS, "default_output_format": "CoverageJSON",
                                     "crs_details": [{"crs": "CRS84", "wkt": CRS84_WKT}]}
        if q == "radius":
            variables["within_units"] = list(DISTANCE_UNITS)
        queries[q] = {"link": {"href": f"{path}/{q}", "rel": "data", "templated": False, "variables": variables}}
    out = {
        "id": run.info.run_id if instance else cid,
        "title": (f"Run {run.info.run_id} - " if instance else "") + cid.replace("-", " ") + " fields",
        "description": f"fuxiops forecast, {cid.replace('-', ' ')} parameters; run {run.info.run_id} "
                       f"({run.info.status}, model {run.model})" + ("" if instance else "; latest run"),
        "links": [_link(path, "self"), _link(f"{base}edr/collections/{cid}/instances", "instances")],
        "extent": extent,
        "data_queries": queries,
        "crs": ["CRS84"],
        "output_formats": OUTPUT_FORMATS,
        "parameter_names": {name: parameter_json(name, vs[0]) for name, vs in params.items()},
        "run": {"id": run.info.run_id, "cycle_time": run.info.cycle_time_iso, "model": run.model,
                "status": run.info.status},
    }
    return out


# -- selection -----------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """What to read: (parameter, level, variable) triples, time indexes, and levels."""

    items: list[tuple[str, int | None, ApiVariable]]
    times: np.ndarray
    levels: list[int]
    params: list[str]


def select(run: OpenRun, cid: str, parameter_name: str | None, z: str | None, datetime: str | None) -> Selection:
    params = collection_parameters(run, cid)
    names = [p.strip() for p in (parameter_name or "").split(",") if p.strip()] or list(params)
    for n in names:
        if n not in params:
            raise bad_parameter("parameter-name", f"unknown parameter {n!r} in collection {cid}", list(params))
    levels: list[int] = []
    if cid == "pressure-level":
        have = sorted({int(v.level) for vs in params.values() for v in vs if v.level is not None}, reverse=True)
        levels = _select_levels(z, have)
    elif z not in (None, ""):
        raise bad_parameter("z", "the single-level collection has no vertical axis; use the pressure-level "
                                 "collection for levels")
    items: list[tuple[str, int | None, ApiVariable]] = []
    for n in names:
        if cid == "pressure-level":
            by_level = {int(v.level): v for v in params[n] if v.level is not None}
            for lev in levels:
                if lev not in by_level:
                    raise bad_parameter("z", f"parameter {n} has no level {lev}", sorted(by_level))
                items.append((n, lev, by_level[lev]))
        else:
            items.append((n, None, params[n][0]))
    return Selection(items, select_times(datetime, run.valid_times), levels, names)


def _select_levels(z: str | None, have: list[int]) -> list[int]:
    if z is None or z.strip() == "":
        return have
    z = z.strip()
    try:
        if "/" in z:
            a, b = (float(x) for x in z.split("/", 1))
            lo, hi = min(a, b), max(a, b)
            out = [lev for lev in have if lo <= lev <= hi]
        else:
            wanted = [float(x) for x in z.split(",") if x.strip()]
            out = []
            for w in wanted:
                if w not in have:
                    raise bad_parameter("z", f"level {w:g} hPa is not in this run", have)
                out.append(int(w))
    except ValueError:
        raise bad_parameter("z", f"expected a level, a comma list or 'a/b' in hPa, got {z!r}", have) from None
    if not out:
        raise bad_parameter("z", f"no level of this run in {z!r}", have)
    return out


# -- reads ---------------------------------------------------------------------------------------------------
def _check_size(n_cells: int, sel: Selection, limit: int, parameter: str) -> None:
    n = n_cells * sel.times.size * len(sel.items)
    if n > limit:
        raise bad_parameter(parameter, f"the query asks for {n} values (grid cells x times x parameters x levels); "
                                       f"at most {limit} are allowed: shrink the area or select fewer "
                                       "parameters, levels or times")


def read_points(run: OpenRun, sel: Selection, lon: np.ndarray, lat: np.ndarray,
                limit: int) -> tuple[np.ndarray, np.ndarray, dict[tuple[str, int | None], np.ndarray]]:
    """Nearest-cell values: grid lon/lat of each point and {(param, level): (N, T)}."""
    _check_size(lon.size, sel, limit, "coords")
    i, j = run.nearest(lat, lon)
    data = run.index().points(i, j)[..., sel.times]  # (N, C, T)
    out = {(p, lev): v.compute(data, run.channel_index, EDR_UNITS) for p, lev, v in sel.items}
    return run.grid_lon(j), run.lat[i], out


@dataclass
class Area:
    """A rectangular window of grid cells (columns in the query's longitude frame) and a mask inside it."""

    rows: np.ndarray
    cols: np.ndarray
    x: np.ndarray  # longitudes in the query frame
    y: np.ndarray
    mask: np.ndarray  # (ny, nx) True where the cell is inside the geometry


def window(run: OpenRun, minx: float, miny: float, maxx: float, maxy: float) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray, np.ndarray]:
    """Rows and columns of cells whose centres lie in the box (longitudes kept in the box's frame)."""
    lat = run.lat
    rows = np.flatnonzero((lat >= miny - 1e-9) & (lat <= maxy + 1e-9))
    lon0, d, n = float(run.lon[0]), run.dlon, run.lon.size
    k0 = math.ceil((minx - lon0) / d - 1e-9)
    k1 = math.floor((maxx - lon0) / d + 1e-9)
    ks = np.arange(k0, k1 + 1)
    if ks.size > n:
        ks = ks[:n]
    cols = np.mod(ks, n)
    x = lon0 + ks * d
    return rows, cols, x, lat[rows]


def area_for(run: OpenRun, query: str, coords: str | None, bbox: str | None, within: float | None,
             within_units: str | None) -> Area:
    if query == "cube":
        if not bbox:
            raise bad_parameter("bbox", "required: 'minx,miny,maxx,maxy' in degrees")
        minx, miny, maxx, maxy = parse_bbox(bbox)
        rows, cols, x, y = window(run, minx, miny, maxx, maxy)
        return Area(rows, cols, x, y, np.ones((rows.size, cols.size), dtype=bool))
    if query == "area":
        g = parse_wkt(coords or "", ("POLYGON",))
        minx, miny = g.points.min(axis=0)
        maxx, maxy = g.points.max(axis=0)
        if maxx - minx > 360:
            raise bad_parameter("coords", "a polygon may span at most 360 degrees of longitude")
        rows, cols, x, y = window(run, minx, miny, maxx, maxy)
        xx, yy = np.meshgrid(x, y)
        return Area(rows, cols, x, y, in_polygon(xx, yy, g))
    # radius
    g = parse_wkt(coords or "", ("POINT",))
    if within is None:
        raise bad_parameter("within", "required for radius queries: a distance", None)
    if not math.isfinite(within) or within <= 0:
        raise bad_parameter("within", f"must be a positive distance, got {within!r}")
    units = (within_units or "").lower()
    if units not in DISTANCE_UNITS:
        raise bad_parameter("within-units", f"unknown or missing unit {within_units!r}", list(DISTANCE_UNITS))
    r_km = within * DISTANCE_UNITS[units]
    if r_km > 5000:
        raise bad_parameter("within", f"radius {r_km:.0f} km is too large; at most 5000 km")
    lon_c, lat_c = float(g.points[0, 0]), float(g.points[0, 1])
    dlat = math.degrees(r_km / 6371.0088)
    miny, maxy = max(-90.0, lat_c - dlat), min(90.0, lat_c + dlat)
    coslat = min(math.cos(math.radians(miny)), math.cos(math.radians(maxy)))
    if maxy >= 90 or miny <= -90 or coslat < 1e-6 or dlat / max(coslat, 1e-6) >= 180:
        minx, maxx = lon_c - 180.0, lon_c + 180.0 - run.dlon
    else:
        minx, maxx = lon_c - dlat / coslat, lon_c + dlat / coslat
    rows, cols, x, y = window(run, minx, miny, maxx, maxy)
    xx, yy = np.meshgrid(x, y)
    return Area(rows, cols, x, y, haversine_km(lon_c, lat_c, xx, yy) <= r_km)


def read_area(run: OpenRun, sel: Selection, area: Area, limit: int,
              parameter: str) -> dict[tuple[str, int | None], np.ndarray]:
    """{(param, level): (T, ny, nx)} with NaN outside the geometry."""
    ny, nx = area.rows.size, area.cols.size
    if ny == 0 or nx == 0 or not area.mask.any():
        raise bad_parameter(parameter, f"the geometry contains no grid point (grid spacing {run.dlon:g} degrees); "
                                       "use a larger area or a position query")
    _check_size(ny * nx, sel, limit, parameter)
    n_ch, n_steps = len(run.store.channels), run.valid_times.size
    needed = sorted({c for _, _, v in sel.items for c in v.channels})
    cost_index = ny * nx * n_ch * n_steps
    cost_fields = sel.times.size * len(needed) * run.lat.size * run.lon.size
    out: dict[tuple[str, int | None], np.ndarray] = {}
    if cost_index <= cost_fields:
        rows = slice(int(area.rows[0]), int(area.rows[-1]) + 1)
        data = run.index().box(rows, area.cols)[..., sel.times]  # (ny, nx, C, T)
        local = run.channel_index
    else:
        # Large area, few fields: decoding whole fields from the Zarr store is cheaper than the index.
        data = np.empty((ny, nx, len(needed), sel.times.size), dtype=np.float32)
        for k, c in enumerate(needed):
            ch = run.store.channels[run.channel_index[c]]
            for t, s in enumerate(sel.times):
                field = run.store.read_field(ch, int(s))
                data[:, :, k, t] = field[area.rows][:, area.cols]
        local = {c: k for k, c in enumerate(needed)}
    for p, lev, v in sel.items:
        vals = np.moveaxis(v.compute(data, local, EDR_UNITS), -1, 0)  # (T, ny, nx)
        out[(p, lev)] = np.where(area.mask[None], vals, np.float32(np.nan)).astype(np.float32)
    return out


# -- encodings -----------------------------------------------------------------------------------------------
def _referencing(with_z: bool) -> list[dict[str, Any]]:
    ref: list[dict[str, Any]] = [
        {"coordinates": ["x", "y"], "system": {"type": "GeographicCRS", "id": CRS84}},
        {"coordinates": ["t"], "system": {"type": "TemporalRS", "calendar": "Gregorian"}},
    ]
    if with_z:
        ref.append({"coordinates": ["z"], "system": {"type": "VerticalCRS", "cs": {"csAxes": [
            {"name": {"en": "Pressure"}, "direction": "down", "unit": {"symbol": "hPa"}}]}}})
    return ref


def _params_json(run: OpenRun, sel: Selection) -> dict[str, Any]:
    out = {}
    for p, _, v in sel.items:
        if p not in out:
            out[p] = parameter_json(p, v)
    return out


def _ranges(sel: Selection, values: dict[tuple[str, int | None], np.ndarray], axis_names: list[str],
            shape: list[int], z_first_axis: int | None) -> dict[str, Any]:
    ranges: dict[str, Any] = {}
    for p in sel.params:
        if sel.levels:
            stack = np.stack([values[(p, lev)] for lev in sel.levels], axis=z_first_axis or 1)
        else:
            stack = values[(p, None)]
        ranges[p] = {"type": "NdArray", "dataType": "float", "axisNames": axis_names, "shape": shape,
                     "values": np.ascontiguousarray(np.round(stack, 3), dtype=np.float32).ravel()}
    return ranges


def coverage_points(run: OpenRun, sel: Selection, lon: np.ndarray, lat: np.ndarray,
                    values: dict[tuple[str, int | None], np.ndarray]) -> dict[str, Any]:
    """PointSeries coverage(s): one per point; a CoverageCollection for several points."""
    times = [run.valid_iso[int(k)] for k in sel.times]
    with_z = bool(sel.levels)
    covs = []
    for n in range(lon.size):
        axes: dict[str, Any] = {"x": {"values": [float(lon[n])]}, "y": {"values": [float(lat[n])]},
                                "t": {"values": times}}
        per = {key: val[n] for key, val in values.items()}  # (T,)
        if with_z:
            axes["z"] = {"values": sel.levels}
            ranges = _ranges(sel, {k: v[:, None] for k, v in per.items()}, ["t", "z"],
                             [len(times), len(sel.levels)], 1)
            dtype = "PointSeries" if len(sel.levels) == 1 else "Grid"
            if dtype == "Grid":
                for r in ranges.values():
                    r["axisNames"] = ["t", "z", "y", "x"]
                    r["shape"] = [len(times), len(sel.levels), 1, 1]
            else:
                for r in ranges.values():
                    r["axisNames"] = ["t"]
                    r["shape"] = [len(times)]
        else:
            dtype = "PointSeries"
            ranges = _ranges(sel, per, ["t"], [len(times)], None)
        covs.append({"type": "Coverage", "domain": {"type": "Domain", "domainType": dtype, "axes": axes,
                                                    "referencing": _referencing(with_z)},
                     "ranges": ranges})
    params = _params_json(run, sel)
    if len(covs) == 1:
        return {**covs[0], "parameters": params, "run": _run(run)}
    return {"type": "CoverageCollection", "domainType": "PointSeries" if not (with_z and len(sel.levels) > 1)
            else "Grid", "parameters": params, "referencing": _referencing(with_z), "coverages": covs,
            "run": _run(run)}


def coverage_grid(run: OpenRun, sel: Selection, area: Area,
                  values: dict[tuple[str, int | None], np.ndarray]) -> dict[str, Any]:
    times = [run.valid_iso[int(k)] for k in sel.times]
    axes: dict[str, Any] = {"x": {"values": [round(float(v), 6) for v in area.x]},
                            "y": {"values": [float(v) for v in area.y]}, "t": {"values": times}}
    with_z = bool(sel.levels)
    if with_z:
        axes["z"] = {"values": sel.levels}
        names = ["t", "z", "y", "x"]
        shape = [len(times), len(sel.levels), area.rows.size, area.cols.size]
    else:
        names = ["t", "y", "x"]
        shape = [len(times), area.rows.size, area.cols.size]
    return {"type": "Coverage", "domain": {"type": "Domain", "domainType": "Grid", "axes": axes,
                                           "referencing": _referencing(with_z)},
            "parameters": _params_json(run, sel), "ranges": _ranges(sel, values, names, shape, 1),
            "run": _run(run)}


def geojson_points(run: OpenRun, sel: Selection, lon: Sequence[float], lat: Sequence[float],
                   series: list[dict[tuple[str, int | None], np.ndarray]]) -> dict[str, Any]:
    """One Feature per grid cell with the time series of each parameter (``name`` or ``name_<z>hPa``)."""
    times = [run.valid_iso[int(k)] for k in sel.times]
    feats = []
    for x, y, vals in zip(lon, lat, series):
        props: dict[str, Any] = {"datetime": times}
        for (p, lev), arr in vals.items():
            props[p if lev is None else f"{p}_{lev}hPa"] = np.ascontiguousarray(np.round(arr, 3), dtype=np.float32)
        feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                      "properties": props})
    units = {(p if lev is None else f"{p}_{lev}hPa"): v.units(EDR_UNITS) for p, lev, v in sel.items}
    return {"type": "FeatureCollection", "features": feats, "parameters": units, "run": _run(run)}


def _run(run: OpenRun) -> dict[str, str]:
    return {"id": run.info.run_id, "cycle_time": run.info.cycle_time_iso, "model": run.model,
            "status": run.info.status}
