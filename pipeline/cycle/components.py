"""The cycle's bindings to the other layers: networks, observation ingest/QC, world, products.

Every call the cycle makes into ``fuxiops.models``, ``fuxiops.pipeline.obs``,
``fuxiops.pipeline.world`` and ``fuxiops.pipeline.products`` goes through this
module, so the flow reads as the operational sequence and each binding is
tested where it is made.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import xarray as xr

from fuxiops.config import FuxiopsConfig
from fuxiops.errors import ConfigError, DataError, FuxiopsError
from fuxiops.logs import get_logger
from fuxiops.pipeline.cycle.times import run_id

log = get_logger("fuxiops.cycle.components")

COLD_START_SOURCES = ("reanalysis", "file", "climatology")
#: Most bytes of states the untrained bootstrap's normalisation loads at once (bounded memory on fine grids).
NORM_CHUNK_BYTES = 512 * 2**20


# =============================================================================================
# Networks
# =============================================================================================

@dataclass
class Networks:
    """The forecaster and assimilator of a cycle and what the catalog records about them."""

    forecaster: Any
    assimilator: Any
    info: dict[str, Any]
    untrained: bool = False

    def describe(self) -> str:
        f = self.info.get("forecaster", {})
        return f"{f.get('preset', '?')} forecaster {str(f.get('weights_sha256', ''))[:12]}"


def _checkpoint_training(net: Any) -> dict[str, Any]:
    """The ``training`` provenance of a loaded network (looking through wrappers such as the bounds check)."""
    while net is not None:
        training = getattr(net, "training", None)
        if isinstance(training, dict):
            return training
        net = getattr(net, "inner", None)
    return {}


def _model_info(net: Any, path: str | None, untrained: bool) -> dict[str, Any]:
    prov = dict(net.provenance())
    # A configured checkpoint can itself be an untrained bootstrap (e.g. one copied from another home, or
    # built for a timing run): its own metadata says so, and the run must be marked like the built-in one.
    prov["untrained"] = bool(untrained or _checkpoint_training(net).get("untrained"))
    if path:
        prov.setdefault("checkpoint", path)
    return prov


def untrained_dir(cfg: FuxiopsConfig) -> Path:
    """Where the cycle keeps the untrained bootstrap checkpoints of this deployment's grid."""
    return Path(cfg.home).expanduser() / "models" / cfg.grid / "untrained"


def bootstrap_preset(cfg: FuxiopsConfig) -> str:
    """``small`` where the grid allows it (the testbed default), else ``tiny`` (tests, coarse grids)."""
    from fuxiops.models.presets import get_preset

    try:
        get_preset("small").forecaster.check_grid(cfg.grid_spec)
        return "small" if cfg.grid_spec.n_lon >= 128 else "tiny"
    except FuxiopsError:
        return "tiny"


def load_networks(cfg: FuxiopsConfig) -> Networks:
    """The configured networks; with ``default`` and nothing shipped for the grid, untrained ones (marked).

    The untrained networks are real (built from the architecture presets with
    normalisation computed from the cold-start source, saved as checkpoints) so
    the whole cycle runs before training has produced weights, and every run
    made with them is marked ``untrained`` in the catalog, the manifest and the logs.
    """
    from fuxiops.models.base import CheckpointError, load_assimilator, load_forecaster, resolve_device

    device = resolve_device(cfg.models.device)
    grid = cfg.grid_spec
    norm_source = functools.cache(lambda: _norm_from_source(cfg))
    untrained = False
    try:
        fc = load_forecaster(cfg.models.forecaster, device=device, grid=grid)
        fc_path = None if cfg.models.forecaster == "default" else cfg.models.forecaster
    except CheckpointError:
        if cfg.models.forecaster != "default":
            raise
        fc, fc_path = _untrained_network(cfg, device, "forecaster", norm_source)
        untrained = True
    fc.coords.check_compatible(_coords(cfg, fc.coords), "forecaster")
    try:
        asm = load_assimilator(cfg.models.assimilator, device=device, grid=grid)
        asm_path = None if cfg.models.assimilator == "default" else cfg.models.assimilator
        asm_untrained = False
    except CheckpointError:
        if cfg.models.assimilator != "default":
            raise
        asm, asm_path = _untrained_network(cfg, device, "assimilator", norm_source)
        asm_untrained = True
    info = {"forecaster": _model_info(fc, fc_path, untrained),
            "assimilator": _model_info(asm, asm_path, asm_untrained)}
    return Networks(fc, asm, info, bool(info["forecaster"]["untrained"] or info["assimilator"]["untrained"]))


def _coords(cfg: FuxiopsConfig, like: Any) -> Any:
    from fuxiops.models.base import ModelCoords

    return ModelCoords(cfg.variable_set, cfg.grid_spec, cfg.schedule.step_hours, like.input_offsets_hours)


def _norm_from_source(cfg: FuxiopsConfig) -> Any:
    """Normalisation statistics from the cold-start source (the world reanalysis in the testbed)."""
    from fuxiops.models.normalisation import compute_stats

    ds = open_source_dataset(cfg, cfg.cold_start.source if cfg.cold_start.source != "climatology" else "reanalysis")
    times = ds["time"].values
    # A month of 6-hourly states is plenty for first and second moments of an untrained bootstrap.
    sub = ds.isel(time=slice(0, min(len(times), 124)))
    vs = cfg.variable_set
    keep = list(vs.upper_air) + list(vs.surface)
    sub = sub[keep]
    if "level" in sub.dims:
        sub = sub.sel(level=list(vs.levels))
    # Stream the month in chunks of time (compute_stats pairs tendencies across chunk boundaries): loaded at
    # once it is 124 states, ~29 GB at 0.25 degrees. The chunk holds at most NORM_CHUNK_BYTES of states.
    per_state = len(vs.state_channels) * cfg.grid_spec.n_lat * cfg.grid_spec.n_lon * 4
    n = max(1, min(sub.sizes["time"], NORM_CHUNK_BYTES // max(per_state, 1)))
    chunks = (sub.isel(time=slice(i, i + n)).load() for i in range(0, sub.sizes["time"], n))
    return compute_stats(chunks, vs, cfg.grid_spec, cfg.schedule.step_hours), str(ds.encoding.get("source", ""))


def _zero_output_head(net: Any, what: str) -> bool:
    """Zero the network's output layer so the untrained bootstrap is stable.

    A randomly initialised residual forecaster drifts out of physical range
    within days (and products refuse to publish non-physical values). With the
    head zeroed the untrained forecaster predicts persistence plus the mean
    6-hour tendency of its normalisation data, and the untrained assimilator
    returns the background: honest reference behaviour until trained weights
    arrive. Every other layer is real and runs.
    """
    head = getattr(getattr(getattr(net, "module", None), "net", None), "head", None)
    if head is None or not hasattr(head, "weight"):
        log.warning("untrained %s: no output head found to zero; its forecasts may leave physical ranges", what)
        return False
    import torch

    with torch.no_grad():
        head.weight.zero_()
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()
    return True


#: What an untrained bootstrap network does (its output head is zeroed), written into its checkpoint.
_UNTRAINED_BEHAVIOUR = {"forecaster": "predicts persistence plus the mean 6-hour tendency",
                        "assimilator": "returns the background"}


def _untrained_network(cfg: FuxiopsConfig, device: str, kind: str,
                       norm_source: Callable[[], tuple[Any, str]]) -> tuple[Any, str]:
    """The untrained ``kind`` network of this home (built and saved the first time); and its path.

    ``norm_source`` gives the normalisation statistics; it is only called when a network must be
    built, and the forecaster and the assimilator share one computation.
    """
    from fuxiops.models.base import load_assimilator, load_forecaster

    load = load_forecaster if kind == "forecaster" else load_assimilator
    path = untrained_dir(cfg) / kind
    if (path / "metadata.json").is_file():
        return load(path, device=device, grid=cfg.grid_spec), str(path)
    preset = bootstrap_preset(cfg)
    norm, src = norm_source()
    log.warning("no trained %s for grid %s: creating an UNTRAINED %s %s at %s", kind, cfg.grid, preset, kind, path)
    if kind == "forecaster":
        from fuxiops.models.torch_forecaster import TorchForecaster

        net = TorchForecaster.build(preset, cfg.variable_set, cfg.grid_spec, norm=norm, seed=cfg.world.seed,
                                    device=device, step_hours=cfg.schedule.step_hours)
    else:
        from fuxiops.models.torch_assimilator import TorchAssimilator

        from fuxiops.pipeline.obs import gridding

        net = TorchAssimilator.build(preset, cfg.variable_set, cfg.grid_spec, obs_channels=obs_group_channels(cfg),
                                     norm=norm, seed=cfg.world.seed, device=device,
                                     channel_names=gridding.gridded_channels(cfg.variable_set, cfg.grid_spec, cfg))
    zeroed = _zero_output_head(net, kind)
    net.save(path, training={"untrained": True, "normalisation_from": src or cfg.cold_start.source,
                             "output_head": "zero-initialised" if zeroed else "random",
                             "note": f"bootstrap created by the cycle, not trained: {_UNTRAINED_BEHAVIOUR[kind]} "
                                     "until trained weights are installed"})
    return load(path, device=device, grid=cfg.grid_spec), str(path)


def obs_group_channels(cfg: FuxiopsConfig) -> dict[str, int]:
    """Observation groups of the gridded network input and their channel counts (ingest layer)."""
    from fuxiops.pipeline.obs import gridding

    return dict(gridding.group_channels(cfg))


# =============================================================================================
# Observations
# =============================================================================================

@dataclass
class DecodeResult:
    """One observation stream decoded (picklable: it travels back from Dask workers)."""

    source: str
    table: Any
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    n_files: int = 0


@dataclass
class Decoded:
    """All streams of a cycle."""

    table: Any
    quarantined: list[dict[str, Any]]
    files: dict[str, int]
    rows: dict[str, int]


@dataclass
class ObsResult:
    """Quality-controlled observations of a cycle and the gridded network input."""

    table: Any
    used: np.ndarray
    gridded: xr.Dataset | None
    counts: dict[str, Any]
    degraded_reasons: list[str]
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_used(self) -> int:
        return int(self.used.sum())


def observation_folder(cfg: FuxiopsConfig, cycle_time: datetime) -> Path:
    return Path(cfg.location("observations")) / run_id(cycle_time)


def observation_batches(cfg: FuxiopsConfig, cycle_time: datetime) -> list[tuple[dict[str, str], list[str]]]:
    """Per configured stream, the files of this cycle (matching its pattern, in sub-folders too)."""
    folder = observation_folder(cfg, cycle_time)
    out = []
    for src in cfg.observations.sources:
        files = sorted({str(p) for p in folder.glob(src.pattern)} | {str(p) for p in folder.glob(f"**/{src.pattern}")})
        out.append(({"name": src.name, "reader": src.reader, "pattern": src.pattern}, files))
    return out


def decode_source(source: dict[str, str], files: list[str], cycle_time: datetime, cfg: FuxiopsConfig
                  ) -> DecodeResult:
    """Read every file of one stream; unreadable files/messages are quarantined, never fatal."""
    from fuxiops.pipeline.obs.readers import READERS
    from fuxiops.pipeline.obs.schema import concat_tables

    reader = READERS.create(source["reader"])
    tables, quarantined = [], []
    for f in files:
        try:
            res = reader.read(f)
        except Exception as e:  # a reader bug on one file must not lose the other files
            quarantined.append({"source_file": f, "message_index": None, "reader": source["reader"],
                                "reason": f"reader failed ({type(e).__name__}: {e})"})
            continue
        tables.append(res.table)
        quarantined += [q.to_dict() for q in res.quarantined]
    return DecodeResult(source["name"], concat_tables(tables), quarantined, len(files))


def merge_decoded(results: list[DecodeResult], batches: list[tuple[dict[str, str], list[str]]],
                  cfg: FuxiopsConfig, cycle_time: datetime) -> Decoded:
    from fuxiops.pipeline.obs.schema import concat_tables

    return Decoded(concat_tables(r.table for r in results), [q for r in results for q in r.quarantined],
                   {r.source: r.n_files for r in results}, {r.source: int(r.table.num_rows) for r in results})


def quality_control(decoded: Decoded, background: np.ndarray, cfg: FuxiopsConfig, cycle_time: datetime,
                    nets: Networks) -> ObsResult:
    """QC against the background, then grid the used observations for the assimilator.

    Degraded reasons: files or messages quarantined, no usable observation (a stream without files is
    recorded in the counts, not a degradation: some report only at some hours).
    """
    from fuxiops.pipeline.cycle.steps import state_dataset
    from fuxiops.pipeline.obs import gridding, qc
    from fuxiops.pipeline.obs.flags import is_rejected

    reasons: list[str] = []
    missing = [name for name, n in decoded.files.items() if n == 0]
    if missing and len(missing) < len(decoded.files):
        # Not a degradation by itself: radiosondes, for one, report at 00/12 UTC only. Recorded in the
        # catalog's observation counts (files per stream, missing_streams) and logged.
        log.warning("no observation files for stream(s): %s", ", ".join(missing))
    if decoded.quarantined:
        by_file: dict[str, list[str]] = {}
        for q in decoded.quarantined:
            by_file.setdefault(Path(q["source_file"]).name, []).append(str(q["reason"]))
        shown = "; ".join(f"{name} ({len(r)} x {r[0][:80]})" for name, r in list(by_file.items())[:3])
        more = f" and {len(by_file) - 3} more file(s)" if len(by_file) > 3 else ""
        reasons.append(f"corrupt observations quarantined in {len(by_file)} file(s), {len(decoded.quarantined)} "
                       f"piece(s): {shown}{more}")
    bg = state_dataset(background, cfg.variable_set, cfg.grid_spec, cycle_time)
    table, report = qc.run_qc(decoded.table, cycle_time=cycle_time, config=cfg, background=bg.isel(time=0))
    flags = table.column("qc_flags").to_numpy(zero_copy_only=False)
    used = ~is_rejected(flags)
    n_used = int(used.sum())
    if n_used == 0:
        if sum(decoded.files.values()) == 0:
            reasons.append("no observations received")
        else:
            reasons.append(f"no observation passed QC ({table.num_rows} rows read)")
        gridded = None
    else:
        # A trained assimilator learned with fixed per-channel statistics: grid with the same ones.
        stats = (getattr(nets.assimilator, "training", None) or {}).get("obs_normalisation")
        gridded = gridding.grid_observations(table, cycle_time=cycle_time, config=cfg, stats=stats)
    counts = _obs_counts(table, used, decoded)
    return ObsResult(table, used, gridded, counts, reasons, report if isinstance(report, dict) else {})


def _obs_counts(table: Any, used: np.ndarray, decoded: Decoded) -> dict[str, Any]:
    rtype = np.asarray(table.column("report_type").to_pylist(), dtype=object) if table.num_rows else np.array([])
    out: dict[str, Any] = {"total": {"read": int(table.num_rows), "used": int(used.sum())}}
    for t in sorted(set(rtype.tolist())):
        m = rtype == t
        out[str(t)] = {"read": int(m.sum()), "used": int(used[m].sum())}
    out["files"] = dict(decoded.files)
    out["missing_streams"] = sorted(k for k, n in decoded.files.items() if n == 0)
    out["quarantined"] = len(decoded.quarantined)
    return out


# =============================================================================================
# Cold start and the testbed world
# =============================================================================================

def check_cold_start_source(source: str) -> None:
    if source not in COLD_START_SOURCES:
        raise ConfigError(f"unknown cold-start source {source!r}; allowed: {', '.join(COLD_START_SOURCES)}")


def world_store(cfg: FuxiopsConfig, name: str) -> str:
    """A store of the testbed world (``reanalysis``, ``truth``) under ``data.world`` (layout of
    ``fuxiops.pipeline.world.build``: ``{world}/{name}.zarr``)."""
    return f"{cfg.location('world').rstrip('/')}/{name}.zarr"


def open_source_dataset(cfg: FuxiopsConfig, source: str) -> xr.Dataset:
    """The dataset a cold start reads: ``cold_start.path`` if set, else the world reanalysis."""
    check_cold_start_source(source)
    path = cfg.cold_start.path
    if source == "file" and not path:
        raise ConfigError("cold_start.source is 'file' but cold_start.path is not set (a Zarr or NetCDF analysis)")
    if not path:
        path = world_store(cfg, "reanalysis")
    if not (("://" in path) or Path(path).exists()):
        raise ConfigError(f"cold-start source {source!r}: {path} does not exist (build the testbed world with "
                          f"`fuxiops world build` or set cold_start.path)")
    ds = xr.open_zarr(path) if path.rstrip("/").endswith(".zarr") else xr.open_dataset(path)
    ds.encoding["source"] = path
    return ds


def cold_start_states(cfg: FuxiopsConfig, cycle_time: datetime, source: str) -> tuple[np.ndarray, np.ndarray]:
    """The (T - step, T) pair of states a cold-started cycle begins from."""
    from fuxiops.pipeline.cycle.steps import state_array

    vs, grid = cfg.variable_set, cfg.grid_spec
    ds = open_source_dataset(cfg, source)
    prev_time = cycle_time - timedelta(hours=cfg.schedule.step_hours)
    out = []
    for t in (prev_time, cycle_time):
        if source == "climatology":
            st = _climatology_state(ds, t)
        else:
            want = np.datetime64(t, "ns")
            times = ds["time"].values.astype("datetime64[ns]")
            if want not in set(times):
                raise DataError(f"cold start from {source}: {ds.encoding.get('source', 'the source')} has no state "
                                f"at {t:%Y-%m-%dT%H}Z (it covers {times.min()} to {times.max()})")
            st = ds.sel(time=[want])
        if "level" in st.dims:
            st = st.sel(level=list(vs.levels))
        out.append(state_array(st.load(), vs, grid, f"cold-start state {t:%Y%m%d%H}"))
    return out[0], out[1]


def _climatology_state(ds: xr.Dataset, t: datetime) -> xr.Dataset:
    """The mean of the source's states at the same hour of day (a climatological first guess)."""
    hours = ds["time"].dt.hour
    same = ds.sel(time=hours == t.hour)
    if same.sizes.get("time", 0) == 0:
        raise DataError(f"climatology cold start: the source has no state at {t.hour:02d} UTC")
    return same.mean("time", keep_attrs=True).expand_dims(time=[np.datetime64(t, "ns")])


def truth_state(cfg: FuxiopsConfig, valid_time: datetime) -> xr.Dataset | None:
    """The testbed truth at ``valid_time`` (None outside the testbed or beyond the world's end)."""
    path = world_store(cfg, "truth")
    if not Path(path).exists():
        return None
    with xr.open_zarr(path) as ds:
        want = np.datetime64(valid_time, "ns")
        if want not in set(ds["time"].values.astype("datetime64[ns]")):
            return None
        return ds.sel(time=want).load()


# =============================================================================================
# Products
# =============================================================================================

def run_meta(cfg: FuxiopsConfig, cycle_time: datetime, nets: Networks, n_steps: int, status: str,
             degraded: list[str], bg: Any) -> Any:
    from fuxiops.pipeline.products import RunMeta

    step_h = cfg.schedule.step_hours
    model = {**nets.info, "cycle": {"cold_start": bg.cold_start, "cold_start_source": bg.cold_start_source,
                                    "background": bg.source, "degraded_reasons": list(degraded),
                                    "untrained": nets.untrained}}
    return RunMeta(run_id=run_id(cycle_time), reference_time=cycle_time, grid=cfg.grid_spec,
                   variables=cfg.variable_set, steps=tuple(range(0, (n_steps + 1) * step_h, step_h)),
                   model=json.loads(json.dumps(model, default=str)),
                   status="degraded" if degraded else "published", deployment=cfg.name)


def lead_states(run: Any, leads_dir: str, cfg: FuxiopsConfig) -> Iterator[xr.Dataset]:
    """The forecast of a run as labelled states from its work directory (step 0 = the analysis)."""
    from fuxiops.models.base import ModelCoords, make_state

    coords = ModelCoords(cfg.variable_set, cfg.grid_spec, cfg.schedule.step_hours)
    ref = np.datetime64(run.reference_time, "ns")
    d = Path(leads_dir)
    attrs = {"model": str(run.model.get("forecaster", {}).get("name", "forecaster"))}
    for k, step in enumerate(run.steps):
        arr = np.load(d / ("analysis.npy" if k == 0 else f"step_{k:03d}.npy"))
        yield make_state(arr, coords, ref, step, attrs=attrs)


def encode_format(fmt: str, staging: str, run: Any, leads_dir: str, cfg: FuxiopsConfig) -> list[dict[str, Any]]:
    """Encode one product format of a run into the staging folder; returns manifest entries."""
    from fuxiops.pipeline.products import make_writers
    from fuxiops.pipeline.products.fsutil import sha256_file, tree_size_and_digest
    from fuxiops.pipeline.products.validate import check_step

    (writer,) = make_writers([fmt], cfg)
    root = Path(staging)
    writer.open(run, root)
    try:
        for want, ds in zip(run.steps, lead_states(run, leads_dir, cfg)):
            writer.write(check_step(ds, run, want))
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    entries = []
    for f in written:
        p = root / f.name
        if p.is_dir():
            size, digest = tree_size_and_digest(p)
            entries.append({"name": f.name, "format": f.format, "size": size, "sha256": digest, "kind": "directory",
                            "sha256_of": "sorted 'relative_path\\0sha256\\n' lines of every file in the store"})
        else:
            entries.append({"name": f.name, "format": f.format, "size": f.size if f.size >= 0 else p.stat().st_size,
                            "sha256": f.sha256 or sha256_file(p)})
    return entries


class Staging:
    """A hidden sibling of ``{products}/{run_id}`` that becomes the published run in one rename."""

    def __init__(self, root: Path, run: Any, replace: bool) -> None:
        self.root = root
        self.run = run
        self.replace = replace
        self.final = root / run.run_id
        self.path = root / f".{run.run_id}.tmp-{uuid.uuid4().hex[:8]}"
        self.result: dict[str, Any] = {}

    def commit(self, written: list[list[dict[str, Any]]]) -> dict[str, Any]:
        from fuxiops.pipeline.products.fsutil import exchange, fsync_path, fsync_tree
        from fuxiops.pipeline.products.publish import MANIFEST, build_manifest

        entries = [e for part in written for e in part]
        manifest = build_manifest(self.run, entries)
        with open(self.path / MANIFEST, "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_tree(self.path)
        if self.final.exists():
            # Readers see the old run or the new one, never a mix or nothing.
            if exchange(self.path, self.final):
                shutil.rmtree(self.path)
            else:
                old = self.final.with_name(f".{self.final.name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(self.final, old)
                os.rename(self.path, self.final)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.path, self.final)
        fsync_path(self.root)
        self.result = {"path": str(self.final), "manifest": manifest}
        return self.result


@contextmanager
def staging_directory(cfg: FuxiopsConfig, run: Any, force: bool = False) -> Iterator[Staging]:
    """A staging folder for a run's products; removed on failure so nothing partial is ever published."""
    root = Path(cfg.location("products"))
    root.mkdir(parents=True, exist_ok=True)
    st = Staging(root, run, replace=force)
    st.path.mkdir()
    try:
        yield st
    finally:
        if st.path.exists():
            shutil.rmtree(st.path, ignore_errors=True)


# =============================================================================================
# Verification
# =============================================================================================

def verify(cfg: FuxiopsConfig, cycle_time: datetime, background: np.ndarray, analysis: np.ndarray, obs: ObsResult,
           leads_dir: Path, n_steps: int) -> dict[str, Any]:
    """O-B / O-A statistics and, where the testbed truth exists, scores of background, analysis and leads."""
    from fuxiops.pipeline.cycle.steps import state_dataset
    from fuxiops.pipeline.cycle.verify import departure_stats, scores_vs_truth

    vs, grid = cfg.variable_set, cfg.grid_spec
    bg = state_dataset(background, vs, grid, cycle_time)
    an = state_dataset(analysis, vs, grid, cycle_time)
    out: dict[str, Any] = {"departures": departure_stats(obs.table, bg, an, grid, obs.used)}
    truth = truth_state(cfg, cycle_time)
    if truth is not None:
        scores: dict[str, Any] = {"background": scores_vs_truth(bg, truth), "analysis": scores_vs_truth(an, truth)}
        step_h = cfg.schedule.step_hours
        leads = sorted({k for k in (1, 4, 12, 20, 40, n_steps) if 1 <= k <= n_steps})
        for k in leads:
            t = truth_state(cfg, cycle_time + timedelta(hours=k * step_h))
            if t is None:
                continue
            st = state_dataset(np.load(Path(leads_dir) / f"step_{k:03d}.npy")[:len(vs.state_channels)], vs, grid,
                               cycle_time + timedelta(hours=k * step_h))
            scores[f"+{k * step_h}h"] = scores_vs_truth(st, truth=t)
        out["vs_truth"] = scores
    return out
