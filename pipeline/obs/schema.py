"""The observation table: one row per observed value, in SI units, as Arrow/Parquet.

Every reader produces rows with the columns of :data:`SCHEMA`; QC only adds
flags, background values and super-obs, never removes rows. Variables carry
the catalog short name where one exists (``t``, ``u``, ``v``, ``z``, ``t2m``,
``u10``, ``v10``, ``msl``) and an obs-only name otherwise (see
:data:`OBS_VARIABLES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from fuxiops.catalog import VARIABLES

#: Kinds of vertical coordinate: value in Pa, m, channel number, or none.
VERTICAL_KINDS = ("surface", "pressure", "height", "channel", "none")

#: Observation-only variables (not in the state catalog): units and physical bounds.
OBS_VARIABLES: dict[str, tuple[str, float, float]] = {
    "brightness_temperature": ("K", 50.0, 350.0),
    "refractivity": ("1", 0.0, 500.0),
    "bending_angle": ("rad", -0.001, 0.1),
    "zenith_total_delay": ("m", 1.0, 3.0),
    "zenith_wet_delay": ("m", 0.0, 0.6),
    "precipitable_water": ("kg m-2", 0.0, 100.0),
    "td2m": ("K", 150.0, 350.0),
    "td": ("K", 100.0, 350.0),
    "rh2m": ("%", 0.0, 150.0),
    "wind_speed": ("m s-1", 0.0, 150.0),
    "sp": ("Pa", 4.0e4, 1.1e5),
    "tc_pressure": ("Pa", 8.0e4, 1.1e5),
    "tc_wind_speed": ("m s-1", 0.0, 120.0),
}


def variable_units(name: str) -> str:
    if name in VARIABLES:
        return VARIABLES[name].units
    return OBS_VARIABLES.get(name, ("1", -np.inf, np.inf))[0]


def variable_bounds(name: str) -> tuple[float, float]:
    """Physical bounds (SI) of a variable: catalog valid_min/max or the obs-only table."""
    if name in VARIABLES:
        v = VARIABLES[name]
        return v.valid_min, v.valid_max
    _, lo, hi = OBS_VARIABLES.get(name, ("1", -np.inf, np.inf))
    return lo, hi


SCHEMA = pa.schema([
    pa.field("report_type", pa.string(), nullable=False),
    pa.field("instrument", pa.string()),
    pa.field("station_id", pa.string(), nullable=False),
    pa.field("time", pa.timestamp("ns")),
    pa.field("latitude", pa.float64()),
    pa.field("longitude", pa.float64()),
    pa.field("vertical", pa.float64()),
    pa.field("vertical_kind", pa.string(), nullable=False),
    pa.field("variable", pa.string(), nullable=False),
    pa.field("value", pa.float64()),
    pa.field("units", pa.string(), nullable=False),
    pa.field("obs_error", pa.float32()),
    pa.field("qc_flags", pa.uint32(), nullable=False),
    pa.field("background", pa.float64()),
    pa.field("superob_value", pa.float64()),
    pa.field("superob_count", pa.int32()),
    #: The input file as it was given (raw and simulated testbed files share names, not folders).
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("message_index", pa.int32(), nullable=False),
    pa.field("subset_index", pa.int32(), nullable=False),
])

COLUMNS: list[str] = SCHEMA.names


@dataclass
class RowBuilder:
    """Accumulates rows column-wise (numpy chunks) and builds one Arrow table.

    Readers call :meth:`add` once per (message, variable) with arrays; scalars
    broadcast. Building once at the end keeps decoding free of per-row Python.
    """

    report_type: str
    source_file: str
    instrument: str = ""
    _chunks: dict[str, list[np.ndarray]] = field(default_factory=lambda: {c: [] for c in _BUILT})
    _labels: list[tuple[int, str, str]] = field(default_factory=list)
    n: int = 0

    def add(self, *, station_id: object, time: object, latitude: object, longitude: object,
            vertical: object, vertical_kind: str, variable: str, value: np.ndarray, obs_error: object,
            message_index: object, subset_index: object, qc_flags: object = 0) -> None:
        value = np.asarray(value, dtype=np.float64).ravel()
        k = value.size
        if k == 0:
            return
        b = lambda x, dt: np.broadcast_to(np.asarray(x, dtype=dt), (k,))  # noqa: E731
        c = self._chunks
        c["station_id"].append(b(station_id, object))
        c["time"].append(b(time, "datetime64[ns]"))
        c["latitude"].append(b(latitude, np.float64))
        c["longitude"].append(b(longitude, np.float64))
        c["vertical"].append(b(vertical, np.float64))
        c["value"].append(value)
        c["obs_error"].append(b(obs_error, np.float32))
        c["qc_flags"].append(b(qc_flags, np.uint32))
        c["message_index"].append(b(message_index, np.int32))
        c["subset_index"].append(b(subset_index, np.int32))
        # Variable and vertical kind are one per call: kept as codes, expanded once in table().
        self._labels.append((k, variable, vertical_kind))
        self.n += k

    def table(self) -> pa.Table:
        if self.n == 0:
            return empty_table()
        cols = {name: np.concatenate(parts) for name, parts in self._chunks.items()}
        n = self.n
        counts = np.array([k for k, _, _ in self._labels], dtype=np.int64)
        var = _dict_column([v for _, v, _ in self._labels], counts)
        kind = _dict_column([kd for _, _, kd in self._labels], counts)
        units = _dict_column([variable_units(v) for _, v, _ in self._labels], counts)
        nan = np.full(n, np.nan)
        arrays = {
            "report_type": _const(self.report_type, n),
            "instrument": _const(self.instrument, n),
            "station_id": pa.array(cols["station_id"], pa.string()),
            "time": pa.array(cols["time"], pa.timestamp("ns")),
            "latitude": pa.array(cols["latitude"], pa.float64()),
            "longitude": pa.array(cols["longitude"], pa.float64()),
            "vertical": pa.array(cols["vertical"], pa.float64()),
            "vertical_kind": kind,
            "variable": var,
            "value": pa.array(cols["value"], pa.float64()),
            "units": units,
            "obs_error": pa.array(cols["obs_error"], pa.float32()),
            "qc_flags": pa.array(cols["qc_flags"], pa.uint32()),
            "background": pa.array(nan, pa.float64()),
            "superob_value": pa.array(nan, pa.float64()),
            "superob_count": pa.array(np.zeros(n, np.int32), pa.int32()),
            "source_file": _const(self.source_file, n),
            "message_index": pa.array(cols["message_index"], pa.int32()),
            "subset_index": pa.array(cols["subset_index"], pa.int32()),
        }
        return pa.table(arrays, schema=SCHEMA)


def _const(value: str, n: int) -> pa.Array:
    """A string column of one repeated value, built in C (no n Python strings)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value])).cast(pa.string())


def _dict_column(labels: list[str], counts: np.ndarray) -> pa.Array:
    """A string column from one label per run of ``counts`` rows."""
    uniq: dict[str, int] = {}
    codes = np.array([uniq.setdefault(v, len(uniq)) for v in labels], dtype=np.int32)
    idx = np.repeat(codes, counts)
    return pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(list(uniq), pa.string())).cast(pa.string())


_BUILT = ("station_id", "time", "latitude", "longitude", "vertical", "value", "obs_error", "qc_flags",
          "message_index", "subset_index")


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def concat_tables(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_table()
    return pa.concat_tables([t.cast(SCHEMA) for t in tables])


def check_table(table: pa.Table, what: str = "observation table") -> None:
    """Raise a DataError naming missing columns of an observation table."""
    from fuxiops.errors import DataError

    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{what} lacks columns {missing}; an observation table has {COLUMNS}")


def sort_key_columns() -> Sequence[str]:
    return ("report_type", "source_file", "message_index", "subset_index")
