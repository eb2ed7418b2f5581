"""Benchmark of forecaster compression (issue 11): teacher vs distilled students vs pruned networks.

One run, on the same data, of:
* the teacher (trained here with the same loop, labels only, when no trained teacher is given);
* students of a smaller architecture trained with no KD, output-MSE KD, channel-wise KD and
  entropy-corrected (dynamic) KD, same steps and data;
* the teacher pruned at several FLOP budgets by EMO-PMS, L1-magnitude, uniform and whole-network
  NSGA-II (same evaluation budget as EMO-PMS), all given the same constraint training;
* the EMO-PMS network at the smallest budget distilled with dynamic KD (pruned + distilled).

Measured: parameters, FLOPs per step, ONNX Runtime CPU latency per step at the testbed grid and
at 0.25 deg (same weights, static fields of that grid), latitude-weighted RMSE / ACC vs truth of
z500, t850, t2m, u10, msl at days 1, 3, 5, 10. Writes bench/results/compress_forecaster.{json,md}
and a Pareto plot bench/results/compress_pareto.png.

Data: the testbed world (``--world DIR`` with reanalysis.zarr + truth.zarr) when given or found
under $FUXIOPS_HOME/world; otherwise a synthetic wave world (labels = truth), which the results
name. Run: ``nice python bench/compress_forecaster.py [--steps N] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def archs() -> tuple[Any, Any]:
    from fuxiops.models.presets import ForecasterArch

    teacher = ForecasterArch(embed_dim=48, dim=96, head_dim=16, heads=(6,) * 6, mlp_hidden=(384,) * 6,
                             patch=(2, 2, 2), window=(4, 8), groups=8, cpb_hidden=32)
    student = ForecasterArch(embed_dim=24, dim=48, head_dim=16, heads=(3,) * 4, mlp_hidden=(96,) * 4,
                             patch=(2, 2, 2), window=(4, 8), groups=8, cpb_hidden=32)
    return teacher, student


def load_data(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    from fuxiops.catalog import VariableSet
    from fuxiops.compression.data import load_series, synthetic_series
    from fuxiops.grids import get_grid

    grid = get_grid(args.grid)
    vs = VariableSet(upper_air=("z", "t", "u", "v"), levels=(500, 850), surface=("t2m", "u10", "v10", "msl"),
                     diagnostics=())
    world = Path(args.world) if args.world else Path(os.environ.get("FUXIOPS_HOME", "~/.local/share/fuxiops"),
                                                      "world").expanduser()
    if (world / "reanalysis.zarr").exists() and (world / "truth.zarr").exists():
        rea = load_series(world / "reanalysis.zarr", vs, grid)
        truth = load_series(world / "truth.zarr", vs, grid)
        n = len(rea)
        train, _ = rea.split(0.7)
        _, test = truth.split(0.7)
        return train, test, vs, f"testbed world {world} ({n} states)"
    series = synthetic_series(vs, grid, args.train_times + args.test_times, seed=0)
    train, test = series.split(args.train_times / len(series))
    return train, test, vs, (f"synthetic travelling-wave world ({args.train_times} train + {args.test_times} "
                             "test 6-hourly states; labels = truth); no testbed world store was found")


def train_model(fc: Any, train: Any, method: str, steps: int, state: Path, teacher: Any = None,
                lr: float = 2e-3) -> dict:
    from fuxiops.compression.distill import TrainConfig, distill_checkpoint
    from fuxiops.compression.losses import KDConfig

    t0 = time.perf_counter()
    rep = distill_checkpoint(None, state.with_suffix(".ckpt"), train, student=fc, teacher=teacher,
                             kd=KDConfig(method=method, tau=1.0, kd_weight=1.0),  # type: ignore[arg-type]
                             train=TrainConfig(steps=steps, lr=lr, warmup=min(50, steps // 10),
                                               checkpoint_every=max(1, steps // 5)),
                             batch=2, state_dir=state, progress=False)
    rep["train_seconds"] = time.perf_counter() - t0
    return rep


def ort_latency(module: Any, x: Any, clock: Any, path: Path, repeats: int) -> dict:
    import onnxruntime as ort

    from fuxiops.compression.onnx_export import export_onnx

    if not path.exists():
        export_onnx(module, (x, clock), path, ["x", "clock"], ["y"], {"kind": "bench"}, exporter="legacy")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy(), "clock": clock.numpy()}
    sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return summary(times)


def at_grid(fc: Any, grid_name: str) -> Any:
    """The same weights on another grid (static fields of that grid; the network is grid-agnostic)."""
    import torch

    from fuxiops.grids import get_grid
    from fuxiops.models.features import static_fields
    from fuxiops.models.forecaster_net import ForecastModule

    g = get_grid(grid_name)
    m = ForecastModule(fc.module.arch, fc.module.n_state, fc.module.n_diag, torch.from_numpy(static_fields(g).planes))
    sd = {k: v for k, v in fc.module.state_dict().items() if k != "static"}
    m.load_state_dict(sd, strict=False)
    return m.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(Path("~/.cache/fuxiops/bench_compress").expanduser()),
                    help="Scratch folder (checkpoints, ONNX files); stages found there are reused.")
    ap.add_argument("--world", default=None)
    ap.add_argument("--grid", default="2.8125deg")
    ap.add_argument("--train-times", type=int, default=240)
    ap.add_argument("--test-times", type=int, default=100)
    ap.add_argument("--teacher-steps", type=int, default=400)
    ap.add_argument("--student-steps", type=int, default=300)
    ap.add_argument("--budgets", default="0.8,0.7,0.6")
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pop", type=int, default=8, help="NSGA-II population")
    ap.add_argument("--gens", type=int, default=3, help="NSGA-II generations per sub-network")
    ap.add_argument("--constraint-steps", type=int, default=15)
    ap.add_argument("--stages", default="teacher,students,pruning,final,measure",
                    help="Stages to run (stages found done in --work are reused; independent stages may run "
                         "in separate processes).")
    ap.add_argument("--skip-025", action="store_true", help="Skip the 0.25 deg latency.")
    args = ap.parse_args()

    import torch

    from fuxiops.compression.data import StateSeries  # noqa: F401
    from fuxiops.compression.distill import build_student
    from fuxiops.compression.evaluate import evaluate
    from fuxiops.compression.export import forecaster_example_inputs
    from fuxiops.compression.flops import count_flops, count_params
    from fuxiops.compression.prune import calibration_inputs
    from fuxiops.compression.pruning.baselines import magnitude_prune, uniform_prune, whole_network_search
    from fuxiops.compression.pruning.emo_pms import EmoPmsConfig, Evaluator, constraint_training, emo_pms
    from fuxiops.compression.pruning.forecaster import ForecasterPruning
    from fuxiops.compression.prune import pruned_forecaster
    from fuxiops.models.normalisation import compute_stats
    from fuxiops.models.torch_forecaster import TorchForecaster
    from fuxiops.state import from_channels

    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train, test, vs, data_desc = load_data(args)
    log(f"data: {data_desc}")
    ds = from_channels(train.data, vs.state_channels, train.grid, leading={"time": train.times})
    norm = compute_stats(ds, vs, train.grid, 6)
    t_arch, s_arch = archs()
    results: dict[str, Any] = {"models": {}, "data": data_desc}

    # ---- teacher ---------------------------------------------------------------------------------
    stages = set(args.stages.split(","))
    t_ckpt = work / "teacher.ckpt"
    if not (t_ckpt / "metadata.json").exists():
        if "teacher" not in stages:
            raise SystemExit("the teacher is not trained yet: run the 'teacher' stage first")
        log(f"training teacher {args.teacher_steps} steps")
        fc = TorchForecaster.build(t_arch, vs, train.grid, norm=norm, seed=0)
        fc.preset = "bench-teacher"
        rep = train_model(fc, train, "none", args.teacher_steps, work / "teacher", lr=2e-3)
        log(f"teacher trained in {rep['train_seconds']:.0f}s, final {rep['final_loss']}")
    teacher = TorchForecaster.load(t_ckpt)
    models: dict[str, Any] = {"teacher": teacher}
    info: dict[str, dict[str, Any]] = {"teacher": {"kind": "teacher"}}

    # ---- distilled students ----------------------------------------------------------------------
    for method in ("none", "mse", "cwd", "dynamic"):
        name = f"student-{method}"
        ck = work / f"{name}.ckpt"
        if not (ck / "metadata.json").exists():
            if "students" not in stages:
                continue
            log(f"training {name} ({args.student_steps} steps)")
            st = build_student(teacher, s_arch, seed=1)
            st.preset = "bench-student"
            rep = train_model(st, train, method, args.student_steps, work / name,
                              teacher=teacher if method != "none" else None)
            log(f"{name}: {rep['train_seconds']:.0f}s final {rep['final_loss']}")
        models[name] = TorchForecaster.load(ck)
        info[name] = {"kind": "distilled", "method": method}

    # ---- pruning ---------------------------------------------------------------------------------
    budgets = [float(b) for b in args.budgets.split(",")]
    net = ForecasterPruning(teacher.module, blocks_per_group=2)
    calib = calibration_inputs(teacher, train, batch=2, seed=0)
    cfg = EmoPmsConfig(pop_size=args.pop, n_gen=args.gens, constraint_steps=args.constraint_steps, seed=0)
    s_feed = train.sampler(2, seed=5)
    feed = lambda step: s_feed(step)[0]  # noqa: E731
    prune_rows: list[dict[str, Any]] = []
    prune_json = work / "pruning.json"
    prune_done = json.loads(prune_json.read_text()) if prune_json.exists() else {}
    shared_ev: Any = None
    for b in budgets:
        for method in ("emo-pms", "magnitude", "uniform", "whole-nsga2"):
            name = f"pruned-{method}-{b:g}"
            ck = work / f"{name}.ckpt"
            if name in prune_done and (ck / "metadata.json").exists():
                models[name] = TorchForecaster.load(ck)
                info[name] = prune_done[name]
                continue
            if "pruning" not in stages:
                continue
            if shared_ev is None:
                shared_ev = Evaluator(net, calib)
            ev = shared_ev
            ev.n_evaluations = 0
            t0 = time.perf_counter()
            row: dict[str, Any] = {"kind": "pruned", "method": method, "budget": b}
            if method == "emo-pms":
                r = emo_pms(net, calib, b, cfg, batches=feed, progress=False, evaluator=ev)
                model, row["n_evaluations"] = r.model, r.n_evaluations
                row["error_before_training"], row["error_after_training"] = r.error_before_training, \
                    r.error_after_training
                info.setdefault("_emo_evals", {})[f"{b:g}"] = r.n_evaluations  # type: ignore[index]
            else:
                if method == "magnitude":
                    res = magnitude_prune(ev, b)
                elif method == "uniform":
                    res = uniform_prune(ev, b)
                else:
                    budget_evals = prune_done.get(f"pruned-emo-pms-{b:g}", info.get(f"pruned-emo-pms-{b:g}", {})
                                                  ).get("n_evaluations", 60)
                    res = whole_network_search(ev, b, int(budget_evals), pop_size=args.pop, seed=0)
                    row["front"] = {"flops": res.search.front_f[:, 0].tolist(),
                                    "errors": res.search.front_f[:, 1].tolist()} if res.search else None
                model = res.model
                row["error_before_training"] = res.error
                constraint_training(net, model, feed, cfg.constraint_steps, cfg.lr)
                from fuxiops.compression.losses import lat_weighted_mse
                with torch.no_grad():
                    row["error_after_training"] = float(lat_weighted_mse(net.output(model.eval(), calib),
                                                                         ev.teacher_out))
                row["n_evaluations"] = ev.n_evaluations
            row["search_seconds"] = time.perf_counter() - t0
            row["flops_fraction"] = count_flops(model, calib) / ev.teacher_flops
            row["heads"], row["mlp_hidden"] = list(model.arch.heads), list(model.arch.mlp_hidden)
            fc_p = pruned_forecaster(teacher, model, f"pruned-{method}")
            fc_p.save(ck, training={"pruning": {k: v for k, v in row.items() if k != "front"}})
            models[name] = TorchForecaster.load(ck)
            info[name] = row
            prune_done[name] = row
            prune_json.write_text(json.dumps(prune_done, indent=1))
            log(f"{name}: flops {row['flops_fraction']:.3f} err {row['error_before_training']:.4g} -> "
                f"{row['error_after_training']:.4g} ({row['search_seconds']:.0f}s, {row['n_evaluations']} evals)")
        prune_rows.append({"budget": b})

    # ---- pruned + distilled (the compressed forecaster) -------------------------------------------
    smallest = f"pruned-emo-pms-{min(budgets):g}"
    name = "pruned+distilled"
    ck = work / "pruned-distilled.ckpt"
    if not (ck / "metadata.json").exists() and "final" in stages and (work / f"{smallest}.ckpt").exists():
        log("distilling the smallest EMO-PMS network")
        st = TorchForecaster.load(work / f"{smallest}.ckpt")
        rep = train_model(st, train, "dynamic", args.student_steps, work / "pruned-distilled", teacher=teacher,
                          lr=5e-4)
    if (ck / "metadata.json").exists():
        models[name] = TorchForecaster.load(ck)
        info[name] = {"kind": "pruned+distilled", "from": smallest}
    if "measure" not in stages:
        log("done (no measure stage)")
        return

    # ---- measurements ----------------------------------------------------------------------------
    table_rows = []
    mdir = work / "measured"
    mdir.mkdir(exist_ok=True)
    for name, fc in models.items():
        row = info[name]
        cached = mdir / f"{name}.json"
        if cached.exists():
            row.update(json.loads(cached.read_text()))
            table_rows.append(name)
            continue
        row["params"] = count_params(fc.module)
        # Latency and FLOPs at the testbed grid whatever grid the skill is measured on (same weights).
        mt = at_grid(fc, "2.8125deg")
        x = torch.randn(1, 2, fc.module.n_state, 65, 128) * mt.std[:, None, None] + mt.mean[:, None, None]
        clock = forecaster_example_inputs(fc)[1]
        row["flops_per_step"] = count_flops(mt, (x, clock))
        log(f"latency {name}")
        row["ort_cpu_latency_s"] = ort_latency(mt, x, clock, work / f"{name}.onnx", args.repeats)
        if not args.skip_025 and (name in ("teacher", "student-dynamic", "pruned+distilled")
                                  or name == f"pruned-emo-pms-{min(budgets):g}"):
            m25 = at_grid(fc, "0.25deg")
            x25 = torch.randn(1, 2, x.shape[2], 721, 1440) * m25.std[:, None, None] + m25.mean[:, None, None]
            row["flops_per_step_025"] = count_flops(m25, (x25, clock))
            row["ort_cpu_latency_025_s"] = ort_latency(m25, x25, clock, work / f"{name}-025.onnx",
                                                       max(2, args.repeats // 2))
            del m25, x25
        log(f"skill {name}")
        sk = evaluate(fc, test, (1, 3, 5, 10), n_inits=args.inits, name=name)
        row["skill"] = sk.to_dict()
        cached.write_text(json.dumps(row, default=str))
        table_rows.append(name)
    # Interleaved latency pass: every model once per round, so that load changes on this shared machine
    # hit all models alike and the ratios stay meaningful (each model was also timed alone above).
    import onnxruntime as ort
    sessions = {}
    for name in table_rows:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sessions[name] = ort.InferenceSession(str(work / f"{name}.onnx"), sess_options=opts,
                                              providers=["CPUExecutionProvider"])
    feeds_t = {"x": (torch.randn(1, 2, teacher.module.n_state, 65, 128) * teacher.module.std[:, None, None]
                     + teacher.module.mean[:, None, None]).numpy(),
               "clock": forecaster_example_inputs(teacher)[1].numpy()}
    inter: dict[str, list[float]] = {n: [] for n in table_rows}
    for name in table_rows:
        sessions[name].run(None, feeds_t)
    for _ in range(args.repeats * 2):
        for name in table_rows:
            t = time.perf_counter()
            sessions[name].run(None, feeds_t)
            inter[name].append(time.perf_counter() - t)
    for name in table_rows:
        info[name]["ort_cpu_latency_alone_s"] = info[name]["ort_cpu_latency_s"]
        info[name]["ort_cpu_latency_s"] = summary(inter[name])
    t_info = info["teacher"]
    rows = []
    for name in table_rows:
        r = info[name]
        sk = r["skill"]
        lat = r["ort_cpu_latency_s"]["median"]
        lat25 = r.get("ort_cpu_latency_025_s", {}).get("median")
        cells = [name, f"{r['params']:,}", f"{r['flops_per_step'] / 1e9:.3f}",
                 f"{t_info['flops_per_step'] / r['flops_per_step']:.2f}x",
                 f"{lat * 1e3:.1f}", f"{t_info['ort_cpu_latency_s']['median'] / lat:.2f}x",
                 f"{lat25:.2f}" if lat25 else "-"]
        for ch in ("z500", "t850", "t2m", "u10", "msl"):
            if ch in sk["rmse"]:
                cells.append(" / ".join(f"{sk['rmse'][ch][f'day{d}']:.3g}" for d in (1, 3, 5, 10)))
        cells.append(" / ".join(f"{sk['acc']['z500'][f'day{d}']:.2f}" for d in (1, 3, 5, 10)))
        rows.append(cells)
    headers = ["model", "params", "GFLOPs/step", "FLOP reduction", "ORT CPU ms/step (2.8125)", "speed-up",
               "ORT CPU s/step (0.25)", "z500 RMSE d1/3/5/10", "t850", "t2m", "u10", "msl", "z500 ACC d1/3/5/10"]
    md = markdown_table(headers, rows)
    print(md)
    results.update(models=info, machine=machine_facts(),
                   packages=package_versions(["torch", "onnx", "onnxruntime", "pymoo", "numpy"]),
                   command=" ".join(["python", "bench/compress_forecaster.py", *sys.argv[1:]]),
                   settings=vars(args), teacher_arch=t_arch.to_dict(), student_arch=s_arch.to_dict())
    write_result("compress_forecaster", results)
    (RESULTS / "compress_forecaster.md").write_text(f"# Forecaster compression\n\nData: {data_desc}\n\n"
                                                    f"Command: `{results['command']}`\n\n{md}\n")
    plot(info, RESULTS / "compress_pareto.png")
    log("done")


def plot(info: dict[str, Any], png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    marks = {"teacher": ("k", "*"), "distilled": ("tab:blue", "o"), "pruned+distilled": ("tab:red", "D")}
    pcol = {"emo-pms": "tab:red", "magnitude": "tab:gray", "uniform": "tab:olive", "whole-nsga2": "tab:purple"}
    for name, r in info.items():
        if name.startswith("_") or "skill" not in r:
            continue
        y = r["skill"]["rmse"]["z500"]["day5"]
        x = r["flops_per_step"] / 1e9
        if r["kind"] == "pruned":
            ax.scatter(x, y, c=pcol[r["method"]], marker="s", label=f"pruned {r['method']}")
        else:
            c, m = marks[r["kind"]]
            ax.scatter(x, y, c=c, marker=m, s=80, label=name)
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    ax.set_xlabel("GFLOPs per step (2.8125 deg grid)")
    ax.set_ylabel("z500 RMSE at day 5 (m2 s-2)")
    ax.set_title("Forecaster compression: skill vs FLOPs")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main()
