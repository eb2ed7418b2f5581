"""Fixed-layout fast path: decode many single-subset BUFR messages of one template at once, with numpy.

A SYNOP feed is thousands of one-subset uncompressed messages built from a
handful of templates. When a template has no delayed replication and no
operator that changes data widths, every element of every message of that
template sits at the same bit offset of section 4 with the same width,
scale and reference. ecCodes decodes ONE message of the template to learn
that layout; all the others are then read by gathering bits for the whole
group in numpy and presented to the readers as one :class:`FixedBatch`
(``n_subsets`` = number of messages) with the :class:`~.bufr.Message` API.

Safety: the template key comes from the bytes of sections 1 and 3; each
message's section-4 length must equal the learned one (else that message
goes to ecCodes); the values of every key a reader asks are compared,
bit for bit, with ecCodes' for the group's first message and every
:data:`CHECK_EVERY`-th message of the file; on any difference
:class:`LayoutMismatch` is raised before the value reaches the reader, the
template is routed to ecCodes for the rest of the process and a warning
names it. ``FUXIOPS_BUFR_FAST=0`` (or reader option ``fast_path: false``)
switches the fast path off.

Readers opt in with ``fast_path = True`` (SYNOP, AMDAR, TEMP): they take
message and subset indices per row from the batch, commit no row before all
their reads succeeded, emit rows in the same order for both paths, and reject
single messages of a batch with :class:`MessagesRejected`.

Templates with delayed replication (TEMP profiles) are learned as a node
structure instead (:class:`VarLayout`: fixed elements, replicated flat blocks,
data-present bitmaps, confidence and substituted values): each message's
replication counts are read from its own bits, the whole section 4 is walked
and must end exactly where its length says, and a :class:`VarBatch` gives
per subset as many values as ecCodes would. Only readers that also set
``fast_path_replication = True`` (TEMP) get such batches. Nested replication,
other operators, zero/missing counts, compressed and multi-subset messages
keep the per-message ecCodes path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fuxiops.logs import get_logger
from fuxiops.pipeline.obs.bufr import Message, MessageError, RawMessage

log = get_logger("fuxiops.obs.fixed_layout")

#: Environment switch: "0"/"false"/"no"/"off" forces every message through ecCodes.
FAST_ENV = "FUXIOPS_BUFR_FAST"
#: Besides each group's first message, every message whose file index is a multiple of this is
#: cross-checked against ecCodes.
CHECK_EVERY = 1000
#: Groups smaller than this are not worth the layout bookkeeping.
MIN_GROUP = 2
#: Operators that take no bits of their own and change no width/scale/reference of what follows
#: (quality information, substituted/first-order statistics and replaced values "follow" markers,
#: cancel back-reference). Everything else (2 01-2 08, 2 21, markers 2 YY 255 ...) is not eligible.
ALLOWED_OPERATORS = frozenset({222000, 223000, 224000, 225000, 232000, 235000})
#: Replication-factor descriptors: the element list then varies between messages.
REPLICATION_FACTORS = frozenset({31000, 31001, 31002, 31011, 31012})
#: Elements ecCodes never reads as missing even when all their bits are one (data-present indicator).
NEVER_MISSING = frozenset({31031, 999999})
NUMERIC_TYPES = frozenset({"long", "double", "table", "flag"})
#: Widest numeric element read through one 64-bit window (offset within a byte is at most 7 bits).
MAX_NUMERIC_WIDTH = 56


class FastPathUnavailable(MessageError):
    """The fast path cannot answer this request exactly: the group is decoded by ecCodes instead."""


class LayoutMismatch(FastPathUnavailable):
    """A value of the fast path differs from ecCodes': the template is routed to ecCodes from now on."""


class MessagesRejected(MessageError):
    """A reader rejects some messages of a fast-path batch (the reason each would get on its own)."""

    def __init__(self, indices: Sequence[int], reason: str) -> None:
        super().__init__(reason)
        self.indices = sorted(set(int(i) for i in indices))
        self.reason = reason


class NotATeacher(MessageError):
    """This message cannot teach its template's layout (another message of the template may)."""


class UnusualData(FastPathUnavailable):
    """These messages hold values the fast path does not reproduce (e.g. control bytes in text): ecCodes reads them."""


def enabled(options: dict[str, Any] | None = None) -> bool:
    """Whether the fast path may be used (env var and reader option ``fast_path``)."""
    if str(os.environ.get(FAST_ENV, "1")).strip().lower() in ("0", "false", "no", "off"):
        return False
    if options and "fast_path" in options:
        return bool(options["fast_path"])
    return True


# -- sections 0-3 from the bytes ----------------------------------------------

@dataclass(frozen=True)
class Header:
    """What sections 0-4 of one message say about its template and where its data are."""

    #: Everything that fixes the data layout: edition, master table and versions, centre (local tables),
    #: data category, section-3 flags, number of subsets, descriptor bytes.
    key: tuple[Any, ...]
    #: Same value as :attr:`Message.template` for this message.
    template: tuple[int, ...]
    edition: int
    data_category: int
    #: Byte offset of the first data bit (section 4 octet 5) and number of data bytes.
    data_start: int
    data_len: int


_DESCRIPTORS: dict[bytes, tuple[int, ...]] = {}


def _descriptors(raw: bytes) -> tuple[int, ...]:
    d = _DESCRIPTORS.get(raw)
    if d is None:
        out = []
        for i in range(0, len(raw) - 1, 2):
            v = (raw[i] << 8) | raw[i + 1]
            out.append((v >> 14) * 100000 + ((v >> 8) & 63) * 1000 + (v & 255))
        d = _DESCRIPTORS[raw] = tuple(out)
    return d


def parse_header(data: bytes) -> Header | None:
    """Template key and data location of a single-subset uncompressed message, else None.

    None means "not a fast-path candidate" (edition 2, several subsets,
    compressed, inconsistent section lengths ...): the message simply goes
    through ecCodes, which reports any real problem.
    """
    n = len(data)
    if n < 30:
        return None
    edition = data[7]
    if edition not in (3, 4):
        return None
    p = 8
    s1 = int.from_bytes(data[p:p + 3], "big")
    if edition == 3:
        if s1 < 17 or p + s1 > n:
            return None
        master, sub, centre, flag, cat, mver, lver = (data[p + 3], data[p + 4], data[p + 5], data[p + 7],
                                                     data[p + 8], data[p + 10], data[p + 11])
    else:
        if s1 < 22 or p + s1 > n:
            return None
        master, centre, sub = data[p + 3], int.from_bytes(data[p + 4:p + 6], "big"), \
            int.from_bytes(data[p + 6:p + 8], "big")
        flag, cat, mver, lver = data[p + 9], data[p + 10], data[p + 13], data[p + 14]
    p += s1
    if flag & 0x80:  # optional section 2
        s2 = int.from_bytes(data[p:p + 3], "big")
        if s2 < 4:
            return None
        p += s2
    s3 = int.from_bytes(data[p:p + 3], "big")
    if s3 < 9 or p + s3 > n:
        return None
    n_subsets = int.from_bytes(data[p + 4:p + 6], "big")
    flags3 = data[p + 6]
    if n_subsets != 1 or flags3 & 0x40:  # one subset, uncompressed
        return None
    desc_bytes = bytes(data[p + 7:p + s3])
    p += s3
    s4 = int.from_bytes(data[p:p + 3], "big")
    if s4 < 5 or p + s4 + 4 != n:  # section 5 ('7777') must follow section 4 directly
        return None
    descriptors = _descriptors(desc_bytes)
    key = (edition, master, centre, sub, mver, lver, cat, flags3 & 0xC0, n_subsets, desc_bytes)
    return Header(key, (True, False, *descriptors), edition, cat, p + 4, s4 - 4)


# -- the learned layout ---------------------------------------------------------

def _power10(scale: int) -> float:
    """10**(-scale) computed as ecCodes does (repeated division/multiplication), so values agree bit for bit."""
    s = -int(scale)
    f = 1.0
    while s < 0:
        f /= 10
        s += 1
    while s > 0:
        f *= 10
        s -= 1
    return f


@dataclass
class Layout:
    """Bit offset, width, scale and reference of every element of one fixed template."""

    key: tuple[Any, ...]
    template: tuple[int, ...]
    descriptors: np.ndarray
    names: list[str]
    types: list[str]
    widths: np.ndarray
    scales: np.ndarray
    references: np.ndarray
    offsets: np.ndarray
    data_len: int
    #: name -> element positions (rank order) of the elements the fast path can read.
    positions: dict[str, list[int]]
    #: names present in the template that the fast path cannot read (zero width, operators...).
    unreadable: frozenset[str]
    #: A message of this template, to ask ecCodes about keys that are not data elements.
    sample: bytes
    _defined: dict[str, bool] = field(default_factory=dict)
    #: reader name -> why the fast path could not serve it (that reader then uses ecCodes for this template).
    refused: dict[str, str] = field(default_factory=dict)

    def label(self) -> str:
        ed, master, centre, sub, mver, lver, cat = self.key[:7]
        return (f"edition {ed}, centre {centre}/{sub}, master table {master} v{mver}, local v{lver}, category {cat}, "
                f"descriptors {' '.join(f'{d:06d}' for d in self.template[2:])}")

    def defined_elsewhere(self, key: str) -> bool:
        """Whether ecCodes knows ``key`` outside the readable data elements (then we cannot answer it)."""
        d = self._defined.get(key)
        if d is None:
            with Message(self.sample) as m:
                d = self._defined[key] = bool(m._ec.codes_is_defined(m.h, key))
        return d


#: Start of the reasons that concern one message only: the next message of the template may teach the layout.
LEARN_AGAIN = "cannot learn from this message"
#: Per process: template key -> layout, or the reason the template is not eligible.
_LAYOUTS: dict[tuple[Any, ...], Layout | str] = {}
#: Per process counters: messages read by the fast path, and messages of fast groups given back to ecCodes.
STATS: dict[str, int] = {"fast_messages": 0, "returned_messages": 0}


def reset() -> None:
    """Forget learned layouts, rejections and counters (tests, long-lived workers after a table update)."""
    _LAYOUTS.clear()
    for k in STATS:
        STATS[k] = 0


def layout_for(header: Header, raw: RawMessage) -> Layout | str:
    """The learned layout of ``header``'s template (learned from ``raw`` if new), or why there is none."""
    lay = _LAYOUTS.get(header.key)
    if lay is None:
        try:
            lay = learn(header, raw)
        except NotATeacher as e:
            return f"{LEARN_AGAIN}: {e}"
        except MessageError as e:
            # This one message is bad (ecCodes will quarantine it); another may teach the layout.
            return f"{LEARN_AGAIN}: ecCodes cannot decode message {raw.index} ({e})"
        except Exception as e:  # any surprise here only costs speed
            lay = f"layout not learned ({type(e).__name__}: {e})"
        _LAYOUTS[header.key] = lay
        if isinstance(lay, str):
            log.debug("BUFR template not on the fast path (%s): %s", header.template, lay)
    return lay


def reject(layout: Layout, reason: str) -> None:
    """Route a template to ecCodes for the rest of the process."""
    if isinstance(_LAYOUTS.get(layout.key), Layout):
        log.warning("BUFR fast path disabled for template (%s): %s", layout.label(), reason)
    _LAYOUTS[layout.key] = f"rejected: {reason}"


def learn(header: Header, raw: RawMessage) -> Layout | str:
    """Decode one message with ecCodes and derive the bit layout of its template (or say why not)."""
    with Message(raw.data) as m:
        ec, h = m._ec, m.h
        if m.template != header.template or m.n_subsets != 1 or m.compressed:
            return "section 3 read from the bytes differs from ecCodes' reading"
        desc = np.asarray(ec.codes_get_long_array(h, "expandedDescriptors"), dtype=np.int64)
        names = [str(x) for x in ec.codes_get_string_array(h, "expandedAbbreviations")]
        types = [str(x) for x in ec.codes_get_string_array(h, "expandedTypes")]
        widths = np.asarray(ec.codes_get_long_array(h, "expandedOriginalWidths"), dtype=np.int64)
        scales = np.asarray(ec.codes_get_long_array(h, "expandedOriginalScales"), dtype=np.int64)
        refs = np.asarray(ec.codes_get_long_array(h, "expandedOriginalReferences"), dtype=np.int64)
        # How many values ecCodes gives for each element name: a name that is also a header key (e.g.
        # 'centre') resolves to something else than the data elements, so the fast path must not answer it.
        sizes: dict[str, int] = {}
        for name in set(names):
            try:
                sizes[name] = int(ec.codes_get_size(h, name))
            except Exception:
                sizes[name] = -1
    n = desc.size
    if not (len(names) == len(types) == widths.size == scales.size == refs.size == n) or n == 0:
        return "expanded descriptor arrays of different lengths"
    if np.isin(desc, list(REPLICATION_FACTORS)).any():
        return _learn_replicated(header, raw, desc, names, types, widths, scales, refs, sizes)
    f = desc // 100000
    if (f == 1).any() or (f == 3).any():
        return "unexpanded sequence or replication in the expanded descriptors"
    ops = desc[f == 2]
    bad_ops = sorted({int(o) for o in ops if int(o) not in ALLOWED_OPERATORS})
    if bad_ops:
        return f"operators {bad_ops} change the data layout"
    if (widths[f == 2] != 0).any():
        return "an operator takes data bits"
    total = int(widths.sum())
    if not (0 <= header.data_len * 8 - total < 16):
        return f"layout has {total} bits but section 4 holds {header.data_len * 8}"
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
    positions: dict[str, list[int]] = {}
    unreadable: set[str] = set()
    for i, (name, typ) in enumerate(zip(names, types)):
        w = int(widths[i])
        # One-bit elements are left to ecCodes: whether "all bits one" means missing for them has varied
        # between ecCodes versions (data-present bitmaps, 0 31 031), and no reader needs them.
        ok = f[i] == 0 and w > 1 and ((typ in NUMERIC_TYPES and w <= MAX_NUMERIC_WIDTH)
                                      or (typ == "string" and w % 8 == 0))
        if ok:
            positions.setdefault(name, []).append(i)
        else:
            unreadable.add(name)
    unreadable |= {name for name, pos in positions.items() if sizes.get(name) != len(pos)}
    # A name is either fully readable or not at all (ranks must stay aligned with ecCodes').
    for name in unreadable:
        positions.pop(name, None)
    return Layout(header.key, header.template, desc, names, types, widths, scales, refs, offsets, header.data_len,
                  positions, frozenset(unreadable), raw.data)


# -- grouping a batch -----------------------------------------------------------

@dataclass
class Group:
    """Messages of one batch that share a fixed template, in file order."""

    header: Header
    messages: list[RawMessage] = field(default_factory=list)
    headers: list[Header] = field(default_factory=list)


def plan(raw: Sequence[RawMessage]) -> tuple[list[Group], list[RawMessage]]:
    """Split a batch into fast-path groups and the messages left to ecCodes (both in file order)."""
    groups: dict[tuple[Any, ...], Group] = {}
    rest: list[RawMessage] = []
    heads: list[tuple[RawMessage, Header | None]] = []
    for m in raw:
        try:
            hd = parse_header(m.data)
        except Exception:  # odd bytes: ecCodes will say what is wrong
            hd = None
        heads.append((m, hd))
        if hd is not None:
            g = groups.get(hd.key)
            if g is None:
                g = groups[hd.key] = Group(hd)
            g.messages.append(m)
            g.headers.append(hd)
    keep = {k for k, g in groups.items() if len(g.messages) >= MIN_GROUP}
    for m, hd in heads:
        if hd is None or hd.key not in keep:
            rest.append(m)
    return [groups[k] for k in groups if k in keep], rest


# -- the virtual message --------------------------------------------------------

class FixedBatch:
    """Many single-subset messages of one fixed layout seen as ONE message with one subset per message.

    Implements the part of the :class:`~.bufr.Message` API readers use;
    :attr:`message_indices` and :attr:`subset_indices` give each subset's
    source message and subset.
    """

    compressed = False
    fixed_structure = True
    unpacked = True

    def __init__(self, layout: Layout, messages: Sequence[RawMessage], headers: Sequence[Header]) -> None:
        self._group(layout, messages, headers)
        L = layout.data_len
        buf = np.frombuffer(b"".join(m.data[h.data_start:h.data_start + L] for m, h in zip(messages, headers)),
                            dtype=np.uint8).reshape(self.n_subsets, L)
        # 8 zero bytes of padding: every element is read through a whole 64-bit window.
        self._bytes = np.zeros((self.n_subsets, L + 8), dtype=np.uint8)
        self._bytes[:, :L] = buf

    def _group(self, layout: Layout, messages: Sequence[RawMessage], headers: Sequence[Header]) -> None:
        """What every batch knows of its messages, and its cross-check bookkeeping."""
        self.layout = layout
        self.messages = list(messages)
        self.headers = list(headers)
        self.n_subsets = len(self.messages)
        self.edition = headers[0].edition
        self.data_category = headers[0].data_category
        self.template = layout.template
        self.message_indices = np.array([m.index for m in self.messages], dtype=np.int32)
        self.subset_indices = np.zeros(self.n_subsets, dtype=np.int32)
        # Rows cross-checked against ecCodes: the first message, and every CHECK_EVERY-th of the file.
        sample = {0} | {i for i, m in enumerate(self.messages) if m.index % CHECK_EVERY == 0}
        self._check_rows = sorted(sample)
        self._reference: dict[int, Message] = {}
        self._columns: dict[tuple[int, bool], np.ndarray] = {}
        self._checked: set[tuple[str, str, bool]] = set()

    def close(self) -> None:
        for m in self._reference.values():
            m.close()
        self._reference = {}

    def __enter__(self) -> "FixedBatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- element columns -----------------------------------------------------
    def _raw(self, i: int) -> np.ndarray:
        lay = self.layout
        off, w = int(lay.offsets[i]), int(lay.widths[i])
        b0, sh = off >> 3, off & 7
        win = np.ascontiguousarray(self._bytes[:, b0:b0 + 8]).view(">u8")[:, 0].astype(np.uint64)
        return (win >> np.uint64(64 - sh - w)) & np.uint64((1 << w) - 1)

    def _numeric(self, i: int) -> np.ndarray:
        lay = self.layout
        w = int(lay.widths[i])
        raw = self._raw(i)
        vals = (raw.astype(np.int64) + np.int64(lay.references[i])).astype(np.float64) * _power10(int(lay.scales[i]))
        if int(lay.descriptors[i]) not in NEVER_MISSING:
            vals[raw == np.uint64((1 << w) - 1)] = np.nan
        return vals

    def _string(self, i: int) -> np.ndarray:
        lay = self.layout
        off, w = int(lay.offsets[i]), int(lay.widths[i])
        nb, b0, sh = w // 8, off >> 3, off & 7
        win = self._bytes[:, b0:b0 + nb + 1].astype(np.uint16)
        chars = (((win[:, :nb] << sh) | (win[:, 1:] >> (8 - sh))) & 0xFF).astype(np.uint8) if sh else \
            self._bytes[:, b0:b0 + nb].copy()
        missing = (chars == 0xFF).all(axis=1)
        body = chars[~missing]
        # ecCodes hands strings over as C strings (cut at the first NUL); other control characters or
        # non-ASCII bytes are not reproduced here: such groups go to ecCodes.
        nul = body == 0
        after_nul = np.cumsum(nul, axis=1) > 0
        if ((body[~after_nul] < 0x20) | (body[~after_nul] > 0x7E)).any():
            raise UnusualData(f"element {lay.names[i]!r} holds bytes the fast path does not decode")
        body[after_nul] = 0
        out = np.full(self.n_subsets, "", dtype=object)
        if body.size:
            text = np.char.strip(np.char.decode(np.ascontiguousarray(body).view(f"S{nb}").ravel(), "ascii"))
            out[~missing] = text.astype(object)
        return out

    def _column(self, i: int, strings: bool) -> np.ndarray:
        ck = (i, strings)
        col = self._columns.get(ck)
        if col is None:
            typ = self.layout.types[i]
            if typ == "string":
                col = self._string(i)
                if not strings:
                    # ecCodes cannot give a string element as a number: the ecCodes path reads None here.
                    raise FastPathUnavailable(f"string element {self.layout.names[i]!r} asked as a number")
            else:
                col = self._numeric(i)
                if strings:
                    raise FastPathUnavailable(f"numeric element {self.layout.names[i]!r} asked as a string")
            self._columns[ck] = col
        return col

    # -- Message API ---------------------------------------------------------
    def has(self, key: str) -> bool:
        lay = self.layout
        if key in lay.positions:
            return True
        if key in lay.unreadable or lay.defined_elsewhere(key):
            raise FastPathUnavailable(f"key {key!r} is not a plain data element of the template")
        return False

    def first(self, key: str, *, strings: bool = False) -> np.ndarray | None:
        if not self.has(key):
            return None
        out = self._column(self.layout.positions[key][0], strings)
        self._verify("first", key, strings, [out[r] for r in self._check_rows])
        return out

    def values(self, key: str, *, strings: bool = False) -> list[np.ndarray] | None:
        if not self.has(key):
            return None
        cols = [self._column(i, strings) for i in self.layout.positions[key]]
        mat = np.stack(cols, axis=1)  # (message, rank)
        self._verify("values", key, strings, [mat[r] for r in self._check_rows])
        return list(mat)

    first_of = Message.first_of
    times = Message.times

    def header(self, key: str, default: object = None) -> object:
        raise FastPathUnavailable(f"header key {key!r} differs between messages")

    # -- cross-check ------------------------------------------------------------
    def _verify(self, how: str, key: str, strings: bool, got: list[Any]) -> None:
        """Compare the sampled rows with ecCodes' answer; a difference disables the template."""
        ck = (how, key, strings)
        if ck in self._checked:
            return
        for r, mine in zip(self._check_rows, got):
            ref_msg = self._reference.get(r)
            if ref_msg is None:
                ref_msg = self._reference[r] = Message(self.messages[r].data)
            ref = getattr(ref_msg, how)(key, strings=strings)
            ref = None if ref is None else (ref[0] if how == "values" else ref)
            problem = _difference(mine, ref, strings, many=how == "values")
            if problem:
                reason = (f"{how}({key!r}) of message {self.messages[r].index} differs from ecCodes: {problem}")
                reject(self.layout, reason)
                raise LayoutMismatch(reason)
        self._checked.add(ck)


def _difference(mine: Any, ref: Any, strings: bool, many: bool) -> str:
    """'' when the fast value equals ecCodes' exactly (NaN equal to NaN), else a description."""
    if ref is None:
        return "ecCodes has no such element"
    a = np.atleast_1d(np.asarray(mine, dtype=object if strings else np.float64))
    b = np.atleast_1d(np.asarray(ref, dtype=object if strings else np.float64))
    if not many:
        b = b[:1]
    if a.shape != b.shape:
        return f"{a.size} values against {b.size}"
    if strings:
        bad = [k for k in range(a.size) if str(a[k]) != str(b[k])]
    else:
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        bad = np.flatnonzero(~same).tolist()
    if bad:
        k = bad[0]
        return f"{a[k]!r} != {b[k]!r} (rank {k + 1})"
    return ""


# -- delayed replication (TEMP profiles) ------------------------------------------
#
# ecCodes' expanded descriptors of a template with delayed replication list each replicated block ONCE:
# ``1XY000``, the factor (0 31 001/0 31 002), then the X descriptors of the block. Messages of one template
# then differ only by their replication counts. The data part (everything before the first quality
# operator 2 22 000/2 23 000) is a list of nodes: single elements and delayed replications of a flat block of
# elements; the quality part after it holds data-present bitmaps (a replicated 0 31 031), plain elements,
# replicated plain blocks (e.g. % confidence) and replicated 2 23 255 substituted-value markers (each as wide
# as the data element its bitmap entry names). Each message's counts are read from its own bits; the offsets
# of every data element then follow, and the total must equal the section-4 length. Readers only get
# elements of the data part.

#: Operators that open the quality part (their bitmaps refer to the data part's elements).
QUALITY_OPERATORS = frozenset({222000, 223000})
DATA_PRESENT = 31031
SUBSTITUTED_MARKER = 223255


@dataclass
class Node:
    """One piece of a replicated template: an element, or a delayed replication of a flat block."""

    kind: str  # "elem", "rep" (data or quality block), "bitmap", "markers"
    #: expanded index of the element / of the factor
    index: int
    width: int = 0
    #: expanded indices of the block elements and their bit offsets inside one repetition
    block: tuple[int, ...] = ()
    block_offsets: tuple[int, ...] = ()
    block_width: int = 0


@dataclass
class VarLayout(Layout):
    """A template with delayed replication: a node structure instead of fixed offsets (``offsets``, ``data_len``
    unused)."""

    data_nodes: list[Node] = field(default_factory=list)
    quality_nodes: list[Node] = field(default_factory=list)
    #: widths of the data-part nodes that are single elements (bitmaps count them as one entry each)
    n_data_elements_fixed: int = 0


def _learn_replicated(header: Header, raw: RawMessage, desc: np.ndarray, names: list[str], types: list[str],
                      widths: np.ndarray, scales: np.ndarray, refs: np.ndarray, sizes: dict[str, int]
                      ) -> VarLayout | str:
    """Node structure of a template with delayed replication, checked on the message it was learned from."""
    n = desc.size
    f = desc // 100000
    data_nodes: list[Node] = []
    quality_nodes: list[Node] = []
    nodes = data_nodes
    i = 0
    while i < n:
        d = int(desc[i])
        if f[i] == 0:
            if d in REPLICATION_FACTORS:
                return "replication factor outside a replication"
            nodes.append(Node("elem", i, int(widths[i])))
            i += 1
        elif f[i] == 1:
            x, y = (d // 1000) % 100, d % 1000
            if y != 0 or i + 1 >= n or int(desc[i + 1]) not in REPLICATION_FACTORS or int(desc[i + 1]) == 31000:
                return f"replication {d:06d} is not a plain delayed replication"
            fac = i + 1
            block = list(range(i + 2, i + 2 + x))
            if not block or block[-1] >= n:
                return "replicated block runs past the descriptors"
            bd = [int(desc[j]) for j in block]
            if nodes is quality_nodes and len(bd) == 1 and bd[0] == DATA_PRESENT:
                nodes.append(Node("bitmap", fac, int(widths[fac])))
            elif nodes is quality_nodes and len(bd) == 1 and bd[0] == SUBSTITUTED_MARKER:
                nodes.append(Node("markers", fac, int(widths[fac])))
            elif all(f[j] == 0 and int(desc[j]) not in REPLICATION_FACTORS for j in block):
                bw = [int(widths[j]) for j in block]
                offs = tuple(int(v) for v in np.concatenate([[0], np.cumsum(bw)[:-1]]))
                nodes.append(Node("rep", fac, int(widths[fac]), tuple(block), offs, int(sum(bw))))
            else:
                return "nested replication or operators inside a replicated block"
            i = block[-1] + 1
        else:
            if d in QUALITY_OPERATORS:
                nodes = quality_nodes
            elif d not in ALLOWED_OPERATORS or nodes is data_nodes:
                return f"operator {d:06d} is not supported with delayed replication"
            i += 1
    if not data_nodes:
        return "no data elements"
    if any(nd.kind != "elem" and not (0 < nd.width <= MAX_NUMERIC_WIDTH) for nd in data_nodes + quality_nodes):
        return "replication factor of unusual width"
    # Names readable by the fast path: elements of the data part (never factors, one-bit flags or operators).
    data_idx = [nd.index for nd in data_nodes if nd.kind == "elem"] + \
        [j for nd in data_nodes if nd.kind == "rep" for j in nd.block]
    positions: dict[str, list[int]] = {}
    unreadable: set[str] = set()
    for j in sorted(data_idx):
        name, typ, w = names[j], types[j], int(widths[j])
        if typ in NUMERIC_TYPES and 1 < w <= MAX_NUMERIC_WIDTH and int(desc[j]) not in NEVER_MISSING:
            positions.setdefault(name, []).append(j)
        else:
            unreadable.add(name)
    readable_set = set(data_idx)
    unreadable |= {names[j] for j in range(n) if j not in readable_set}
    for name in unreadable:
        positions.pop(name, None)
    lay = VarLayout(header.key, header.template, desc, names, types, widths, scales, refs,
                    np.zeros(0, dtype=np.int64), -1, positions, frozenset(unreadable), raw.data,
                    data_nodes=data_nodes, quality_nodes=quality_nodes,
                    n_data_elements_fixed=sum(1 for nd in data_nodes if nd.kind == "elem"))
    walk = walk_message(lay, raw.data, header, strict=False)
    if isinstance(walk, str):
        # This message (e.g. no levels at all) cannot teach the template; another one may.
        raise NotATeacher(f"message {raw.index} does not fit its own structure: {walk}")
    # Occurrences per name in the learned message must be ecCodes' number of values (ranks stay aligned).
    starts, counts = walk
    for name, pos in list(positions.items()):
        occ = 0
        for nd, c in zip(data_nodes, _expand_counts(lay, counts)):
            if nd.kind == "elem":
                occ += int(nd.index in pos)
            else:
                occ += c * sum(1 for j in nd.block if j in pos)
        if sizes.get(name) != occ:
            positions.pop(name)
            lay.unreadable = lay.unreadable | {name}
    return lay


def _expand_counts(lay: VarLayout, counts: tuple[int, ...]) -> list[int]:
    """Count per data node (1 for single elements)."""
    it = iter(counts)
    return [1 if nd.kind == "elem" else next(it) for nd in lay.data_nodes]


def walk_message(lay: VarLayout, data: bytes, header: Header, strict: bool = True
                 ) -> tuple[list[int], tuple[int, ...]] | str:
    """Bit offset of each data node and the data replication counts of one message, or why it does not fit.

    The whole section 4 is walked (quality part included) and must end within the padding of its length
    (``strict``; some real TEMP messages carry tens of extra bytes at the end of section 4, which ecCodes
    ignores: those are left to ecCodes, but may still teach the template's structure).
    """
    body = data[header.data_start:header.data_start + header.data_len]
    nbits = len(body) * 8
    big = int.from_bytes(body, "big")

    def read(pos: int, w: int) -> int:
        if pos + w > nbits:
            raise IndexError
        return (big >> (nbits - pos - w)) & ((1 << w) - 1)

    pos = 0
    starts: list[int] = []
    counts: list[int] = []
    try:
        for nd in lay.data_nodes:
            starts.append(pos)
            if nd.kind == "elem":
                pos += nd.width
            else:
                c = read(pos, nd.width)
                if c == 0 or c == (1 << nd.width) - 1:
                    # No repetition: ecCodes then knows no such element in this message (and all-ones
                    # is not a count): such messages are left to it.
                    return "replication count 0 or missing"
                counts.append(c)
                pos += nd.width + c * nd.block_width
        n_data = lay.n_data_elements_fixed + sum(1 + c * len(nd.block) for nd, c in
                                                 zip([x for x in lay.data_nodes if x.kind == "rep"], counts))
        bitmap: np.ndarray | None = None
        for nd in lay.quality_nodes:
            if nd.kind == "elem":
                pos += nd.width
                continue
            c = read(pos, nd.width)
            pos += nd.width
            if nd.kind == "rep":
                pos += c * nd.block_width
            elif nd.kind == "bitmap":
                if c != n_data:
                    return f"bitmap of {c} entries for {n_data} data elements"
                bits = read(pos, c)
                pos += c
                bitmap = np.frombuffer(format(bits, f"0{c}b").encode(), dtype=np.uint8) == ord("0")
            else:  # substituted values: as wide as the data elements their bitmap marks present
                if bitmap is None or c != int(bitmap.sum()):
                    return "substituted values do not match their bitmap"
                pos += int(_data_widths(lay, counts)[bitmap].sum())
    except IndexError:
        return "structure runs past section 4"
    if strict and not 0 <= nbits - pos < 16:
        return f"structure has {pos} bits but section 4 holds {nbits}"
    return starts, tuple(counts)


def _data_widths(lay: VarLayout, counts: tuple[int, ...]) -> np.ndarray:
    """Width of every data element (factors included) in message order, for the given counts."""
    parts = []
    for nd, c in zip(lay.data_nodes, _expand_counts(lay, counts)):
        if nd.kind == "elem":
            parts.append([nd.width])
        else:
            parts.append([nd.width])
            parts.append(np.tile(lay.widths[list(nd.block)], c))
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


class VarBatch(FixedBatch):
    """Single-subset messages of one template with delayed replication, one subset per message.

    ``values(key)`` gives per subset the occurrences of ``key`` in that message (lengths differ with the
    replication counts), exactly as ecCodes would for the message alone.
    """

    fixed_structure = False

    def __init__(self, layout: VarLayout, messages: Sequence[RawMessage], headers: Sequence[Header],
                 walks: Sequence[tuple[list[int], tuple[int, ...]]]) -> None:
        self._group(layout, messages, headers)
        lens = [h.data_len for h in headers]
        self._base = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) * 8
        self._buf = np.frombuffer(b"".join(m.data[h.data_start:h.data_start + h.data_len]
                                           for m, h in zip(messages, headers)) + b"\0" * 8, dtype=np.uint8)
        self._starts = np.array([w[0] for w in walks], dtype=np.int64).reshape(self.n_subsets, -1)
        self._counts = np.array([_expand_counts(layout, w[1]) for w in walks], dtype=np.int64
                                ).reshape(self.n_subsets, -1)
        self._cache: dict[str, list[np.ndarray]] = {}

    def _decode(self, key: str) -> list[np.ndarray]:
        """All occurrences of ``key`` per message, in ecCodes' rank order."""
        out = self._cache.get(key)
        if out is not None:
            return out
        lay = self.layout
        pos = set(lay.positions[key])
        R = self.n_subsets
        rows_l, offs_l, elem_l, order_l = [], [], [], []
        rank_base = np.zeros(R, dtype=np.int64)  # occurrences before the current node, per message
        for k, nd in enumerate(lay.data_nodes):
            cnt = self._counts[:, k]
            if nd.kind == "elem":
                if nd.index in pos:
                    rows_l.append(np.arange(R))
                    offs_l.append(self._starts[:, k])
                    elem_l.append(np.full(R, nd.index))
                    order_l.append(rank_base.copy())
                    rank_base += 1
                continue
            inblock = [(j, o) for j, o in zip(nd.block, nd.block_offsets) if j in pos]
            if not inblock:
                continue
            tot = int(cnt.sum())
            rows = np.repeat(np.arange(R), cnt)
            rep = np.arange(tot) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            bstart = np.repeat(self._starts[:, k] + nd.width, cnt) + rep * nd.block_width
            m = len(inblock)
            for q, (j, o) in enumerate(inblock):
                rows_l.append(rows)
                offs_l.append(bstart + o)
                elem_l.append(np.full(tot, j))
                order_l.append(np.repeat(rank_base, cnt) + rep * m + q)
            rank_base += cnt * m
        rows = np.concatenate(rows_l)
        offs = np.concatenate(offs_l).astype(np.int64)
        elem = np.concatenate(elem_l)
        order = np.lexsort((np.concatenate(order_l), rows))
        rows, offs, elem = rows[order], offs[order], elem[order]
        absb = self._base[rows] + offs
        vals = np.empty(absb.size, dtype=np.float64)
        for j in np.unique(elem):
            sel = elem == j
            w = int(lay.widths[j])
            a = absb[sel]
            win = self._buf[(a >> 3)[:, None] + np.arange(8)]
            word = np.ascontiguousarray(win).view(">u8")[:, 0].astype(np.uint64)
            raw = (word >> (np.uint64(64 - w) - (a & 7).astype(np.uint64))) & np.uint64((1 << w) - 1)
            v = (raw.astype(np.int64) + np.int64(lay.references[j])).astype(np.float64) * _power10(int(lay.scales[j]))
            v[raw == np.uint64((1 << w) - 1)] = np.nan
            vals[sel] = v
        out = np.split(vals, np.cumsum(rank_base)[:-1])
        self._cache[key] = out
        return out

    def _check_type(self, key: str, strings: bool) -> None:
        if strings:
            raise FastPathUnavailable(f"element {key!r} asked as a string")

    def first(self, key: str, *, strings: bool = False) -> np.ndarray | None:
        if not self.has(key):
            return None
        self._check_type(key, strings)
        out = np.array([v[0] if len(v) else np.nan for v in self._decode(key)], dtype=np.float64)
        self._verify("first", key, strings, [out[r] for r in self._check_rows])
        return out

    def values(self, key: str, *, strings: bool = False) -> list[np.ndarray] | None:
        if not self.has(key):
            return None
        self._check_type(key, strings)
        out = self._decode(key)
        self._verify("values", key, strings, [out[r] for r in self._check_rows])
        return list(out)


def make_batch(layout: Layout, messages: Sequence[RawMessage], headers: Sequence[Header]
               ) -> tuple[FixedBatch | None, list[RawMessage]]:
    """The batch of the messages that fit ``layout`` and the messages left to ecCodes (file order)."""
    if isinstance(layout, VarLayout):
        fit, walks, back = [], [], []
        for k, (m, h) in enumerate(zip(messages, headers)):
            w = walk_message(layout, m.data, h)
            if isinstance(w, str):
                back.append(m)
            else:
                fit.append(k)
                walks.append(w)
        if not fit:
            return None, back
        return VarBatch(layout, [messages[k] for k in fit], [headers[k] for k in fit], walks), back
    fit = [k for k, h in enumerate(headers) if h.data_len == layout.data_len]
    back = [messages[k] for k in range(len(messages)) if headers[k].data_len != layout.data_len]
    if not fit:
        return None, back
    return FixedBatch(layout, [messages[k] for k in fit], [headers[k] for k in fit]), back
