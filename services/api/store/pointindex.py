"""Point-major copy of a run for fast point queries: ``(lat, lon, channel, step)`` float32 in an mmap'ed ``.npy``.

The serving Zarr is chunked for whole fields (maps, downloads); a point time
series would touch every chunk of every variable. The index is built once per
run publication (keyed by the manifest's SHA-256), written aside and renamed
into place, and shared by every worker process through the page cache. A
point query is then one contiguous read of ``channels x steps x 4`` bytes.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fuxiops.logs import get_logger
from fuxiops.services.api.store.zarrstore import RunStore

log = get_logger("fuxiops.services.pointindex")

FORMAT_VERSION = 1


class PointIndex:
    """Memory-mapped ``(n_lat, n_lon, n_channels, n_steps)`` float32 array of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # A plain ndarray view of the mapping: np.memmap's __getitem__ adds a lot per query.
        self._mm = np.load(path, mmap_mode="r")
        self.data: np.ndarray = self._mm.view(np.ndarray)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def point(self, i: int, j: int) -> np.ndarray:
        """All channels x steps at grid cell (i, j), a fresh (C, S) array."""
        return np.array(self.data[i, j])

    def points(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """(N, C, S) for N grid cells."""
        if len(i) == 1:
            return np.array(self.data[int(i[0]), int(j[0])])[None]
        return np.asarray(self.data[np.asarray(i), np.asarray(j)])

    def box(self, rows: slice, cols: np.ndarray) -> np.ndarray:
        """(ny, nx, C, S) for a row slice and explicit column indices (which may wrap around)."""
        cols = np.asarray(cols)
        if cols.size and np.all(np.diff(cols) == 1):
            return np.asarray(self.data[rows, int(cols[0]):int(cols[-1]) + 1])
        return np.asarray(self.data[rows][:, cols])

    @classmethod
    def open_or_build(cls, store: RunStore, cache_dir: Path, key: str) -> "PointIndex":
        """Open the index for ``key`` (run id + manifest fingerprint), building it first if needed.

        A file lock makes concurrent workers build it once; the others wait and open it.
        """
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(cache_dir, os.W_OK):
                raise PermissionError(f"{cache_dir} is not writable")
        except OSError as e:
            # A read-only cache location must not take the service down: fall back to the temp dir.
            fallback = Path(tempfile.gettempdir()) / "fuxiops-api-cache"
            log.warning("point-index cache unusable (%s); using %s", e, fallback)
            cache_dir = fallback
            cache_dir.mkdir(parents=True, exist_ok=True)
        path = cache_dir / f"{key}.v{FORMAT_VERSION}.points.npy"
        if path.exists():
            return cls(path)
        lock_path = cache_dir / f"{key}.lock"
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                if not path.exists():
                    build(store, path)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        try:
            lock_path.unlink()
        except FileNotFoundError:
            pass
        return cls(path)


def build(store: RunStore, path: Path) -> None:
    """Write the point-major index of ``store`` to ``path`` (atomically)."""
    t0 = time.perf_counter()
    n_lat, n_lon = store.shape
    n_ch, n_step = len(store.channels), store.steps.size
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_lat, n_lon, n_ch, n_step))
    try:
        time_series_chunks, rows_per_chunk = store.chunking()
        if time_series_chunks:
            # Chunks hold every lead time of a tile (the products layout): read bands of whole chunk rows,
            # one variable at a time, so each chunk is decoded once and memory stays one band.
            for i0 in range(0, n_lat, rows_per_chunk):
                rows = slice(i0, min(n_lat, i0 + rows_per_chunk))
                for name in store.variables:
                    block = store.read_rows(name, rows)  # (S, [L,] rows, lon)
                    if block.ndim == 4:
                        for k, lev in enumerate(store.levels):
                            out[rows, :, store.channel_index[f"{name}{int(lev)}"], :] = np.moveaxis(block[:, k], 0, -1)
                    else:
                        out[rows, :, store.channel_index[name], :] = np.moveaxis(block, 0, -1)
        else:
            # One field per chunk: one lead time at a time keeps memory at one step of all variables.
            for s in range(n_step):
                fields = np.empty((n_ch, n_lat, n_lon), dtype=np.float32)
                for name in store.variables:
                    field = store.read_step(name, s)
                    if field.ndim == 3:
                        for k, lev in enumerate(store.levels):
                            fields[store.channel_index[f"{name}{int(lev)}"]] = field[k]
                    else:
                        fields[store.channel_index[name]] = field
                out[:, :, :, s] = np.moveaxis(fields, 0, -1)
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("built point index %s (%d x %d x %d x %d) in %.1f s", path.name, n_lat, n_lon, n_ch, n_step,
             time.perf_counter() - t0)
