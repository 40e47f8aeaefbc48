"""Does the synthetic generator's domain shift hurt? A model trained on one domain (the quickstart's:
`default`) scored with tools/eval.py's scoring on the test split of every domain (Market-1501's
protocol; each domain's own people and cameras, generated from the same seed and size), and the
share of its in-domain mAP each keeps.

  python benchmarks/domain_shift.py --model=runs/quickstart --output_json=docs/benchmarks/domain_shift.json
"""

from __future__ import annotations

import argparse
import json
import os

from reid_tf import config, datasets, eval_lib, exported, synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/quickstart")
    parser.add_argument("--synthetic_ids", type=int, default=200)
    parser.add_argument("--output_json")
    args = parser.parse_args()
    model = exported.open_export(args.model)
    trained_on = model.metadata["config"]["data"].get("synthetic_domain", "default")
    rows = []
    for domain in synthetic.DOMAINS.names():
        folder = datasets.synthetic_cache_dir(args.synthetic_ids, domain)
        datasets.ensure_synthetic(folder, args.synthetic_ids, domain)
        scores = eval_lib.run(model.path, None, config.ScoringConfig(), dataset="synthetic", data_dir=folder)
        rows.append({"domain": domain, "description": synthetic.DOMAINS.help().split(f"{domain}: ")[1].split(";")[0],
                     "mAP": scores["mAP"], "rank1": scores["rank1"]})
    own = next(r["mAP"] for r in rows if r["domain"] == trained_on)
    for r in rows:
        r["kept"] = r["mAP"] / own
        print(f"{r['domain']:8} mAP {r['mAP']:.3f} ({100 * r['kept']:.0f} % of in-domain), rank-1 {r['rank1']:.3f}")
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump({"model": os.path.relpath(model.path), "trained_on": trained_on, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
