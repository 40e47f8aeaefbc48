"""Does a calibrated threshold hold on people it never saw? A trained export embeds the synthetic set's
test identities (never trained on); per seed they are split in two disjoint halves, the thresholds at
FAR 1e-2 and 1e-3 are fitted on one half's query x gallery pairs (as tools/eval.py --calibrate fits
them) and the FAR they achieve is measured on the other half's, and on a synthetic set of other
cameras and other people (another generator seed: a domain shift).

  python benchmarks/calibration_far.py --model=runs/quickstart --output_json=docs/benchmarks/calibration_far.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from reid_tf import calibration, datasets, evaluate, exported, synthetic, verification
from reid_tf.datasets.market import load_market1501

TARGETS = ("far=0.01", "far=0.001")


def embedded(model: exported.Exported, folder: str) -> dict:
    """Query and gallery features and pids of a Market-layout test split, identities only (no junk
    or distractors: they have no half to belong to)."""
    splits = load_market1501(folder)
    out = {}
    for name in ("query", "gallery"):
        records = [r for r in splits[name] if r.pid > 0]
        f, p, c = evaluate.embed_records(model.embed, records, model.height, model.width, crop=model.crop)
        out[name] = (f, p, c)
    return out


def subset(sets: dict, pids: set) -> tuple:
    """(qf, gf, qp, gp, qc, gc) of the identities `pids`."""
    (qf, qp, qc), (gf, gp, gc) = sets["query"], sets["gallery"]
    q, g = np.isin(qp, list(pids)), np.isin(gp, list(pids))
    return qf[q], gf[g], qp[q], gp[g], qc[q], gc[g]


def achieved(thresholds: dict, part: tuple) -> dict:
    """The FAR each threshold gives on the pairs of `part` (the pairs a ranking would score)."""
    qf, gf, qp, gp, qc, gc = part
    d = evaluate.euclidean_distances(qf, gf)
    negative = qp[:, None] != gp[None, :]
    return {k: float((d[negative] <= thresholds[k]).mean()) for k in TARGETS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/quickstart")
    parser.add_argument("--synthetic_ids", type=int, default=200, help="the set the model trained on")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output_json")
    args = parser.parse_args()
    model = exported.open_export(args.model)
    folder = datasets.synthetic_cache_dir(args.synthetic_ids)
    datasets.ensure_synthetic(folder, args.synthetic_ids)
    own = embedded(model, folder)
    with tempfile.TemporaryDirectory() as shifted_dir:
        synthetic.make_synthetic_market(shifted_dir, num_ids=args.synthetic_ids, seed=1)
        shifted = embedded(model, shifted_dir)
    shifted_all = subset(shifted, set(np.unique(shifted["query"][1]).tolist()))
    test_ids = np.unique(own["query"][1])
    rows = []
    for seed in map(int, args.seeds.split(",")):
        order = np.random.default_rng(seed).permutation(test_ids)
        fit_ids, held_ids = set(order[: len(order) // 2].tolist()), set(order[len(order) // 2:].tolist())
        fitted = calibration.fit(verification.pair_histograms(*subset(own, fit_ids)), {})
        thresholds = fitted["thresholds"]
        held, other = achieved(thresholds, subset(own, held_ids)), achieved(thresholds, shifted_all)
        for k in TARGETS:
            rows.append({"seed": seed, "target": k, "threshold": thresholds[k], "fitted_pairs":
                         fitted["fitted_on"]["pairs"], "held_out_far": held[k], "shifted_far": other[k]})
            print(f"seed {seed} {k}: threshold {thresholds[k]:.4f}; achieved FAR on the other half"
                  f" {held[k]:.4f}, on other cameras and people {other[k]:.4f}", flush=True)
    result = {"model": os.path.relpath(model.path), "cpu": _cpu(), "identities": int(len(test_ids)), "rows": rows}
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(result, f, indent=2)


def _cpu() -> str:
    with open("/proc/cpuinfo") as f:
        return "avx512_bf16" if "avx512_bf16" in f.read().split() else "avx2"


if __name__ == "__main__":
    main()
