"""How much of the domain gap adaptation closes: for each seed, the quickstart's model trained on the
synthetic `default` domain (the source), then for each target domain, from that model and with the same
steps, flagfile and backbone:

- direct transfer: the source model on the target;
- adapted: `--adapt_to` on the target's training images, labels unread (source-free: the source's
  labels are not used during adaptation);
- supervised: the same steps on the target's own labels (the upper bound).

Each export is scored by tools/eval.py's scoring (`reid_tf.eval_lib`) on the target's test
identities, which no run trains on. The gap closed is (adapted - direct) / (supervised - direct).

    python benchmarks/adaptation.py --output_json=docs/benchmarks/adaptation.json \
        --plot=docs/adaptation_curves.png

Each run goes through the user's command (`python -m reid_tf.train`); a run whose export exists is
not run again, so a stopped benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from common import cpu_kind

from reid_tf import config, datasets, eval_lib, run_dir

SYNTHETIC_IDS = 200  # the quickstart's
ADAPT = ("--cluster_every=50", "--cluster_eps=0.4", "--cluster_k1=20")


def train(folder: str, steps: int, *flags: str) -> str:
    """The run's export (trained now unless it exists), through the user's command."""
    export = os.path.join(folder, run_dir.EXPORT, str(steps))
    if not os.path.exists(export):
        command = [sys.executable, "-m", "reid_tf.train", "--flagfile=flags/quickstart.cfg", f"--output_dir={folder}",
                   f"--max_steps={steps}", f"--eval_every={steps}", f"--checkpoint_every={steps}", *flags]
        print(" ".join(command[1:]), flush=True)
        with open(f"{folder}.log", "w", encoding="utf-8") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return export


def target_map(export: str, folder: str) -> float:
    return eval_lib.run(export, None, config.ScoringConfig(), dataset="market1501", data_dir=folder)["mAP"]


def clusterings(folder: str) -> list[dict]:
    """The adaptation's rows of validation.jsonl: each clustering, and the last step's target mAP."""
    rows = run_dir.read_validations(os.path.join(folder, run_dir.VALIDATIONS))
    return [r for r in rows if "target_mAP" in r]


def one(out: str, seed: int, domain: str, steps: int) -> dict:
    source = train(f"{out}/source-seed{seed}", 300, f"--seed={seed}")
    target = datasets.synthetic_cache_dir(SYNTHETIC_IDS, domain)
    datasets.ensure_synthetic(target, SYNTHETIC_IDS, domain)
    start = ("--init_checkpoint=" + os.path.dirname(os.path.dirname(source)), f"--seed={seed}")
    adapted = train(f"{out}/adapt-{domain}-seed{seed}", steps, *start, "--adapt_to=market1501",
                    f"--adapt_data_dir={target}", *ADAPT)
    supervised = train(f"{out}/supervised-{domain}-seed{seed}", steps, *start, "--dataset=market1501",
                       f"--data_dir={target}")
    row = {"seed": seed, "domain": domain, **{k: target_map(e, target) for k, e in
                                               (("direct", source), ("adapted", adapted), ("supervised", supervised))}}
    row["gap_closed"] = (row["adapted"] - row["direct"]) / (row["supervised"] - row["direct"])
    row["clusterings"] = clusterings(f"{out}/adapt-{domain}-seed{seed}")
    print(f"{domain} seed {seed}: direct {row['direct']:.3f}, adapted {row['adapted']:.3f}, supervised"
          f" {row['supervised']:.3f}: {100 * row['gap_closed']:.0f} % of the gap closed", flush=True)
    return row


def plot(data: dict, path: str) -> None:
    """Purity, NMI and target mAP against the adaptation's step, one line a seed, a column a domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(data["summary"])
    fig, axes = plt.subplots(3, len(domains), figsize=(4 * len(domains), 7), squeeze=False, sharex=True)
    for col, domain in enumerate(domains):
        for row in (r for r in data["rows"] if r["domain"] == domain):
            for ax, key in zip(axes[:, col], ("purity", "nmi", "target_mAP")):
                points = [(c["step"], c[key]) for c in row["clusterings"] if key in c]
                ax.plot(*zip(*points), marker="o", label=f"seed {row['seed']}")
        for ax, key in zip(axes[:, col], ("purity", "NMI", "target mAP")):
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        axes[0, col].set_title(f"target: {domain}")
        axes[-1, col].set_xlabel("adaptation step")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/adaptation")
    parser.add_argument("--domains", default="night,cctv")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300, help="adaptation's and supervised training's")
    parser.add_argument("--output_json")
    parser.add_argument("--plot", help="a PNG of the purity, NMI and target mAP curves")
    args = parser.parse_args()
    rows = [one(args.output_dir, int(s), d, args.steps) for s in args.seeds.split(",") for d in args.domains.split(",")]
    summary = {}
    for domain in args.domains.split(","):
        mine = [r for r in rows if r["domain"] == domain]
        summary[domain] = {k: float(np.mean([r[k] for r in mine])) for k in ("direct", "adapted", "supervised",
                                                                             "gap_closed")}
        summary[domain]["gap_closed_min"] = min(r["gap_closed"] for r in mine)
        summary[domain]["seeds"] = len(mine)
        print(f"{domain}: mean over {len(mine)} seeds " + ", ".join(f"{k} {v:.3f}" for k, v in summary[domain].items()))
    data = {"steps": args.steps, "adapt_flags": list(ADAPT), "cpu": cpu_kind(), "rows": rows, "summary": summary}
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    if args.plot:
        plot(data, args.plot)


if __name__ == "__main__":
    main()
