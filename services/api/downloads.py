"""Serving a product file: HTTP Range (single and multipart), ETag = sha256, conditional requests.

File names come from the run's manifest only and must resolve to a regular
file directly inside the run folder, so no name can reach anything else.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Iterator

from starlette.responses import Response, StreamingResponse

from fuxiops.services.api.errors import ApiError, error_response
from fuxiops.services.api.store.catalog import FileEntry, RunInfo

CHUNK = 256 * 1024
MAX_RANGES = 16
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,254}$")
MEDIA = {"grib2": "application/x-grib2", "grib": "application/x-grib", "netcdf": "application/x-netcdf",
         "nc": "application/x-netcdf", "json": "application/json", "zarr": "application/octet-stream"}


def safe_path(run: RunInfo, name: str) -> tuple[Path, FileEntry]:
    """The file ``name`` of ``run``; 404 unless the manifest lists it and it lies inside the run folder."""
    entry = run.files.get(name)
    if entry is None or not _NAME_RE.match(name) or name in (".", ".."):
        raise ApiError(404, f"run {run.run_id} has no file {name!r}", parameter="name",
                       allowed=sorted(run.files))
    base = run.path.resolve()
    path = (base / name).resolve()
    if path.parent != base or not path.is_file():
        raise ApiError(404, f"run {run.run_id} has no file {name!r}", parameter="name", allowed=sorted(run.files))
    return path, entry


def parse_range(header: str, size: int) -> list[tuple[int, int]] | None:
    """Byte ranges (inclusive) of a ``Range`` header; None means 'ignore it, send everything'.

    Raises ApiError(416) when no range is satisfiable.
    """
    m = re.match(r"^\s*bytes\s*=\s*(.+)$", header)
    if not m:
        return None
    out: list[tuple[int, int]] = []
    parts = [p.strip() for p in m.group(1).split(",") if p.strip()]
    if not parts or len(parts) > MAX_RANGES:
        return None
    for p in parts:
        rm = re.match(r"^(\d*)\s*-\s*(\d*)$", p)
        if not rm or (rm.group(1) == "" and rm.group(2) == ""):
            return None  # syntactically invalid: RFC 9110 says ignore the header
        a, b = rm.group(1), rm.group(2)
        if a == "":
            n = int(b)
            if n == 0:
                continue
            start, end = max(0, size - n), size - 1
        else:
            start = int(a)
            end = int(b) if b else size - 1
            if b and end < start:
                return None
            end = min(end, size - 1)
            if start >= size:
                continue
        out.append((start, end))
    if not out:
        raise ApiError(416, f"requested range not satisfiable (file has {size} bytes)",
                       headers={"Content-Range": f"bytes */{size}"})
    return out


def _read(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def file_response(run: RunInfo, name: str, method: str, range_header: str | None, if_none_match: str | None,
                  if_range: str | None) -> Response:
    path, entry = safe_path(run, name)
    size = path.stat().st_size
    if entry.size is not None and entry.size != size:
        # The file on disk is not the one the manifest describes: refuse rather than serve it.
        return error_response(409, f"file {name!r} of run {run.run_id} does not match its manifest "
                                   f"({size} bytes on disk, {entry.size} listed)")
    if entry.sha256:
        etag = f'"{entry.sha256}"'
    else:
        st = path.stat()
        etag = f'W/"{st.st_size:x}-{st.st_mtime_ns:x}"'
    media = MEDIA.get(entry.format.lower(), "application/octet-stream")
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "public, max-age=3600",
               "Content-Disposition": f'attachment; filename="{name}"'}
    if entry.sha256:
        headers["Digest"] = f"sha-256={entry.sha256}"
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    ranges = None
    if range_header and (if_range is None or if_range.strip() == etag):
        ranges = parse_range(range_header, size)
    if ranges is None:
        headers["Content-Length"] = str(size)
        if method == "HEAD":
            return Response(status_code=200, headers=headers, media_type=media)
        return StreamingResponse(_read(path, 0, size - 1) if size else iter([b""]), status_code=200,
                                 headers=headers, media_type=media)
    if len(ranges) == 1:
        start, end = ranges[0]
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        if method == "HEAD":
            return Response(status_code=206, headers=headers, media_type=media)
        return StreamingResponse(_read(path, start, end), status_code=206, headers=headers, media_type=media)
    boundary = secrets.token_hex(12)
    parts_head = [(f"--{boundary}\r\nContent-Type: {media}\r\nContent-Range: bytes {s}-{e}/{size}\r\n\r\n").encode()
                  for s, e in ranges]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = sum(len(h) + (e - s + 1) for h, (s, e) in zip(parts_head, ranges)) + 2 * (len(ranges) - 1) + len(tail)
    headers["Content-Length"] = str(length)
    ctype = f"multipart/byteranges; boundary={boundary}"

    def body() -> Iterator[bytes]:
        for k, ((s, e), h) in enumerate(zip(ranges, parts_head)):
            if k:
                yield b"\r\n"
            yield h
            yield from _read(path, s, e)
        yield tail

    if method == "HEAD":
        return Response(status_code=206, headers=headers, media_type=ctype)
    return StreamingResponse(body(), status_code=206, headers=headers, media_type=ctype)
