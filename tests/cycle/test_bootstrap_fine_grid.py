"""The untrained bootstrap on fine grids: bounded-memory normalisation and honest `untrained` marking.

Two bugs found running the cycle at 0.25 degrees: the bootstrap's normalisation
loaded up to 124 states at once (~29 GB at 0.25 degrees), and a deployment whose
``models.*`` point at an untrained checkpoint directory ran unmarked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cycle_testbed_data as td


def test_normalisation_streams_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fuxiops.config import load_config
    from fuxiops.models import normalisation
    from fuxiops.pipeline.cycle import components as comp

    cfg = load_config(td.make_home(tmp_path / "home", days=2.0))
    seen: list[int] = []
    real = normalisation.compute_stats

    def spy(data, *a, **kw):  # type: ignore[no-untyped-def]
        chunks = [data] if hasattr(data, "data_vars") else data

        def sizes():  # type: ignore[no-untyped-def]
            for c in chunks:
                seen.append(int(c.sizes["time"]))
                yield c
        return real(sizes(), *a, **kw)

    monkeypatch.setattr(normalisation, "compute_stats", spy)
    monkeypatch.setattr(comp, "NORM_CHUNK_BYTES", 10**12)
    whole, _ = comp._norm_from_source(cfg)
    assert seen == [9]  # 2 days of 6-hourly states + 1: one chunk when the budget allows
    seen.clear()
    per_state = len(cfg.variable_set.state_channels) * cfg.grid_spec.n_lat * cfg.grid_spec.n_lon * 4
    monkeypatch.setattr(comp, "NORM_CHUNK_BYTES", 2 * per_state + 1)
    streamed, _ = comp._norm_from_source(cfg)
    assert seen == [2, 2, 2, 2, 1]  # never more than the budget in memory
    assert (streamed.n_samples, streamed.n_tendencies) == (whole.n_samples, whole.n_tendencies) == (9, 8)
    for k, a in whole.tensors().items():
        # Tendencies pair states across chunk boundaries, so the statistics are the same.
        np.testing.assert_allclose(streamed.tensors()[k], a, rtol=1e-4, atol=1e-6, err_msg=k)


def test_configured_untrained_checkpoint_is_marked_untrained(tmp_path: Path) -> None:
    from fuxiops.config import load_config
    from fuxiops.pipeline.cycle import components as comp

    path = td.make_home(tmp_path / "home", days=1.0)
    cfg = load_config(path)
    boot = comp.load_networks(cfg)  # builds the bootstrap checkpoints under the home
    assert boot.untrained
    models = {**cfg.models.model_dump(), "forecaster": boot.info["forecaster"]["checkpoint"],
              "assimilator": boot.info["assimilator"]["checkpoint"]}
    explicit = comp.load_networks(load_config(path, models=models))
    assert explicit.info["forecaster"]["checkpoint"] == str(comp.untrained_dir(cfg) / "forecaster")
    assert explicit.info["forecaster"]["untrained"] and explicit.info["assimilator"]["untrained"]
    assert explicit.untrained
