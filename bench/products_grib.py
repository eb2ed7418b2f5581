"""Benchmark: writing a 0.25-degree 10-day forecast (70 fields x 41 lead times) as GRIB2, NetCDF and Zarr.

Fields come from the seeded synthetic generator, one lead time at a time (the
run is never held in memory). For each lead time every writer encodes the same
70 float32 fields, 16-bit simple packing, into its own file, and the time
includes flushing and fsync; files are deleted after timing so the disk never
fills. Throughput is MB/s of float32 input (70 x 721 x 1440 x 4 bytes a step).

* ours: ``Grib2Writer`` (numpy encoder on a thread pool + writer thread), all lead times; once as a
  plain writer like the peers, once also hashing (sha256) while writing, as ``publish`` does for the manifest;
* disk ceiling: ``numpy.save`` of the same float32 arrays + fsync, all lead times;
* peers on a subset of lead times (``--peer-every``): a bare ecCodes loop
  (clone template, set step, set values, write), earthkit-data's GRIB encoder
  with template fields, cfgrib's ``canonical_dataarray_to_grib`` (fewer steps:
  ``--cfgrib-steps``, it is slow);
* NetCDF: ours (per-lead-time files, zlib 4 + shuffle) vs ``xarray.to_netcdf`` with the same encoding;
* Zarr: ours (``forecast.zarr`` serving layout, spool + rechunk) vs ``xarray.to_zarr`` appending
  step by step, over the first ``--zarr-steps`` lead times.

Ratios (ours / peer) are paired on the same lead times. Run:
``nice python bench/products_grib.py`` (add ``--steps 9`` for a quick look).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402

from fuxiops.catalog import PRODUCTION, Channel  # noqa: E402
from fuxiops.config import GribConfig, NetcdfConfig  # noqa: E402
from fuxiops.pipeline.products.fsutil import fsync_path  # noqa: E402
from fuxiops.grids import get_grid  # noqa: E402
from fuxiops.pipeline.products import StepData, synthetic  # noqa: E402
from fuxiops.pipeline.products.grib2 import Grib2Writer  # noqa: E402
from fuxiops.pipeline.products.grib2_codec import LatLonGeometry, encode_field  # noqa: E402
from fuxiops.pipeline.products.netcdf import NetcdfWriter  # noqa: E402
from fuxiops.pipeline.products.validate import check_step  # noqa: E402
from fuxiops.pipeline.products.zarr_store import ZarrWriter  # noqa: E402


class PeakRSS:
    """Samples the process RSS in a thread; ``peak`` is the maximum since the last ``reset``."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss


def _fields(step: StepData, channels: list[Channel]) -> list[tuple[Channel, np.ndarray]]:
    out = []
    levels = list(PRODUCTION.levels)
    for ch in channels:
        a = step.dataset[ch.variable.name].values
        out.append((ch, a[levels.index(int(ch.level or 0))] if ch.variable.is_upper_air else a))
    return out


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.grid = get_grid(args.grid)
        self.run = synthetic.run_meta(self.grid, PRODUCTION, datetime(2023, 1, 1, 0), n_steps=args.steps - 1)
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-products-", dir=args.dir))
        self.geom = LatLonGeometry.from_coords(self.grid.latitudes, self.grid.longitudes)
        self.times: dict[str, dict[int, float]] = {}
        self.mem = PeakRSS()
        self.peak: dict[str, int] = {}
        self._templates: dict[str, Any] = {}

    # -- writers: each returns nothing; the caller times it -------------------------------------
    def ours_grib(self, step: StepData, sha256: bool = False) -> None:
        w = Grib2Writer(GribConfig(), workers=self.args.workers, sha256=sha256)
        w.open(replace(self.run, steps=(step.step,)), self.tmp)
        w.write(step)
        w.close()

    def ours_grib_sha(self, step: StepData) -> None:
        self.ours_grib(step, sha256=True)

    def numpy_save(self, step: StepData) -> None:
        path = self.tmp / f"np-{step.step}.npy"
        with open(path, "wb") as fh:
            for _, a in _fields(step, self.run.channels_at(step.step)):
                np.save(fh, a)
            fh.flush()
            os.fsync(fh.fileno())

    def _template(self, ch: Channel) -> bytes:
        if ch.name not in self._templates:
            step = 6 if ch.variable.accumulation_hours else 0
            ramp = np.linspace(0.0, 1.0, self.grid.n_lat * self.grid.n_lon, dtype=np.float32)
            self._templates[ch.name] = encode_field(ramp.reshape(self.grid.shape), ch,
                                                    geometry=self.geom, reference_time=self.run.reference_time,
                                                    step_hours=step)
        return self._templates[ch.name]

    def eccodes_loop(self, step: StepData) -> None:
        import eccodes

        path = self.tmp / f"ec-{step.step}.grib2"
        with open(path, "wb") as fh:
            for ch, a in _fields(step, self.run.channels_at(step.step)):
                h = eccodes.codes_new_from_message(self._template(ch))
                if ch.variable.accumulation_hours:
                    eccodes.codes_set(h, "stepRange", f"{step.step - 6}-{step.step}")
                else:
                    eccodes.codes_set(h, "step", step.step)
                eccodes.codes_set(h, "bitsPerValue", 16)
                eccodes.codes_set_values(h, a.reshape(-1))
                eccodes.codes_write(h, fh)
                eccodes.codes_release(h)
            fh.flush()
            os.fsync(fh.fileno())

    def earthkit(self, step: StepData) -> None:
        import earthkit.data as ekd

        if "ek" not in self._templates:
            tpath = self.tmp / "ek-templates.grib2"
            chans = PRODUCTION.output_channels
            tpath.write_bytes(b"".join(self._template(c) for c in chans))
            fl = ekd.from_source("file", str(tpath)).to_fieldlist()
            self._templates["ek"] = {c.name: fl[i] for i, c in enumerate(chans)}
        tmpl = self._templates["ek"]
        path = self.tmp / f"ek-{step.step}.grib2"
        target = ekd.create_target("file", str(path))
        for ch, a in _fields(step, self.run.channels_at(step.step)):
            md = ({"startStep": step.step - 6, "endStep": step.step} if ch.variable.accumulation_hours
                  else {"step": step.step})
            target.write(values=a, template=tmpl[ch.name], metadata={**md, "bitsPerValue": 16}, encoder="grib")
        target.close()
        fsync_path(path)

    def cfgrib(self, step: StepData) -> None:
        from cfgrib import xarray_to_grib as x2g

        path = self.tmp / f"cf-{step.step}.grib2"
        ref = np.datetime64(self.run.reference_time, "ns")
        st = np.timedelta64(step.step, "h").astype("timedelta64[ns]")
        keys = {"edition": 2, "bitsPerValue": 16, "centre": "ecmf", "packingType": "grid_simple"}
        with open(path, "wb") as fh:
            for name in step.dataset.data_vars:
                v = step.dataset[name]
                from fuxiops.catalog import get_variable

                var = get_variable(str(name))
                coords: dict[str, Any] = {"latitude": self.grid.latitudes, "longitude": self.grid.longitudes,
                                          "time": ref, "step": st}
                if var.is_upper_air:
                    da = xr.DataArray(v.values, dims=("isobaricInhPa", "latitude", "longitude"),
                                      coords={**coords, "isobaricInhPa": list(PRODUCTION.levels)})
                else:
                    da = xr.DataArray(v.values, dims=("latitude", "longitude"), coords=coords)
                da.attrs = {"GRIB_paramId": var.param_id, "GRIB_typeOfLevel": var.level_type}
                if var.level is not None:
                    da = da.assign_coords({var.level_type: var.level})
                if var.accumulation_hours:
                    da.attrs["GRIB_stepType"] = "accum"
                x2g.canonical_dataarray_to_grib(da, fh, grib_keys=keys)
            fh.flush()
            os.fsync(fh.fileno())

    def ours_netcdf(self, step: StepData) -> None:
        w = NetcdfWriter(NetcdfConfig(layout="per_step", complevel=4))
        w.open(replace(self.run, steps=(step.step,)), self.tmp)
        w.write(step)
        w.close()

    def xarray_netcdf(self, step: StepData) -> None:
        path = self.tmp / f"xr-{step.step}.nc"
        ds = step.dataset
        n_lat, n_lon = self.grid.shape
        enc = {}
        for name in ds.data_vars:
            chunks = (1, 361, 720) if "level" in ds[name].dims else (361, 720)
            enc[name] = {"zlib": True, "complevel": 4, "shuffle": True,
                         "chunksizes": tuple(min(c, s) for c, s in zip(chunks, ds[name].shape))}
        ds.to_netcdf(path, engine="netcdf4", encoding=enc)
        fsync_path(path)

    # -- driving ----------------------------------------------------------------------------------
    def timed(self, label: str, fn: Callable[[StepData], None], step: StepData) -> None:
        gc.collect()
        self.mem.reset()
        t0 = time.perf_counter()
        fn(step)
        dt = time.perf_counter() - t0
        self.times.setdefault(label, {})[step.step] = dt
        self.peak[label] = max(self.peak.get(label, 0), self.mem.peak)
        for p in self.tmp.iterdir():
            if p.is_file() and not p.name.startswith("ek-templates"):
                p.unlink()

    def check_peers_once(self, step: StepData) -> dict[str, Any]:
        """Sanity check: every GRIB writer produced the same number of messages at 16 bits."""
        import eccodes

        out = {}
        for label, fn, name in [("ours", self.ours_grib, f"{self.run.run_id}-{step.step}h.grib2"),
                                ("eccodes", self.eccodes_loop, f"ec-{step.step}.grib2"),
                                ("earthkit", self.earthkit, f"ek-{step.step}.grib2"),
                                ("cfgrib", self.cfgrib, f"cf-{step.step}.grib2")]:
            fn(step)
            n, bits, params = 0, set(), set()
            with open(self.tmp / name, "rb") as fh:
                while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
                    n += 1
                    bits.add(eccodes.codes_get(h, "bitsPerValue"))
                    params.add(eccodes.codes_get(h, "paramId"))
                    eccodes.codes_release(h)
            out[label] = {"messages": n, "bits": sorted(bits), "params": sorted(params)}
            (self.tmp / name).unlink()
        for p in self.tmp.glob("*.index"):
            p.unlink()
        return out

    def main(self) -> dict[str, Any]:
        a = self.args
        peer_steps = set(self.run.steps[:: a.peer_every]) | {self.run.steps[-1]}
        cf_steps = sorted(peer_steps)[: a.cfgrib_steps]
        sanity: dict[str, Any] = {}
        t_start = time.perf_counter()
        for i, ds in enumerate(synthetic.forecast(self.run, seed=0)):
            step = check_step(ds, self.run)
            del ds
            if i == 1:
                sanity = self.check_peers_once(step)
            order: list[tuple[str, Callable[[StepData], None]]] = [
                ("ours_grib2", self.ours_grib), ("ours_grib2+sha256", self.ours_grib_sha),
                ("numpy_save_fsync", self.numpy_save)]
            if step.step in peer_steps:
                order += [("eccodes_loop", self.eccodes_loop), ("earthkit_data", self.earthkit),
                          ("ours_netcdf", self.ours_netcdf), ("xarray_to_netcdf", self.xarray_netcdf)]
                if step.step in cf_steps:
                    order.append(("cfgrib", self.cfgrib))
            # rotate the order so no writer always runs first (page cache, CPU frequency)
            k = i % len(order)
            for label, fn in order[k:] + order[:k]:
                self.timed(label, fn, step)
            print(f"step {step.step:3d} h: " + ", ".join(f"{lbl} {self.times[lbl][step.step]:.2f}s"
                                                          for lbl, _ in order), flush=True)
        zarr = self.bench_zarr(a.zarr_steps)
        elapsed = time.perf_counter() - t_start
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.report(sanity, zarr, elapsed)

    def bench_zarr(self, n: int) -> dict[str, Any]:
        run = replace(self.run, steps=self.run.steps[:n])
        res: dict[str, Any] = {"steps": list(run.steps)}
        # ours: serving layout (all steps x 1 level x 90 x 90 tiles), spool + rechunk at close
        d = self.tmp / "zarr-ours"
        d.mkdir()
        w = ZarrWriter()
        w.open(run, d)
        t = 0.0
        self.mem.reset()
        for ds in synthetic.forecast(run, seed=0):
            step = check_step(ds, run)
            t0 = time.perf_counter()
            w.write(step)
            t += time.perf_counter() - t0
        t0 = time.perf_counter()
        w.close()
        from fuxiops.pipeline.products.fsutil import fsync_tree

        fsync_tree(d)
        t += time.perf_counter() - t0
        res["ours_zarr"] = {"seconds": t, "peak_rss": self.mem.peak}
        shutil.rmtree(d)
        # peer: xarray appending one step at a time (chunks: 1 step x 1 level x 361 x 720)
        path = self.tmp / "xr.zarr"
        t = 0.0
        self.mem.reset()
        for i, ds in enumerate(synthetic.forecast(run, seed=0)):
            step = check_step(ds, run)
            one = step.dataset.expand_dims(step=[step.step])
            enc = None
            if i == 0:
                enc = {n: {"chunks": (1, 1, 361, 720) if "level" in one[n].dims else (1, 361, 720)}
                       for n in one.data_vars}
            t0 = time.perf_counter()
            if i == 0:
                one.to_zarr(path, mode="w", encoding=enc, zarr_format=2, consolidated=True)
            else:
                # tp6 appears from step 6 on: xarray cannot append a new variable, so it is dropped
                one = one[[n for n in one.data_vars if n != "tp6"]]
                one.to_zarr(path, append_dim="step", zarr_format=2, consolidated=True)
            t += time.perf_counter() - t0
        t0 = time.perf_counter()
        from fuxiops.pipeline.products.fsutil import fsync_tree as _ft

        _ft(path)
        t += time.perf_counter() - t0
        res["xarray_to_zarr"] = {"seconds": t, "peak_rss": self.mem.peak}
        shutil.rmtree(path)
        return res

    def report(self, sanity: dict[str, Any], zarr: dict[str, Any], elapsed: float) -> dict[str, Any]:
        mb_step = {s: len(self.run.channels_at(s)) * self.grid.n_lat * self.grid.n_lon * 4 / 1e6
                   for s in self.run.steps}
        rows = []
        result: dict[str, Any] = {"writers": {}}
        for label, t in self.times.items():
            rates = [mb_step[s] / dt for s, dt in t.items()]
            total_rate = sum(mb_step[s] for s in t) / sum(t.values())
            result["writers"][label] = {"steps": sorted(t), "seconds_per_step": summary(list(t.values())),
                                        "mb_per_s_per_step": summary(rates), "mb_per_s_total": total_rate,
                                        "peak_rss_bytes": self.peak.get(label)}
        ours = self.times["ours_grib2"]
        ratios: dict[str, Any] = {}
        for label, t in self.times.items():
            if label == "ours_grib2":
                continue
            paired = [t[s] / ours[s] for s in t if s in ours]
            ratios[label] = summary(paired)
        for label, r in result["writers"].items():
            rel = "1.00" if label == "ours_grib2" else f"{ratios[label]['median']:.2f}"
            rows.append([label, len(r["steps"]), f"{r['mb_per_s_per_step']['median']:.0f}",
                         f"{r['mb_per_s_per_step']['min']:.0f}-{r['mb_per_s_per_step']['max']:.0f}",
                         f"{r['mb_per_s_total']:.0f}", rel, f"{(r['peak_rss_bytes'] or 0) / 1e9:.2f}"])
        nc_ratio = summary([self.times["xarray_to_netcdf"][s] / self.times["ours_netcdf"][s]
                            for s in self.times["ours_netcdf"]])
        zarr_in = sum(mb_step[s] for s in zarr["steps"])
        for k in ("ours_zarr", "xarray_to_zarr"):
            zarr[k]["mb_per_s"] = zarr_in / zarr[k]["seconds"]
        table = markdown_table(["writer", "lead times", "MB/s median", "MB/s min-max", "MB/s total",
                                "time / ours_grib2 (paired median)", "peak RSS GB"], rows)
        ztable = _zarr_table(zarr)
        peers = {k: ratios[k]["median"] for k in ("eccodes_loop", "earthkit_data", "cfgrib") if k in ratios}
        best_peer = min(peers.values()) if peers else float("nan")
        ceiling = ratios["numpy_save_fsync"]["median"]
        result.update({
            "benchmark": "products_grib",
            "grid": self.grid.name, "channels": len(PRODUCTION.output_channels), "lead_times": list(self.run.steps),
            "input_mb_per_step": mb_step[self.run.steps[-1]], "packing": "grid_simple, 16 bits",
            "workers": self.args.workers, "machine": machine_facts(),
            "load_average_at_end": os.getloadavg(),
            "packages": package_versions(["numpy", "eccodes", "eccodeslib", "earthkit-data", "cfgrib", "xarray",
                                          "netCDF4", "zarr", "numcodecs"]),
            "paired_time_ratio_peer_over_ours": ratios,
            "speedup_vs_best_grib_peer": best_peer, "fraction_of_disk_ceiling": ceiling,
            "netcdf_speedup_vs_xarray": nc_ratio, "zarr": zarr, "sanity_first_step": sanity,
            "elapsed_s": elapsed, "table": table, "zarr_table": ztable,
        })
        print(f"sanity (messages / bits / paramIds per writer at step {self.run.steps[1]} h): {sanity}")
        print(table)
        print()
        print(ztable)
        print(f"\nours vs best GRIB peer: {best_peer:.2f}x faster; ours = {100 * ceiling:.0f}% of the "
              f"numpy.save+fsync throughput (paired medians); NetCDF ours vs xarray: {nc_ratio['median']:.2f}x")
        return result


def _zarr_table(zarr: dict[str, Any]) -> str:
    return markdown_table(["zarr writer", "lead times", "MB/s", "peak RSS GB"], [
        [k, len(zarr["steps"]), f"{zarr[k]['mb_per_s']:.0f}", f"{zarr[k]['peak_rss'] / 1e9:.2f}"]
        for k in ("ours_zarr", "xarray_to_zarr")])


def update_zarr(args: argparse.Namespace) -> None:
    """Re-run the Zarr comparison alone (same lead times) and replace it in the result files."""
    import json

    from _common import RESULTS

    path = RESULTS / f"{args.name}.json"
    result = json.loads(path.read_text())
    b = Bench(args)
    zarr = b.bench_zarr(args.zarr_steps)
    shutil.rmtree(b.tmp, ignore_errors=True)
    mb = sum(len(b.run.channels_at(s)) * b.grid.n_lat * b.grid.n_lon * 4 / 1e6 for s in zarr["steps"])
    for k in ("ours_zarr", "xarray_to_zarr"):
        zarr[k]["mb_per_s"] = mb / zarr[k]["seconds"]
    zarr["measured_separately"] = {"date_utc": machine_facts()["date_utc"], "load_average": os.getloadavg(),
                                   "command": " ".join(sys.argv)}
    result["zarr"] = zarr
    old_table = result["zarr_table"]
    result["zarr_table"] = _zarr_table(zarr)
    write_result(args.name, result)
    md = path.with_suffix(".md")
    md.write_text(md.read_text().replace(old_table, result["zarr_table"] + f"\n\n(Zarr re-measured separately "
                                         f"at {zarr['measured_separately']['date_utc']}, load "
                                         f"{zarr['measured_separately']['load_average'][0]:.1f})"))
    print(result["zarr_table"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="0.25deg")
    p.add_argument("--steps", type=int, default=41, help="lead times incl. step 0 (41 = 10 days)")
    p.add_argument("--peer-every", type=int, default=8, help="peers run on every N-th lead time (+ the last)")
    p.add_argument("--cfgrib-steps", type=int, default=2, help="cfgrib runs on this many of the peer lead times")
    p.add_argument("--zarr-steps", type=int, default=6, help="lead times of the Zarr comparison run")
    p.add_argument("--workers", type=int, default=2, help="encoding threads of our GRIB writer")
    p.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    p.add_argument("--name", default="products_grib")
    p.add_argument("--only-zarr", action="store_true",
                   help="re-measure only the Zarr comparison and update the existing result file")
    args = p.parse_args()
    import logging

    logging.getLogger("cfgrib").setLevel(logging.ERROR)  # its key-setting chatter is not a result
    if args.only_zarr:
        update_zarr(args)
        return
    result = Bench(args).main()
    result["command"] = " ".join(sys.argv)
    path = write_result(args.name, result)
    md = path.with_suffix(".md")
    md.write_text(f"# {args.name}\n\n{result['table']}\n\n{result['zarr_table']}\n\n"
                  f"- grid {result['grid']}, {result['channels']} fields per lead time, "
                  f"{len(result['lead_times'])} lead times, {result['packing']}; machine: "
                  f"{result['machine']['cpu']} x {result['machine']['cores']}, load at end {result['load_average_at_end']}\n"
                  f"- ours vs best GRIB peer: {result['speedup_vs_best_grib_peer']:.2f}x; fraction of the disk "
                  f"ceiling: {result['fraction_of_disk_ceiling']:.2f}\n- command: `{result['command']}`\n")
    print(f"wrote {path} and {md}")


if __name__ == "__main__":
    main()
