"""Scores a model or a features file on a dataset's test split (query against gallery) with the
Market-1501 protocol, and re-ranking. mAP, rank-k and mINP are fractions (0.8736), as everywhere.

  python tools/eval.py --model=runs/quickstart            # a run's latest export, on its own dataset
  python tools/eval.py --model=exports/tflite/600/model.tflite --rerank --flip
  python tools/eval.py --model=runs/market --dataset=duke --data_dir=data/duke   # cross-domain
  python tools/eval.py --features=features.npz --rerank --output_json=scores.json
"""

import dataclasses
import json
import os
import sys

import numpy as np
from absl import app, logging

from reid_tf import config as config_lib
from reid_tf import console, data, datasets, evaluate, plots, projector, rerank
from reid_tf import flags as reid_flags
from reid_tf.metrics import MetricsError

reid_flags.define_eval_flags()
FLAGS = reid_flags.FLAGS


def _data_config(model_path: str) -> config_lib.DataConfig:
    """The dataset to score: --dataset/--data_dir, else the one the export was trained on."""
    trained = evaluate.export_config(model_path).get("config", {}).get("data", {})
    cfg = config_lib.RunConfig.from_dict({"data": trained}).data
    first = lambda value: value.split(",")[0]  # noqa: E731 - a run of several datasets: its first
    if FLAGS.dataset:
        return dataclasses.replace(cfg, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir or "",
                                   cuhk03_labels=FLAGS.cuhk03_labels or cfg.cuhk03_labels)
    if not trained:
        raise MetricsError(f"{model_path} does not record its dataset: give --dataset and --data_dir")
    cfg = dataclasses.replace(cfg, dataset=first(cfg.dataset), data_dir=FLAGS.data_dir or first(cfg.data_dir),
                              cuhk03_labels=FLAGS.cuhk03_labels or cfg.cuhk03_labels)
    where = cfg.data_dir or datasets.synthetic_cache_dir(cfg.synthetic_ids)
    print(f"scoring on the test split of --dataset={cfg.dataset} in {where}, the model's own dataset"
          " (--dataset/--data_dir choose another)")
    return cfg


def _embed_split(model_path: str) -> dict:
    cfg = _data_config(model_path)
    query, gallery = datasets.load_test_split(cfg)
    embed, size = evaluate.model_embed_fn(model_path)
    out = {}
    for name, records in (("query", query), ("gallery", gallery)):
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
        lines.append(f"{label:10} " + " ".join(f"{v:7.4f}" for v in values))
    return "\n".join(lines)


def _pictures(arrays: dict, scores: dict, model_name: str) -> None:
    os.makedirs(FLAGS.plot_dir, exist_ok=True)
    options = [FLAGS.protocol + " protocol"] + (["flip"] if FLAGS.flip else []) + (
        [f"re-ranked k1={FLAGS.k1} k2={FLAGS.k2} λ={FLAGS.lambda_value}"] if FLAGS.rerank else [])
    curves = {"plain": scores["cmc"]}
    if "cmc_rerank" in scores:
        curves["re-ranked"] = scores["cmc_rerank"]
    plots.plot_cmc(curves, os.path.join(FLAGS.plot_dir, "cmc.png"),
                   title=f"CMC of {model_name}\n{', '.join(options)}")
    if "query_records" in arrays:
        q, g = arrays["query_features"], arrays["gallery_features"]
        if FLAGS.rerank:
            distmat = rerank.re_ranking_features(q, g, FLAGS.k1, FLAGS.k2, FLAGS.lambda_value)
            order = f"re-ranked (k1={FLAGS.k1}, k2={FLAGS.k2}, λ={FLAGS.lambda_value}), blended distance"
        else:
            distmat, order = evaluate.euclidean_distances(q, g), "Euclidean distance"
        plots.ranked_retrieval(distmat, arrays["query_records"], arrays["gallery_records"],
                               os.path.join(FLAGS.plot_dir, "ranked"), FLAGS.plot_queries, order=order)
    print(f"pictures in {FLAGS.plot_dir}")


def _actmaps(model_path: str, query: list) -> None:
    """Activation maps of --actmap_queries queries spread over the query set."""
    model = evaluate.keras_model_of_export(model_path)
    size = evaluate.export_config(model_path)
    spread = np.linspace(0, len(query) - 1, min(FLAGS.actmap_queries, len(query))).astype(int)
    chosen = [query[i] for i in spread]
    images = np.concatenate([batch.numpy() for batch, _, _ in data.eval_dataset(
        chosen, size["input_height"], size["input_width"])])
    maps = evaluate.activation_maps(model, images)
    written = plots.activation_pictures(images, maps, chosen, FLAGS.actmap_dir)
    print(f"{len(written)} activation maps in {FLAGS.actmap_dir}")


def main(argv):
    del argv
    console.quiet()
    logging.set_verbosity(logging.WARNING)
    model = FLAGS.model or FLAGS.saved_model
    if bool(FLAGS.features) == bool(model):
        sys.exit("error: give exactly one of --features=F.npz or --model=EXPORT_OR_RUN_FOLDER")
    if (FLAGS.projector_dir or FLAGS.actmap_dir) and not model:
        sys.exit("error: --projector_dir and --actmap_dir need --model (the images, not a features file)")
    try:
        model = evaluate.find_export(model) if model else None
        if FLAGS.actmap_dir:  # before the long embedding: an export without the Keras model is refused
            evaluate.keras_model_of_export(model)
        arrays = evaluate.load_features(FLAGS.features) if FLAGS.features else _embed_split(model)
        scores = evaluate.score(
            arrays["query_features"], arrays["gallery_features"], arrays["query_pids"],
            arrays["gallery_pids"], arrays["query_camids"], arrays["gallery_camids"],
            rerank_too=FLAGS.rerank, k1=FLAGS.k1, k2=FLAGS.k2, lambda_value=FLAGS.lambda_value,
            protocol=FLAGS.protocol,
        )
    except (MetricsError, datasets.DatasetError, OSError, ValueError) as e:
        sys.exit(f"error: {str(e).splitlines()[0]}")
    print(f"{model or FLAGS.features}: {len(arrays['query_features'])} queries,"
          f" {len(arrays['gallery_features'])} gallery images, protocol {FLAGS.protocol}")
    print(_table(scores))
    if FLAGS.output_json:
        summary = {k: v for k, v in scores.items() if not k.startswith("cmc")}
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
    if FLAGS.save_features:
        np.savez(FLAGS.save_features, **{k: arrays[k] for k in evaluate.FEATURE_KEYS})
    if FLAGS.plot_dir:
        _pictures(arrays, scores, model or FLAGS.features)
    if FLAGS.projector_dir:
        print(projector.write_projector(
            FLAGS.projector_dir, arrays["query_features"], arrays["query_records"],
            arrays["gallery_features"], arrays["gallery_records"]))
    if FLAGS.actmap_dir:
        _actmaps(model, arrays["query_records"])


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
