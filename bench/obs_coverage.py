"""How much of the globe do the observations cover, per channel and cycle hour?

Cycling with raw observations can only hold the state where and when something is observed. This
reads the gridded observations `fuxiops train prepare` wrote for a world (the same gridding the
cycle's analyses see) and reports, for every observation group and channel, the area-weighted share
of grid cells with an observation (mask > 0), averaged over the cycles of each hour of the day
(00, 06, 12, 18 UTC). Direct state observations (radiosondes, aircraft, surface stations) are what
an analysis can correct locally; radiances and radio occultations constrain the state only through
what the assimilator learned about them.

    python bench/obs_coverage.py --world /work/expworld --name obs_coverage_expworld
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_facts, markdown_table, package_versions, write_result  # noqa: E402

from fuxiops.grids import latitude_weights  # noqa: E402

KINDS = {"raw": "gridded_raw.zarr", "sim": "gridded_sim.zarr"}


def coverage(store: Path) -> dict[str, dict[str, dict[str, float]]]:
    """group -> channel -> {"HH": area share of cells observed}, from a prepared gridded store."""
    ds = xr.open_zarr(store)
    w = np.repeat(latitude_weights(ds.latitude.values)[:, None], ds.sizes["longitude"], axis=1)
    w = w / w.sum()
    hours = ds.time.dt.hour.values
    out: dict[str, dict[str, dict[str, float]]] = {}
    groups = [g for g in ds.data_vars if f"{g}_channel" in ds[g].dims]
    for g in tqdm(groups, desc=f"coverage {store.name}"):
        names = [str(c) for c in ds[f"{g}_channel"].values if str(c).endswith("_mask")]
        if not names:
            continue
        masks = ds[g].sel({f"{g}_channel": names})
        sums: dict[int, np.ndarray] = {}
        for i, h in enumerate(hours.tolist()):  # one time at a time: bounded memory on any grid
            sums[h] = sums.get(h, 0.0) + ((masks.isel(time=i).values > 0) * w).sum(axis=(1, 2))
        shares: dict[str, dict[str, float]] = {n[:-5]: {} for n in names}
        for h, total in sorted(sums.items()):
            for n, s in zip(names, total / int((hours == h).sum())):
                shares[n[:-5]][f"{h:02d}"] = round(float(s), 4)
        out[g] = shares
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, type=Path, help="testbed world after `fuxiops train prepare`")
    ap.add_argument("--name", default="obs_coverage")
    a = ap.parse_args()
    stores = {k: a.world / "training" / f for k, f in KINDS.items() if (a.world / "training" / f).is_dir()}
    if not stores:
        raise SystemExit(f"no gridded observations under {a.world / 'training'}: run `fuxiops train prepare` first")
    result = {k: coverage(p) for k, p in stores.items()}
    write_result(a.name, {"machine": machine_facts(), "packages": package_versions(["fuxiops"]),
                          "world": str(a.world), "coverage": result})
    md = [f"# {a.name}", "",
          f"Area-weighted share of grid cells with an observation, mean over the cycles of each UTC hour, "
          f"from the gridded observations of `{a.world}` (`fuxiops train prepare`).", ""]
    for kind, groups in result.items():
        hours = sorted({h for g in groups.values() for c in g.values() for h in c})
        rows = [[kind, g, c, *(f"{v.get(h, 0.0):.3f}" for h in hours)]
                for g, chans in groups.items() for c, v in chans.items()]
        md += [markdown_table(["obs", "group", "channel", *(f"{h} UTC" for h in hours)], rows), ""]
    md.append(f"`python bench/obs_coverage.py --world {a.world} --name {a.name}`")
    (RESULTS / f"{a.name}.md").write_text("\n".join(md) + "\n")
    print(f"written to {RESULTS / (a.name + '.md')}")


if __name__ == "__main__":
    main()
