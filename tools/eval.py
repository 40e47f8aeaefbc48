"""Scores a model or a features file on a dataset's test split (query against gallery): the Market-1501
protocol (or the official one, or the 2017 original's), the other protocol's figures beside it,
and re-ranking. mAP, rank-k and mINP are fractions (0.8736), as everywhere.

  python tools/eval.py --model=runs/quickstart            # a run's latest export, on its own dataset
  python tools/eval.py --model=exports/tflite/600/model.tflite --rerank --flip
  python tools/eval.py --model=runs/market --dataset=duke --data_dir=data/duke   # cross-domain
  python tools/eval.py --features=features.npz --protocol=original --rerank --rerank_impl=original
"""

import dataclasses
import json
import os
import sys

from absl import app, flags, logging

from reid_tf import console
from reid_tf import flags as reid_flags

reid_flags.group("What to score")
flags.DEFINE_string("model", None, "An exported model: a SavedModel version folder, a .tflite or an .onnx"
                    " file, the version folder holding one, or a training run's folder (its latest export).")
flags.DEFINE_string("saved_model", None, "The same as --model (kept for older commands).")
flags.DEFINE_string("dataset", "", "The dataset whose test split is scored (a registered name); default: the"
                    " one the model was trained on.")
flags.DEFINE_string("data_dir", "", "Its folder; default: where the model was trained (the synthetic set: its"
                    " cache folder).")
flags.DEFINE_enum("cuhk03_labels", None, ("detected", "labeled"), "CUHK03-NP: detected or labeled (default:"
                  " the model's, or detected).")
flags.DEFINE_string("features", None, "A .npz with query/gallery features, pids and camids.")
flags.DEFINE_boolean("rerank", False, "Also score with re-ranking (--rerank_impl, --k1, --k2, --lambda_value).")
flags.DEFINE_boolean("flip", False, "Average the embeddings of each image and its mirror.")
flags.DEFINE_integer("batch_size", 64, "Images per embedding batch.", lower_bound=1)
reid_flags.define_settings(["scoring"])  # --protocol, --rerank_impl, --k1, --k2, --lambda_value
reid_flags.group("Outputs")
flags.DEFINE_string("output_json", None, "Write the scores as JSON here.")
flags.DEFINE_string("save_features", None, "Write the embeddings as a features .npz here.")
flags.DEFINE_string("plot_dir", None, "Write a CMC curve and ranked-retrieval pictures here.")
flags.DEFINE_integer("plot_queries", 8, "Queries shown in ranked-retrieval pictures.", lower_bound=1)
flags.DEFINE_string("projector_dir", None, "Write the query and gallery embeddings, their metadata and a sprite"
                    " of the crops here for TensorBoard's Embedding Projector (tensorboard --logdir DIR).")
flags.DEFINE_string("actmap_dir", None, "Write activation maps (torchreid's: the channel-wise squared norm of"
                    " the backbone's last feature map) of --actmap_queries queries here.")
flags.DEFINE_integer("actmap_queries", 8, "Queries drawn with --actmap_dir.", lower_bound=1)
FLAGS = flags.FLAGS


def _data_config(model):
    """The dataset to score: --dataset/--data_dir, else the one the export was trained on."""
    from reid_tf import config as config_lib
    from reid_tf import datasets

    trained = model.metadata.get("config", {}).get("data", {})
    cfg = config_lib.RunConfig.from_dict({"data": trained}).data
    labels = FLAGS.cuhk03_labels or cfg.cuhk03_labels
    if FLAGS.dataset:
        return dataclasses.replace(cfg, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, cuhk03_labels=labels)
    if not trained:
        raise ValueError(f"{model.path} does not record its dataset: give --dataset and --data_dir")
    first = cfg.dataset.split(",")[0]  # a run of several datasets: its first
    cfg = dataclasses.replace(cfg, dataset=first, data_dir=FLAGS.data_dir or cfg.data_dir.split(",")[0],
                              cuhk03_labels=labels)
    where = cfg.data_dir or datasets.synthetic_cache_dir(cfg.synthetic_ids)
    print(f"scoring on the test split of --dataset={cfg.dataset} in {where}, the model's own dataset"
          " (--dataset/--data_dir choose another)")
    return cfg


def _embed_split(model) -> dict:
    from reid_tf import datasets, evaluate

    query, gallery = datasets.load_test_split(_data_config(model))
    out = {}
    for name, records in (("query", query), ("gallery", gallery)):
        out[f"{name}_records"] = records
        feats, pids, cams = evaluate.embed_records(model.embed, records, model.height, model.width,
                                                   FLAGS.batch_size, FLAGS.flip, model.crop)
        out.update({f"{name}_features": feats, f"{name}_pids": pids, f"{name}_camids": cams})
    return out


def _table(scores: dict, protocol: str) -> str:
    extra = "mAP_at_200" if protocol == "original" else "mINP"
    keys = ("mAP", "rank1", "rank5", "rank10", "rank20", extra)
    lines = [f"{protocol:18} " + " ".join(f"{k:>10}" for k in keys)]
    other = "market1501" if protocol == "original" else "original"
    for label, prefix, suffix in (("plain", "", ""), ("re-ranked", "", "_rerank"),
                                  (f"{other}", f"{other}_", ""), (f"{other} re-ranked", f"{other}_", "_rerank")):
        if f"{prefix}mAP{suffix}" in scores:
            row_keys = keys if not prefix else ("mAP", "rank1", "rank5", "rank10", "rank20",
                                                "mINP" if other != "original" else "mAP_at_200")
            values = [scores.get(f"{prefix}{k}{suffix}", float("nan")) for k in row_keys]
            lines.append(f"{label:18} " + " ".join(f"{v:10.4f}" if v == v else f"{'–':>10}" for v in values))
    return "\n".join(lines)


def _pictures(arrays: dict, scores: dict, scoring, name: str) -> None:
    from reid_tf import evaluate, plots, rerank

    os.makedirs(FLAGS.plot_dir, exist_ok=True)
    rerank_words = f"re-ranked ({scoring.rerank_impl}, k1={scoring.k1}, k2={scoring.k2}, λ={scoring.lambda_value})"
    options = [scoring.protocol + " protocol"] + (["flip"] if FLAGS.flip else []) + (
        [rerank_words] if FLAGS.rerank else [])
    prefix = "market1501_" if scoring.protocol == "original" else ""
    curves = {"plain": scores[f"{prefix}cmc"]}
    if f"{prefix}cmc_rerank" in scores:
        curves["re-ranked"] = scores[f"{prefix}cmc_rerank"]
    plots.plot_cmc(curves, os.path.join(FLAGS.plot_dir, "cmc.png"),
                   title=f"CMC of {name} (Market-1501's)\n{', '.join(options)}")
    if "query_records" in arrays:
        q, g = arrays["query_features"], arrays["gallery_features"]
        if not FLAGS.rerank:
            distmat, order = evaluate.euclidean_distances(q, g), "Euclidean distance"
        elif scoring.rerank_impl == "original":
            distmat, order = rerank.original_re_ranking(q, g, scoring.k1, scoring.k2, scoring.lambda_value), \
                rerank_words
        else:
            distmat, order = rerank.re_ranking_features(q, g, scoring.k1, scoring.k2, scoring.lambda_value), \
                rerank_words
        plots.ranked_retrieval(distmat, arrays["query_records"], arrays["gallery_records"],
                               os.path.join(FLAGS.plot_dir, "ranked"), FLAGS.plot_queries, order=order)
    print(f"pictures in {FLAGS.plot_dir}")


def _actmaps(model, query: list) -> None:
    """Activation maps of --actmap_queries queries spread over the query set."""
    import numpy as np

    from reid_tf import data, exported, plots
    from reid_tf import model as model_lib

    keras_model = exported.keras_model(model.path)
    spread = np.linspace(0, len(query) - 1, min(FLAGS.actmap_queries, len(query))).astype(int)
    chosen = [query[i] for i in spread]
    images = np.concatenate([batch.numpy() for batch, _, _ in data.eval_dataset(
        chosen, model.height, model.width, crop=model.crop)])
    written = plots.activation_pictures(images, model_lib.activation_maps(keras_model, images), chosen,
                                        FLAGS.actmap_dir)
    print(f"{len(written)} activation maps in {FLAGS.actmap_dir}")


def main(argv):
    del argv
    console.quiet()
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from reid_tf import datasets, evaluate, exported, metrics, projector

    path = FLAGS.model or FLAGS.saved_model
    if bool(FLAGS.features) == bool(path):
        sys.exit("error: give exactly one of --features=F.npz or --model=EXPORT_OR_RUN_FOLDER")
    if (FLAGS.projector_dir or FLAGS.actmap_dir) and not path:
        sys.exit("error: --projector_dir and --actmap_dir need --model (the images, not a features file)")
    scoring = reid_flags.config_section("scoring")
    try:
        model = exported.open_export(path) if path else None
        if FLAGS.actmap_dir:  # before the long embedding: an export without the Keras model is refused
            exported.keras_model(model.path)
        arrays = evaluate.load_features(FLAGS.features) if FLAGS.features else _embed_split(model)
        scores = evaluate.score(arrays["query_features"], arrays["gallery_features"], arrays["query_pids"],
                                arrays["gallery_pids"], arrays["query_camids"], arrays["gallery_camids"],
                                scoring, rerank_too=FLAGS.rerank)
    except (metrics.MetricsError, datasets.DatasetError, exported.ExportedModelError, OSError, ValueError) as e:
        sys.exit(f"error: {str(e).splitlines()[0]}")
    name = model.path if model else FLAGS.features
    print(f"{name}: {len(arrays['query_features'])} queries, {len(arrays['gallery_features'])} gallery"
          f" images, protocol {scoring.protocol}")
    print(_table(scores, scoring.protocol))
    if FLAGS.output_json:
        summary = {k: None if isinstance(v, float) and np.isnan(v) else v  # a rank past the curve: null
                   for k, v in scores.items() if "cmc" not in k}
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
    if FLAGS.save_features:
        np.savez(FLAGS.save_features, **{k: arrays[k] for k in evaluate.FEATURE_KEYS})
    if FLAGS.plot_dir:
        _pictures(arrays, scores, scoring, name)
    if FLAGS.projector_dir:
        print(projector.write_projector(FLAGS.projector_dir, arrays["query_features"], arrays["query_records"],
                                        arrays["gallery_features"], arrays["gallery_records"]))
    if FLAGS.actmap_dir:
        _actmaps(model, arrays["query_records"])


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
