"""The tables of docs/adaptation.md, from the JSON that benchmarks/adaptation.py and
benchmarks/cluster_scale.py write (write_docs.py renders them)."""

from __future__ import annotations

import json
import os

GOAL = 0.70  # the share of the gap between direct transfer and supervised training that adaptation closes
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks")


def _load(name: str) -> dict | None:
    path = os.path.join(DATA, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]) + "\n"


def adaptation() -> str:
    data = _load("adaptation.json")
    if not data:
        return "(not measured yet: python benchmarks/adaptation.py --output_json=docs/benchmarks/adaptation.json)\n"
    rows = [[f"`{r['domain']}`", r["seed"], f"{r['direct']:.3f}", f"{r['adapted']:.3f}", f"{r['supervised']:.3f}",
             f"{100 * r['gap_closed']:.0f} %", r["clusterings"][-2]["clusters"] if len(r["clusterings"]) > 1 else "–",
             f"{r['clusterings'][-2].get('purity', float('nan')):.3f}" if len(r["clusterings"]) > 1 else "–"]
            for r in data["rows"]]
    verdicts = [f"`{domain}`: {100 * v['gap_closed']:.0f} % of the gap closed (mean of {v['seeds']} seed(s); the"
                f" least {100 * v['gap_closed_min']:.0f} %): goal {'met' if v['gap_closed_min'] >= GOAL else 'not met'}"
                for domain, v in data["summary"].items()]
    return (f"{data['steps']} steps for adaptation and for supervised training, from each seed's source model;"
            f" adaptation's flags {' '.join(f'`{f}`' for f in data['adapt_flags'])}; {data['cpu']} CPU kind:\n\n"
            + _table(["target", "seed", "direct transfer mAP", "adapted mAP", "supervised mAP", "gap closed",
                      "last clusters", "their purity"], rows)
            + f"\nThe rule: the goal is met on a target where every seed closes at least {100 * GOAL:.0f} % of the"
              " gap.\n\n"
            + "\n".join(f"- {v}" for v in verdicts) + "\n")


def cluster_scale() -> str:
    data = _load("cluster_scale.json")
    if not data:
        return ("(not measured yet: python benchmarks/cluster_scale.py"
                " --output_json=docs/benchmarks/cluster_scale.json)\n")
    rows = [[f"{r['images']:,}", r["dim"], f"{r['clustering_s']:.1f}", f"{r['knn_floor_s']:.1f}", f"{r['ratio']:.2f}",
             f"{r['peak_rss_gib']:.2f}", r["clusters"], r["outliers"], f"{r['purity']:.3f}"] for r in data["rows"]]
    return f"On the {data['cpu']} CPU kind, one process a row:\n\n" + _table(
        ["images", "dim", "re-clustering, s", "kNN floor, s", "ratio", "peak RSS, GiB", "clusters", "outliers",
         "purity"], rows)
