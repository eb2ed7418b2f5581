"""Training throughput (samples/s) of each FuXiWeather2 stage for a preset on this machine.

Runs every stage for a fixed number of steps on a seeded synthetic world at
the chosen grid (the data path is the real one: Zarr stores read through the
training data layer) and reports samples per second per stage, side by side
with the forecaster's inference rate on the same machine (the ceiling a
training step, forward + backward, is compared against).

    python bench/train_throughput.py --preset small --grid 2.8125deg --steps 30 --batch 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, write_result  # noqa: E402

from fuxiops.grids import get_grid  # noqa: E402
from fuxiops.models.torch_forecaster import TorchForecaster  # noqa: E402
from fuxiops.models.training.config import TrainConfig  # noqa: E402
from fuxiops.models.training.stages import STAGE_FUNCTIONS, STAGES, prepare_normalisation  # noqa: E402
from fuxiops.models.training.synthetic import build_synthetic_world  # noqa: E402


def _lane(data: dict) -> float:
    torch.set_num_threads(1)
    cfg = TrainConfig(**data)
    STAGE_FUNCTIONS["forecaster"](cfg, progress=False)
    return float(json.loads((cfg.out_path / "forecaster" / "metrics.json").read_text())["samples_per_second"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--grid", default="2.8125deg")
    ap.add_argument("--steps", type=int, default=6, help="training steps per stage (the first is warm-up)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--lanes", type=int, default=2, help="also train stage 1 in this many single-thread "
                    "processes at once (0 or 1: skip)")
    ap.add_argument("--name", default="train_throughput")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    grid = get_grid(args.grid)
    rows, result = [], {"machine": machine_facts(), "packages": package_versions(["torch", "numpy", "zarr"]),
                        "preset": args.preset, "grid": args.grid, "batch": args.batch, "stages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        world = build_synthetic_world(Path(tmp) / "world", grid, n_times=48)
        fast = {"total_steps": args.steps, "warmup_steps": 1, "batch_size": args.batch,
                "checkpoint_every": 10_000, "log_every": 1}
        cfg = TrainConfig(world=str(world), out=str(Path(tmp) / "run"), grid=args.grid, preset=args.preset,
                          train_period={"start": "2023-01-01", "end": "2023-01-12T18"},
                          obs_groups=["surface", "radiance"], insitu_groups=["surface"], forecaster=fast,
                          assimilator={**fast, "max_lead": 24}, unroll={**fast, "cycles": 2},
                          finetune={**fast, "max_rollout": 2},
                          cycled={**fast, "rounds": 1, "chains": 2, "chain_cycles": 4})
        prepare_normalisation(cfg)
        for stage in STAGES:
            t0 = time.perf_counter()
            STAGE_FUNCTIONS[stage](cfg, progress=False)
            wall = time.perf_counter() - t0
            samples = args.steps * args.batch
            # Stage 5's wall time includes its cycling (2 chains x 4 cycles); its loop is round 1's.
            folder = Path(tmp) / "run" / stage / ("round_1" if stage == "cycled" else "")
            loop = json.loads((folder / "metrics.json").read_text())
            result["stages"][stage] = {"steps": args.steps, "wall_s": wall, "samples_per_s": samples / wall,
                                       "loop_samples_per_s": loop["samples_per_second"]}
            rows.append([stage, args.steps, f"{wall:.1f}", f"{samples / wall:.3f}",
                         f"{loop['samples_per_second']:.3f}"])
        if args.lanes > 1:
            # The peer of one process using every core: `lanes` single-thread processes training
            # stage 1 side by side (how bench/training_claims.py --jobs trains independent stages).
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            data = cfg.model_dump(mode="json")
            t0 = time.perf_counter()
            with ProcessPoolExecutor(args.lanes, mp_context=get_context("spawn")) as pool:
                rates = list(pool.map(_lane, [{**data, "out": str(Path(tmp) / f"lane{i}")}
                                              for i in range(args.lanes)]))
            wall = time.perf_counter() - t0
            agg = float(sum(rates))
            result["lanes"] = {"n": args.lanes, "threads_each": 1, "loop_samples_per_s_each": rates,
                               "aggregate_loop_samples_per_s": agg, "wall_s": wall}
            rows.append([f"forecaster, {args.lanes} single-thread processes", args.steps, f"{wall:.1f}",
                         f"{args.lanes * args.steps * args.batch / wall:.3f}", f"{agg:.3f} (sum)"])
        fc = TorchForecaster.load(Path(tmp) / "run" / "forecaster" / "forecaster")
        x = np.zeros((2, len(fc.coords.variables.state_channels), *grid.shape), np.float32)
        fc.step(x, np.datetime64("2023-01-01T00"))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fc.step(x, np.datetime64("2023-01-01T00"))
            times.append(time.perf_counter() - t0)
        inf = 1.0 / float(np.median(times))
        result["inference_samples_per_s"] = inf
        rows.append(["(inference, forward only)", 3, f"{np.median(times):.2f} per step", f"{inf:.3f}", "-"])
    result["note"] = ("stage wall time includes the stage's set-up (model build, data open, normalisation, "
                      "checkpoint writes): samples/s is a lower bound on the steady training rate; the loop "
                      "rate is the engine's (first step included)")
    path = write_result(args.name, result)
    table = markdown_table(["stage", "steps", "wall incl. set-up (s)", "samples/s", "samples/s of the loop"],
                           rows)
    (path.parent / f"{args.name}.md").write_text(
        f"# {args.name}\n\n{args.preset} at {args.grid}, batch {args.batch}, {machine_facts()['cores']} cores; "
        f"{result['note']}.\n\n{table}\n")
    print(table)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
