"""The run catalog: one row per cycle in a real database (SQLite by default, PostgreSQL by URL).

The schema is owned by Alembic migrations shipped in ``migrations/`` and applied
programmatically (``upgrade head``) whenever a catalog is opened, so a fresh
install and an upgraded one converge on the same schema. The API reads runs
through :class:`RunCatalog`; the cycle flow writes them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fuxiops.errors import FuxiopsError
from fuxiops.logs import get_logger
from fuxiops.pipeline.cycle.times import run_id as make_run_id
from fuxiops.pipeline.cycle.times import utcnow

log = get_logger("fuxiops.cycle.runs")

STATUSES = ("queued", "running", "published", "failed", "degraded")
#: Terminal states whose products are published (a degraded run is published too, with its reasons).
PUBLISHED_STATES = ("published", "degraded")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = sa.MetaData()

#: Mirror of the head migration; Alembic's autogenerate compares against it.
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(16), nullable=False),
    sa.Column("cycle_time", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("degraded_reasons", sa.JSON, nullable=False),
    sa.Column("cold_start", sa.Boolean, nullable=False),
    sa.Column("cold_start_source", sa.String(64), nullable=True),
    sa.Column("background_source", sa.String(256), nullable=True),
    sa.Column("model", sa.JSON, nullable=False),
    sa.Column("obs_counts", sa.JSON, nullable=False),
    sa.Column("timings", sa.JSON, nullable=False),
    sa.Column("verification", sa.JSON, nullable=False),
    sa.Column("manifest", sa.JSON, nullable=True),
    sa.Column("products_path", sa.String(1024), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("flow_run_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'published', 'failed', 'degraded')", name="ck_runs_status"),
    sa.UniqueConstraint("run_id", name="uq_runs_run_id"),
    sa.Index("ix_runs_cycle_time", "cycle_time"),
    sa.Index("ix_runs_status", "status"),
)

_JSON_FIELDS = ("degraded_reasons", "model", "obs_counts", "timings", "verification", "manifest")
_UPDATABLE = {c.name for c in runs_table.columns} - {"id", "run_id", "cycle_time", "created_at"}


class CatalogError(FuxiopsError):
    """The run catalog cannot be opened or a request to it is invalid."""


@dataclass
class RunRecord:
    """One run as stored in the catalog."""

    run_id: str
    cycle_time: datetime
    status: str
    degraded_reasons: list[str] = field(default_factory=list)
    cold_start: bool = False
    cold_start_source: str | None = None
    background_source: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    obs_counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    products_path: str | None = None
    error: str | None = None
    attempts: int = 0
    flow_run_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def is_published(self) -> bool:
        return self.status in PUBLISHED_STATES

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out


def jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars, tuples, NaN -> None) for the JSON columns."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.strftime("%Y-%m-%dT%H:%M:%SZ")
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return json.loads(json.dumps(obj, default=str))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder created and a busy timeout (several writers)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as e:
        raise CatalogError(f"invalid catalog URL {url!r}: {e}") from None
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60}
    elif parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs["pool_pre_ping"] = True
    try:
        return sa.create_engine(parsed, **kwargs)
    except ImportError as e:  # pragma: no cover - driver missing
        raise CatalogError(f"catalog URL {url!r} needs a database driver that is not installed ({e.name}); "
                           "install psycopg[binary] for PostgreSQL") from None


def migrate(engine: Engine, revision: str = "head") -> None:
    """Apply the shipped Alembic migrations up to ``revision`` (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Two services starting at once must not both create the table.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(727384001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class RunCatalog:
    """Runs in a SQL database: create, update and query them."""

    def __init__(self, url: str, *, migrate_schema: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate_schema:
            try:
                migrate(self.engine)
            except sa.exc.OperationalError as e:
                raise CatalogError(f"cannot open the run catalog at {self.safe_url}: {e.orig}") from None

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden (for messages and logs)."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "RunCatalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -------------------------------------------------------------
    @staticmethod
    def _record(row: sa.Row[Any]) -> RunRecord:
        d = dict(row._mapping)
        d.pop("id", None)
        for k in _JSON_FIELDS:
            if d.get(k) is None and k != "manifest":
                d[k] = [] if k == "degraded_reasons" else {}
        return RunRecord(**d)

    def get(self, run_id: str) -> RunRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.run_id == run_id)).first()
        return self._record(row) if row is not None else None

    def list(self, limit: int | None = 50, status: str | None = None, newest_first: bool = True) -> list[RunRecord]:
        """Runs ordered by cycle time (newest first by default), optionally of one status."""
        if status is not None and status not in STATUSES:
            raise CatalogError(f"unknown run status {status!r}; allowed: {', '.join(STATUSES)}")
        q = sa.select(runs_table)
        if status is not None:
            q = q.where(runs_table.c.status == status)
        order = runs_table.c.cycle_time.desc() if newest_first else runs_table.c.cycle_time.asc()
        q = q.order_by(order)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [self._record(r) for r in conn.execute(q)]

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.list(limit=None))

    def latest_published(self) -> RunRecord | None:
        """The newest run whose products are published (status published or degraded)."""
        q = (sa.select(runs_table).where(runs_table.c.status.in_(PUBLISHED_STATES))
             .order_by(runs_table.c.cycle_time.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return self._record(row) if row is not None else None

    # -- writes --------------------------------------------------------------
    def enqueue(self, cycle_time: datetime) -> RunRecord:
        """Create the run of ``cycle_time`` as queued if it does not exist; return it."""
        rid = make_run_id(cycle_time)
        now = utcnow()
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(runs_table.c.id).where(runs_table.c.run_id == rid)).first()
            if exists is None:
                conn.execute(runs_table.insert().values(
                    run_id=rid, cycle_time=cycle_time, status="queued", degraded_reasons=[], cold_start=False,
                    model={}, obs_counts={}, timings={}, verification={}, attempts=0, created_at=now,
                    updated_at=now))
        rec = self.get(rid)
        assert rec is not None
        return rec

    def start(self, cycle_time: datetime, flow_run_id: str | None = None) -> RunRecord:
        """Mark the run running (a new attempt) and clear the fields of any previous attempt."""
        rec = self.enqueue(cycle_time)
        now = utcnow()
        self.update(rec.run_id, status="running", attempts=rec.attempts + 1, started_at=now, finished_at=None,
                    error=None, degraded_reasons=[], cold_start=False, cold_start_source=None, timings={},
                    verification={}, obs_counts={}, flow_run_id=flow_run_id)
        out = self.get(rec.run_id)
        assert out is not None
        return out

    def update(self, run_id: str, **fields: Any) -> None:
        """Set columns of an existing run (JSON columns are sanitised)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise CatalogError(f"cannot set {sorted(unknown)} on a run; allowed: {sorted(_UPDATABLE)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise CatalogError(f"unknown run status {fields['status']!r}; allowed: {', '.join(STATUSES)}")
        for k in _JSON_FIELDS:
            if k in fields and fields[k] is not None:
                fields[k] = jsonable(fields[k])
        fields["updated_at"] = utcnow()
        with self.engine.begin() as conn:
            res = conn.execute(runs_table.update().where(runs_table.c.run_id == run_id).values(**fields))
        if res.rowcount == 0:
            raise CatalogError(f"no run {run_id!r} in the catalog")

    def finish(self, run_id: str, *, degraded_reasons: list[str], **fields: Any) -> str:
        """Close a successful run: ``published``, or ``degraded`` when there are reasons. Returns the status."""
        status = "degraded" if degraded_reasons else "published"
        self.update(run_id, status=status, degraded_reasons=list(degraded_reasons), finished_at=utcnow(), **fields)
        return status

    def fail(self, run_id: str, error: str, **fields: Any) -> None:
        self.update(run_id, status="failed", error=error[-8000:], finished_at=utcnow(), **fields)

    def delete(self, run_id: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(runs_table.delete().where(runs_table.c.run_id == run_id))
        return res.rowcount > 0


def open_catalog(cfg: Any) -> RunCatalog:
    """The catalog of a deployment (``FuxiopsConfig.catalog_url``)."""
    return RunCatalog(cfg.catalog_url)
