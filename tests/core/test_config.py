"""Configuration: YAML validation with errors that name field, value and allowed values; env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuxiops.config import dump_config, load_config
from fuxiops.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "deploy.yaml"
    p.write_text(text)
    return p


def test_defaults_are_the_testbed(fuxiops_home: Path) -> None:
    cfg = load_config()
    assert cfg.grid == "2.8125deg" and cfg.variables.preset == "testbed"
    assert cfg.home == str(fuxiops_home)
    assert cfg.location("state") == str(fuxiops_home / "state")
    assert cfg.catalog_url == f"sqlite:///{fuxiops_home}/catalog.sqlite"
    assert len(cfg.variable_set.state_channels) == 56


def test_full_production_file(tmp_path: Path, fuxiops_home: Path) -> None:
    p = _write(tmp_path, """
name: production
grid: 0.25deg
variables: {preset: production}
data:
  products: s3://bucket/products
  catalog_url: postgresql+psycopg://fuxiops@db/fuxiops
schedule: {cron: "0 */6 * * *", cutoff_minutes: 120, forecast_steps: 40}
outputs:
  formats: [grib2, zarr]
  grib: {bits_per_value: 12, packing: grid_ccsds}
api: {port: 8080, workers: 4}
""")
    cfg = load_config(p)
    assert cfg.grid_spec.shape == (721, 1440)
    assert len(cfg.variable_set.output_channels) == 70
    assert cfg.location("products") == "s3://bucket/products"
    assert cfg.outputs.grib.packing == "grid_ccsds"
    assert "grid: 0.25deg" in dump_config(cfg)


def test_env_overrides_file(tmp_path: Path, fuxiops_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path, "api: {port: 8080}\n")
    monkeypatch.setenv("FUXIOPS_API__PORT", "9000")
    monkeypatch.setenv("FUXIOPS_GRID", "5.625deg")
    cfg = load_config(p)
    assert cfg.api.port == 9000 and cfg.grid == "5.625deg"


def test_custom_variables(tmp_path: Path, fuxiops_home: Path) -> None:
    p = _write(tmp_path, "variables: {preset: custom, upper_air: [z, t], levels: [500, 850], surface: [t2m]}\n")
    assert load_config(p).variable_set.state_names == ["z500", "z850", "t500", "t850", "t2m"]


@pytest.mark.parametrize("text,needles", [
    ("grid: 0.3deg\n", ["grid", "'0.3deg'", "allowed: 0.25deg"]),
    ("gird: 0.25deg\n", ["gird", "unknown field"]),
    ("api: {port: 70000}\n", ["api.port", "70000", "65535"]),
    ("outputs: {formats: [grib2, hdf4]}\n", ["outputs.formats.1", "'hdf4'", "'grib2'"]),
    ("variables: {preset: custom, upper_air: [q], levels: [500]}\n", ["variables", "'q'", "allowed"]),
    ("schedule: {cron: 'every 6 hours'}\n", ["schedule.cron", "5 fields"]),
    ("- just\n- a list\n", ["top level must be a mapping"]),
    ("grid: [unclosed\n", ["malformed YAML", "line"]),
])
def test_bad_files_name_the_problem(tmp_path: Path, fuxiops_home: Path, text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    for n in needles:
        assert n in str(e.value), str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
