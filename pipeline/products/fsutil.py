"""File-system helpers for durable, atomic publication: fsync of trees, hashing, atomic swap."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory below ``root`` (directories last, so entries are durable)."""
    dirs: list[Path] = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            fsync_path(Path(dirpath) / f)
        dirs.append(Path(dirpath))
    for d in reversed(dirs):
        fsync_path(d)


def sha256_file(path: Path, bufsize: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def tree_size_and_digest(root: Path) -> tuple[int, str]:
    """Total size and a digest of a directory store: sha256 over sorted ``relpath\\0sha256\\n`` lines."""
    lines = []
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            total += p.stat().st_size
            lines.append(f"{p.relative_to(root).as_posix()}\0{sha256_file(p)}\n")
    h = hashlib.sha256("".join(sorted(lines)).encode())
    return total, h.hexdigest()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where the kernel or libc lack it."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    res = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))
