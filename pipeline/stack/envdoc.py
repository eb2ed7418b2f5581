"""Write ``.env.example``: every setting of the deployment (``FUXIOPS_*``, ``__`` for nesting) and of the stack.

The file is generated from the configuration models themselves (field
docstrings, defaults, allowed values), so it cannot drift from
``fuxiops.config``; a test compares it with this generator's output.
``fuxiops stack env-example > .env.example`` rewrites it.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import typing
from functools import cache

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from fuxiops.config import FuxiopsConfig
from fuxiops.pipeline.stack.settings import StackSettings

_HEADER = """\
# fuxiops settings. Copy to .env (docker compose reads it; `fuxiops` reads the same variables from the
# environment) and uncomment what you change. Environment variables override the YAML file named by
# FUXIOPS_CONFIG; nested settings use "__" (FUXIOPS_API__PORT sets api.port); lists and mappings are JSON.
# Never put secrets in images or in git: this file holds placeholders only.
# Regenerate after changing fuxiops/config.py: fuxiops stack env-example > .env.example
"""

_COMPOSE = """\
# ---------------------------------------------------------------------------------------------------------
# docker compose (docker-compose.yml)
# ---------------------------------------------------------------------------------------------------------
# Password of the PostgreSQL role used by Prefect and the run catalog. REQUIRED (compose refuses to start).
POSTGRES_PASSWORD=
# PostgreSQL role name.
# POSTGRES_USER=fuxiops
# Database of the run catalog (Prefect uses the database "prefect").
# FUXIOPS_CATALOG_DB=fuxiops
# Image names: ${FUXIOPS_IMAGE_PREFIX}-api / -cpu with this tag.
# FUXIOPS_IMAGE_PREFIX=fuxiops
# FUXIOPS_IMAGE_TAG=latest
# Env file passed to the fuxiops containers (this file).
# FUXIOPS_ENV_FILE=.env
# Compose project name.
# COMPOSE_PROJECT_NAME=fuxiops
# Host ports: API (all interfaces by default), Prefect UI/API and Dask dashboard (loopback only by default).
# FUXIOPS_API_PUBLISH_PORT=8000
# PREFECT_PUBLISH_PORT=127.0.0.1:4200
# DASK_DASHBOARD_PUBLISH_PORT=127.0.0.1:8787
# URL under which browsers reach the Prefect API (for the UI).
# PREFECT_UI_API_URL=http://localhost:4200/api
# Flow runs the Prefect worker runs at once.
# FUXIOPS_WORKER_LIMIT=1
# Dask worker containers, and processes / threads / memory per container.
# DASK_WORKERS=2
# DASK_WORKER_PROCESSES=1
# DASK_WORKER_THREADS=2
# DASK_WORKER_MEMORY_LIMIT=4GiB
"""


#: Meanings of core fields that carry no docstring in fuxiops.config (by variable name).
_FALLBACK = {
    "FUXIOPS_OUTPUTS__FORMATS": "Product formats written for each run.",
    "FUXIOPS_OUTPUTS__GRIB__BITS_PER_VALUE": "GRIB2 packing precision in bits per value (8-32).",
    "FUXIOPS_OUTPUTS__GRIB__PACKING": "GRIB2 packing type.",
    "FUXIOPS_OUTPUTS__GRIB__SUBCENTRE": "Originating sub-centre number.",
    "FUXIOPS_OUTPUTS__NETCDF__LAYOUT": "One NetCDF file per run or one per lead time.",
    "FUXIOPS_OUTPUTS__NETCDF__COMPLEVEL": "zlib compression level of NetCDF variables (0-9).",
    "FUXIOPS_API__HOST": "Address the API binds to (0.0.0.0 in containers).",
    "FUXIOPS_API__PORT": "Port the API listens on.",
    "FUXIOPS_API__WORKERS": "Uvicorn worker processes of the API.",
    "FUXIOPS_API__CORS_ORIGINS": "Browser origins allowed to call the API (JSON list).",
    "FUXIOPS_API__RATE_LIMIT_PER_MINUTE": "Requests per minute and client before the API answers 429.",
    "FUXIOPS_DASK__N_WORKERS": "Workers of the LocalCluster started when no scheduler address is set.",
    "FUXIOPS_WORLD__SEED": "Random seed of the testbed world.",
    "FUXIOPS_WORLD__START": "First time of the testbed world (UTC, YYYY-MM-DDTHH).",
    "FUXIOPS_WORLD__DAYS": "Length of the testbed world in days.",
}

#: Settings docker-compose.yml refuses to start without.
_REQUIRED_BY_COMPOSE = {"FUXIOPS_API__ADMIN_KEY_SHA256"}


@cache
def _docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal after each field) of a class, by field name."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:]):
        if isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr) \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _submodel(annotation: object) -> type[BaseModel] | None:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _render(value: object) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, default=lambda v: v.model_dump(mode="json") if isinstance(v, BaseModel) else str(v))
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _allowed(annotation: object) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " Allowed: " + ", ".join(str(a) for a in typing.get_args(annotation)) + "."
    return ""


def _field_default(field: FieldInfo, name: str) -> object:
    if name == "home":
        return "(per-user data folder, e.g. ~/.local/share/fuxiops)"
    return field.get_default(call_default_factory=True)


def _lines(model: type[BaseModel], prefix: str, instance: BaseModel | None) -> list[str]:
    out: list[str] = []
    docs = _docstrings(model)
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        sub = _submodel(field.annotation)
        doc = docs.get(name, "")
        if sub is not None:
            out.append(f"# --- {env}__*: {(sub.__doc__ or name).strip().splitlines()[0]}")
            out += _lines(sub, env + "__", getattr(instance, name) if instance is not None else None)
            continue
        default = getattr(instance, name) if instance is not None and name != "home" else _field_default(field, name)
        text = (doc or _FALLBACK.get(env) or name.replace("_", " ")) + _allowed(field.annotation)
        if env in _REQUIRED_BY_COMPOSE:
            text += " REQUIRED by docker compose (JSON list, e.g. [\"<sha256 of the key>\"])."
        out += ["# " + line for line in textwrap.wrap(text, 108)]
        out.append(f"# {env}={_render(default)}")
    return out


def env_example() -> str:
    """The full text of ``.env.example``."""
    parts = [_HEADER, "# ---------------------------------------------------------------------------------------------------------",
             "# Deployment (fuxiops.config): FUXIOPS_*",
             "# ---------------------------------------------------------------------------------------------------------",
             "# YAML file with the deployment configuration (optional; these variables override it).",
             "# FUXIOPS_CONFIG=/etc/fuxiops/deployment.yaml"]
    parts += _lines(FuxiopsConfig, "FUXIOPS_", None)
    try:
        from fuxiops.services.api.settings import ServiceSettings
    except ImportError:  # the API layer is not installed: nothing of it to document
        pass
    else:
        parts += ["# ---------------------------------------------------------------------------------------------------------",
                  "# REST service limits (fuxiops serve): FUXIOPS_SERVICE_*",
                  "# ---------------------------------------------------------------------------------------------------------"]
        parts += _lines(ServiceSettings, "FUXIOPS_SERVICE_", None)
        parts += ["# Folder for Prometheus metrics shared by several API worker processes (set by the entrypoint).",
                  "# PROMETHEUS_MULTIPROC_DIR=/tmp/fuxiops-prometheus"]
    parts += ["", _COMPOSE.rstrip("\n"),
              "# ---------------------------------------------------------------------------------------------------------",
              "# Native stack (`fuxiops stack up`): FUXIOPS_STACK_*",
              "# ---------------------------------------------------------------------------------------------------------"]
    parts += _lines(StackSettings, "FUXIOPS_STACK_", None)
    return "\n".join(parts) + "\n"
