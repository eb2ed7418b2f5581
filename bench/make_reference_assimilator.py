"""Reference assimilators with no learned increment, for the cycling and analysis-gain benchmarks.

A learned assimilator is only worth its training if it beats what the observations give without
learning. This writes a `small` assimilator checkpoint whose network increment is zeroed (head
weights and bias 0), so its analysis is the background plus, with ``--spread-km`` > 0, the
successive-correction term on the innovations (a Gaussian local mean of O-B at that radius times
``--gain``, faded where observations are sparse). ``--spread-km 0`` gives the no-assimilation
reference: the analysis is the background, and cycling it is a free run of the forecaster.

    python bench/make_reference_assimilator.py --config bench/campaigns/expworld_assimilator.yaml \\
        --out /work/exp/sc05 --spread-km 500 --gain 0.5
"""

from __future__ import annotations

import argparse

import torch

from fuxiops.models.torch_assimilator import TorchAssimilator
from fuxiops.models.training.config import load_train_config
from fuxiops.models.training.experiments import load_obs_stats
from fuxiops.models.training.stages import TrainingData


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="training campaign (world, grid, preset) whose prepared data "
                                                    "gives the variables, observation channels and statistics")
    ap.add_argument("--out", required=True, help="checkpoint folder to write")
    ap.add_argument("--spread-km", type=float, default=0.0, help="successive-correction radius; 0 = no correction")
    ap.add_argument("--gain", type=float, default=0.5, help="share of the local mean innovation added (0..1)")
    args = ap.parse_args()
    if not 0.0 <= args.gain <= 1.0:
        ap.error(f"--gain must be in 0..1, got {args.gain}")

    cfg = load_train_config(args.config)
    data = TrainingData(cfg)
    asm = TorchAssimilator.build(cfg.preset, data.variables, data.grid, data.obs_groups(), data.normalisation(),
                                 data.static(), seed=cfg.seed, channel_names=data.obs_channel_names(),
                                 spread_km=args.spread_km)
    m = asm.module
    with torch.no_grad():
        m.net.head.weight.zero_()
        m.net.head.bias.zero_()
        if m.spread is not None:
            m.spread.gain.fill_(args.gain)
    note = (f"reference: successive correction {args.spread_km:g} km, gain {args.gain:g}, no learned increment"
            if args.spread_km > 0 else "reference: no assimilation (analysis = background)")
    asm.save(args.out, training={"obs_normalisation": load_obs_stats(cfg.world_path), "note": note})
    print(f"{note}: written to {args.out}")


if __name__ == "__main__":
    main()
