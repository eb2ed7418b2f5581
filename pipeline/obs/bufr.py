"""Low-level BUFR access on ecCodes: split files into messages, decode one message into arrays.

Decoding is key-driven: a reader asks for WMO element names (``airTemperature``,
``windSpeed``) and gets one array per subset, whatever the layout of the
message (one subset, several uncompressed subsets, compressed subsets;
edition 3 or 4). Values are read as whole arrays per key, never value by
value, and the handle is unpacked with ``skipExtraKeyAttributes`` so that
ecCodes does not build units/code attributes nobody reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

#: ecCodes' missing-value sentinels for doubles and longs.
MISSING_DOUBLE = -1.0e100
MISSING_LONG = 2147483647

# Keys after which a subset's data section ends and quality/statistics
# sections (operators 222000, 224000, data-present bitmaps) begin: element
# names repeat there with other meanings (e.g. NEdT under brightnessTemperature).
_SECTION_END = frozenset({"operator", "dataPresentIndicator"})


#: Delayed replication factor descriptors (0 31 000/001/002): element sets then vary between messages.
DELAYED_REPLICATION = np.array([31000, 31001, 31002])


class MessageError(Exception):
    """A message cannot be split out of its file or decoded (quarantine reason in ``args[0]``)."""


@dataclass(frozen=True)
class RawMessage:
    """One BUFR message's bytes and where it came from."""

    index: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class SplitProblem:
    """A stretch of a file that is not a readable BUFR message."""

    index: int
    offset: int
    reason: str
    #: Bytes after the last message that hold no message (padding): a note, not a failure.
    trailing: bool = False


def split_messages(path: str | os.PathLike[str]) -> tuple[list[RawMessage], list[SplitProblem]]:
    """Split a file into BUFR messages by their section-0 lengths, without decoding.

    Truncated messages, missing end sections ('7777') and garbage between
    messages are returned as problems (with the message index they would have
    had); the scan resynchronises on the next 'BUFR' marker so one bad
    message never hides the good ones after it.
    """
    data = Path(path).read_bytes()
    msgs: list[RawMessage] = []
    problems: list[SplitProblem] = []
    pos = 0
    n = len(data)
    index = 0
    if n == 0:
        problems.append(SplitProblem(0, 0, "empty file"))
        return msgs, problems
    while pos < n:
        start = data.find(b"BUFR", pos)
        if start < 0:
            if not msgs and not problems:
                problems.append(SplitProblem(index, 0, "no BUFR message in file (not a BUFR file?)"))
            elif data[pos:].strip(b"\x00\r\n \x03"):
                problems.append(SplitProblem(index, pos, f"{n - pos} trailing bytes after the last message (ignored)",
                                             trailing=True))
            break
        if start > pos and data[pos:start].strip(b"\x00\r\n \x01\x03"):
            # Bulletin headers (GTS) are usual before messages; only mention them at the very start.
            pass
        if start + 8 > n:
            if msgs or problems:
                problems.append(SplitProblem(index, start, f"truncated message at byte {start} (no section 0)"))
            else:
                problems.append(SplitProblem(index, 0, "no BUFR message in file (not a BUFR file?)"))
            break
        length = int.from_bytes(data[start + 4:start + 7], "big")
        edition = data[start + 7]
        if edition not in (2, 3, 4) or length < 8:
            # Not a message start: the letters 'BUFR' inside text or data, or editions 0/1 (no total
            # length, retired by WMO decades ago). Keep scanning.
            pos = start + 4
            continue
        end = start + length
        if end > n:
            problems.append(SplitProblem(index, start, f"truncated message at byte {start}: declares {length} bytes, "
                                                        f"file has {n - start}"))
            index += 1
            pos = start + 4
            continue
        if data[end - 4:end] != b"7777":
            problems.append(SplitProblem(index, start, f"corrupted message at byte {start}: end section '7777' "
                                                        f"missing"))
            index += 1
            pos = start + 4
            continue
        msgs.append(RawMessage(index, start, data[start:end]))
        index += 1
        pos = end
    return msgs, problems


def _clean_numeric(a: np.ndarray) -> np.ndarray:
    """Float64 copy with ecCodes' missing sentinels as NaN."""
    if a.dtype.kind in "iu":
        out = a.astype(np.float64)
        out[a == MISSING_LONG] = np.nan
        return out
    out = np.asarray(a, dtype=np.float64).copy()
    out[out <= -1.0e99] = np.nan
    return out


class Message:
    """A decoded BUFR message: ask for keys, get one array per subset.

    Use as a context manager (releases the ecCodes handle).
    """

    #: (template, key) -> whether the element exists; templates fix which elements exist,
    #: so the (costly, exception-raising) probing is done once per template and process.
    _defined: dict[tuple[tuple[int, ...], str], bool] = {}
    #: (expanded-descriptor structure, key) -> exists: exact for single-subset and compressed messages.
    _known: dict[tuple[int, str], bool] = {}

    def __init__(self, data: bytes, unpack: bool = True) -> None:
        import eccodes

        self._ec = eccodes
        self._struct: int | None = None
        try:
            self.h = eccodes.codes_new_from_message(data)
        except Exception as e:  # ecCodes raises many subclasses of GribInternalError
            raise MessageError(f"not a decodable BUFR message ({type(e).__name__}: {e})") from None
        try:
            # Sections 0-3 (no data unpacking yet): enough to recognise the template.
            get = eccodes.codes_get_long
            self.n_subsets = int(get(self.h, "numberOfSubsets"))
            self.compressed = bool(get(self.h, "compressedData"))
            self.edition = int(get(self.h, "edition"))
            self.data_category = int(get(self.h, "dataCategory"))
            self.template = (self.n_subsets == 1, self.compressed,
                             *eccodes.codes_get_long_array(self.h, "unexpandedDescriptors").tolist())
        except Exception as e:
            self.close()
            raise MessageError(f"cannot read the message header ({type(e).__name__}: {e})") from None
        if self.n_subsets < 1:
            self.close()
            raise MessageError("message declares no subsets")
        self.unpacked = False
        if unpack:
            self.unpack()

    def unpack(self) -> None:
        """Decode the data section (the expensive step)."""
        eccodes = self._ec
        try:
            eccodes.codes_set_long(self.h, "skipExtraKeyAttributes", 1)
            eccodes.codes_set_long(self.h, "unpack", 1)
        except Exception as e:
            self.close()
            raise MessageError(f"cannot unpack data section ({type(e).__name__}: {e}); unknown or "
                               f"inconsistent template/tables?") from None
        self.unpacked = True
        # Which elements exist is fixed by the expanded descriptors when all subsets share one structure
        # (one subset, or compressed): key probes are then cached per structure, misses included.
        if self.n_subsets == 1 or self.compressed:
            try:
                expanded = eccodes.codes_get_long_array(self.h, "expandedDescriptors")
                self._struct = hash(expanded.tobytes())
                # Without delayed replication the unexpanded descriptors alone fix every element.
                self.fixed_structure = not np.isin(expanded, DELAYED_REPLICATION).any()
            except Exception:
                self._struct = None
                self.fixed_structure = False
        else:
            self.fixed_structure = False

    def close(self) -> None:
        if getattr(self, "h", None) is not None:
            self._ec.codes_release(self.h)
            self.h = None  # type: ignore[assignment]

    def __enter__(self) -> "Message":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- structure -----------------------------------------------------------
    @cached_property
    def _ranks(self) -> list[dict[str, list[int]]]:
        """Per subset, the ranks of each element name inside the data section.

        Only built for multi-subset messages; compressed messages share one
        structure for all subsets.
        """
        ec = self._ec
        it = ec.codes_bufr_keys_iterator_new(self.h)
        subsets: list[dict[str, list[int]]] = []
        current: dict[str, list[int]] = {}
        in_data = False
        started = False
        try:
            while ec.codes_bufr_keys_iterator_next(it):
                name = ec.codes_bufr_keys_iterator_get_name(it)
                if name == "subsetNumber":
                    if started:
                        subsets.append(current)
                    current = {}
                    in_data = True
                    started = True
                    continue
                if not name.startswith("#"):
                    if name in ("unexpandedDescriptors",):
                        in_data = True  # compressed messages have no subsetNumber markers
                    continue
                _, rank, base = name.split("#", 2)
                if "->" in base:
                    continue
                if base in _SECTION_END:
                    in_data = False
                    continue
                if in_data:
                    current.setdefault(base, []).append(int(rank))
        finally:
            ec.codes_bufr_keys_iterator_delete(it)
        subsets.append(current)
        if self.compressed:
            return subsets[:1] * self.n_subsets
        if len(subsets) != self.n_subsets:
            raise MessageError(f"message structure has {len(subsets)} subsets but declares {self.n_subsets}")
        return subsets

    def has(self, key: str) -> bool:
        """Whether the message holds element ``key``.

        Positive answers are cached per template; negative ones are not, since
        with delayed replication an element absent from one message may be
        present in the next one of the same template.
        """
        if self._struct is not None:
            sk = (self._struct, key)
            d = self._known.get(sk)
            if d is None:
                d = self._known[sk] = bool(self._ec.codes_is_defined(self.h, key))
            return d
        ck = (self.template, key)
        if ck in self._defined:
            return True
        d = bool(self._ec.codes_is_defined(self.h, key))
        if d:
            self._defined[ck] = True
        return d

    def _get(self, key: str, strings: bool = False) -> np.ndarray | None:
        try:
            if strings:
                return np.asarray(self._ec.codes_get_string_array(self.h, key), dtype=object)
            return self._ec.codes_get_double_array(self.h, key)
        except Exception:  # KeyValueNotFoundError: element not in this template / this message
            return None

    def header(self, key: str, default: object = None) -> object:
        try:
            return self._ec.codes_get(self.h, key)
        except Exception:
            return default

    # -- values --------------------------------------------------------------
    def _layout(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Where ``key`` sits in an uncompressed multi-subset message: the 0-based positions of its
        occurrences in ecCodes' flat array, subset after subset, and the count per subset (cached per
        key, so that ``values`` and ``first`` index whole arrays instead of looping over subsets)."""
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = self.__dict__.setdefault("_layouts", {})
        if key not in cache:
            ranks = self._ranks
            counts = np.fromiter((len(s.get(key, ())) for s in ranks), np.int64, len(ranks))
            flat = np.fromiter((r for s in ranks for r in s.get(key, ())), np.int64, int(counts.sum()))
            cache[key] = (flat - 1, counts)
        return cache[key]

    def _compressed_matrix(self, key: str, strings: bool) -> np.ndarray | None:
        """(subset, occurrence) values of ``key`` in a compressed message."""
        rs = self._ranks[0].get(key)
        if not rs:
            return None
        cols = []
        for r in rs:
            a = self._get(f"#{r}#{key}", strings)
            if a is None:
                return None
            if a.size == 1:  # compressed with a constant value: ecCodes returns it once
                a = np.repeat(a, self.n_subsets)
            elif a.size != self.n_subsets:
                raise MessageError(f"{key} rank {r}: {a.size} values for {self.n_subsets} subsets")
            cols.append(self._finish(a, strings))
        return np.stack(cols, axis=1)

    def _flat(self, key: str, strings: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """An uncompressed multi-subset message's values of ``key`` in subset order, with its layout."""
        idx, counts = self._layout(key)
        if not counts.any():
            return None
        a = self._get(key, strings)
        if a is None:
            return None
        a = self._finish(a, strings)
        if idx.size and idx.max() >= a.size:
            raise MessageError(f"{key}: {a.size} values but the structure names {idx.max() + 1}")
        return a[idx], counts

    def values(self, key: str, *, strings: bool = False) -> list[np.ndarray] | None:
        """All occurrences of element ``key`` in each subset (data section), or None if absent.

        Numeric values come back as float64 with NaN for missing; strings
        stripped.
        """
        if not self.has(key):
            return None
        if self.n_subsets == 1:
            a = self._get(key, strings)
            if a is None:
                return None
            return [self._finish(a, strings)]
        if self.compressed:
            mat = self._compressed_matrix(key, strings)
            return None if mat is None else list(mat)
        got = self._flat(key, strings)
        if got is None:
            return None
        vals, counts = got
        return np.split(vals, np.cumsum(counts)[:-1])

    def values_2d(self, key: str, *, strings: bool = False) -> np.ndarray | None:
        """(subset, occurrence) values of ``key`` when every subset holds it equally often; None when
        absent or ragged (then ``values`` gives the per-subset arrays)."""
        if not self.has(key):
            return None
        if self.n_subsets == 1:
            a = self.values(key, strings=strings)
            return None if a is None else a[0][None, :]
        if self.compressed:
            return self._compressed_matrix(key, strings)
        _, counts = self._layout(key)
        if not counts.any() or (counts != counts[0]).any():
            return None
        got = self._flat(key, strings)
        return None if got is None else got[0].reshape(self.n_subsets, int(counts[0]))

    def first(self, key: str, *, strings: bool = False) -> np.ndarray | None:
        """The first occurrence of ``key`` per subset (NaN / '' where a subset lacks it)."""
        if self.n_subsets == 1:
            if not self.has(key):
                return None
            try:
                if strings:
                    return np.array([self._ec.codes_get_string(self.h, "#1#" + key).strip()], dtype=object)
                x = self._ec.codes_get_double(self.h, "#1#" + key)
            except Exception:
                return None
            return np.array([np.nan if (x <= -1.0e99 or x == MISSING_LONG) else x])
        if not self.has(key):
            return None
        if self.compressed:
            mat = self._compressed_matrix(key, strings)
            return None if mat is None else mat[:, 0].copy()
        got = self._flat(key, strings)
        if got is None:
            return None
        vals, counts = got
        starts = np.cumsum(counts) - counts
        present = counts > 0
        out = np.full(self.n_subsets, "" if strings else np.nan, dtype=object if strings else np.float64)
        out[present] = vals[starts[present]]
        return out

    def first_of(self, keys: Sequence[str], *, strings: bool = False) -> np.ndarray | None:
        """``first`` of the first key of ``keys`` that the message has."""
        for k in keys:
            v = self.first(k, strings=strings)
            if v is not None:
                return v
        return None

    @staticmethod
    def _finish(a: np.ndarray, strings: bool) -> np.ndarray:
        if strings or a.dtype.kind in "USO":
            return np.array([str(x).strip() for x in a.ravel()], dtype=object)
        return _clean_numeric(a.ravel())

    # -- common coordinates --------------------------------------------------
    def times(self) -> np.ndarray:
        """Observation time per subset (datetime64[ns], NaT where incomplete)."""
        parts = {}
        for k in ("year", "month", "day", "hour", "minute", "second"):
            v = self.first(k)
            parts[k] = np.full(self.n_subsets, np.nan if k in ("year", "month", "day", "hour") else 0.0) \
                if v is None else v
        return compose_times(parts["year"], parts["month"], parts["day"], parts["hour"],
                             np.nan_to_num(parts["minute"], nan=0.0), np.nan_to_num(parts["second"], nan=0.0))


def compose_times(year: np.ndarray, month: np.ndarray, day: np.ndarray, hour: np.ndarray,
                  minute: np.ndarray | float = 0.0, second: np.ndarray | float = 0.0) -> np.ndarray:
    """Vectorised UTC times from calendar parts; invalid parts give NaT."""
    y, mo, d, h = (np.asarray(x, dtype=np.float64) for x in (year, month, day, hour))
    mi = np.broadcast_to(np.asarray(minute, dtype=np.float64), y.shape)
    s = np.broadcast_to(np.asarray(second, dtype=np.float64), y.shape)
    ok = (np.isfinite(y) & np.isfinite(mo) & np.isfinite(d) & np.isfinite(h) & (mo >= 1) & (mo <= 12)
          & (d >= 1) & (d <= 31) & (h >= 0) & (h <= 24) & (y >= 1900) & (y <= 2200) & np.isfinite(mi)
          & np.isfinite(s))
    out = np.full(y.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    if ok.any():
        yi, moi, di = y[ok].astype(int), mo[ok].astype(int), d[ok].astype(int)
        months = (np.array(yi - 1970, dtype="datetime64[Y]").astype("datetime64[M]") + (moi - 1))
        days = months.astype("datetime64[D]") + (di - 1)
        # A day beyond the month's length is invalid (e.g. 31 April), not next month.
        month_end = (months + 1).astype("datetime64[D]")
        valid = days < month_end
        ns = (days.astype("datetime64[ns]") + (h[ok] * 3.6e12).astype("timedelta64[ns]")
              + (mi[ok] * 6e10).astype("timedelta64[ns]") + (s[ok] * 1e9).astype("timedelta64[ns]"))
        ns[~valid] = np.datetime64("NaT")
        out[ok] = ns
    return out


def iter_decoded(raw: Sequence[RawMessage]) -> Iterator[tuple[RawMessage, Message | MessageError]]:
    """Decode messages one by one; a failure is yielded, not raised."""
    for m in raw:
        try:
            msg = Message(m.data)
        except MessageError as e:
            yield m, e
            continue
        try:
            yield m, msg
        finally:
            msg.close()
