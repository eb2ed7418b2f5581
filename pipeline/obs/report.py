"""The per-cycle QC report: JSON for machines, Markdown for people.

Counts by report type and reason bit, per-step counts, O-B mean and standard
deviation per (report type, instrument, variable; satellite and channel for
radiances) over used rows,
the rows the background check skipped (no model equivalent) with the reason,
quarantined files and messages with their reasons, skipped messages and notes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fuxiops.pipeline.obs.flags import QCFlag, bit_table, is_rejected


def _labels(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer code per row and the labels of a string column, through Arrow's dictionary encoding
    (no Python string per row: a cycle holds close to a million rows)."""
    enc = pc.dictionary_encode(table.column(name).combine_chunks(), null_encoding="encode")
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64) if table.num_rows else np.zeros(0, np.int64)
    return codes, np.asarray(enc.dictionary.to_pylist(), dtype=object)


def build_report(table: pa.Table, qc_info: dict[str, Any], *, cycle: str, inputs: Sequence[dict[str, Any]] = (),
                 quarantined: Sequence[dict[str, Any]] = (), skipped: dict[str, int] | None = None,
                 notes: Sequence[str] = (), timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Assemble the report dictionary (JSON-serialisable)."""
    n = table.num_rows
    rt_c, rt_l = _labels(table, "report_type")
    flags = table.column("qc_flags").to_numpy(zero_copy_only=False).astype(np.uint32) if n else np.zeros(0, np.uint32)
    val = table.column("value").to_numpy(zero_copy_only=False) if n else np.zeros(0)
    bg = table.column("background").to_numpy(zero_copy_only=False) if n else np.zeros(0)
    used = ~is_rejected(flags)
    by_type: dict[str, Any] = {}
    for k in np.argsort(rt_l.astype(str)):
        m = rt_c == k
        reasons = {f.name: int(((flags[m] & np.uint32(int(f))) != 0).sum()) for f in QCFlag}
        by_type[str(rt_l[k])] = {"rows": int(m.sum()), "used": int(used[m].sum()), "rejected": int((~used[m]).sum()),
                                 "by_reason": {k: v for k, v in reasons.items() if v}}
    omb: list[dict[str, Any]] = []
    has_b = np.isfinite(bg)
    if has_b.any():
        ins_c, ins_l = _labels(table, "instrument")
        var_c, var_l = _labels(table, "variable")
        kind_c, kind_l = _labels(table, "vertical_kind")
        sid_c, sid_l = _labels(table, "station_id")
        vert = table.column("vertical").to_numpy(zero_copy_only=False)
        # Radiances per satellite and channel: each sounder's bias differs from channel to channel.
        chan = kind_l[kind_c] == "channel"
        plat_l = np.append(sid_l, "")
        plat_c = np.where(chan, sid_c, len(sid_l))
        keys = pd.DataFrame({"rt": rt_c, "ins": ins_c, "var": var_c, "plat": plat_c,
                             "ch": np.where(chan, vert, -1.0)})[has_b]
        groups = keys.groupby(["rt", "ins", "var", "plat", "ch"], sort=False).indices
        named = {(str(rt_l[t]), str(ins_l[i] or ""), str(var_l[v]), str(plat_l[pl] or ""), c): idx
                 for (t, i, v, pl, c), idx in groups.items()}
        rows_of = keys.index.to_numpy()
        for (t, i, v, pl, c), idx in sorted(named.items(), key=lambda kv: kv[0]):
            rows = rows_of[idx]
            d_all = (val - bg)[rows]
            d = (val - bg)[rows[used[rows]]]
            omb.append({"report_type": t, "instrument": i, "variable": v,
                        "platform": pl or None, "channel": int(c) if c >= 0 else None, "n_used": int(d.size),
                        "mean": float(d.mean()) if d.size else None,
                        "std": float(d.std(ddof=0)) if d.size else None,
                        "n_all": int(d_all.size), "mean_all": float(d_all.mean()), "std_all": float(d_all.std())})
    n_files = len(inputs)
    failed = [i for i in inputs if i.get("failed")]
    return {
        "cycle": cycle,
        "totals": {"rows": int(table.num_rows), "used": int(used.sum()), "rejected": int((~used).sum()),
                   "files": n_files, "files_failed": len(failed), "messages_quarantined":
                       sum(1 for q in quarantined if q.get("message_index") is not None),
                   "files_quarantined": sum(1 for q in quarantined if q.get("message_index") is None)},
        "by_report_type": by_type,
        "steps": qc_info.get("steps", {}),
        "step_order": qc_info.get("order", []),
        "background": bool(qc_info.get("background", False)),
        "o_minus_b": omb,
        "background_not_checked": list(qc_info.get("steps", {}).get("background", {}).get("not_checked", [])),
        "inputs": list(inputs),
        "quarantined": list(quarantined),
        "skipped_messages": dict(skipped or {}),
        "notes": list(notes),
        "flag_bits": bit_table(),
        "timings_s": dict(timings or {}),
    }


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def to_markdown(rep: dict[str, Any]) -> str:
    """A short human summary of a report."""
    t = rep["totals"]
    lines = [f"# Observation QC report, cycle {rep['cycle']}", "",
             f"{t['rows']} observations read from {t['files']} file(s): **{t['used']} used**, {t['rejected']} "
             f"flagged. Quarantined: {t['files_quarantined']} file(s), {t['messages_quarantined']} message(s). "
             f"Background check: {'yes' if rep['background'] else 'no background given'}.", "",
             "## By report type", "", "| report type | rows | used | rejected | reasons |", "|---|---:|---:|---:|---|"]
    for k, v in rep["by_report_type"].items():
        reasons = ", ".join(f"{n} {c}" for n, c in v["by_reason"].items()) or "-"
        lines.append(f"| {k} | {v['rows']} | {v['used']} | {v['rejected']} | {reasons} |")
    lines += ["", "## QC steps (operational order)", "", "| step | rows checked | flagged |", "|---|---:|---:|"]
    for name in rep["step_order"]:
        s = rep["steps"][name]
        lines.append(f"| {name} | {s['checked']} | {s['flagged']} |")
    if rep["o_minus_b"]:
        lines += ["", "## O-B (used rows)", "",
                  "| report type | instrument | variable | platform | channel | n | mean | std |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
        for r in rep["o_minus_b"]:
            lines.append(f"| {r['report_type']} | {r.get('instrument') or '-'} | {r['variable']} | "
                         f"{r.get('platform') or '-'} | {_fmt(r.get('channel'))} | {r['n_used']} | "
                         f"{_fmt(r['mean'])} | {_fmt(r['std'])} |")
    if rep.get("background_not_checked"):
        lines += ["", "## Not background-checked (no model equivalent)", "",
                  "| report type | instrument | variable | rows | reason |", "|---|---|---|---:|---|"]
        for r in rep["background_not_checked"]:
            lines.append(f"| {r['report_type']} | {r['instrument'] or '-'} | {r['variable']} | {r['rows']} | "
                         f"{str(r['reason']).replace('|', '/')} |")
    if rep["quarantined"]:
        lines += ["", "## Quarantined", ""]
        for q in rep["quarantined"][:50]:
            where = f" message {q['message_index']}" if q.get("message_index") is not None else ""
            lines.append(f"- `{Path(q['source_file']).name}`{where}: {q['reason']}")
        if len(rep["quarantined"]) > 50:
            lines.append(f"- ... and {len(rep['quarantined']) - 50} more (see qc_report.json)")
    if rep["skipped_messages"]:
        lines += ["", "## Skipped messages", ""] + [f"- {n} x {r}" for r, n in rep["skipped_messages"].items()]
    if rep["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in rep["notes"]]
    lines += ["", "## Flag bits", "", "| bit | name | rejects | meaning |", "|---:|---|---|---|"]
    for b in rep["flag_bits"]:
        meaning = str(b["meaning"]).replace("|", "\\|")  # a literal pipe would split the table cell
        lines.append(f"| {b['bit']} | {b['name']} | {'yes' if b['rejects'] else 'no'} | {meaning} |")
    return "\n".join(lines) + "\n"


def write_report(rep: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / "qc_report.json", out / "qc_report.md"
    j.write_text(json.dumps(rep, indent=1, default=str))
    m.write_text(to_markdown(rep))
    return j, m
