"""Benchmark of forecaster compression (issue 11): the shipped trained teacher vs distilled students vs
pruned networks, scored on a held-out testbed world.

One run, on the same data, of:
* the teacher: the shipped checkpoint (``--teacher``, default models/checkpoints/2.8125deg/forecaster,
  preset ``small``; its training record names the world it was trained on);
* students of a smaller architecture (>= 4x fewer FLOPs) trained with no KD, output-MSE KD,
  channel-wise KD and entropy-corrected (dynamic) KD, same steps and batches, on the teacher's training
  data (reanalysis of ``--train-world`` within the teacher's training period: the teacher's own world,
  or a shorter world of the same seed and climate when that one is not at hand);
* the teacher pruned at several FLOP budgets by EMO-PMS (one decomposed search serves all budgets),
  L1-magnitude, uniform and whole-network NSGA-II (one search with as many evaluations as EMO-PMS);
  heads, MLP groups and conv channel groups are the choices of every method. At every budget the
  pruned networks are scored by their one-step error on held-out data; at the smallest budget all
  four are given the same cross-network constraint training and scored by rollouts;
* the EMO-PMS network at the smallest budget distilled with dynamic KD (pruned + distilled).

Measured: parameters, FLOPs per step, ONNX Runtime CPU latency per step at the testbed grid (and at
0.25 deg for a few models, same weights and static fields of that grid), latitude-weighted RMSE / ACC
vs truth of z500, t850, t2m, u10, msl at the lead days, on the truth of ``--test-world`` (a world
built with another seed: weather the teacher never saw). Writes bench/results/compress_forecaster.
{json,md} and bench/results/compress_pareto.png. Stages found done in ``--work`` are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts, markdown_table, package_versions, summary, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
METHODS = ("emo-pms", "magnitude", "uniform", "whole-nsga2")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def student_arch(teacher_arch: Any) -> Any:
    """A smaller ``small``: half the widths, half the Swin blocks (about 5x fewer FLOPs)."""
    from dataclasses import replace

    depth = max(1, teacher_arch.depth // 2)
    return replace(teacher_arch, embed_dim=teacher_arch.embed_dim // 2, dim=teacher_arch.dim // 2,
                   heads=(max(1, teacher_arch.heads[0] // 2),) * depth,
                   mlp_hidden=(teacher_arch.mlp_hidden[0] // 2,) * depth,
                   cpb_hidden=max(16, teacher_arch.cpb_hidden // 2), res_hidden=())


def load_data(args: argparse.Namespace, teacher: Any) -> tuple[Any, Any, str]:
    from fuxiops.compression.data import load_series

    c = teacher.coords
    period = (teacher.training.get("campaign", {}) or {}).get("train_period", {}) if isinstance(
        teacher.training, dict) else {}
    train = load_series(Path(args.train_world) / "reanalysis.zarr", c.variables, c.grid,
                        start=period.get("start"), end=period.get("end"))
    test = load_series(Path(args.test_world) / "truth.zarr", c.variables, c.grid)
    own = ((teacher.training or {}).get("campaign") or {}).get("world") if isinstance(teacher.training, dict) else None
    whose = ("the teacher's training data" if own and Path(own).resolve() == Path(args.train_world).resolve()
             else f"within the teacher's training period; the teacher itself was trained on {own or 'unrecorded data'}")
    desc = (f"train: {train.source} {str(train.times[0])[:13]}..{str(train.times[-1])[:13]} ({len(train)} states, "
            f"{whose}); test: {test.source} ({len(test)} states, "
            f"{str(test.times[0])[:13]}..{str(test.times[-1])[:13]}, another world seed)")
    return train, test, desc


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
    m = ForecastModule(fc.module.arch, fc.module.n_state, fc.module.n_diag,
                       torch.from_numpy(static_fields(g).planes))
    sd = {k: v for k, v in fc.module.state_dict().items() if k != "static"}
    m.load_state_dict(sd, strict=False)
    return m.eval()


def one_step_errors(net: Any, model: Any, batches: list, teacher_out: list) -> dict[str, float]:
    """Lat-weighted MSE (normalised output units) of one step vs the teacher and vs the truth labels."""
    import torch

    from fuxiops.compression.losses import lat_weighted_mse

    m = model.eval()
    e_t, e_y = [], []
    with torch.no_grad():
        for ((x, clock), y), t_out in zip(batches, teacher_out):
            out = net.output(m, (x, clock))
            n = m.n_state
            target = (y[:, :n] - x[:, -1, :n] - m.res_mean[:, None, None]) / m.res_std[:, None, None]
            e_t.append(float(lat_weighted_mse(out, t_out)))
            e_y.append(float(lat_weighted_mse(out[:, :n], target)))
    return {"test_error_vs_teacher": float(np.mean(e_t)), "test_error_vs_truth": float(np.mean(e_y))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=str(ROOT / "models/checkpoints/2.8125deg/forecaster"))
    ap.add_argument("--train-world", default="/work/ckworld", help="World whose reanalysis trained the teacher.")
    ap.add_argument("--test-world", default="/tmp/cmpworld", help="Held-out world (another seed) for scoring.")
    ap.add_argument("--work", default=str(Path("~/.cache/fuxiops/bench_compress_trained").expanduser()),
                    help="Scratch folder (checkpoints, ONNX files, stage results); stages found there are reused.")
    ap.add_argument("--student-steps", type=int, default=40)
    ap.add_argument("--student-seeds", type=int, default=1, help="Trainings of each KD method (seeds 0..N-1).")
    ap.add_argument("--final-steps", type=int, default=40, help="Dynamic-KD steps of the pruned network.")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--budgets", default="0.7,0.6,0.45,0.35")
    ap.add_argument("--pop", type=int, default=6, help="NSGA-II population")
    ap.add_argument("--gens", type=int, default=2, help="NSGA-II generations per sub-network")
    ap.add_argument("--constraint-steps", type=int, default=3)
    ap.add_argument("--calib-batch", type=int, default=1)
    ap.add_argument("--test-batches", type=int, default=2, help="Held-out batches (of 2) for one-step errors.")
    ap.add_argument("--inits", type=int, default=2)
    ap.add_argument("--lead-days", default="1,3,5,10")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-025", default="teacher,pruned+distilled",
                    help="Models timed at 0.25 deg too (comma separated; '' for none).")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (training, search, rollouts).")
    ap.add_argument("--stages", default="students,pruning,final,measure")
    ap.add_argument("--name", default="compress_forecaster",
                    help="Result name: bench/results/NAME.{json,md} (and NAME_pareto.png unless the default).")
    args = ap.parse_args()

    import torch

    from fuxiops.compression.distill import TrainConfig, build_student, distill_checkpoint
    from fuxiops.compression.evaluate import evaluate
    from fuxiops.compression.export import forecaster_example_inputs
    from fuxiops.compression.flops import count_flops, count_params
    from fuxiops.compression.losses import KDConfig
    from fuxiops.compression.prune import pruned_forecaster
    from fuxiops.compression.pruning.baselines import magnitude_prune, uniform_prune, whole_network_search
    from fuxiops.compression.pruning.emo_pms import EmoPmsConfig, Evaluator, constraint_training, emo_pms, \
        search_fronts
    from fuxiops.compression.nsga import nsga2
    from fuxiops.compression.pruning.forecaster import ForecasterPruning
    from fuxiops.errors import FuxiopsError
    from fuxiops.models.torch_forecaster import TorchForecaster

    # One torch thread: on this shared, busy 2-core machine two threads spin against other jobs and are
    # several times slower (ONNX Runtime latency is measured with 2 threads all the same).
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stages = set(args.stages.split(","))
    teacher = TorchForecaster.load(args.teacher)
    train, test, data_desc = load_data(args, teacher)
    log(f"data: {data_desc}")
    s_arch = student_arch(teacher.arch)
    models: dict[str, Any] = {"teacher": teacher}
    info: dict[str, dict[str, Any]] = {"teacher": {"kind": "teacher", "checkpoint": args.teacher}}
    memo: dict[Any, Any] = {}
    timings: dict[str, float] = {}

    def train_cfg(steps: int, lr: float, seed: int = 0) -> Any:
        return TrainConfig(steps=steps, lr=lr, warmup=max(1, steps // 10), checkpoint_every=max(1, steps),
                           seed=seed)

    # ---- distilled students ----------------------------------------------------------------------
    # Every method trains the same student from the same initial weights on the same batches; with
    # --student-seeds N it does so N times (initial weights and batch order from the seed), so that
    # the KD comparison can be told apart from seed noise.
    t0 = time.perf_counter()
    for seed in range(args.student_seeds):
        for method in ("none", "mse", "cwd", "dynamic"):
            name = f"student-{method}" + (f"-s{seed}" if seed else "")
            ck = work / f"{name}.ckpt"
            if not (ck / "metadata.json").exists():
                if "students" not in stages:
                    continue
                log(f"training {name} ({args.student_steps} steps)")
                st = build_student(teacher, s_arch, seed=1 + seed)
                st.preset = "small-student"
                t1 = time.perf_counter()
                rep = distill_checkpoint(None, ck, train, student=st,
                                         teacher=teacher if method != "none" else None,
                                         kd=KDConfig(method=method, tau=1.0, kd_weight=1.0),  # type: ignore[arg-type]
                                         train=train_cfg(args.student_steps, args.lr, seed), batch=2,
                                         state_dir=work / name, progress=False, teacher_memo=memo)
                log(f"{name}: {time.perf_counter() - t1:.0f}s, final {rep['final_loss']}")
            models[name] = TorchForecaster.load(ck)
            info[name] = {"kind": "distilled", "method": method, "steps": args.student_steps, "seed": seed}
    timings["students_s"] = time.perf_counter() - t0

    # ---- pruning ---------------------------------------------------------------------------------
    budgets = sorted((float(b) for b in args.budgets.split(",")), reverse=True)
    smallest = min(budgets)
    prune_json = work / "pruning.json"
    pruning: dict[str, Any] = json.loads(prune_json.read_text()) if prune_json.exists() else {}
    net = ForecasterPruning(teacher.module, blocks_per_group=2)
    test_sampler = test.sampler(2, seed=123)
    test_batches = [test_sampler(i) for i in range(args.test_batches)]
    with torch.no_grad():
        test_teacher = [net.output(teacher.module, b[0]) for b in test_batches]
    if "pruning" in stages and not pruning.get("done"):
        t0 = time.perf_counter()
        s_cal = train.sampler(args.calib_batch, seed=0)
        calib = s_cal(0)[0]
        s_feed = train.sampler(2, seed=5)
        feed_memo: dict[int, Any] = {}

        def feed(step: int) -> Any:
            if step not in feed_memo:
                feed_memo[step] = s_feed(step)[0]
            return feed_memo[step]

        t_memo: dict[int, Any] = {}
        cfg = EmoPmsConfig(pop_size=args.pop, n_gen=args.gens, constraint_steps=0, seed=0)
        log("calibrating the evaluator (FLOPs per unit)")
        ev = Evaluator(net, calib)
        log(f"teacher {ev.teacher_flops / 1e9:.3f} GFLOPs per calibration batch; {len(net.units)} units in "
            f"{len(net.subnets)} sub-networks {net.subnets}")
        ev.n_evaluations = 0
        t1 = time.perf_counter()
        fronts = search_fronts(ev, cfg)
        n_dec = ev.n_evaluations
        pruning["emo_search"] = {"evaluations": n_dec, "seconds": time.perf_counter() - t1,
                                 "fronts": {fr.subnet: {"flops": fr.flops, "errors": fr.errors, "counts": fr.counts}
                                            for fr in fronts}}
        log(f"EMO-PMS decomposed search: {n_dec} evaluations, {time.perf_counter() - t1:.0f}s")
        t1 = time.perf_counter()
        ev.n_evaluations = 0
        units = net.units

        def whole_eval(xv: tuple[int, ...]) -> tuple[float, float]:
            f, e, _ = ev.measure({u.name: int(v) for u, v in zip(units, xv)})
            return f, e

        whole_search = nsga2(whole_eval, [u.min_keep for u in units], [u.full for u in units], pop_size=args.pop,
                             seed=0, seeds=[[u.full for u in units]], max_evaluations=n_dec)
        n_whole = whole_search.n_evaluations
        # Best error within each budget as a function of evaluations (search order).
        curve = {}
        for b in budgets:
            lim = b * ev.teacher_flops * 1.0001
            best, trace = np.inf, []
            for x, f in whole_search.evaluations:  # type: ignore[union-attr]
                if f[0] <= lim:
                    best = min(best, f[1])
                trace.append(best if np.isfinite(best) else None)
            curve[f"{b:g}"] = trace
        pruning["whole_search"] = {"evaluations": n_whole, "seconds": time.perf_counter() - t1,
                                   "front": {"flops": whole_search.front_f[:, 0].tolist(),  # type: ignore[union-attr]
                                             "errors": whole_search.front_f[:, 1].tolist()},  # type: ignore
                                   "best_within_budget_by_evaluation": curve}
        log(f"whole-network NSGA-II: {n_whole} evaluations, {time.perf_counter() - t1:.0f}s")
        rows: dict[str, Any] = {}
        for b in budgets:
            b_eff = b
            # Baselines first: EMO-PMS and the whole-network search then get the smallest FLOPs the baselines
            # reached (uniform pruning in particular lands well below the nominal budget), so every
            # comparison is at equal or fewer FLOPs for the searched networks.
            for method in ("magnitude", "uniform", "emo-pms", "whole-nsga2"):
                name = f"pruned-{method}-{b:g}"
                t1 = time.perf_counter()
                ev.n_evaluations = 0
                try:
                    if method == "emo-pms":
                        b_eff = min([b] + [rows[f"pruned-{m}-{b:g}"]["flops_fraction"] for m in ("magnitude", "uniform")
                                           if "flops_fraction" in rows.get(f"pruned-{m}-{b:g}", {})])
                        r = emo_pms(net, calib, b_eff, cfg, progress=False, evaluator=ev, fronts=fronts)
                        model, counts, err0 = r.model, r.counts, r.error_before_training
                    elif method == "magnitude":
                        res = magnitude_prune(ev, b)
                        model, counts, err0 = res.model, res.counts, res.error
                    elif method == "uniform":
                        res = uniform_prune(ev, b)
                        model, counts, err0 = res.model, res.counts, res.error
                    else:
                        res = whole_network_search(ev, b_eff, n_dec, search=whole_search)
                        model, counts, err0 = res.model, res.counts, res.error
                except FuxiopsError as e:  # e.g. a front that does not reach a small budget: a result too
                    rows[name] = {"kind": "pruned", "method": method, "budget": b, "failed": str(e)}
                    log(f"{name}: {e}")
                    continue
                row: dict[str, Any] = {"kind": "pruned", "method": method, "budget": b,
                                       "budget_used": b_eff if method in ("emo-pms", "whole-nsga2") else b,
                                       "counts": counts,
                                       "calib_error": err0, "flops": count_flops(model, calib),
                                       "params": count_params(model)}
                row["flops_fraction"] = row["flops"] / ev.teacher_flops
                row["search_evaluations"] = {"emo-pms": n_dec, "whole-nsga2": n_whole}.get(method, 0) + \
                    ev.n_evaluations
                row.update(one_step_errors(net, model, test_batches, test_teacher))
                a = model.arch
                row["arch"] = {"heads": list(a.heads), "mlp_hidden": list(a.mlp_hidden),
                               "res_hidden": [a.down_hidden, a.up_hidden]}
                if b == smallest:
                    log(f"{name}: constraint training ({args.constraint_steps} steps per sub-network)")
                    constraint_training(net, model, feed, args.constraint_steps, 5e-4, teacher_memo=t_memo)
                    after = one_step_errors(net, model, test_batches, test_teacher)
                    row["after_training"] = after
                    pruned_forecaster(teacher, model, f"pruned-{method}").save(
                        work / f"{name}.ckpt", training={"pruning": {k: v for k, v in row.items()}})
                row["seconds"] = time.perf_counter() - t1
                rows[name] = row
                log(f"{name}: {row['flops_fraction']:.3f} of the teacher's FLOPs, one-step test error vs teacher "
                    f"{row['test_error_vs_teacher']:.4g}, vs truth {row['test_error_vs_truth']:.4g} "
                    f"({row['seconds']:.0f}s)")
        pruning.update(rows=rows, teacher_flops=ev.teacher_flops, budgets=budgets, done=True,
                       teacher_test=one_step_errors(net, teacher.module, test_batches, test_teacher),
                       seconds=time.perf_counter() - t0)
        prune_json.write_text(json.dumps(pruning, indent=1, default=float))
    for method in METHODS:
        name = f"pruned-{method}-{smallest:g}"
        if (work / f"{name}.ckpt" / "metadata.json").exists():
            models[name] = TorchForecaster.load(work / f"{name}.ckpt")
            info[name] = {"kind": "pruned", "method": method, "budget": smallest}

    # ---- pruned + distilled (the compressed forecaster) -------------------------------------------
    ck = work / "pruned-distilled.ckpt"
    src = work / f"pruned-emo-pms-{smallest:g}.ckpt"
    if not (ck / "metadata.json").exists() and "final" in stages and src.exists():
        log(f"distilling the smallest EMO-PMS network ({args.final_steps} steps, dynamic KD)")
        t0 = time.perf_counter()
        st = TorchForecaster.load(src)
        distill_checkpoint(None, ck, train, student=st, teacher=teacher,
                           kd=KDConfig(method="dynamic", tau=1.0, kd_weight=1.0),
                           train=train_cfg(args.final_steps, 2e-4), batch=2, state_dir=work / "pruned-distilled",
                           progress=False, teacher_memo=memo)
        timings["final_s"] = time.perf_counter() - t0
    if (ck / "metadata.json").exists():
        models["pruned+distilled"] = TorchForecaster.load(ck)
        info["pruned+distilled"] = {"kind": "pruned+distilled", "from": src.name, "steps": args.final_steps}
    if "measure" not in stages:
        log("done (no measure stage)")
        return

    # ---- measurements ----------------------------------------------------------------------------
    lead_days = tuple(float(d) for d in args.lead_days.split(","))
    mdir = work / "measured"
    mdir.mkdir(exist_ok=True)
    names = list(models)
    lat025 = [n for n in args.latency_025.split(",") if n]
    for name in names:
        fc = models[name]
        row = info[name]
        cached = mdir / f"{name}.json"
        if cached.exists():
            row.update(json.loads(cached.read_text()))
            continue
        t0 = time.perf_counter()
        row["params"] = count_params(fc.module)
        x, clock = forecaster_example_inputs(fc, seed=0)
        row["flops_per_step"] = count_flops(fc.module, (x, clock))
        log(f"latency {name}")
        row["ort_cpu_latency_s"] = ort_latency(fc.module, x, clock, work / f"{name}.onnx", args.repeats)
        if name in lat025:
            m25 = at_grid(fc, "0.25deg")
            x25 = (torch.randn(1, 2, x.shape[2], 721, 1440) * m25.std[:, None, None] + m25.mean[:, None, None])
            row["flops_per_step_025"] = count_flops(m25, (x25, clock))
            row["ort_cpu_latency_025_s"] = ort_latency(m25, x25, clock, work / f"{name}-025.onnx", 1)
            del m25, x25
        log(f"skill {name}")
        with torch.no_grad():
            sk = evaluate(fc, test, lead_days, n_inits=args.inits, name=name)
        row["skill"] = sk.to_dict()
        row["measure_seconds"] = time.perf_counter() - t0
        cached.write_text(json.dumps(row, default=str))
    # Interleaved latency pass: every model once per round, so that load changes on this shared machine
    # hit all models alike and the ratios stay meaningful (each model was also timed alone above).
    import onnxruntime as ort
    sessions = {}
    for name in names:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sessions[name] = ort.InferenceSession(str(work / f"{name}.onnx"), sess_options=opts,
                                              providers=["CPUExecutionProvider"])
    x, clock = forecaster_example_inputs(teacher, seed=7)
    feeds = {"x": x.numpy(), "clock": clock.numpy()}
    inter: dict[str, list[float]] = {n: [] for n in names}
    for name in names:
        sessions[name].run(None, feeds)
    for _ in range(args.repeats * 2):
        for name in names:
            t = time.perf_counter()
            sessions[name].run(None, feeds)
            inter[name].append(time.perf_counter() - t)
    for name in names:
        info[name]["ort_cpu_latency_alone_s"] = info[name]["ort_cpu_latency_s"]
        info[name]["ort_cpu_latency_s"] = summary(inter[name])
    # Wall time over every invocation that built this work folder (stages may be resumed or re-measured).
    tpath = work / "timings.json"
    past = json.loads(tpath.read_text()) if tpath.exists() else {"invocations_s": [], "commands": []}
    past["invocations_s"].append(time.perf_counter() - t_start)
    past.setdefault("commands", []).append(" ".join(["python", "bench/compress_forecaster.py",
                                                     *sys.argv[1:]]))
    tpath.write_text(json.dumps(past))
    timings["invocations_s"] = past["invocations_s"]
    timings["commands"] = past["commands"]
    timings["total_s"] = float(sum(past["invocations_s"]))
    if "min_fraction" not in pruning:  # the floor of the pruning space: every unit at its minimum
        from fuxiops.compression.pruning.space import plan_from_counts
        floor = net.apply(plan_from_counts(net.units, {u.name: u.min_keep for u in net.units}, net.importance()))
        xs = forecaster_example_inputs(teacher, seed=0)
        pruning["min_fraction"] = count_flops(floor, xs) / count_flops(teacher.module, xs)
    write_outputs(args, info, names, pruning, data_desc, timings, teacher, s_arch)
    log("done")


def _fmt_skill(sk: dict, ch: str, days: list[str], key: str = "rmse", fmt: str = "{:.3g}") -> str:
    return " / ".join(fmt.format(sk[key][ch][d]) for d in days) if ch in sk[key] else "-"


def write_outputs(args: argparse.Namespace, info: dict, names: list[str], pruning: dict, data_desc: str,
                  timings: dict, teacher: Any, s_arch: Any) -> None:
    t = info["teacher"]
    days = [f"day{float(d):g}" for d in args.lead_days.split(",")]
    rows = []
    for name in names:
        r = info[name]
        sk = r["skill"]
        lat = r["ort_cpu_latency_s"]["median"]
        lat25 = r.get("ort_cpu_latency_025_s", {}).get("median")
        cells = [name, f"{r['params']:,}", f"{r['flops_per_step'] / 1e9:.3f}",
                 f"{t['flops_per_step'] / r['flops_per_step']:.2f}x", f"{lat * 1e3:.0f}",
                 f"{t['ort_cpu_latency_s']['median'] / lat:.2f}x",
                 f"{t['ort_cpu_latency_s']['min'] / r['ort_cpu_latency_s']['min']:.2f}x",
                 f"{lat25:.1f}" if lat25 else "-"]
        cells += [_fmt_skill(sk, ch, days) for ch in ("z500", "t850", "t2m", "u10", "msl")]
        cells.append(_fmt_skill(sk, "z500", days, "acc", "{:.2f}"))
        rows.append(cells)
    dd = "/".join(d[3:] for d in days)
    headers = ["model", "params", "GFLOPs/step", "FLOP reduction", "ORT CPU ms/step (2.8125, median)",
               "speed-up (median)", "speed-up (min)", "ORT CPU s/step (0.25)", f"z500 RMSE d{dd}", "t850", "t2m",
               "u10", "msl", f"z500 ACC d{dd}"]
    table = markdown_table(headers, rows)

    prow = []
    for name, r in pruning.get("rows", {}).items():
        if "failed" in r:
            prow.append([name, "-", "-", "-", "-", "-", "-", "-", "-", "-", r["failed"][:80]])
            continue
        after = r.get("after_training", {})
        prow.append([name, f"{r['flops_fraction']:.3f}", f"{r['params']:,}", str(r["arch"]["heads"]),
                     str(r["arch"]["mlp_hidden"]), str(r["arch"]["res_hidden"]), f"{r['calib_error']:.4g}",
                     f"{r['test_error_vs_teacher']:.4g}", f"{r['test_error_vs_truth']:.4g}",
                     f"{after['test_error_vs_truth']:.4g}" if after else "-", str(r["search_evaluations"])])
    ptable = markdown_table(["network", "FLOPs / teacher", "params", "heads", "MLP widths",
                             "res-block widths (down, up)", "calib error", "test err vs teacher",
                             "test err vs truth", "vs truth after constraint training", "evaluations"], prow)

    # ---- targets ---------------------------------------------------------------------------------
    verdicts = []
    d5 = "day5" if "day5" in days else days[-1]
    heads = ("z500", "t850", "t2m", "u10", "msl")

    def worst_ratio(name: str) -> float:
        sk, tk = info[name]["skill"]["rmse"], t["skill"]["rmse"]
        return max(sk[c][d5] / tk[c][d5] for c in heads if c in sk)

    cands = [n for n in names if n != "teacher"]
    ok_models = []
    for n in cands:
        fr = t["flops_per_step"] / info[n]["flops_per_step"]
        sp = max(t["ort_cpu_latency_s"][k] / info[n]["ort_cpu_latency_s"][k] for k in ("median", "min"))
        wr = worst_ratio(n)
        if fr >= 4 and sp >= 3 and wr <= 1.03:
            ok_models.append(n)
    best = min(cands, key=lambda n: worst_ratio(n) if t["flops_per_step"] / info[n]["flops_per_step"] >= 4
               else np.inf)
    fr = t["flops_per_step"] / info[best]["flops_per_step"]
    sp = t["ort_cpu_latency_s"]["median"] / info[best]["ort_cpu_latency_s"]["median"]
    sp_min = t["ort_cpu_latency_s"]["min"] / info[best]["ort_cpu_latency_s"]["min"]
    verdicts.append(("compressed forecaster: >= 4x fewer FLOPs, >= 3x lower ORT CPU latency, day-5 RMSE at most "
                     "3% worse", "MET" if ok_models else "MISSED",
                     f"best candidate with >= 4x fewer FLOPs: {best} ({fr:.2f}x FLOPs, {sp:.2f}x latency by medians, "
                     f"{sp_min:.2f}x by minima, worst "
                     f"day-5 RMSE ratio over z500/t850/t2m/u10/msl {worst_ratio(best):.2f}x the teacher's)"))

    def mean_ratio(n: str) -> float:
        sk, tk = info[n]["skill"]["rmse"], t["skill"]["rmse"]
        return float(np.mean([sk[c][d] / tk[c][d] for c in heads if c in sk for d in days]))

    per_seed = {m: [mean_ratio(n) for n in names if info[n].get("kind") == "distilled"
                    and info[n].get("method") == m] for m in ("none", "mse", "cwd", "dynamic")}
    kd = {m: float(np.mean(v)) for m, v in per_seed.items() if v}
    if len(kd) == 4:
        met = kd["dynamic"] < kd["none"] and kd["dynamic"] < kd["mse"]
        n_seeds = len(per_seed["dynamic"])
        spread = "" if n_seeds < 2 else "; per seed: " + ", ".join(
            f"{m} [{' '.join(f'{x:.3f}' for x in v)}]" for m, v in per_seed.items())
        verdicts.append(("entropy-corrected KD beats no-KD and plain (output-MSE) KD at equal student size",
                         "MET" if met else "MISSED",
                         f"mean RMSE / teacher RMSE over the 5 headline channels and all lead days "
                         f"({n_seeds} seed(s) each): " + ", ".join(f"{m} {v:.3f}" for m, v in kd.items()) + spread))
    rows_p = pruning.get("rows", {})

    def perr(method: str, b: float, key: str = "test_error_vs_teacher") -> float:
        r = rows_p.get(f"pruned-{method}-{b:g}", {})
        return float(r[key]) if key in r else float("inf")  # no network at this budget

    dom = []
    for b in pruning.get("budgets", []):
        e = perr("emo-pms", b)
        fe = rows_p.get(f"pruned-emo-pms-{b:g}", {}).get("flops_fraction", np.inf)
        win = np.isfinite(e) and all(e < perr(m, b) and fe <= perr(m, b, "flops_fraction") * 1.0001
                                     for m in ("magnitude", "uniform"))
        dom.append((b, win, e, perr("magnitude", b), perr("uniform", b)))
    if dom:
        n_win = sum(1 for d in dom if d[1])
        verdicts.append(("EMO-PMS front dominates magnitude and uniform pruning at >= 3 FLOP budgets",
                         "MET" if n_win >= 3 else "MISSED",
                         "EMO-PMS run at the smaller of the two baselines' FLOPs; held-out one-step error vs "
                         "teacher (EMO-PMS / magnitude / uniform): " + "; ".join(
                             f"{b:g}: {e:.4g} / {m:.4g} / {u:.4g}" for b, _, e, m, u in dom) +
                         f" -> EMO-PMS strictly better with equal or fewer FLOPs at {n_win} of {len(dom)} budgets"))
        n_dec = pruning["emo_search"]["evaluations"]
        curve = pruning["whole_search"]["best_within_budget_by_evaluation"]
        reach = []
        for b in pruning["budgets"]:
            target = perr("emo-pms", b, "calib_error")
            tr = curve[f"{b:g}"]
            k = next((i + 1 for i, v in enumerate(tr) if v is not None and v <= target * 1.0001), None)
            reach.append((b, k, target, perr("whole-nsga2", b, "calib_error")))
        fewer = all(k is None or k > n_dec for _, k, _, _ in reach)
        verdicts.append(("the decomposed search reaches its front with fewer evaluations than the whole-network "
                         "search", "MET" if fewer else "MISSED",
                         f"EMO-PMS used {n_dec} evaluations (+ a few to measure ranked combinations); whole-network "
                         f"NSGA-II with {pruning['whole_search']['evaluations']} evaluations; calibration error "
                         "EMO-PMS / whole-network per budget: " + "; ".join(
                             f"{b:g}: {t_:.4g} / {w:.4g} (" + (f"whole reached EMO-PMS's error after {k} evaluations"
                                                              if k else "whole never reached it") + ")"
                             for b, k, t_, w in reach)))
    vtable = markdown_table(["target", "verdict", "numbers"], [list(v) for v in verdicts])
    cmd = " ; ".join(timings.get("commands") or [" ".join(["nice -n 10 python", "bench/compress_forecaster.py",
                                                            *sys.argv[1:]])])
    results = {"models": info, "pruning": pruning, "data": data_desc, "machine": machine_facts(),
               "packages": package_versions(["torch", "onnx", "onnxruntime", "pymoo", "numpy"]),
               "command": cmd, "settings": vars(args), "teacher_arch": teacher.arch.to_dict(),
               "student_arch": s_arch.to_dict(), "timings": timings,
               "targets": [{"target": a, "verdict": b, "numbers": c} for a, b, c in verdicts]}
    write_result(args.name, results)
    worlds = " and ".join(_build_command(Path(w)) for w in (args.train_world, args.test_world))
    stages = (teacher.training or {}).get("stages", {}) if isinstance(teacher.training, dict) else {}
    teacher_steps = " + ".join(f"{d.get('steps')} ({k})" for k, d in stages.items()) or "an unrecorded number of"
    teacher_steps += " steps"
    acc = t.get("skill", {}).get("acc", {}).get("z500", {})
    teacher_acc = ", ".join(f"{k} {v:.2f}" for k, v in acc.items()) or "-"
    md = (f"# Forecaster compression (issue 11)\n\n"
          f"Teacher: the shipped checkpoint `{args.teacher}` (preset small, "
          f"{t['params']:,} parameters). Student architecture: {json.dumps(s_arch.to_dict())}.\n\n"
          f"Data: {data_desc}. Skill: {args.inits} initial times per model, rollouts to day "
          f"{args.lead_days.split(',')[-1]}, initial states and verification from the test world's truth.\n\n"
          f"Commands, in order (wall time {timings.get('total_s', 0) / 60:.0f} min over "
          f"{len(timings.get('invocations_s', []))} invocation(s) on {machine_facts()['cores']} shared, busy "
          f"cores; the worlds were built first with {worlds}): `{cmd}`\n\n## Targets\n\n{vtable}\n\n"
          f"## Models\n\n{table}\n\n"
          f"Latency: ONNX Runtime CPU, 2 threads, an interleaved pass over all models "
          f"({args.repeats * 2} rounds; this machine was shared with other benchmarks, so absolute times are "
          f"noisy: models of identical architecture differ by tens of percent; the interleaving keeps the load "
          f"alike for all models and the minimum is the least disturbed estimate). 0.25 deg: one timed run "
          f"after a warm-up.\n\n"
          f"## Pruning at every budget\n\nCalibration error: lat-weighted MSE of the normalised output vs the "
          f"teacher on the calibration batch (what the searches minimise); test errors on "
          f"{args.test_batches} held-out batches of 2 from the test world. Only the smallest budget gets "
          f"constraint training and rollouts.\n\n{ptable}\n\n"
          f"Decomposed search: {pruning.get('emo_search', {}).get('evaluations')} evaluations over sub-networks "
          f"{list(pruning.get('emo_search', {}).get('fronts', {}))}; whole-network NSGA-II: "
          f"{pruning.get('whole_search', {}).get('evaluations')} evaluations.\n\n"
          f"## Notes\n\n"
          f"* Pruning alone cannot reach 4x fewer FLOPs here: with every unit at its minimum (1 head, 1 MLP group, "
          f"1 conv channel group per block) the network keeps {pruning.get('min_fraction', float('nan')):.3f} of "
          f"the teacher's FLOPs, because the residual streams (embed_dim, dim), the cube embedding, the stride-2 "
          f"convolutions and the head are shared by every block and stay whole. The >= 4x candidates are the "
          f"distilled students of the smaller architecture.\n"
          f"* Training budgets are kept affordable on this shared machine: students "
          f"{args.student_steps} steps, pruned+distilled {args.final_steps} steps, constraint training "
          f"{args.constraint_steps} steps per sub-network (the teacher itself was trained for {teacher_steps}). "
          f"Where the teacher's ACC is near or below zero (z500 ACC by day: {teacher_acc}) it has little skill "
          f"left and ratios to it mostly compare noise.\n"
          f"* The teacher's measured entry (FLOPs, skill, 0.25 deg latency) and ONNX files may come from an "
          f"earlier run of this script copied into the work folder (same checkpoint, data and code, so the same "
          f"numbers); the interleaved 2.8125 deg latency pass re-times every model in every run.\n")
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)
    plot(info, pruning, RESULTS / ("compress_pareto.png" if args.name == "compress_forecaster"
                                   else f"{args.name}_pareto.png"))


def _build_command(world: Path) -> str:
    """The `fuxiops world build` line that makes ``world`` (from its world.json)."""
    try:
        spec = json.loads((world / "world.json").read_text())["spec"]
    except (OSError, KeyError, ValueError):
        return f"`{world}` (no world.json)"
    obs = ",".join(spec.get("obs_types") or [])
    nwp = f" --nwp-every-h {spec['nwp_every_h']}" if spec.get("with_nwp") else " --no-nwp"
    return f"`fuxiops world build --out {world} --days {spec['days']} --seed {spec['seed']}{nwp} --obs '{obs}'`"


def plot(info: dict[str, Any], pruning: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    marks = {"teacher": ("k", "*"), "distilled": ("tab:blue", "o"), "pruned+distilled": ("tab:red", "D"),
             "pruned": ("tab:gray", "s")}
    pcol = {"emo-pms": "tab:red", "magnitude": "tab:gray", "uniform": "tab:olive", "whole-nsga2": "tab:purple"}
    for name, r in info.items():
        if "skill" not in r:
            continue
        y = r["skill"]["rmse"]["z500"].get("day5", list(r["skill"]["rmse"]["z500"].values())[-1])
        x = r["flops_per_step"] / 1e9
        c, m = marks[r["kind"]]
        if r["kind"] == "pruned":
            c = pcol[r["method"]]
        ax.scatter(x, y, c=c, marker=m, s=70)
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("GFLOPs per step (2.8125 deg grid)")
    ax.set_ylabel("z500 RMSE at day 5 (m2 s-2)")
    ax.set_title("Skill vs FLOPs")
    ax.grid(alpha=0.3)
    tf = pruning.get("teacher_flops", 1.0)
    for method in pcol:
        pts = sorted((r["flops_fraction"], r["test_error_vs_teacher"]) for r in pruning.get("rows", {}).values()
                     if r["method"] == method and "failed" not in r)
        if pts:
            ax2.plot(*zip(*pts), marker="s", c=pcol[method], label=f"{method} (held-out error)")
    if "whole_search" in pruning:
        f = np.asarray(pruning["whole_search"]["front"]["flops"]) / tf
        ax2.scatter(f, pruning["whole_search"]["front"]["errors"], c="tab:purple", marker="x", s=15,
                    label="whole-NSGA-II front (calibration error)")
    for i, fr in enumerate(pruning.get("emo_search", {}).get("fronts", {}).values()):
        ax2.scatter(np.asarray(fr["flops"]) / tf, fr["errors"], c="tab:red", marker=".", s=12,
                    label="EMO-PMS sub-network fronts (calibration error)" if i == 0 else None)
    ax2.set_yscale("log")
    ax2.set_xlabel("FLOPs / teacher FLOPs")
    ax2.set_ylabel("one-step error vs teacher (held-out, normalised MSE)")
    ax2.set_title("Pruning methods at equal FLOP budgets")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main()
