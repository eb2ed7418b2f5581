"""Observation decoding throughput: fuxiops (Dask, 2 workers) vs pdbufr vs a bare ecCodes loop; QC + gridding time.

Run: ``python bench/obs_decode.py [--repeats 3] [--pdbufr-repeats 1] [--quick]``

Same input, same information extracted:

* perf_synop.bufr (15,824 single-subset SYNOP messages): station id, position, time, 2 m temperature and dew
  point, MSL and station pressure, 10 m wind;
* temp.bufr (420 radiosonde profiles): station id, position, time, and per level pressure, geopotential,
  temperature, dew point, wind.

``fuxiops`` is the full reader path into the observation table (split, decode, u/v conversion, Arrow table),
on a LocalCluster of 2 worker processes that is started before timing (its start-up is reported apart).
``pdbufr`` is ``pdbufr.read_bufr`` with the same columns. ``bare`` is one process looping over messages
with ``skipExtraKeyAttributes`` and reading the same keys as whole arrays, building nothing.
The headline ratios compare wall times on the same file (rows differ in shape: pdbufr gives one row per
report/level, the observation table one row per value). A second part times QC and gridding of a synthetic
testbed cycle (written as BUFR edition 4 like the testbed world) against a background on the testbed grid.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "bufr"

SYNOP_KEYS = ("blockNumber", "stationNumber", "latitude", "longitude", "year", "month", "day", "hour", "minute",
              "airTemperatureAt2M", "dewpointTemperatureAt2M", "pressureReducedToMeanSeaLevel",
              "nonCoordinatePressure", "windDirectionAt10M", "windSpeedAt10M")
TEMP_KEYS = ("blockNumber", "stationNumber", "latitude", "longitude", "year", "month", "day", "hour", "minute",
             "pressure", "nonCoordinateGeopotential", "airTemperature", "dewpointTemperature", "windDirection",
             "windSpeed")


LAST_WORKER_CPU: dict[str, float] = {}


def bare_loop(path: Path, keys: tuple[str, ...]) -> int:
    """One process, skipExtraKeyAttributes, whole arrays per key; returns messages read."""
    import eccodes as ec

    n = 0
    with open(path, "rb") as f:
        while (h := ec.codes_bufr_new_from_file(f)) is not None:
            ec.codes_set(h, "skipExtraKeyAttributes", 1)
            ec.codes_set(h, "unpack", 1)
            for k in keys:
                try:
                    ec.codes_get_array(h, k)
                except Exception:  # key not in this message's template
                    pass
            ec.codes_release(h)
            n += 1
    return n


def pdbufr_read(path: Path, keys: tuple[str, ...]) -> int:
    import pdbufr

    return len(pdbufr.read_bufr(str(path), columns=keys))


def timed(fn: Callable[[], int], repeats: int) -> tuple[list[float], int]:
    times, rows = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - t)
    return times, rows


def synthetic_cycle(folder: Path, scale: float = 1.0, seed: int = 0) -> list[Path]:
    """A testbed-like cycle 2023-01-01T00 written as BUFR edition 4 (compressed)."""
    from fuxiops.pipeline.obs.encode import write_bufr

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def common(n: int) -> dict[str, Any]:
        return dict(year=[2023] * n, month=[1] * n, day=[1] * n, hour=[0] * n, minute=rng.integers(0, 59, n),
                    latitude=rng.uniform(-85, 85, n), longitude=rng.uniform(0, 360, n))

    files = []
    n = int(8000 * scale)
    p = folder / "synop_2023010100.bufr"
    write_bufr(p, "synop", dict(blockNumber=rng.integers(1, 99, n), stationNumber=rng.integers(0, 999, n),
                                heightOfStationGroundAboveMeanSeaLevel=rng.uniform(0, 2000, n),
                                airTemperature=rng.normal(280, 10, n),
                                pressureReducedToMeanSeaLevel=rng.normal(101000, 1000, n),
                                windDirection=rng.uniform(0, 360, n), windSpeed=rng.gamma(2, 3, n), **common(n)))
    files.append(p)
    n = int(600 * scale)
    lev = np.array([1000, 925, 850, 700, 600, 500, 400, 300, 250, 200, 150, 100, 50], float) * 100
    tprof = 288 - 60 * np.log(1e5 / lev) / np.log(20)
    p = folder / "temp_2023010100.bufr"
    write_bufr(p, "temp", dict(blockNumber=rng.integers(1, 99, n), stationNumber=rng.integers(0, 999, n), **common(n)),
               dict(pressure=np.tile(lev, (n, 1)), nonCoordinateGeopotentialHeight=np.tile(
                   7000 * np.log(1e5 / lev), (n, 1)), airTemperature=tprof + rng.normal(0, 1, (n, 13)),
                    windDirection=rng.uniform(0, 360, (n, 13)), windSpeed=rng.gamma(2, 6, (n, 13))))
    files.append(p)
    n = int(3000 * scale)
    p = folder / "amdar_2023010100.bufr"
    write_bufr(p, "amdar", dict(aircraftRegistrationNumberOrOtherIdentification=[f"AC{i:05d}" for i in range(n)],
                                flightLevel=rng.uniform(0, 12000, n), airTemperature=rng.normal(240, 10, n),
                                windDirection=rng.uniform(0, 360, n), windSpeed=rng.gamma(2, 8, n), **common(n)))
    files.append(p)
    n = int(300 * scale)
    h = np.arange(500.0, 30500.0, 500.0)
    p = folder / "gnssro_2023010100.bufr"
    write_bufr(p, "gnssro", dict(satelliteIdentifier=[3] * n, **common(n)),
               dict(height=np.tile(h, (n, 1)), atmosphericRefractivity=300 * np.exp(-h / 7000)
                    * rng.normal(1, 0.01, (n, h.size))))
    files.append(p)
    n = int(20000 * scale)
    p = folder / "mwts_2023010100.bufr"
    write_bufr(p, "mwts", dict(satelliteIdentifier=[520] * n, **common(n)),
               dict(channelNumber=np.tile(np.arange(1, 14), (n, 1)),
                    brightnessTemperature=rng.normal(240, 15, (n, 13))), subsets_per_message=1000)
    files.append(p)
    return files


def synthetic_background(grid_name: str = "2.8125deg") -> Any:
    import xarray as xr

    from fuxiops.catalog import PRODUCTION_LEVELS
    from fuxiops.grids import get_grid

    g = get_grid(grid_name)
    lev = np.array(PRODUCTION_LEVELS)
    shp = (lev.size, g.n_lat, g.n_lon)
    t = np.broadcast_to((288 - 60 * np.log(1000 / lev) / np.log(20))[:, None, None], shp)
    z = np.broadcast_to((7000 * np.log(1000 / lev) * 9.80665)[:, None, None], shp)
    dims3, dims2 = ("level", "latitude", "longitude"), ("latitude", "longitude")
    return xr.Dataset({"t": (dims3, t.astype(np.float32)), "z": (dims3, z.astype(np.float32)),
                       "u": (dims3, np.zeros(shp, np.float32)), "v": (dims3, np.zeros(shp, np.float32)),
                       "t2m": (dims2, np.full(g.shape, 280, np.float32)), "u10": (dims2, np.zeros(g.shape, np.float32)),
                       "v10": (dims2, np.zeros(g.shape, np.float32)),
                       "msl": (dims2, np.full(g.shape, 101000, np.float32))},
                      coords={"level": lev, "latitude": g.latitudes, "longitude": g.longitudes})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pdbufr-repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="only temp.bufr and a small cycle (smoke run)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from fuxiops.config import load_config
    from fuxiops.pipeline.obs import decode as dec

    result: dict[str, Any] = {"machine": machine_facts(),
                              "packages": package_versions(["eccodes", "eccodeslib", "pdbufr", "dask", "distributed",
                                                            "pyarrow", "numpy", "pandas"]),
                              "workers": args.workers, "decode": {}, "cycle": {}}
    t = time.perf_counter()
    runner = dec.DaskRunner(n_workers=args.workers)
    startup = time.perf_counter() - t
    result["dask_startup_s"] = startup
    # Warm the workers (imports, ecCodes definitions) outside the timings, as a long-running service is.
    dec.decode_files(dec.plan_inputs([REAL / "aircraft_small.bufr"])[0], mode="dask", runner=runner)
    rows_md = []
    cases = [("temp.bufr", TEMP_KEYS)] if args.quick else [("perf_synop.bufr", SYNOP_KEYS), ("temp.bufr", TEMP_KEYS)]
    for name, keys in cases:
        path = REAL / name
        inputs, _ = dec.plan_inputs([path])

        def ours() -> int:
            res = dec.decode_files(inputs, mode="dask", runner=runner)[str(path)]
            LAST_WORKER_CPU["fuxiops_dask"] = res.cpu_s
            return res.table.num_rows

        def ours_serial() -> int:
            return dec.decode_files(inputs, mode="serial")[str(path)].table.num_rows

        entry: dict[str, Any] = {}
        # Interleaved rounds (A B C D A B C D ...): on a shared machine the load drifts over minutes, so
        # back-to-back blocks of one tool would compare different machines. CPU seconds are recorded too
        # (for fuxiops_dask: summed over the worker processes plus the driver).
        tools = [("fuxiops_dask", ours, args.repeats), ("fuxiops_serial", ours_serial, args.repeats),
                 ("bare_eccodes_loop", lambda: bare_loop(path, keys), args.repeats),
                 ("pdbufr", lambda: pdbufr_read(path, keys), args.pdbufr_repeats)]
        walls: dict[str, list[float]] = {k: [] for k, _, _ in tools}
        cpus: dict[str, list[float]] = {k: [] for k, _, _ in tools}
        rows_of: dict[str, int] = {}
        for rnd in range(max(args.repeats, args.pdbufr_repeats)):
            for label, fn, rep in tools:
                if rnd >= rep:
                    continue
                c0, t0 = time.process_time(), time.perf_counter()
                out_rows = fn()
                walls[label].append(time.perf_counter() - t0)
                extra = LAST_WORKER_CPU.pop(label, 0.0) if label == "fuxiops_dask" else 0.0
                cpus[label].append(time.process_time() - c0 + extra)
                rows_of[label] = out_rows
                print(f"{name} {label}: {walls[label][-1]:.2f} s wall, {cpus[label][-1]:.2f} s CPU, {out_rows} rows",
                      flush=True)
        for label, _, _ in tools:
            entry[label] = {"seconds": summary(walls[label]), "cpu_seconds": summary(cpus[label]),
                            "rows": rows_of[label],
                            "row_unit": {"fuxiops_dask": "observation-table rows (one per value)",
                                         "fuxiops_serial": "observation-table rows (one per value)",
                                         "bare_eccodes_loop": "messages (nothing built)",
                                         "pdbufr": "DataFrame rows (one per report/level)"}[label],
                            "rows_per_s": rows_of[label] / summary(walls[label])["median"]}
        med = {k: v["seconds"]["median"] for k, v in entry.items()}
        entry["speedup_vs_pdbufr"] = med["pdbufr"] / med["fuxiops_dask"]
        # What ``fuxiops obs ingest`` does by default (mode auto): in-process below 1 MB of input, Dask above.
        auto = "fuxiops_serial" if path.stat().st_size < dec.AUTO_SERIAL_BYTES else "fuxiops_dask"
        entry["auto_mode"] = auto
        entry["speedup_vs_pdbufr_auto_mode"] = med["pdbufr"] / med[auto]
        entry["speedup_vs_bare_loop_auto_mode"] = med["bare_eccodes_loop"] / med[auto]
        entry["speedup_vs_bare_loop"] = med["bare_eccodes_loop"] / med["fuxiops_dask"]
        entry["serial_vs_bare_loop"] = med["bare_eccodes_loop"] / med["fuxiops_serial"]
        cpu = {k: v["cpu_seconds"]["median"] for k, v in entry.items() if isinstance(v, dict) and "cpu_seconds" in v}
        entry["cpu_ratio_serial_vs_bare"] = cpu["fuxiops_serial"] / cpu["bare_eccodes_loop"]
        entry["cpu_ratio_pdbufr_vs_serial"] = cpu["pdbufr"] / cpu["fuxiops_serial"]
        entry["pdbufr_rows_per_s_same_unit"] = entry["pdbufr"]["rows"] / med["pdbufr"]
        entry["fuxiops_reports_per_s_same_unit"] = entry["pdbufr"]["rows"] / med["fuxiops_dask"]
        result["decode"][name] = entry
        for k in ("fuxiops_dask", "fuxiops_serial", "bare_eccodes_loop", "pdbufr"):
            e = entry[k]
            rows_md.append([name, k, f"{e['seconds']['median']:.2f}",
                            f"{e['seconds']['min']:.2f}-{e['seconds']['max']:.2f}",
                            f"{e['cpu_seconds']['median']:.2f}", e["rows"], e["row_unit"],
                            f"{e['rows_per_s']:.0f}", f"{med['pdbufr'] / e['seconds']['median']:.2f}x"])

    # QC + gridding of a synthetic testbed cycle, background on the testbed grid.
    from fuxiops.pipeline.obs.gridding import grid_observations
    from fuxiops.pipeline.obs.qc import run_qc
    from fuxiops.pipeline.obs.schema import concat_tables

    cfg = load_config(grid="2.8125deg")
    with tempfile.TemporaryDirectory() as tmp:
        files = synthetic_cycle(Path(tmp), scale=0.25 if args.quick else 1.0)
        inputs, _ = dec.plan_inputs(files)
        td, _ = timed(lambda: sum(r.table.num_rows for r in dec.decode_files(inputs, mode="dask",
                                                                             runner=runner).values()), args.repeats)
        table = concat_tables(r.table for r in dec.decode_files(inputs, mode="dask", runner=runner).values())
    bg = synthetic_background()
    tq, _ = timed(lambda: run_qc(table, cycle_time="2023-01-01T00", config=cfg, background=bg)[0].num_rows,
                  args.repeats)
    qct, info = run_qc(table, cycle_time="2023-01-01T00", config=cfg, background=bg)
    tg, _ = timed(lambda: len(grid_observations(qct, cycle_time="2023-01-01T00", config=cfg).data_vars),
                  args.repeats)
    runner.close()
    result["load_average_end"] = os.getloadavg()
    result["cycle"] = {"rows": table.num_rows, "grid": cfg.grid, "decode_s": summary(td), "qc_s": summary(tq),
                       "gridding_s": summary(tg), "qc_flagged": {k: v["flagged"] for k, v in info["steps"].items()}}
    out = write_result("obs_decode", result)
    md = ["## Observation decoding (" + f"{args.workers} Dask workers on {result['machine']['cores']} cores)", "",
          markdown_table(["file", "tool", "median wall s", "min-max wall s", "CPU s", "rows", "row unit",
                          "rows/s (wall)", "wall speed vs pdbufr"], rows_md), "",
          f"Load average when the run ended: {os.getloadavg()[0]:.1f} on {result['machine']['cores']} cores "
          "(shared machine): wall times include waiting for the CPU.", "",
          f"Dask LocalCluster start-up (not in the timings): {startup:.1f} s.", "",
          "## QC + gridding, synthetic testbed cycle", "",
          markdown_table(["rows", "grid", "decode s", "QC s (with background)", "gridding s"],
                         [[table.num_rows, cfg.grid, f"{summary(td)['median']:.2f}", f"{summary(tq)['median']:.2f}",
                           f"{summary(tg)['median']:.2f}"]])]
    text = "\n".join(md) + "\n"
    (out.parent / "obs_decode.md").write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
