"""Parallel decoding of many observation files with Dask ``distributed``.

Files are split into messages in the driver (a byte scan, no decoding) and
the messages are sent in batches to worker processes, so one large file
uses every worker and many small files share them. The scheduler is an
existing one when ``DASK_SCHEDULER_ADDRESS`` (or ``dask.scheduler_address``
in the configuration) is set, else a LocalCluster of worker processes;
``mode="serial"`` decodes in-process (small inputs, tests).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

from fuxiops.logs import get_logger
from fuxiops.pipeline.obs.readers import READERS, reader_name_for
from fuxiops.pipeline.obs.readers.base import BufrReader, Quarantine, ReadResult, attach_split_problems

log = get_logger("fuxiops.obs.decode")

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
Mode = Literal["auto", "serial", "dask"]
#: Below this many bytes in total, ``auto`` decodes in-process (starting workers costs seconds).
AUTO_SERIAL_BYTES = 1_000_000


@dataclass(frozen=True)
class Input:
    """One file to read and the reader that reads it."""

    path: str
    reader: str
    options: tuple[tuple[str, Any], ...] = ()


def plan_inputs(files: Sequence[str | os.PathLike[str]], reader: str | None = None) -> tuple[list[Input], list[Quarantine]]:
    """Pick a reader per file; files no reader can be chosen for are quarantined."""
    inputs, bad = [], []
    for f in files:
        p = str(f)
        if not Path(p).is_file():
            bad.append(Quarantine(p, None, "no such file" if not Path(p).exists() else "not a regular file",
                                  reader or "?"))
            continue
        try:
            name = reader or reader_name_for(p)
        except Exception as e:
            bad.append(Quarantine(p, None, str(e), reader or "?"))
            continue
        inputs.append(Input(p, name))
    return inputs, bad


class PackedMessages:
    """A batch of raw messages as one byte string plus offsets.

    Shipping thousands of small message objects to a worker costs more than
    decoding them on the fast path (Dask walks every list item and pickles
    each object); one ``bytes`` and three integer arrays go in one piece.
    """

    def __init__(self, raw: Sequence[Any]) -> None:
        self.blob = b"".join(m.data for m in raw)
        self.index = np.array([m.index for m in raw], dtype=np.int64)
        self.offset = np.array([m.offset for m in raw], dtype=np.int64)
        self.length = np.array([len(m.data) for m in raw], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.index.size)

    def unpack(self) -> list[Any]:
        from fuxiops.pipeline.obs.bufr import RawMessage

        ends = np.cumsum(self.length).tolist()
        starts = [0] + ends[:-1]
        blob = self.blob
        return [RawMessage(i, o, blob[a:b]) for i, o, a, b in zip(self.index.tolist(), self.offset.tolist(), starts,
                                                                    ends)]


def _decode_batch(reader: str, options: dict[str, Any], path: str, raw: "list[Any] | PackedMessages") -> ReadResult:
    r = READERS.create({reader: options})
    assert isinstance(r, BufrReader)
    return r.read_messages(path, raw.unpack() if isinstance(raw, PackedMessages) else raw)


def _read_whole(reader: str, options: dict[str, Any], path: str) -> ReadResult:
    return READERS.create({reader: options}).read(path)


def _tasks(inputs: Sequence[Input], n_workers: int, batch_messages: int | None, pack: bool = False
           ) -> Iterator[tuple[Input, Callable[..., ReadResult], tuple[Any, ...], Any]]:
    """Work units: (input, function, args, split problems or None); ``pack`` ships batches as PackedMessages."""
    from fuxiops.pipeline.obs.bufr import split_messages

    for inp in inputs:
        cls = READERS.get(inp.reader)
        opts = dict(inp.options)
        if not (isinstance(cls, type) and issubclass(cls, BufrReader)):
            yield inp, _read_whole, (inp.reader, opts, inp.path), None
            continue
        try:
            raw, problems = split_messages(inp.path)
        except OSError as e:
            yield inp, _failed, (inp, f"cannot read file: {e}"), None
            continue
        if not raw:
            yield inp, _failed_split, (inp, problems), None
            continue
        # Enough batches to keep every worker busy, not so many that scheduling dominates.
        size = batch_messages or max(64, -(-len(raw) // (4 * n_workers)))
        for k in range(0, len(raw), size):
            part = PackedMessages(raw[k:k + size]) if pack else raw[k:k + size]
            yield inp, _decode_batch, (inp.reader, opts, inp.path, part), (problems if k == 0 else [])


def _failed(inp: Input, reason: str) -> ReadResult:
    return ReadResult(quarantined=[Quarantine(inp.path, None, reason, inp.reader)], source_file=inp.path,
                      reader=inp.reader)


def _failed_split(inp: Input, problems: list[Any]) -> ReadResult:
    res = ReadResult(source_file=inp.path, reader=inp.reader)
    res = attach_split_problems(res, inp.path, [], problems, inp.reader)
    if not res.quarantined:
        res.quarantined.append(Quarantine(inp.path, None, "no BUFR message in file", inp.reader))
    for q in res.quarantined:
        q.message_index = None if q.reason in ("empty file",) or q.message_index == 0 else q.message_index
    return res


def scheduler_address(configured: str | None = None) -> str | None:
    return os.environ.get(SCHEDULER_ENV) or configured


class DaskRunner:
    """A Dask client for decoding: existing scheduler or a LocalCluster we own (closed on exit)."""

    def __init__(self, n_workers: int = 2, address: str | None = None) -> None:
        from distributed import Client, LocalCluster

        self.address = scheduler_address(address)
        self.cluster = None
        if self.address:
            self.client = Client(self.address, timeout="10s")
        else:
            with warnings.catch_warnings():
                # A busy default dashboard port only makes Dask pick another one: not worth a warning.
                warnings.simplefilter("ignore", UserWarning)
                self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":0", silence_logs=40)
            self.client = Client(self.cluster)
        self.n_workers = max(1, len(self.client.scheduler_info().get("workers", {})) or n_workers)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> "DaskRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_files(inputs: Sequence[Input], *, mode: Mode = "auto", n_workers: int = 2, address: str | None = None,
                 runner: DaskRunner | None = None, batch_messages: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, ReadResult]:
    """Decode every input; returns one merged ReadResult per file path (never raises for bad content)."""
    if mode == "auto":
        total = sum(Path(i.path).stat().st_size for i in inputs)
        mode = "dask" if runner is not None or scheduler_address(address) or total >= AUTO_SERIAL_BYTES else "serial"
    workers = runner.n_workers if runner is not None else (n_workers if mode == "dask" else 1)
    tasks = list(_tasks(inputs, workers, batch_messages, pack=mode != "serial"))
    parts: dict[str, list[ReadResult]] = {i.path: [] for i in inputs}
    problems: dict[str, list[Any]] = {i.path: [] for i in inputs}
    done = 0
    if mode == "serial":
        for inp, fn, args, probs in tasks:
            parts[inp.path].append(_safe(fn, inp, *args))
            problems[inp.path] += probs or []
            done += 1
            if progress:
                progress(done, len(tasks))
    else:
        own = runner is None
        run = runner or DaskRunner(n_workers, address)
        try:
            from distributed import as_completed

            futs = {}
            for inp, fn, args, probs in tasks:
                fut = run.client.submit(_safe, fn, inp, *args, pure=False)
                futs[fut] = inp
                problems[inp.path] += probs or []
            for fut in as_completed(list(futs)):
                inp = futs[fut]
                try:
                    parts[inp.path].append(fut.result())
                except Exception as e:  # a worker died: the batch is lost, say so
                    parts[inp.path].append(_failed(inp, f"worker failed ({type(e).__name__}: {e})"))
                done += 1
                if progress:
                    progress(done, len(tasks))
        finally:
            if own:
                run.close()
    out: dict[str, ReadResult] = {}
    for inp in inputs:
        ps = sorted(parts[inp.path], key=lambda r: r.table.column("message_index")[0].as_py() if r.table.num_rows else 0)
        res = ReadResult.merge(ps) if ps else ReadResult(source_file=inp.path, reader=inp.reader)
        res.source_file, res.reader = inp.path, inp.reader
        res = attach_split_problems(res, inp.path, [None] if res.n_messages else [], problems[inp.path], inp.reader)
        res.quarantined.sort(key=lambda q: (q.message_index is not None, q.message_index or 0))
        out[inp.path] = res
    return out


def _safe(fn: Callable[..., ReadResult], inp: Input, *args: Any) -> ReadResult:
    t0 = time.process_time()
    try:
        res = fn(*args)
    except Exception as e:  # a bug in one reader must not take the others down
        res = _failed(inp, f"reader {inp.reader!r} failed ({type(e).__name__}: {e})")
    res.cpu_s = time.process_time() - t0
    return res
