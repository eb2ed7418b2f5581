"""A GRIB2 message encoder in numpy: sections 0-8 for regular lat-lon fields with simple packing.

Why our own encoder: ecCodes spends most of its time in generic key handling;
building the few fixed-size sections ourselves and packing values with numpy
is several times faster and releases the GIL, so fields encode in parallel
threads. Every message is checked against ecCodes in the tests (keys, grid
geometry, values within packing precision). CCSDS packing is delegated to
ecCodes (``repack_ccsds``), starting from our simple-packed message.

Layout follows WMO FM 92 GRIB edition 2: grid template 3.0, product templates
4.0 (instantaneous) and 4.8 (statistically processed over a time range), data
template 5.0 (simple packing), optional bitmap (section 6) for missing values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from fuxiops.catalog import Channel
from fuxiops.errors import DataError, GridError

#: WMO code table 4.5 surface types, by catalog level type.
_SURFACE_TYPE = {"isobaricInhPa": 100, "heightAboveGround": 103, "meanSea": 101, "surface": 1}
#: WMO common code table C-11 (originating centres): the usual abbreviations.
_CENTRES = {"ecmf": 98, "kwbc": 7, "egrr": 74, "lfpw": 85, "edzw": 78, "rjtd": 34, "cwao": 54, "babj": 38,
            "ammc": 1, "rksl": 40, "lemm": 214, "eswi": 82, "enmi": 88, "ekmi": 94, "efkl": 86, "lssw": 215,
            "sbsj": 46, "dems": 28, "consensus": 255}
#: GRIB master tables version written in section 1 (known to ecCodes >= 2.24, cdo and wgrib2).
TABLES_VERSION = 28
_MISSING_U4 = 0xFFFFFFFF
_MISSING_U1 = 0xFF


def resolve_centre(centre: str | int) -> int:
    """WMO centre number from an abbreviation (``ecmf``) or a number."""
    if isinstance(centre, int) or str(centre).isdigit():
        n = int(centre)
        if not 0 <= n <= 65535:
            raise DataError(f"GRIB centre number must be in 0..65535, got {n}")
        return n
    key = str(centre).lower()
    if key in _CENTRES:
        return _CENTRES[key]
    # Rare abbreviations: let ecCodes' own C-11 table answer (imported only here).
    try:
        import eccodes

        h = eccodes.codes_grib_new_from_samples("GRIB2")
        try:
            eccodes.codes_set(h, "centre", key)
            return int(eccodes.codes_get_long(h, "centre"))
        finally:
            eccodes.codes_release(h)
    except Exception:
        raise DataError(f"unknown GRIB originating centre {centre!r}; use a WMO C-11 abbreviation "
                        f"({', '.join(sorted(_CENTRES))}) or a number") from None


def _s1(v: int) -> int:
    """Sign-magnitude 1-octet integer (GRIB2 negative numbers are not two's complement)."""
    return (0x80 | -v) if v < 0 else v


def _s2(v: int) -> int:
    return (0x8000 | -v) if v < 0 else v


def _s4(v: int) -> int:
    return (0x80000000 | -v) if v < 0 else v


@dataclass(frozen=True)
class LatLonGeometry:
    """A regular lat-lon grid (global or a regional subdomain), scanning west->east, north->south
    (or south->north if ``lat_first < lat_last``), in degrees."""

    n_lat: int
    n_lon: int
    lat_first: float
    lon_first: float
    lat_last: float
    lon_last: float
    d_lat: float
    d_lon: float

    @classmethod
    def from_coords(cls, lat: np.ndarray, lon: np.ndarray) -> "LatLonGeometry":
        """Geometry of 1-D coordinate arrays; they must be regularly spaced."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if lat.ndim != 1 or lon.ndim != 1 or lat.size < 2 or lon.size < 2:
            raise GridError("GRIB encoding needs 1-D latitude and longitude coordinates with at least 2 points")
        for name, c in (("latitude", lat), ("longitude", lon)):
            d = np.diff(c)
            if not np.allclose(d, d[0], rtol=0, atol=1e-6) or d[0] == 0:
                raise GridError(f"{name} is not regularly spaced (steps {d.min():g}..{d.max():g}); "
                                "only regular lat-lon grids can be encoded")
        if np.diff(lon)[0] < 0:
            raise GridError("longitude must increase west -> east")
        if np.abs(lat).max() > 90 + 1e-9:
            raise GridError("latitude outside [-90, 90]")
        return cls(lat.size, lon.size, float(lat[0]), float(lon[0]), float(lat[-1]), float(lon[-1]),
                   float(abs(lat[1] - lat[0])), float(lon[1] - lon[0]))

    @property
    def n_points(self) -> int:
        return self.n_lat * self.n_lon

    @property
    def north_to_south(self) -> bool:
        return self.lat_first >= self.lat_last


@dataclass(frozen=True)
class Identity:
    """Section-1 originator and processing identifiers."""

    centre: int = 98
    subcentre: int = 0
    generating_process: int = 255
    production_status: int = 0  # code table 1.3: 0 operational, 2 research, 1 test
    processed_data: int = 1  # code table 1.4: 1 forecast


def _micro(deg: float) -> int:
    return int(round(deg * 1e6))


@lru_cache(maxsize=64)
def section3(geom: LatLonGeometry) -> bytes:
    """Grid definition section, template 3.0 (regular lat-lon on a sphere of radius 6371229 m)."""
    lon_first = geom.lon_first % 360.0 if geom.lon_first < 0 else geom.lon_first
    lon_last = geom.lon_last % 360.0 if geom.lon_last < 0 else geom.lon_last
    scanning = 0 if geom.north_to_south else 0x40  # bit 2: points scan in +j (south -> north)
    tpl = struct.pack(">BBIBIBIIIIIIIBIIIIB",
                      6, _MISSING_U1, _MISSING_U4, _MISSING_U1, _MISSING_U4, _MISSING_U1, _MISSING_U4,
                      geom.n_lon, geom.n_lat, 0, _MISSING_U4,
                      _s4(_micro(geom.lat_first)), _s4(_micro(lon_first)), 0x30,
                      _s4(_micro(geom.lat_last)), _s4(_micro(lon_last)),
                      _micro(geom.d_lon), _micro(geom.d_lat), scanning)
    body = struct.pack(">BBIBBH", 3, 0, geom.n_points, 0, 0, 0) + tpl
    return struct.pack(">I", 4 + len(body)) + body


def section1(ident: Identity, reference_time: datetime) -> bytes:
    t = reference_time
    body = struct.pack(">BHHBBBHBBBBBBB", 1, ident.centre, ident.subcentre, TABLES_VERSION, 0, 1,
                       t.year, t.month, t.day, t.hour, t.minute, t.second,
                       ident.production_status, ident.processed_data)
    return struct.pack(">I", 4 + len(body)) + body


def section4(channel: Channel, step_hours: int, reference_time: datetime, generating_process: int) -> bytes:
    """Product definition: template 4.0, or 4.8 for accumulations (over the preceding N hours)."""
    var = channel.variable
    stype = _SURFACE_TYPE[var.level_type]
    if var.level_type == "isobaricInhPa":
        sf, sv = 0, int(channel.grib_level) * 100  # code table 4.5 type 100 is in Pa
    elif var.level_type == "heightAboveGround":
        sf, sv = 0, int(channel.grib_level)
    else:
        sf, sv = _MISSING_U1, _MISSING_U4
    acc = var.accumulation_hours
    start = step_hours - acc if acc else step_hours
    if acc and start < 0:
        raise DataError(f"{channel.name} accumulates over {acc} h and cannot be encoded at step {step_hours} h")
    common = struct.pack(">BBBBBHBBIBBIBBI", var.parameter_category, var.parameter_number, 2, 255,
                         generating_process, 0, 0, 1, start, stype, sf, sv, 255, _MISSING_U1, _MISSING_U4)
    if acc:
        e = reference_time + timedelta(hours=step_hours)  # end of the overall time interval
        stat = struct.pack(">HBBBBBBIBBBIBI", e.year, e.month, e.day, e.hour, e.minute, e.second,
                           1, 0, 1, 2, 1, acc, 255, 0)
        body = struct.pack(">BHH", 4, 0, 8) + common + stat
    else:
        body = struct.pack(">BHH", 4, 0, 0) + common
    return struct.pack(">I", 4 + len(body)) + body


def _pack_bits(x: np.ndarray, nbits: int) -> bytes:
    """Big-endian bit packing of non-negative integers (< 2**nbits)."""
    if nbits == 8:
        return x.astype(np.uint8).tobytes()
    if nbits == 16:
        return x.astype(">u2").tobytes()
    if nbits == 32:
        return x.astype(">u4").tobytes()
    if nbits == 24:
        return x.astype(">u4").view(np.uint8).reshape(-1, 4)[:, 1:].tobytes()
    # General widths: spread bits then packbits (slower; non-default widths only).
    xi = x.astype(np.uint32)
    shifts = np.arange(nbits - 1, -1, -1, dtype=np.uint32)
    bits = ((xi[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


@dataclass(frozen=True)
class Packed:
    """Section 5 parameters and section 6/7 payload of one field."""

    reference: float
    binary_scale: int
    nbits: int
    n_values: int
    bitmap: bytes | None
    data: bytes


def pack_simple(values: np.ndarray, nbits: int) -> Packed:
    """Simple packing (data template 5.0, decimal scale 0) with a bitmap where values are NaN.

    ``values`` must be finite or NaN (the caller rejects infinities). Error per
    value is at most half a quantisation step, 2**E / 2.
    """
    flat = np.ascontiguousarray(values).reshape(-1)
    mn = flat.min()
    bitmap = None
    if np.isnan(mn):  # min propagates NaN: only then pay for a mask
        present = ~np.isnan(flat)
        bitmap = np.packbits(present).tobytes()
        flat = flat[present]
        if flat.size == 0:
            return Packed(0.0, 0, 0, 0, bitmap, b"")
        mn = flat.min()
    mx = flat.max()
    ref = np.float32(mn)
    if float(ref) > float(mn):
        ref = np.nextafter(ref, np.float32(-np.inf))
    rng = float(mx) - float(ref)
    if rng <= 0.0 or nbits == 0:
        return Packed(float(ref), 0, 0, int(flat.size), bitmap, b"")
    e = int(np.ceil(np.log2(rng / (2.0 ** nbits - 1))))
    # Guard the ceiling against float rounding at the top of the range.
    while rng * 2.0 ** -e > 2.0 ** nbits - 1:
        e += 1
    # float64 arithmetic (float32 would add up to ~0.4% of a step to the half-step bound at 16 bits).
    # x * 2^-E is exact, so (x * 2^-E) - (R * 2^-E - 0.5) rounds half up after truncation in the
    # integer cast, in two passes; it never exceeds 2^n - 1 because E was chosen on the same
    # float64 values (the while loop above).
    scale = 2.0 ** -e
    offset = float(ref) * scale - 0.5
    if nbits in _DIRECT:
        # Blocked so the float64 temporary stays in cache: memory traffic is the float32
        # input and the packed output only (this is what bounds the encoder on busy machines).
        out = np.empty(flat.size, dtype=_DIRECT[nbits])
        buf = np.empty(min(_BLOCK, flat.size), dtype=np.float64)
        for i in range(0, flat.size, _BLOCK):
            seg = flat[i:i + _BLOCK]
            b = buf[: seg.size]
            np.multiply(seg, scale, out=b, dtype=np.float64)
            b -= offset
            out[i:i + seg.size] = b  # truncating cast: round half up
        return Packed(float(ref), e, nbits, int(flat.size), bitmap, out.tobytes())
    scaled = np.multiply(flat, scale, dtype=np.float64)
    scaled -= offset
    return Packed(float(ref), e, nbits, int(flat.size), bitmap, _pack_bits(scaled, nbits))


_DIRECT: dict[int, np.dtype[Any]] = {8: np.dtype(np.uint8), 16: np.dtype(">u2"), 32: np.dtype(">u4")}
_BLOCK = 1 << 15  # values per block: 256 KB of float64


def encode_message(packed: Packed, *, discipline: int, sec1: bytes, sec3: bytes, sec4: bytes) -> bytes:
    """Assemble a whole GRIB2 message from its sections."""
    sec5_body = struct.pack(">BIH", 5, packed.n_values, 0) + struct.pack(
        ">fHHBB", packed.reference, _s2(packed.binary_scale), 0, packed.nbits, 0)
    sec5 = struct.pack(">I", 4 + len(sec5_body)) + sec5_body
    if packed.bitmap is None:
        sec6 = struct.pack(">IBB", 6, 6, 255)
    else:
        sec6 = struct.pack(">IBB", 6 + len(packed.bitmap), 6, 0) + packed.bitmap
    sec7 = struct.pack(">IB", 5 + len(packed.data), 7)
    total = 16 + len(sec1) + len(sec3) + len(sec4) + len(sec5) + len(sec6) + len(sec7) + len(packed.data) + 4
    sec0 = b"GRIB" + struct.pack(">HBBQ", 0, discipline, 2, total)
    return b"".join((sec0, sec1, sec3, sec4, sec5, sec6, sec7, packed.data, b"7777"))


def encode_field(values: np.ndarray, channel: Channel, *, geometry: LatLonGeometry, reference_time: datetime,
                 step_hours: int, identity: Identity = Identity(), bits_per_value: int = 16) -> bytes:
    """One GRIB2 message for a 2-D field in scanning order (rows first-to-last latitude)."""
    if values.shape != (geometry.n_lat, geometry.n_lon):
        raise GridError(f"{channel.name}: field is {values.shape}, grid is {(geometry.n_lat, geometry.n_lon)}")
    packed = pack_simple(values, bits_per_value)
    return encode_message(packed, discipline=channel.variable.discipline,
                          sec1=section1(identity, reference_time), sec3=section3(geometry),
                          sec4=section4(channel, step_hours, reference_time, identity.generating_process))


def repack_ccsds(message: bytes) -> bytes:
    """Re-encode a simple-packed message with CCSDS (data template 5.42) through ecCodes' libaec."""
    import eccodes

    h = eccodes.codes_new_from_message(message)
    try:
        eccodes.codes_set_string(h, "packingType", "grid_ccsds")
        return bytes(eccodes.codes_get_message(h))
    finally:
        eccodes.codes_release(h)
