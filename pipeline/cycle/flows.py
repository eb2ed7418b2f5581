"""Prefect 3 flows of the operational cycle: ``cycle``, ``backfill`` and ``cold_start``.

``cycle(cycle_time)``: ingest + QC -> background (own, else cold start) ->
assimilate -> forecast (checkpointed per lead) -> publish (atomic, manifest
sha256) -> verify -> catalog. Steps are tasks with retries and exponential
backoff; the whole cycle is idempotent (a published cycle is a no-op unless
``force``) and holds the deployment's cycle lock, so one cycle chain runs at a
time and a cycle waits for the cycle producing its background. Decoding and
product encoding fan out on a ``DaskTaskRunner`` (a LocalCluster, or the
scheduler at ``DASK_SCHEDULER_ADDRESS`` / ``dask.scheduler_address``).
"""

from __future__ import annotations

import os
import time as _time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterator

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.tasks import exponential_backoff

from fuxiops.config import FuxiopsConfig, load_config
from fuxiops.logs import bind, get_logger
from fuxiops.pipeline.cycle import components as comp
from fuxiops.pipeline.cycle import steps
from fuxiops.pipeline.cycle.lock import cycle_lock
from fuxiops.pipeline.cycle.runs import RunCatalog, jsonable
from fuxiops.pipeline.cycle.store import StateStore
from fuxiops.pipeline.cycle.times import cycles_between, iso, latest_due_cycle, parse_cycle_time, run_id, utcnow
from fuxiops.pipeline.cycle.workdir import RunWorkDir

log = get_logger("fuxiops.cycle.flows")

FLOW_NAME = "cycle"
DEPLOYMENT_NAME = "fuxiops-cycle"
#: Base of the exponential retry backoff in seconds (10, 20, 40 ...); tests set it to 0.
RETRY_BASE_ENV = "FUXIOPS_RETRY_BASE_S"


def _backoff() -> Any:
    base = float(os.environ.get(RETRY_BASE_ENV, "10"))
    return exponential_backoff(backoff_factor=base) if base > 0 else 0


@contextmanager
def dask_runners(cfg: FuxiopsConfig) -> Iterator[Any]:
    """A factory of ``DaskTaskRunner`` s sharing one cluster for the whole cycle.

    ``DASK_SCHEDULER_ADDRESS`` (or ``dask.scheduler_address``) names an existing
    cluster; otherwise one LocalCluster lives as long as the cycle: with a
    Prefect server (``PREFECT_API_URL``) ``dask.n_workers`` single-threaded
    worker processes, without one (a command on its own temporary server) an
    in-process cluster of threads. ``FUXIOPS_DASK_INPROCESS=1`` / ``=0`` forces
    threads / processes.
    """
    from prefect_dask import DaskTaskRunner

    address = os.environ.get("DASK_SCHEDULER_ADDRESS") or cfg.dask.scheduler_address
    if address:
        yield lambda: DaskTaskRunner(address=address)
        return
    import logging

    from distributed import LocalCluster

    # Dask's INFO chatter (workers starting/stopping) would drown the cycle's own log lines.
    for name in ("distributed", "distributed.scheduler", "distributed.worker", "distributed.core"):
        logging.getLogger(name).setLevel(logging.WARNING)
    flag = os.environ.get("FUXIOPS_DASK_INPROCESS", "").lower()
    # Default: worker processes when a Prefect server is configured (deployments, workers); threads when the
    # command runs against its own temporary local server, which lives only as long as this process.
    inproc = flag not in ("0", "false", "no") if flag else not os.environ.get("PREFECT_API_URL")
    kwargs: dict[str, Any] = ({"processes": False, "n_workers": 1, "threads_per_worker": cfg.dask.n_workers}
                              if inproc else {"processes": True, "n_workers": cfg.dask.n_workers,
                                              "threads_per_worker": 1})
    if not inproc:
        # Worker processes report their task runs to this flow's Prefect API. Without PREFECT_API_URL the
        # flow talks to a temporary local server; hand its address on, or each worker would start its own.
        kwargs["env"] = {"PREFECT_API_URL": _api_url()} if not os.environ.get("PREFECT_API_URL") else {}
    # ":0": a free port for the dashboard (the default 8787 is often taken by another cluster).
    with LocalCluster(dashboard_address=":0", **kwargs) as cluster:
        yield lambda: DaskTaskRunner(address=cluster.scheduler_address)


def _api_url() -> str:
    from prefect.client.orchestration import get_client

    return str(get_client(sync_client=True).api_url).rstrip("/")


@dataclass
class CycleSummary:
    """What a cycle did (returned by the flow, printed by the CLI)."""

    run_id: str
    cycle_time: str
    status: str
    skipped: bool = False
    degraded_reasons: list[str] = field(default_factory=list)
    cold_start: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    products_path: str | None = None
    resumed_from_lead: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self.__dict__)


class _Timer:
    """Wall time per step, in seconds, for the catalog and the benchmark."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = _time.perf_counter()
        with bind(step=name):
            try:
                yield
            finally:
                self.timings[name] = round(self.timings.get(name, 0.0) + _time.perf_counter() - t0, 4)


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

@task(name="decode-observations", retries=2, retry_delay_seconds=_backoff(), cache_policy=NO_CACHE)
def decode_task(source: dict[str, str], files: list[str], cycle_time: datetime, config_json: str) -> Any:
    cfg = FuxiopsConfig.model_validate_json(config_json)
    return comp.decode_source(source, files, cycle_time, cfg)


@flow(name="ingest", log_prints=False)
def ingest_flow(cycle_time: datetime, config_json: str) -> comp.Decoded:
    """Decode every observation stream of the cycle in parallel (one task per stream and file batch)."""
    cfg = FuxiopsConfig.model_validate_json(config_json)
    batches = comp.observation_batches(cfg, cycle_time)
    futures = [decode_task.submit(src, files, cycle_time, config_json) for src, files in batches]
    return comp.merge_decoded([f.result() for f in futures], batches, cfg, cycle_time)


@task(name="encode-products", retries=2, retry_delay_seconds=_backoff(), cache_policy=NO_CACHE)
def encode_task(fmt: str, staging: str, run_meta: Any, leads_dir: str, config_json: str) -> Any:
    cfg = FuxiopsConfig.model_validate_json(config_json)
    return comp.encode_format(fmt, staging, run_meta, leads_dir, cfg)


@flow(name="publish")
def publish_flow(run_meta: Any, leads_dir: str, config_json: str, force: bool = False) -> dict[str, Any]:
    """Encode each configured format in parallel into a staging folder, then publish atomically."""
    cfg = FuxiopsConfig.model_validate_json(config_json)
    with comp.staging_directory(cfg, run_meta, force=force) as staging:
        futures = [encode_task.submit(fmt, str(staging.path), run_meta, leads_dir, config_json)
                   for fmt in cfg.outputs.formats]
        # Let every encoder finish (or fail) before the staging folder can be removed under them.
        wait(futures)
        written = [f.result() for f in futures]
        return staging.commit(written)


@task(name="assimilate", retries=1, retry_delay_seconds=_backoff(), cache_policy=NO_CACHE)
def assimilate_task(assimilator: Any, background: Any, gridded: Any, n_used: int, config_json: str,
                    cycle_time: datetime) -> Any:
    cfg = FuxiopsConfig.model_validate_json(config_json)
    return steps.analyse(assimilator, background, gridded, n_used, cfg, cycle_time)


@task(name="forecast", retries=2, retry_delay_seconds=_backoff(), cache_policy=NO_CACHE)
def forecast_task(forecaster: Any, previous: Any, analysis: Any, cycle_time: datetime, n_steps: int,
                  workdir: RunWorkDir) -> steps.ForecastResult:
    return steps.run_forecast(forecaster, previous, analysis, cycle_time, n_steps, workdir)


@task(name="commit-state", retries=3, retry_delay_seconds=_backoff(), cache_policy=NO_CACHE)
def commit_state_task(store: StateStore, cfg_json: str, cycle_time: datetime, analysis: Any, background_next: Any,
                      provenance: dict[str, Any]) -> None:
    cfg = FuxiopsConfig.model_validate_json(cfg_json)
    vs, grid = cfg.variable_set, cfg.grid_spec
    nxt = cycle_time + timedelta(hours=cfg.schedule.step_hours)
    # The analysis first: the next cycle's forecaster needs it once it sees the background.
    store.put("analysis", cycle_time, steps.state_dataset(analysis, vs, grid, cycle_time), **provenance)
    store.put("background", nxt, steps.state_dataset(background_next, vs, grid, nxt),
              source=f"cycle {run_id(cycle_time)} +{cfg.schedule.step_hours}h", **provenance)


# ---------------------------------------------------------------------------------------------
# The cycle
# ---------------------------------------------------------------------------------------------

def _flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run
        return str(flow_run.id) if flow_run.id else None
    except Exception:  # pragma: no cover - outside a flow run
        return None


def run_cycle(cfg: FuxiopsConfig, cycle_time: datetime, *, force: bool = False,
              cold_start_source: str | None = None, catalog: RunCatalog | None = None) -> CycleSummary:
    """One cycle (called inside the ``cycle`` flow; tasks run on the flow's task runner)."""
    rid = run_id(cycle_time)
    own_catalog = catalog is None
    catalog = catalog or RunCatalog(cfg.catalog_url)
    try:
        with bind(cycle=iso(cycle_time), run=rid):
            rec = catalog.get(rid)
            if rec is not None and rec.is_published and not force:
                log.info("run %s is already %s; nothing to do (use --force to re-run)", rid, rec.status)
                return CycleSummary(rid, iso(cycle_time), rec.status, skipped=True,
                                    degraded_reasons=rec.degraded_reasons, cold_start=rec.cold_start,
                                    timings=rec.timings, products_path=rec.products_path)
            catalog.enqueue(cycle_time)
            with cycle_lock(cfg.catalog_url, cfg.home):
                # Re-check under the lock: a concurrent trigger may have published it meanwhile.
                rec = catalog.get(rid)
                if rec is not None and rec.is_published and not force:
                    log.info("run %s was published while waiting for the lock; nothing to do", rid)
                    return CycleSummary(rid, iso(cycle_time), rec.status, skipped=True,
                                        degraded_reasons=rec.degraded_reasons, timings=rec.timings,
                                        products_path=rec.products_path)
                catalog.start(cycle_time, flow_run_id=_flow_run_id())
                try:
                    with dask_runners(cfg) as runners:
                        return _cycle_body(cfg, cycle_time, catalog, cold_start_source, force, runners)
                except BaseException as e:
                    catalog.fail(rid, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}")
                    log.error("cycle %s failed: %s", rid, e)
                    raise
    finally:
        if own_catalog:
            catalog.close()


def _cycle_body(cfg: FuxiopsConfig, cycle_time: datetime, catalog: RunCatalog, cold_start_source: str | None,
                force: bool, runners: Any) -> CycleSummary:
    rid = run_id(cycle_time)
    cfg_json = cfg.model_dump_json()
    timer = _Timer()
    degraded: list[str] = []
    store = StateStore(cfg.location("state"))
    workdir = RunWorkDir(cfg.location("runs"), rid)

    with timer("load_models"):
        nets = comp.load_networks(cfg)
    if nets.untrained:
        log.warning("running with UNTRAINED networks (%s): forecasts are not meaningful until the trained "
                    "checkpoints are installed", nets.describe())
    catalog.update(rid, model=nets.info)

    with timer("background"):
        bg = steps.resolve_background(cfg, store, cycle_time, comp.cold_start_states, cold_start_source)
    degraded += bg.notes
    catalog.update(rid, cold_start=bg.cold_start, cold_start_source=bg.cold_start_source,
                   background_source=bg.source)

    with timer("ingest"):
        decoded = ingest_flow.with_options(task_runner=runners())(cycle_time, cfg_json)
    with timer("qc"):
        obs = comp.quality_control(decoded, bg.state, cfg, cycle_time, nets)
    degraded += obs.degraded_reasons
    catalog.update(rid, obs_counts=obs.counts)

    with timer("assimilate"):
        analysis, carried = assimilate_task(nets.assimilator, bg.state, obs.gridded, obs.n_used, cfg_json,
                                            cycle_time)
    if carried:
        degraded.append("no usable observations: background carried forward as the analysis")

    n_steps = cfg.schedule.forecast_steps
    with timer("forecast"):
        fres = forecast_task(nets.forecaster, bg.previous, analysis, cycle_time, n_steps, workdir)

    status_for_products = "degraded" if degraded else ("cold_start" if bg.cold_start else "complete")
    run_meta = comp.run_meta(cfg, cycle_time, nets, n_steps, status_for_products, degraded, bg)
    with timer("publish"):
        published = publish_flow.with_options(task_runner=runners())(run_meta, str(workdir.leads_dir),
                                                                              cfg_json, force)

    with timer("verify"):
        verification = comp.verify(cfg, cycle_time, bg.state, analysis, obs, workdir.leads_dir, n_steps)

    with timer("commit_state"):
        commit_state_task(store, cfg_json, cycle_time, analysis, workdir.load_lead(1)[:len(cfg.variable_set
                          .state_channels)], {"run_id": rid, "cold_start": bg.cold_start, "untrained": nets.untrained})

    status = catalog.finish(rid, degraded_reasons=degraded, timings=timer.timings, verification=verification,
                            manifest=published.get("manifest"), products_path=published.get("path"))
    workdir.clean()
    log.info("cycle %s %s in %.1f s%s", rid, status, sum(timer.timings.values()),
             f" (degraded: {'; '.join(degraded)})" if degraded else "")
    return CycleSummary(rid, iso(cycle_time), status, degraded_reasons=degraded, cold_start=bg.cold_start,
                        timings=timer.timings, products_path=published.get("path"),
                        resumed_from_lead=fres.resumed_from)


@flow(name=FLOW_NAME, description="One 6-hourly cycle: ingest, QC, own background, analysis, 10-day forecast, "
      "publish, verify, catalog.")
def cycle(time: str | None = None, force: bool = False, config_path: str | None = None,
          cold_start_source: str | None = None) -> dict[str, Any]:
    """Run the cycle of ``time`` (ISO or YYYYMMDDHH, UTC; default: the newest cycle whose data cutoff has passed).

    The parameter is named ``time`` because the API triggers the deployment with ``{"time": ...}``.
    """
    cfg = load_config(config_path)
    ct = (parse_cycle_time(time, cfg.schedule.step_hours) if time
          else latest_due_cycle(utcnow(), cfg.schedule.cutoff_minutes, cfg.schedule.step_hours))
    return run_cycle(cfg, ct, force=force, cold_start_source=cold_start_source).to_dict()


@flow(name="backfill", description="Run missed cycles from start to end, in order.")
def backfill(start: str, end: str, force: bool = False, config_path: str | None = None) -> list[dict[str, Any]]:
    """Cycles from ``start`` to ``end`` inclusive, oldest first; published ones are skipped unless ``force``.

    A failed cycle stops the backfill: the next one would only cold-start.
    """
    cfg = load_config(config_path)
    times = cycles_between(parse_cycle_time(start, cfg.schedule.step_hours),
                           parse_cycle_time(end, cfg.schedule.step_hours), cfg.schedule.step_hours)
    out = []
    with RunCatalog(cfg.catalog_url) as catalog:
        for t in times:
            out.append(run_cycle(cfg, t, force=force, catalog=catalog).to_dict())
    return out


@flow(name="cold-start", description="Start the cycle chain at a time from a configured source.")
def cold_start(time: str, source: str | None = None, config_path: str | None = None) -> dict[str, Any]:
    """Run the cycle at ``time`` from the cold-start ``source`` (reanalysis, file, climatology), ignoring any
    background: the start of a new cycle chain."""
    cfg = load_config(config_path)
    ct = parse_cycle_time(time, cfg.schedule.step_hours)
    src = source or cfg.cold_start.source
    comp.check_cold_start_source(src)
    return run_cycle(cfg, ct, force=True, cold_start_source=src).to_dict()
