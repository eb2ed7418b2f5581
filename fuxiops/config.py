"""Deployment configuration: one YAML file, validated, with environment overrides.

A deployment (grid, variables, checkpoints, data locations, schedule,
observation sources, outputs, API) is one YAML file. Every section is a
pydantic model with ``extra="forbid"`` so that typos are errors. Environment
variables override the file: ``FUXIOPS_API__PORT=8080`` sets ``api.port``;
``FUXIOPS_HOME`` sets ``home``. Relative data locations are resolved under
``home`` (default: a per-user data directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fuxiops.catalog import VARIABLE_SETS, VariableSet
from fuxiops.errors import ConfigError, FuxiopsError
from fuxiops.grids import GRIDS, TESTBED_GRID, Grid, get_grid

CONFIG_ENV = "FUXIOPS_CONFIG"
HOME_ENV = "FUXIOPS_HOME"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariablesConfig(_Section):
    """The state the deployment predicts: a named set or an explicit list."""

    preset: Literal["production", "testbed", "custom"] = "testbed"
    """Named variable set; ``custom`` uses the lists below."""
    upper_air: list[str] = Field(default_factory=list)
    """Pressure-level variables (custom only), e.g. [z, t, u, v, r]."""
    levels: list[int] = Field(default_factory=list)
    """Pressure levels in hPa (custom only)."""
    surface: list[str] = Field(default_factory=list)
    """Single-level state variables (custom only), e.g. [t2m, u10, v10, msl]."""
    diagnostics: list[str] = Field(default_factory=list)
    """Diagnostic outputs (custom only), e.g. [tp6]."""

    def resolve(self) -> VariableSet:
        if self.preset != "custom":
            return VARIABLE_SETS[self.preset]
        return VariableSet(tuple(self.upper_air), tuple(self.levels), tuple(self.surface), tuple(self.diagnostics))

    @model_validator(mode="after")
    def _check(self) -> "VariablesConfig":
        try:
            self.resolve()
        except FuxiopsError as e:
            raise ValueError(str(e)) from None
        return self


class DataConfig(_Section):
    """Where data lives (fsspec URLs or paths; relative ones are under ``home``)."""

    world: str = "world"
    """Testbed world stores (truth, reanalysis, NWP, observations)."""
    observations: str = "observations"
    """Incoming observation files, one folder per cycle (YYYYMMDDHH)."""
    state: str = "state"
    """State store: backgrounds and analyses per cycle (Zarr)."""
    runs: str = "runs"
    """Work directories of runs in progress."""
    products: str = "products"
    """Published products (GRIB2 / NetCDF / Zarr + manifest) per run."""
    catalog_url: str = "sqlite:///{home}/catalog.sqlite"
    """SQLAlchemy URL of the run catalog (PostgreSQL in production)."""


class ModelsConfig(_Section):
    """Which networks run the cycle."""

    forecaster: str = "default"
    """Forecaster checkpoint directory, an ``.onnx`` file, or ``default`` (the shipped one for the grid)."""
    assimilator: str = "default"
    """Assimilator checkpoint directory or ``default``."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    """Where networks run; ``auto`` picks CUDA when present."""


class ScheduleConfig(_Section):
    """When cycles run and how far they forecast."""

    cron: str = "0 */6 * * *"
    """Cron expression of the cycle deployment (UTC)."""
    cutoff_minutes: int = Field(default=150, ge=0, le=360)
    """Data cutoff: the cycle for time T starts at T + cutoff."""
    step_hours: int = Field(default=6, ge=1)
    """Model time step in hours."""
    forecast_steps: int = Field(default=40, ge=1, le=400)
    """Number of forecast steps (40 x 6 h = 10 days)."""

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday), got {v!r}")
        return v


class ColdStartConfig(_Section):
    """Where the first background comes from when none exists."""

    source: Literal["reanalysis", "file", "climatology"] = "reanalysis"
    """``reanalysis``: the world/reanalysis store; ``file``: an external analysis; ``climatology``."""
    path: str | None = None
    """Zarr/NetCDF path for ``file`` (and optionally for ``reanalysis``)."""


class ObservationSource(_Section):
    """One stream of observation files."""

    name: str
    """Label used in reports and the catalog."""
    reader: str
    """Registered reader name (synop, temp, amdar, gnss, radiance, tropical_cyclone, csv, parquet)."""
    pattern: str = "*.bufr"
    """Glob inside the cycle's observation folder."""


class QCConfig(_Section):
    """Quality-control thresholds."""

    background_k: float = Field(default=5.0, gt=0)
    """Reject if |O-B| > k * sigma_o."""
    biweight_threshold_radiance: float = Field(default=6.0, gt=0)
    """Bi-weight z-score threshold for radiances."""
    biweight_threshold_other: float = Field(default=4.0, gt=0)
    """Bi-weight z-score threshold for other observations."""
    thinning: bool = True
    """Super-ob observations per grid cell and hour."""
    blacklist: list[str] = Field(default_factory=list)
    """Station / platform ids to reject (shell patterns allowed, e.g. ``sat4``, ``01*``)."""
    steps: list[Literal["coordinates", "window", "domain", "bounds", "duplicates", "blacklist", "background",
                        "biweight", "thinning"]] = Field(default_factory=lambda: [
        "coordinates", "window", "domain", "bounds", "duplicates", "blacklist", "background", "biweight",
        "thinning"])
    """QC steps to run, in operational order (leave one out to switch it off)."""
    biweight_min_count: int = Field(default=10, ge=3)
    """Smallest group (report type, variable, level/channel, latitude band) the bi-weight screen judges."""
    domain: tuple[float, float, float, float] | None = None
    """Optional regional domain (lat_min, lat_max, lon_min, lon_max) in degrees; None: global."""


class ObsGroupConfig(_Section):
    """One observation group of the assimilator (one encoder): which rows, which channels."""

    report_types: list[str]
    """Report types feeding the group (synop, temp, amdar, gnssro, radiance, ...)."""
    variables: list[str]
    """Variables gridded (catalog short names or obs-only names such as brightness_temperature)."""
    vertical: Literal["surface", "pressure", "height", "channel"] = "surface"
    """Vertical binning: none, the state's pressure levels, ``heights_m``, or ``channels``."""
    heights_m: list[float] = Field(default_factory=list)
    """Heights (m) of a ``height`` group (nearest bin)."""
    channels: list[int] = Field(default_factory=list)
    """Channel numbers of a ``channel`` group."""
    instruments: list[str] = Field(default_factory=list)
    """Only rows of these instruments (empty: any)."""
    time_phase: bool = False
    """Add sin/cos time-phase channels (profiles)."""
    cressman: bool = False
    """Spread values with a Cressman kernel (sparse in-situ data) and add a confidence channel."""


def _default_obs_groups() -> dict[str, ObsGroupConfig]:
    return {
        "surface": ObsGroupConfig(report_types=["synop"], variables=["t2m", "u10", "v10", "msl"], cressman=True),
        "upper_air": ObsGroupConfig(report_types=["temp", "amdar"], variables=["z", "t", "u", "v"],
                                    vertical="pressure", time_phase=True),
        "gnssro": ObsGroupConfig(report_types=["gnssro"], variables=["refractivity"], vertical="height",
                                 heights_m=[1000.0, 2000.0, 3000.0, 5000.0, 7000.0, 10000.0, 15000.0, 20000.0,
                                            25000.0, 30000.0], time_phase=True),
        "radiance": ObsGroupConfig(report_types=["radiance"], variables=["brightness_temperature"],
                                   vertical="channel", channels=list(range(1, 14)), instruments=["mwts"]),
    }


class GriddingConfig(_Section):
    """Gridded observation channels for the assimilator."""

    groups: dict[str, ObsGroupConfig] = Field(default_factory=_default_obs_groups)
    """Observation groups, in encoder order."""
    cressman_radius_km: float = Field(default=500.0, ge=0)
    """Radius R of the Cressman kernel (R^2-d^2)/(R^2+d^2) for groups with ``cressman: true`` (0: off)."""
    time_bins: Literal["latest", "hourly"] = "latest"
    """``latest``: per cell the hourly bin nearest the analysis time wins; ``hourly``: one channel set per bin."""


class ObservationsConfig(_Section):
    """Observation streams, assimilation windows and QC."""

    sources: list[ObservationSource] = Field(default_factory=lambda: [
        ObservationSource(name="synop", reader="synop", pattern="synop*.bufr"),
        ObservationSource(name="temp", reader="temp", pattern="temp*.bufr"),
        ObservationSource(name="amdar", reader="amdar", pattern="amdar*.bufr"),
        ObservationSource(name="gnssro", reader="gnss", pattern="gnssro*.bufr"),
        ObservationSource(name="mwts", reader="radiance", pattern="mwts*.bufr"),
    ])
    """Streams read each cycle."""
    window_hours: dict[str, tuple[float, float]] = Field(default_factory=lambda: {
        "default": (-3.0, 5.0), "temp": (-3.0, 3.0)})
    """Window [T+a, T+b) per report type, hours relative to the cycle."""
    qc: QCConfig = Field(default_factory=QCConfig)
    gridding: "GriddingConfig" = Field(default_factory=lambda: GriddingConfig())
    """How observations become the assimilator's gridded input channels (one group per encoder)."""


class GribConfig(_Section):
    """GRIB2 encoding."""

    bits_per_value: int = Field(default=16, ge=8, le=32)
    packing: Literal["grid_simple", "grid_ccsds"] = "grid_simple"
    centre: str = "ecmf"
    """Originating centre (WMO code table C-11 abbreviation or number)."""
    subcentre: int = 0
    generating_process: int = 255
    """Generating process identifier (centre-defined)."""
    filename_template: str = "{run}-{step}h.grib2"
    """One file per lead time; fields: run, step (hours), date, time."""


class NetcdfConfig(_Section):
    """NetCDF encoding."""

    layout: Literal["per_run", "per_step"] = "per_run"
    complevel: int = Field(default=4, ge=0, le=9)


class OutputsConfig(_Section):
    """Products written for each run."""

    formats: list[Literal["grib2", "netcdf", "zarr"]] = Field(default_factory=lambda: ["grib2", "netcdf", "zarr"])
    grib: GribConfig = Field(default_factory=GribConfig)
    netcdf: NetcdfConfig = Field(default_factory=NetcdfConfig)


class ApiConfig(_Section):
    """REST API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    cors_origins: list[str] = Field(default_factory=list)
    admin_key_sha256: list[str] = Field(default_factory=list)
    """SHA-256 hex digests of admin API keys (never the keys themselves)."""
    read_key_sha256: list[str] = Field(default_factory=list)
    """If non-empty, reads need one of these keys too."""
    rate_limit_per_minute: int = Field(default=6000, ge=1)


class DaskConfig(_Section):
    """Parallel ingest and encoding."""

    scheduler_address: str | None = None
    """An existing scheduler (e.g. tcp://dask:8786); None starts a LocalCluster."""
    n_workers: int = Field(default=2, ge=1)


class WorldConfig(_Section):
    """The testbed world used by ``fuxiops demo`` and the testbed cycle."""

    seed: int = 0
    start: str = "2023-01-01T00"
    days: float = Field(default=3.0, gt=0)


class FuxiopsConfig(BaseSettings):
    """A whole deployment."""

    model_config = SettingsConfigDict(env_prefix="FUXIOPS_", env_nested_delimiter="__", extra="forbid",
                                      frozen=True)

    name: str = "testbed"
    """Deployment name, shown in products and the API."""
    home: str = Field(default_factory=lambda: os.environ.get(HOME_ENV) or user_data_dir("fuxiops", appauthor=False))
    """Root for relative data locations (``FUXIOPS_HOME``)."""
    grid: str = TESTBED_GRID
    """Named grid of the state and products."""
    variables: VariablesConfig = Field(default_factory=VariablesConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    observations: ObservationsConfig = Field(default_factory=ObservationsConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    dask: DaskConfig = Field(default_factory=DaskConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: str) -> str:
        if v not in GRIDS:
            raise ValueError(f"unknown grid {v!r}; allowed: {', '.join(GRIDS)}")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file, which is passed as init kwargs; both win over defaults.
        return (env_settings, init_settings)

    # -- derived views -------------------------------------------------------
    @property
    def grid_spec(self) -> Grid:
        return get_grid(self.grid)

    @property
    def variable_set(self) -> VariableSet:
        return self.variables.resolve()

    def location(self, name: str) -> str:
        """A data location (``world``, ``state``, ...) as an absolute path or URL."""
        raw = getattr(self.data, name)
        if "://" in raw or os.path.isabs(raw):
            return raw
        return str(Path(self.home).expanduser() / raw)

    @property
    def catalog_url(self) -> str:
        return self.data.catalog_url.replace("{home}", str(Path(self.home).expanduser()))


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here)"
        val = e.get("input")
        shown = "" if isinstance(val, dict) or e["type"] == "missing" else f" (got {val!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> FuxiopsConfig:
    """Load a deployment configuration.

    ``path`` (or ``$FUXIOPS_CONFIG``) names a YAML file; without one the
    defaults describe the testbed deployment. Errors name the field, the value
    and what is allowed.
    """
    path = path or os.environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    source = "defaults"
    if path:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"configuration file {source} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"malformed YAML in {source}{where}: {getattr(e, 'problem', e)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    data.update(overrides)
    try:
        return FuxiopsConfig(**data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def dump_config(cfg: FuxiopsConfig) -> str:
    """The effective configuration as YAML (what ``fuxiops info`` prints)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
