"""Publishing a run: fan each forecast step out to the writers, then move the run into place atomically.

Everything is written into a hidden sibling directory of ``{products}/{run_id}``,
fsync'ed, described by ``manifest.json`` (sha256 of every file) and then
renamed (or atomically exchanged, when re-publishing) into place. Any failure
-- bad data, unknown variable or grid, a full disk -- removes the temporary
directory, so a reader never sees a partial run under the published name.

While the writers encode step k on worker threads, the calling thread pulls
step k+1 from the forecast generator: at most two steps are in memory.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import xarray as xr

from fuxiops import __version__
from fuxiops.config import FuxiopsConfig
from fuxiops.errors import DataError, FuxiopsError
from fuxiops.logs import get_logger

from .base import ProductWriter, RunMeta, WrittenFile
from .fsutil import exchange, fsync_path, fsync_tree, sha256_file, tree_size_and_digest
from .registry import FormatSpec, make_writers
from .validate import check_step

MANIFEST = "manifest.json"
log = get_logger(__name__)


class PublishError(FuxiopsError):
    """Publishing failed (disk full, I/O error...); nothing was left under the published name."""


@dataclass(frozen=True)
class PublishResult:
    path: Path
    manifest: dict[str, Any]


def _drain(pending: Sequence[Future[None]]) -> None:
    errors = [f.exception() for f in pending]
    for e in errors:
        if e is not None:
            raise e


def _describe(root: Path, f: WrittenFile) -> dict[str, Any]:
    p = root / f.name
    if p.is_dir():
        size, digest = tree_size_and_digest(p)
        return {"name": f.name, "format": f.format, "size": size, "sha256": digest, "kind": "directory",
                "sha256_of": "sorted 'relative_path\\0sha256\\n' lines of every file in the store"}
    size = f.size if f.size >= 0 else p.stat().st_size
    return {"name": f.name, "format": f.format, "size": size, "sha256": f.sha256 or sha256_file(p)}


def build_manifest(run: RunMeta, files: list[dict[str, Any]]) -> dict[str, Any]:
    ref = f"{run.reference_time:%Y-%m-%dT%H:%M:%SZ}"
    return {"run_id": run.run_id, "cycle_time": ref, "reference_time": ref, "status": run.status,
            "model": dict(run.model), "deployment": run.deployment, "grid": run.grid.name,
            "variables": run.variables.to_dict(), "steps": list(run.steps),
            "created": f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}", "fuxiops_version": __version__,
            "files": sorted(files, key=lambda d: d["name"])}


def publish(forecast: Iterable[xr.Dataset], run: RunMeta, out_dir: str | os.PathLike[str],
            formats: Iterable[FormatSpec] = ("grib2", "netcdf", "zarr"), config: FuxiopsConfig | None = None, *,
            replace: bool = False, carry_over: Path | None = None,
            on_step: Callable[[int], None] | None = None) -> PublishResult:
    """Write ``forecast`` (a generator of step datasets) as products of ``run`` into ``out_dir/run_id``.

    ``replace`` atomically replaces an existing publication; ``carry_over`` names a
    previous publication whose files of formats not written now are kept (hard links).
    """
    writers = make_writers(formats, config)  # unknown formats fail before anything touches the disk
    names = [w.format for w in writers]
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / run.run_id
    if final.exists() and not replace:
        raise PublishError(f"run {run.run_id} is already published at {final}; pass replace=True (CLI: --replace) to replace it")
    tmp = root / f".{run.run_id}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    opened: list[ProductWriter] = []
    try:
        for w in writers:
            opened.append(w)  # abort() must also release what a failed open() acquired
            w.open(run, tmp)
        _stream(forecast, run, writers, on_step)
        written: list[WrittenFile] = []
        for w in writers:
            written += w.close()
        opened.clear()
        entries = [_describe(tmp, f) for f in written]
        if carry_over is not None:
            entries += _carry_over(carry_over, tmp, exclude_formats=set(names))
        manifest = build_manifest(run, entries)
        mpath = tmp / MANIFEST
        with open(mpath, "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_tree(tmp)
        _move_into_place(tmp, final)
    except BaseException as e:
        for w in opened:
            try:
                w.abort()
            except Exception:  # noqa: BLE001 - the original error matters more
                log.exception("writer %s failed to abort", w.format)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            if e.errno == errno.ENOSPC:
                raise PublishError(f"disk full while publishing run {run.run_id} into {root}: nothing was "
                                   "published (free space and publish again)") from e
            raise PublishError(f"I/O error while publishing run {run.run_id} into {root}: {e}; "
                               "nothing was published") from e
        raise
    log.info("published run %s (%s) at %s", run.run_id, ", ".join(names), final)
    return PublishResult(final, manifest)


def _stream(forecast: Iterable[xr.Dataset], run: RunMeta, writers: list[ProductWriter],
            on_step: Callable[[int], None] | None) -> None:
    expected = iter(run.steps)
    with ThreadPoolExecutor(max(1, len(writers)), thread_name_prefix="publish") as pool:
        pending: list[Future[None]] = []
        last = None
        for ds in forecast:  # the generator computes step k+1 here while writers handle step k
            want = next(expected, None)
            if want is None:
                raise DataError(f"forecast yielded more lead times than run {run.run_id} declares "
                                f"({list(run.steps)})")
            step = check_step(ds, run, want)
            _drain(pending)
            if on_step is not None and last is not None:
                on_step(last)
            pending = [pool.submit(w.write, step) for w in writers]
            last = step.step
        _drain(pending)
        if on_step is not None and last is not None:
            on_step(last)
    left = list(expected)
    if left:
        raise DataError(f"forecast of run {run.run_id} ended before lead time(s) {left} h")


def _carry_over(previous: Path, tmp: Path, exclude_formats: set[str]) -> list[dict[str, Any]]:
    """Keep files of an earlier publication whose formats are not being rewritten (hard link, else copy)."""
    mpath = previous / MANIFEST
    if not mpath.is_file():
        return []
    old = json.loads(mpath.read_text())
    kept = []
    skip = set(exclude_formats) | ({"grib2-index"} if "grib2" in exclude_formats else set())
    for entry in old.get("files", []):
        if entry.get("format") in skip:
            continue
        src, dst = previous / entry["name"], tmp / entry["name"]
        if not src.exists() or dst.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(src), str(dst))
        kept.append(entry)
    return kept


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _move_into_place(tmp: Path, final: Path) -> None:
    if final.exists():
        # Swap in one step where the kernel allows it, so readers see the old or the new run, never none.
        if exchange(tmp, final):
            shutil.rmtree(tmp)
        else:
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_path(final.parent)
