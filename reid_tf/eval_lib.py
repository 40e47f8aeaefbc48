"""Scoring a model or a features file on a dataset's test split, as `tools/eval.py` does: the
figures and their table, and beside them the features, JSON, CMC and ranked pictures, projector
files and activation maps asked for. Progress goes to stdout; refusals raise `EvalError`."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from reid_tf import config as config_lib
from reid_tf import datasets, eval_pairs, evaluate, exported, metrics, plots, projector, rerank
from reid_tf import model as model_lib
from reid_tf.eval_sets import EvalError, data_config, embed_split, files_of, test_records  # noqa: F401 - public here


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What is written beside the printed table (each None: not written)."""

    json_path: str | None = None
    features_path: str | None = None
    plot_dir: str | None = None
    plot_queries: int = 8
    projector_dir: str | None = None
    actmap_dir: str | None = None
    actmap_queries: int = 8


def score_table(scores: dict, protocol: str) -> str:
    """The printed table: the protocol's figures, re-ranked ones, and the other protocol's."""
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


def write_pictures(arrays: dict, scores: dict, scoring: config_lib.ScoringConfig, name: str, plot_dir: str,
                   queries: int, flip: bool, reranked: bool) -> None:
    """The CMC curve and, from images, ranked-retrieval strips in the order scored."""
    os.makedirs(plot_dir, exist_ok=True)
    rerank_words = f"re-ranked ({scoring.rerank_impl}, k1={scoring.k1}, k2={scoring.k2}, λ={scoring.lambda_value})"
    options = [scoring.protocol + " protocol"] + (["flip"] if flip else []) + ([rerank_words] if reranked else [])
    prefix = "market1501_" if scoring.protocol == "original" else ""
    curves = {label: scores[f"{prefix}cmc{suffix}"] for label, suffix in (("plain", ""), ("re-ranked", "_rerank"))
              if f"{prefix}cmc{suffix}" in scores}
    if curves:  # none under the original protocol on data without camera ids
        plots.plot_cmc(curves, os.path.join(plot_dir, "cmc.png"),
                       title=f"CMC of {name} (Market-1501's)\n{', '.join(options)}")
    if "query_records" in arrays:
        q, g = arrays["query_features"], arrays["gallery_features"]
        if not reranked:
            distmat, order = evaluate.euclidean_distances(q, g), "Euclidean distance"
        elif scoring.rerank_impl == "original":
            distmat, order = rerank.original_re_ranking(q, g, scoring.k1, scoring.k2, scoring.lambda_value), \
                rerank_words
        else:
            distmat, order = rerank.re_ranking_features(q, g, scoring.k1, scoring.k2, scoring.lambda_value), \
                rerank_words
        plots.ranked_retrieval(distmat, arrays["query_records"], arrays["gallery_records"],
                               os.path.join(plot_dir, "ranked"), queries, order=order)
    print(f"pictures in {plot_dir}")


def write_actmaps(model: exported.Exported, query: list, actmap_dir: str, queries: int) -> None:
    """Activation maps of `queries` queries spread over the query set."""
    from reid_tf import data

    keras_model = exported.keras_model(model.path)
    spread = np.linspace(0, len(query) - 1, min(queries, len(query))).astype(int)
    chosen = [query[i] for i in spread]
    images = np.concatenate([batch.numpy() for batch, _, _ in data.eval_dataset(
        chosen, model.height, model.width, crop=model.crop)])
    written = plots.activation_pictures(images, model_lib.activation_maps(keras_model, images), chosen, actmap_dir)
    print(f"{len(written)} activation maps in {actmap_dir}")


def run(model_path: str | None, features_path: str | None, scoring: config_lib.ScoringConfig,
        outputs: Outputs = Outputs(), dataset: str = "", data_dir: str = "", cuhk03_labels: str | None = None,
        reranked: bool = False, flip: bool = False, batch_size: int = 64, query_dir: str = "",
        gallery_dir: str = "", verification: bool = False) -> dict:
    """Score an export (or a run's latest) or a features file, print the table (and the verification
    figures), write `outputs`; returns the scores."""
    if bool(features_path) == bool(model_path):
        raise EvalError("give exactly one of --features=F.npz or --model=EXPORT_OR_RUN_FOLDER")
    if (outputs.projector_dir or outputs.actmap_dir) and not model_path:
        raise EvalError("--projector_dir and --actmap_dir need --model (the images, not a features file)")
    try:
        model = exported.open_export(model_path) if model_path else None
        if outputs.actmap_dir:  # before the long embedding: an export without the Keras model is refused
            exported.keras_model(model.path)
        arrays = (evaluate.load_features(features_path) if features_path else embed_split(
            model, *test_records(model, dataset, data_dir, cuhk03_labels, query_dir, gallery_dir), batch_size, flip))
        scores = evaluate.score(arrays["query_features"], arrays["gallery_features"], arrays["query_pids"],
                                arrays["gallery_pids"], arrays["query_camids"], arrays["gallery_camids"],
                                scoring, rerank_too=reranked, **files_of(arrays))
    except (metrics.MetricsError, datasets.DatasetError, exported.ExportedModelError, OSError, ValueError) as e:
        raise EvalError(str(e).splitlines()[0]) from None
    name = model.path if model else features_path
    print(f"{name}: {len(arrays['query_features'])} queries, {len(arrays['gallery_features'])} gallery"
          f" images, protocol {scoring.protocol}")
    print(score_table(scores, scoring.protocol))
    if verification:
        scores.update(eval_pairs.verify(arrays, scoring.protocol, outputs.plot_dir, name))
    if outputs.json_path:
        summary = {k: None if isinstance(v, float) and np.isnan(v) else v  # a rank past the curve: null
                   for k, v in scores.items() if "cmc" not in k}
        summary["protocol"] = scoring.protocol
        with open(outputs.json_path, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
    if outputs.features_path:
        np.savez(outputs.features_path, **{k: arrays[k] for k in evaluate.FEATURE_KEYS})
    if outputs.plot_dir:
        write_pictures(arrays, scores, scoring, name, outputs.plot_dir, outputs.plot_queries, flip, reranked)
    if outputs.projector_dir:
        print(projector.write_projector(outputs.projector_dir, arrays["query_features"], arrays["query_records"],
                                        arrays["gallery_features"], arrays["gallery_records"]))
    if outputs.actmap_dir:
        write_actmaps(model, arrays["query_records"], outputs.actmap_dir, outputs.actmap_queries)
    return scores
