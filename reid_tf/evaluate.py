"""Embedding a split with a model (Keras or SavedModel) and scoring query against gallery."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf import convert, data, metrics, rerank
from reid_tf.datasets import Record
from reid_tf.metrics import euclidean_distances
from reid_tf.model import embeddings_of

RANKS = (1, 5, 10, 20)
FEATURE_KEYS = ("query_features", "gallery_features", "query_pids", "gallery_pids",
                "query_camids", "gallery_camids")


def embed_records(
    embed_fn: Callable[[tf.Tensor], tf.Tensor], records: Sequence[Record], height: int, width: int,
    batch_size: int = 64, flip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, D] float32, pids, camids) of records in order; flip averages the mirror's."""
    if not records:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32)
    feats, pids, camids = [], [], []
    for images, pid, camid in data.eval_dataset(records, height, width, batch_size):
        f = embed_fn(images)
        if flip:
            f = (f + embed_fn(tf.reverse(images, axis=[2]))) / 2.0
        feats.append(np.asarray(f, np.float32))
        pids.append(pid.numpy())
        camids.append(camid.numpy())
    return np.concatenate(feats), np.concatenate(pids), np.concatenate(camids)


def keras_embed_fn(model) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model in inference mode as a compiled function of a pixel batch."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def embed(images):
        return tf.cast(embeddings_of(model(images, training=False)), tf.float32)

    return embed


def saved_model_embed_fn(path: str) -> tuple[Callable[[tf.Tensor], tf.Tensor], dict]:
    """The `serving_default` signature of an exported SavedModel, and its input height/width."""
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1]["images"]

    def embed(images):
        return signature(images=images)["embeddings"]

    embed.loaded = loaded  # keep the SavedModel alive with the function
    return embed, {"height": int(spec.shape[1]), "width": int(spec.shape[2])}


def model_embed_fn(path: str) -> tuple[Callable[[tf.Tensor], tf.Tensor], dict]:
    """Embeddings by an exported model, whichever its format: a SavedModel folder, a .tflite or an
    .onnx file (or the version folder holding one), with its input height/width."""
    if tf.io.gfile.isdir(path) and tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return saved_model_embed_fn(path)
    if tf.io.gfile.isdir(path):
        inside = [os.path.join(path, name) for name in convert.FILE_NAMES.values()
                  if tf.io.gfile.exists(os.path.join(path, name))]
        if not inside:
            raise metrics.MetricsError(f"{path} holds no saved_model.pb, model.tflite or model.onnx")
        path = inside[0]
    runtimes = {".tflite": convert.tflite_embed_fn, ".onnx": convert.onnx_embed_fn}
    suffix = os.path.splitext(path)[1]
    if suffix not in runtimes or not tf.io.gfile.exists(path):
        raise metrics.MetricsError(f"{path}: not an exported model (a SavedModel folder, .tflite or .onnx)")
    config_path = os.path.join(os.path.dirname(path), "reid_config.json")
    if not tf.io.gfile.exists(config_path):
        raise metrics.MetricsError(f"{config_path} not found: it gives the input size of {path}")
    with tf.io.gfile.GFile(config_path) as f:
        meta = json.load(f)
    try:
        run = runtimes[suffix](path)
    except convert.ConversionError as e:
        raise metrics.MetricsError(str(e)) from None

    def embed(images):
        return tf.constant(run(np.asarray(images)))

    return embed, {"height": int(meta["input_height"]), "width": int(meta["input_width"])}


def check_features(query_features: np.ndarray, gallery_features: np.ndarray,
                   query_pids=None, gallery_pids=None) -> None:
    """One clear error for features that cannot be scored."""
    q, g = np.asarray(query_features), np.asarray(gallery_features)
    if q.ndim != 2 or g.ndim != 2 or len(q) == 0 or len(g) == 0:
        raise metrics.MetricsError(
            f"need non-empty 2-D query and gallery features, got shapes {q.shape} and {g.shape}"
        )
    if q.shape[1] != g.shape[1]:
        raise metrics.MetricsError(
            f"query features are {q.shape[1]}-d but gallery features {g.shape[1]}-d"
        )
    for name, f in (("query", q), ("gallery", g)):
        bad = ~np.isfinite(f).all(axis=1)
        if bad.any():
            raise metrics.MetricsError(
                f"{bad.sum()} {name} feature rows have NaN or Inf (first: row {np.flatnonzero(bad)[0]})"
            )
    for name, f, p in (("query", q, query_pids), ("gallery", g, gallery_pids)):
        if p is not None and len(p) != len(f):
            raise metrics.MetricsError(f"{len(f)} {name} features but {len(p)} {name} pids")


def score(
    query_features: np.ndarray, gallery_features: np.ndarray,
    query_pids: np.ndarray, gallery_pids: np.ndarray,
    query_camids: np.ndarray, gallery_camids: np.ndarray,
    rerank_too: bool = False, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
    protocol: str = "market1501",
) -> dict:
    """mAP, rank-1/5/10/20, mINP and the CMC curve; with `_rerank` keys when re-ranking too."""
    check_features(query_features, gallery_features, query_pids, gallery_pids)
    ids = (query_pids, gallery_pids, query_camids, gallery_camids)
    results = _summary(metrics.evaluate_rank(
        euclidean_distances(query_features, gallery_features), *ids, protocol=protocol), "")
    if rerank_too:
        reranked = rerank.re_ranking_features(query_features, gallery_features, k1, k2, lambda_value)
        results.update(_summary(metrics.evaluate_rank(reranked, *ids, protocol=protocol), "_rerank"))
    return results


def _summary(result: dict, suffix: str) -> dict:
    out = {f"mAP{suffix}": result["mAP"], f"mINP{suffix}": result["mINP"]}
    for r in RANKS:
        if r <= len(result["cmc"]):
            out[f"rank{r}{suffix}"] = float(result["cmc"][r - 1])
    out[f"cmc{suffix}"] = [float(c) for c in result["cmc"]]
    out["num_valid_queries"] = result["num_valid_queries"]
    return out


def load_features(path: str) -> dict:
    """The arrays of a features .npz, with one clear error for a missing key or another file."""
    what = f"a features .npz holds the arrays {', '.join(FEATURE_KEYS)} (tools/eval.py --save_features)"
    try:
        f = np.load(path, allow_pickle=False)
    except ValueError:  # not an .npz or .npy: numpy would suggest unpickling it
        raise metrics.MetricsError(f"{path} is not a features file: {what}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise metrics.MetricsError(f"{path} is a single array, not a features file: {what}")
    with f:
        missing = [k for k in FEATURE_KEYS if k not in f]
        if missing:
            raise metrics.MetricsError(f"{path} lacks {', '.join(missing)}; needs {', '.join(FEATURE_KEYS)}")
        return {k: f[k] for k in FEATURE_KEYS}


def validate(embed_fn: Callable[[tf.Tensor], tf.Tensor], splits: dict, height: int, width: int,
             step: int, rerank_too: bool = False) -> dict:
    """A validation row: mAP, rank-1, mINP on held-out identities (`splits["valid"]`) and, with a
    `train_` prefix, on a subset of training identities (`splits["train_eval"]`)."""
    result = {"step": int(step)}
    for prefix, (query, gallery) in (("", splits["valid"]), ("train_", splits["train_eval"])):
        if not query or not gallery:
            continue
        q = embed_records(embed_fn, query, height, width)
        g = embed_records(embed_fn, gallery, height, width)
        try:
            scores = score(q[0], g[0], q[1], g[1], q[2], g[2], rerank_too=rerank_too and not prefix)
        except metrics.MetricsError as e:
            logging.warning("%svalidation skipped: %s", prefix, e)
            continue
        for key in ("mAP", "rank1", "mINP", "mAP_rerank", "rank1_rerank"):
            if key in scores:
                result[prefix + key] = round(scores[key], 6)
    return result
