"""Scores a model or a features file with the Market-1501 protocol (and re-ranking).

  python tools/eval.py --model=runs/quickstart/export/600 --data_dir=DATA [--rerank] [--flip]
  python tools/eval.py --model=exports/tflite/600/model.tflite --data_dir=DATA
  python tools/eval.py --features=features.npz --rerank --output_json=scores.json
"""

import json
import os
import sys

import numpy as np
from absl import app

from reid_tf import datasets, evaluate, plots
from reid_tf import flags as reid_flags
from reid_tf.metrics import MetricsError

reid_flags.define_eval_flags()
FLAGS = reid_flags.FLAGS


def _embed_split():
    if not FLAGS.data_dir:
        raise MetricsError("--model needs --data_dir (a Market-1501 layout folder)")
    splits = datasets.load_market1501(FLAGS.data_dir)
    embed, size = evaluate.model_embed_fn(FLAGS.model or FLAGS.saved_model)
    out = {}
    for name in ("query", "gallery"):
        records = datasets.drop_unreadable(splits[name])
        out[f"{name}_records"] = records
        feats, pids, cams = evaluate.embed_records(embed, records, size["height"], size["width"],
                                                   FLAGS.batch_size, FLAGS.flip)
        out.update({f"{name}_features": feats, f"{name}_pids": pids, f"{name}_camids": cams})
    return out


def _table(scores: dict) -> str:
    rows = [("plain", "")] + ([("re-ranked", "_rerank")] if "mAP_rerank" in scores else [])
    lines = [f"{'':10} {'mAP':>7} {'rank-1':>7} {'rank-5':>7} {'rank-10':>7} {'rank-20':>7} {'mINP':>7}"]
    for label, s in rows:
        values = [scores.get(f"{k}{s}", float("nan")) for k in
                  ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP")]
        lines.append(f"{label:10} " + " ".join(f"{v * 100:7.2f}" for v in values))
    return "\n".join(lines)


def main(argv):
    del argv
    if bool(FLAGS.features) == bool(FLAGS.model or FLAGS.saved_model):
        sys.exit("error: give exactly one of --features=F.npz or --model=EXPORT (with --data_dir)")
    try:
        arrays = evaluate.load_features(FLAGS.features) if FLAGS.features else _embed_split()
        scores = evaluate.score(
            arrays["query_features"], arrays["gallery_features"], arrays["query_pids"],
            arrays["gallery_pids"], arrays["query_camids"], arrays["gallery_camids"],
            rerank_too=FLAGS.rerank, k1=FLAGS.k1, k2=FLAGS.k2, lambda_value=FLAGS.lambda_value,
            protocol=FLAGS.protocol,
        )
    except (MetricsError, datasets.DatasetError, OSError, ValueError) as e:
        sys.exit(f"error: {str(e).splitlines()[0]}")
    print(f"{len(arrays['query_features'])} queries, {len(arrays['gallery_features'])} gallery images,"
          f" protocol {FLAGS.protocol}")
    print(_table(scores))
    if FLAGS.output_json:
        summary = {k: v for k, v in scores.items() if not k.startswith("cmc")}
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
    if FLAGS.save_features:
        np.savez(FLAGS.save_features, **{k: arrays[k] for k in evaluate.FEATURE_KEYS})
    if FLAGS.plot_dir:
        os.makedirs(FLAGS.plot_dir, exist_ok=True)
        curves = {"plain": scores["cmc"]}
        if "cmc_rerank" in scores:
            curves["re-ranked"] = scores["cmc_rerank"]
        plots.plot_cmc(curves, os.path.join(FLAGS.plot_dir, "cmc.png"))
        if "query_records" in arrays:
            distmat = evaluate.euclidean_distances(arrays["query_features"], arrays["gallery_features"])
            plots.ranked_retrieval(distmat, arrays["query_records"], arrays["gallery_records"],
                                   os.path.join(FLAGS.plot_dir, "ranked"), FLAGS.plot_queries)
        print(f"pictures in {FLAGS.plot_dir}")


if __name__ == "__main__":
    app.run(main)
