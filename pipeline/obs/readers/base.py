"""The observation-reader interface and the helpers every BUFR reader shares.

A reader turns one input file into rows of the observation table plus a list
of quarantined pieces (a file or a message, each with its reason). BUFR
readers implement :meth:`BufrReader.decode_message` for one decoded
message; splitting, error isolation and batching are shared here.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pyarrow as pa

from fuxiops.pipeline.obs import fixed_layout
from fuxiops.pipeline.obs.bufr import Message, MessageError, RawMessage, SplitProblem, split_messages
from fuxiops.pipeline.obs.schema import RowBuilder, concat_tables, empty_table


#: WMO BUFR Table A categories that clearly belong to one kind of report.
OTHER_CATEGORIES: dict[int, str] = {0: "surface data - land", 1: "surface data - sea",
                                    2: "vertical soundings (other than satellite)", 3: "vertical soundings (satellite)",
                                    4: "single level upper-air data (other than satellite)",
                                    7: "synoptic features", 21: "radiances (satellite measured)"}


#: (reader, template) -> (exception, reason) for templates without delayed replication that hold none of a
#: reader's elements: later messages of the template get the verdict without being unpacked.
_TEMPLATE_VERDICTS: dict[tuple[str, tuple[int, ...]], tuple[type[MessageError], str]] = {}


class WrongReportType(MessageError):
    """The message decodes but holds none of the elements this reader needs."""


class SkipMessage(MessageError):
    """A message of the right kind with nothing to assimilate (counted, not quarantined)."""


@dataclass
class Quarantine:
    """A file or message set aside, with its reason (written to the QC report)."""

    source_file: str
    message_index: int | None
    reason: str
    reader: str

    def to_dict(self) -> dict[str, Any]:
        return {"source_file": self.source_file, "message_index": self.message_index, "reason": self.reason,
                "reader": self.reader}


@dataclass
class ReadResult:
    """Rows read from one file (or one batch of its messages) and what was quarantined."""

    table: pa.Table = field(default_factory=empty_table)
    quarantined: list[Quarantine] = field(default_factory=list)
    n_messages: int = 0
    n_subsets: int = 0
    source_file: str = ""
    reader: str = ""
    #: Messages skipped on purpose, by reason (e.g. extremes-only SYNOP messages).
    skipped: dict[str, int] = field(default_factory=dict)
    #: Harmless oddities (trailing bytes after the last message ...).
    notes: list[str] = field(default_factory=list)
    #: CPU seconds spent reading (summed over workers), for throughput accounting.
    cpu_s: float = 0.0

    @property
    def failed(self) -> bool:
        """Nothing usable came out of this input."""
        return self.table.num_rows == 0 and bool(self.quarantined)

    @staticmethod
    def merge(parts: Sequence["ReadResult"]) -> "ReadResult":
        if not parts:
            return ReadResult()
        skipped: dict[str, int] = {}
        for p in parts:
            for k, v in p.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
        return ReadResult(concat_tables(p.table for p in parts), [q for p in parts for q in p.quarantined],
                          sum(p.n_messages for p in parts), sum(p.n_subsets for p in parts),
                          parts[0].source_file, parts[0].reader, skipped, [n for p in parts for n in p.notes],
                          sum(p.cpu_s for p in parts))


class Reader(ABC):
    """Reads one kind of observation file into observation-table rows."""

    name: ClassVar[str] = ""

    @abstractmethod
    def read(self, path: str | os.PathLike[str]) -> ReadResult:
        """Read a whole file; never raises for bad content (quarantines it instead)."""


class BufrReader(Reader):
    """Shared driver for ecCodes-based readers: split, decode, isolate failures."""

    #: Elements of which at least one must be present for a message to be of this type.
    signature: ClassVar[tuple[str, ...]] = ()
    #: BUFR data categories (WMO Table A) this reader expects.
    categories: ClassVar[tuple[int, ...]] = ()
    #: Whether same-template single-subset messages may be decoded together (pipeline.obs.fixed_layout).
    #: A reader opting in must (1) take message/subset indices from :func:`message_indices` /
    #: :func:`subset_indices`, (2) commit no row before all its reads of a message succeeded and (3) give the
    #: same rows in the same order whether its messages come one by one or as one batch.
    fast_path: ClassVar[bool] = False
    #: Whether templates with delayed replication may come as one batch too (``values`` per subset then
    #: have different lengths); needs ``fast_path``.
    fast_path_replication: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options = options

    def report_type_of(self, path: str) -> str:
        return self.name

    def read(self, path: str | os.PathLike[str]) -> ReadResult:
        path = str(path)
        try:
            raw, problems = split_messages(path)
        except OSError as e:
            return ReadResult(quarantined=[Quarantine(path, None, f"cannot read file: {e}", self.name)],
                              source_file=path, reader=self.name)
        res = self.read_messages(path, raw)
        return attach_split_problems(res, path, raw, problems, self.name)

    def read_messages(self, path: str, raw: Sequence[RawMessage]) -> ReadResult:
        """Decode a batch of messages of ``path`` (a unit of parallel work)."""
        builder = self.builder(path)
        quarantined: list[Quarantine] = []
        skipped: dict[str, int] = {}
        n_sub = 0
        self.begin_batch()
        todo: Sequence[RawMessage] = raw
        if self.fast_path and fixed_layout.enabled(self.options):
            # Same-template single-subset messages are decoded together (fixed_layout); what it cannot
            # take, or gives back, goes through ecCodes one message at a time below.
            groups, rest = fixed_layout.plan(raw)
            for g in groups:
                back = self._read_group(path, g, builder, quarantined, skipped)
                n_sub += len(g.messages) - len(back)
                fixed_layout.STATS["fast_messages"] += len(g.messages) - len(back)
                fixed_layout.STATS["returned_messages"] += len(back)
                rest += back
            todo = sorted(rest, key=lambda m: m.index) if groups else rest
        for m in todo:
            try:
                with Message(m.data, unpack=False) as msg:
                    n_sub += msg.n_subsets
                    known = _TEMPLATE_VERDICTS.get((self.name, msg.template))
                    if known is not None:
                        # This template was already judged to hold nothing for this reader: same verdict,
                        # without paying for unpacking (half of a real SYNOP feed are extremes-only messages).
                        raise known[0](known[1])
                    self._check_category(msg)
                    msg.unpack()
                    self._check_signature(msg)
                    self.decode_message(msg, m.index, builder)
            except SkipMessage as e:
                skipped[str(e)] = skipped.get(str(e), 0) + 1
            except MessageError as e:
                quarantined.append(Quarantine(path, m.index, str(e), self.name))
            except Exception as e:  # a decoder bug must not lose the rest of the file
                quarantined.append(Quarantine(path, m.index, f"decoding failed ({type(e).__name__}: {e})",
                                              self.name))
        self.end_batch(builder)
        # Groups are handled before single messages: keep the reasons in file order, as ecCodes alone gives.
        quarantined.sort(key=lambda q: (q.message_index is not None, q.message_index or 0))
        return ReadResult(builder.table(), quarantined, len(raw), n_sub, path, self.name, skipped)

    def _read_group(self, path: str, group: "fixed_layout.Group", builder: RowBuilder, quarantined: list[Quarantine],
                    skipped: dict[str, int]) -> list[RawMessage]:
        """Decode one fixed-layout group as a single :class:`FixedBatch`; returns the messages left to ecCodes.

        Verdicts (category, signature, known template) are per template, so they are given to every
        message of the group exactly as the ecCodes path would give them one by one.
        """
        msgs = group.messages

        def verdict(exc: MessageError, to: Sequence[RawMessage]) -> None:
            if isinstance(exc, SkipMessage):
                skipped[str(exc)] = skipped.get(str(exc), 0) + len(to)
            else:
                quarantined.extend(Quarantine(path, m.index, str(exc), self.name) for m in to)

        known = _TEMPLATE_VERDICTS.get((self.name, group.header.template))
        if known is not None:
            verdict(known[0](known[1]), msgs)
            return []
        try:
            self._check_category(_Category(group.header.data_category))  # type: ignore[arg-type]
        except WrongReportType as e:
            verdict(e, msgs)
            return []
        layout: fixed_layout.Layout | str = "no message"
        for k in range(min(3, len(msgs))):  # a corrupt first message must not cost the whole group
            layout = fixed_layout.layout_for(group.headers[k], msgs[k])
            if not isinstance(layout, str) or not layout.startswith(fixed_layout.LEARN_AGAIN):
                break
        if isinstance(layout, str) or self.name in layout.refused:
            return list(msgs)
        if isinstance(layout, fixed_layout.VarLayout) and not self.fast_path_replication:
            return list(msgs)
        # A message whose data section does not fit the layout (another length, other replication
        # structure) is not of this layout: ecCodes reads it.
        made, back = fixed_layout.make_batch(layout, msgs, group.headers)
        if made is None:
            return back
        batch = made
        try:
            try:
                self._check_signature(batch)  # type: ignore[arg-type]
            except fixed_layout.FastPathUnavailable:
                raise
            except MessageError as e:
                verdict(e, batch.messages)
                return back
            while True:
                # Readers taking the fast path commit nothing before all their reads succeeded, so an
                # exception here leaves no partial rows behind.
                try:
                    self.decode_message(batch, int(batch.message_indices[0]), builder)  # type: ignore[arg-type]
                    break
                except fixed_layout.MessagesRejected as e:
                    # Quarantine those messages (as ecCodes' path would, one by one) and decode the others.
                    bad = set(e.indices)
                    quarantined.extend(Quarantine(path, i, e.reason, self.name) for i in e.indices)
                    keep = [k for k, m in enumerate(batch.messages) if m.index not in bad]
                    if len(keep) == len(batch.messages):
                        raise RuntimeError("reader rejected messages that are not in the batch") from None
                    batch.close()
                    if not keep:
                        return back
                    again, lost = fixed_layout.make_batch(layout, [batch.messages[k] for k in keep],
                                                          [batch.headers[k] for k in keep])
                    if again is None or lost:
                        raise RuntimeError("kept messages no longer fit their layout")
                    batch = again
        except (fixed_layout.LayoutMismatch, fixed_layout.UnusualData):
            # A mismatch has rejected the template for every reader (and logged it); unusual data concerns
            # only these messages.
            return back + batch.messages
        except fixed_layout.FastPathUnavailable as e:
            # This reader asks for something the layout cannot give (the same for every batch): stop trying.
            layout.refused[self.name] = str(e)
            return back + batch.messages
        except Exception:
            # Any other failure is judged per message by the ecCodes path (same reasons as without us).
            return back + batch.messages
        finally:
            batch.close()
        return back

    def begin_batch(self) -> None:
        """Called before a batch of messages (readers that accumulate across messages reset here)."""

    def end_batch(self, out: RowBuilder) -> None:
        """Called after a batch: readers that accumulate across messages emit their rows here."""

    def builder(self, path: str) -> RowBuilder:
        return RowBuilder(self.report_type_of(path), path, self.instrument_of(path))

    def instrument_of(self, path: str) -> str:
        return ""

    def _check_category(self, msg: Message) -> None:
        if self.categories and msg.data_category in OTHER_CATEGORIES and msg.data_category not in self.categories:
            raise WrongReportType(f"wrong report type for reader {self.name!r}: BUFR data category "
                                  f"{msg.data_category} ({OTHER_CATEGORIES[msg.data_category]}), expected "
                                  f"{', '.join(str(c) for c in self.categories)}")

    def _check_signature(self, msg: Message) -> None:
        if self.signature and not any(msg.has(k) for k in self.signature):
            if msg.data_category in self.categories:
                # Right kind of report, but nothing this reader assimilates (e.g. SYNOP extremes-only
                # messages): counted in the report, not quarantined.
                exc: type[MessageError] = SkipMessage
                reason = f"{self.name} message without assimilated elements ({', '.join(self.signature[:4])}...)"
            else:
                exc = WrongReportType
                reason = (f"wrong report type for reader {self.name!r}: none of {', '.join(self.signature)} "
                          f"in the message (data category {msg.data_category})")
            if msg.fixed_structure:
                _TEMPLATE_VERDICTS[(self.name, msg.template)] = (exc, reason)
            raise exc(reason)

    @abstractmethod
    def decode_message(self, msg: Message, index: int, out: RowBuilder) -> None:
        """Append the rows of one decoded message to ``out``."""


# -- helpers shared by readers ------------------------------------------------

def attach_split_problems(res: ReadResult, path: str, raw: Sequence[RawMessage], problems: Sequence[SplitProblem],
                          reader: str) -> ReadResult:
    """Add file-level problems found while splitting: trailing padding is a note, the rest quarantined."""
    for p in problems:
        if p.trailing:
            res.notes.append(f"{os.path.basename(path)}: {p.reason}")
        else:
            res.quarantined.insert(0, Quarantine(path, p.index if raw or p.index else None, p.reason, reader))
    return res


def gathered_in_file_order(acc: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Columns gathered over a batch (with ``msg``/``sub`` indices), concatenated and in file order.

    Fast-path batches arrive grouped by template: rows go out in file order whichever path read them.
    """
    c = {k: np.concatenate(v) for k, v in acc.items()}
    order = np.lexsort((c["sub"], c["msg"]))
    if (np.diff(order) != 1).any():
        c = {k: v[order] for k, v in c.items()}
    return c


@dataclass(frozen=True)
class _Category:
    """Just the data category, for the category check of a group before any decoding."""

    data_category: int


def message_indices(msg: Message, index: int) -> np.ndarray:
    """Source message index of each subset (a fast-path batch spans many messages)."""
    idx = getattr(msg, "message_indices", None)
    return np.full(msg.n_subsets, index, dtype=np.int32) if idx is None else idx


def subset_indices(msg: Message) -> np.ndarray:
    """Index of each subset inside its own message."""
    idx = getattr(msg, "subset_indices", None)
    return np.arange(msg.n_subsets, dtype=np.int32) if idx is None else idx


def reject_messages(msg: Message, index: int, bad: np.ndarray, reason: str) -> None:
    """Raise for the messages whose subsets are all ``bad`` (a whole message, or some of a fast-path batch)."""
    if not bad.any():
        return
    midx = message_indices(msg, index)
    if not hasattr(msg, "message_indices"):
        if bad.all():
            raise MessageError(reason)
        return
    rejected = set(midx[bad].tolist()) - set(midx[~bad].tolist())
    if rejected:
        raise fixed_layout.MessagesRejected(sorted(rejected), reason)


def station_ids(msg: Message) -> np.ndarray:
    """WMO block/station number ("01001"), else a name/callsign/registration, per subset."""
    block = msg.first("blockNumber")
    number = msg.first("stationNumber")
    n = msg.n_subsets
    out = np.full(n, "", dtype=object)
    if block is not None and number is not None:
        ok = np.isfinite(block) & np.isfinite(number)
        out[ok] = [f"{int(b):02d}{int(s):03d}" for b, s in zip(block[ok], number[ok])]
    for key in ("shipOrMobileLandStationIdentifier", "stationOrSiteName", "aircraftRegistrationNumberOrOtherIdentification",
                "aircraftFlightNumber", "stormIdentifier", "stationIdentifier", "longStationName"):
        need = out == ""
        if not need.any():
            break
        v = msg.first(key, strings=True)
        if v is not None:
            out[need] = v[need]
    for key in ("wigosLocalIdentifierCharacter", "satelliteIdentifier"):
        need = out == ""
        if not need.any():
            break
        v = msg.first(key, strings=key != "satelliteIdentifier")
        if v is not None:
            out[need] = [str(x) if not isinstance(x, float) else (f"sat{int(x)}" if np.isfinite(x) else "")
                         for x in v[need]]
    return out


def lat_lon(msg: Message) -> tuple[np.ndarray, np.ndarray]:
    """First latitude/longitude per subset (NaN where missing)."""
    n = msg.n_subsets
    lat = msg.first("latitude")
    lon = msg.first("longitude")
    return (np.full(n, np.nan) if lat is None else lat), (np.full(n, np.nan) if lon is None else lon)


def wind_to_uv(direction: np.ndarray, speed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meteorological wind (direction the wind blows FROM, degrees) to u (east) and v (north)."""
    rad = np.deg2rad(direction)
    return -speed * np.sin(rad), -speed * np.cos(rad)


def flight_level_to_pressure(h: np.ndarray) -> np.ndarray:
    """ICAO standard atmosphere: pressure (Pa) at a pressure altitude / flight level (m)."""
    h = np.asarray(h, dtype=np.float64)
    trop = 101325.0 * np.power(np.clip(1.0 - 2.25577e-5 * h, 1e-6, None), 5.25588)
    strat = 22632.06 * np.exp(-1.576883e-4 * (h - 11000.0))
    return np.where(h <= 11000.0, trop, strat)


def file_stem_type(path: str | os.PathLike[str]) -> str:
    """The leading word of a file name: ``synop_2023010100.bufr`` -> ``synop``."""
    stem = Path(path).name.split(".")[0].lower()
    return stem.split("_")[0].split("-")[0]
