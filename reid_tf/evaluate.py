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


CONFIG_FILE = "reid_config.json"  # beside every export's model (in assets/ for a SavedModel)


def find_export(path: str) -> str:
    """The exported model `path` names: a model itself, a version folder, or a training run's
    folder (its latest export/<step>/)."""
    exports = os.path.join(path, "export")
    if tf.io.gfile.exists(os.path.join(path, "config.json")) and tf.io.gfile.isdir(exports):
        versions = [name.rstrip("/") for name in tf.io.gfile.listdir(os.path.join(path, "export"))]
        versions = sorted((int(v) for v in versions if v.isdigit()), reverse=True)
        if not versions:
            raise metrics.MetricsError(f"{path} is a run folder without an export: export it first"
                                       " (python -m reid_tf.export --output_dir=RUN --export_dir=DIR)")
        return os.path.join(path, "export", str(versions[0]))
    if not tf.io.gfile.exists(path):
        raise metrics.MetricsError(f"{path} not found: --model takes an export or a training run's folder")
    return path


def export_config(path: str) -> dict:
    """The settings an export carries (reid_config.json: input size, the run's configuration)."""
    folder = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
    for candidate in (os.path.join(folder, "assets", CONFIG_FILE), os.path.join(folder, CONFIG_FILE)):
        if tf.io.gfile.exists(candidate):
            with tf.io.gfile.GFile(candidate) as f:
                return json.load(f)
    return {}


def keras_model_of_export(path: str):
    """The Keras model inside a float32 SavedModel export (rebuilt from the configuration it
    carries, its weights read from the SavedModel's variables), for what needs more than the
    embeddings: activation maps. LiteRT, ONNX and reduced-precision (frozen) exports have none."""
    from reid_tf import config as config_lib
    from reid_tf import model as model_lib

    variables = os.path.join(path, "variables", "variables")
    meta = export_config(path)
    frozen = meta.get("precision", "float32") != "float32"
    if not tf.io.gfile.exists(variables + ".index") or "config" not in meta or frozen:
        raise metrics.MetricsError(
            f"{path} does not carry the Keras model (only a float32 SavedModel export or a run folder does;"
            " LiteRT, ONNX and bfloat16/float16 exports do not): point --model at one")
    model = model_lib.build_run_model(config_lib.RunConfig.from_dict(meta["config"]), backbone_weights="none")
    tf.train.Checkpoint(model=model).read(variables).expect_partial().assert_existing_objects_matched()
    return model


def activation_maps(model, images: np.ndarray) -> np.ndarray:
    """torchreid's activation maps: per image, the sum over channels of the squared last feature
    map of the backbone (its channel-wise squared L2 norm), L2-normalised over positions."""
    from reid_tf.model import backbone_of

    features = backbone_of(model)(model.get_layer("preprocessing")(images), training=False)
    maps = tf.reduce_sum(tf.square(tf.cast(features, tf.float32)), axis=-1)
    flat = tf.reshape(maps, [tf.shape(maps)[0], -1])
    return tf.reshape(tf.math.l2_normalize(flat, axis=1), tf.shape(maps)).numpy()


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
    """mAP, rank-1/5/10/20, mINP and the CMC curve; with `_rerank` keys when re-ranking too.

    Queries are scored a block at a time (the plain and the re-ranked distances of a block from
    one matrix product), so the query x gallery matrix is never held whole: MSMT17's test split
    (11,659 x 82,161) fits in a few GiB.
    """
    check_features(query_features, gallery_features, query_pids, gallery_pids)
    qf, gf = np.asarray(query_features, np.float32), np.asarray(gallery_features, np.float32)
    ids = (query_pids, gallery_pids, query_camids, gallery_camids)
    plain = metrics.RankAccumulator(*ids, protocol=protocol)
    reranked = metrics.RankAccumulator(*ids, protocol=protocol) if rerank_too else None
    encoding = rerank.KReciprocal.of_features(qf, gf, k1, k2, lambda_value) if rerank_too else None
    distances = metrics.distances_from(gf)

    def block(start: int, stop: int) -> None:
        d = distances(qf[start:stop])
        plain.add(start, stop, d)
        if encoding is not None:
            reranked.add(start, stop, encoding.distances(start, stop, np.square(d)))

    metrics.for_blocks(len(qf), metrics.block_rows(len(gf)), block)
    results = _summary(plain.result(), "")
    if rerank_too:
        results.update(_summary(reranked.result(), "_rerank"))
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


def embedding_statistics(query_features: np.ndarray, gallery_features: np.ndarray) -> dict:
    """How spread the embeddings are: their mean L2 norm, and the mean and standard deviation of
    query-gallery distances. A collapsed model shows a norm near 0, or distances all alike."""
    features = np.concatenate([query_features, gallery_features]).astype(np.float64)
    distances = euclidean_distances(query_features, gallery_features).astype(np.float64)
    return {"embedding_norm": float(np.linalg.norm(features, axis=1).mean()),
            "distance_mean": float(distances.mean()), "distance_std": float(distances.std())}


def is_collapsed(row: dict, tolerance: float = 1e-3, zero_norm: float = 1e-6) -> str:
    """Why a validation row shows a collapsed embedding ("" when it does not): every embedding
    at 0, all at one point, or all distances alike. Ranking is scale-free, so small embeddings
    are collapsed only where float32 can no longer tell them apart; the other two tests are
    relative (distances against norms, their spread against their mean)."""
    norm, mean, std = (row.get(k) for k in ("embedding_norm", "distance_mean", "distance_std"))
    if norm is None or mean is None or std is None:
        return ""
    if norm < zero_norm:
        return f"embeddings near 0 (norm {norm:.2g})"
    if mean < tolerance * norm:
        return f"all embeddings at one point (distance {mean:.2g}, norm {norm:.2g})"
    if std < tolerance * mean:
        return f"all distances alike ({mean:.3g} ± {std:.2g})"
    return ""


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
        if not prefix:
            result.update(embedding_statistics(q[0], g[0]))
        try:
            scores = score(q[0], g[0], q[1], g[1], q[2], g[2], rerank_too=rerank_too and not prefix)
        except metrics.MetricsError as e:
            logging.warning("%svalidation skipped: %s", prefix, e)
            continue
        for key in ("mAP", "rank1", "mINP", "mAP_rerank", "rank1_rerank"):
            if key in scores:
                result[prefix + key] = round(scores[key], 6)
    for key in ("embedding_norm", "distance_mean", "distance_std"):
        if key in result:
            result[key] = float(f"{result[key]:.6g}")
    return result
