"""Embedding a split with an embed function and scoring query against gallery: a protocol's figures
with the other protocol's beside them, re-ranked too when asked; and a run's validation row."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from reid_tf import data, metrics, rerank
from reid_tf.config import DataConfig, ScoringConfig
from reid_tf.datasets import Record
from reid_tf.metrics import euclidean_distances
from reid_tf.model import embeddings_of

RANKS = (1, 5, 10, 20)
FEATURE_KEYS = ("query_features", "gallery_features", "query_pids", "gallery_pids",
                "query_camids", "gallery_camids")
SIDE_BY_SIDE_LIMIT = 10**8  # query x gallery pairs up to which the other protocol is scored too
TOP_N = 200  # the original's mAP_at_200


def embed_records(
    embed_fn: Callable, records: Sequence[Record], height: int, width: int,
    batch_size: int = 64, flip: bool = False, crop: str = "none",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, D] float32, pids, camids) of records in order; flip averages the mirror's."""
    if not records:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32)
    feats, pids, camids = [], [], []
    for images, pid, camid in data.eval_dataset(records, height, width, batch_size, crop):
        f = np.asarray(embed_fn(images), np.float32)
        if flip:
            f = (f + np.asarray(embed_fn(tf.reverse(images, axis=[2])), np.float32)) / 2.0
        feats.append(f)
        pids.append(pid.numpy())
        camids.append(camid.numpy())
    return np.concatenate(feats), np.concatenate(pids), np.concatenate(camids)


def keras_embed_fn(model) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model in inference mode as a compiled function of a pixel batch."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False)
    def embed(images):
        return tf.cast(embeddings_of(model(images, training=False)), tf.float32)

    return embed


def check_features(query_features: np.ndarray, gallery_features: np.ndarray,
                   query_pids=None, gallery_pids=None) -> None:
    """One clear error for features that cannot be scored."""
    q, g = np.asarray(query_features), np.asarray(gallery_features)
    if q.ndim != 2 or g.ndim != 2 or len(q) == 0 or len(g) == 0:
        raise metrics.MetricsError(
            f"need non-empty 2-D query and gallery features, got shapes {q.shape} and {g.shape}")
    if q.shape[1] != g.shape[1]:
        raise metrics.MetricsError(f"query features are {q.shape[1]}-d but gallery features {g.shape[1]}-d")
    for name, f in (("query", q), ("gallery", g)):
        bad = ~np.isfinite(f).all(axis=1)
        if bad.any():
            raise metrics.MetricsError(
                f"{bad.sum()} {name} feature rows have NaN or Inf (first: row {np.flatnonzero(bad)[0]})")
    for name, f, p in (("query", q, query_pids), ("gallery", g, gallery_pids)):
        if p is not None and len(p) != len(f):
            raise metrics.MetricsError(f"{len(f)} {name} features but {len(p)} {name} pids")


CAMERA_PROTOCOLS = ("market1501", "official")  # they remove same-camera matches: camera ids needed


def check_cameras(query_camids: np.ndarray, gallery_camids: np.ndarray, protocol: str, what: str) -> None:
    """Refuses, in one line, a set without camera ids (camid -1) under a protocol that needs them:
    scored as one camera, every match would be removed."""
    unknown = int((np.asarray(query_camids) < 0).sum() + (np.asarray(gallery_camids) < 0).sum())
    if protocol in CAMERA_PROTOCOLS and unknown:
        raise metrics.MetricsError(
            f"{what}: {unknown} images have no camera id, and the {protocol} protocol removes same-camera"
            " matches, so it cannot score them; pass --protocol=no_cameras (a query leaves out only itself)")


def file_cameras(query_files: Sequence[str] | None, gallery_files: Sequence[str] | None, num_q: int,
                 num_g: int) -> tuple[np.ndarray, np.ndarray]:
    """no_cameras as Market-1501's rule: each file its own camera, so "same pid and same camera"
    removes exactly the query's own file. Without file names, query and gallery are taken as
    disjoint files (a split's)."""
    if query_files is None or gallery_files is None:
        return np.zeros(num_q, np.int64), np.ones(num_g, np.int64)
    names, ids = np.unique(np.concatenate([np.asarray(query_files, str), np.asarray(gallery_files, str)]),
                           return_inverse=True)
    return ids[:num_q], ids[num_q:]


def _accumulator(protocol: str, ids: tuple):
    if protocol == "original":
        return metrics.OriginalAccumulator(ids[0], ids[1], TOP_N)
    return metrics.RankAccumulator(*ids, protocol="market1501" if protocol == "no_cameras" else protocol)


def _summary(protocol: str, result: dict, prefix: str, suffix: str) -> dict:
    if protocol == "original":
        keys = {"mAP": result["mAP"], f"mAP_at_{TOP_N}": result["mAP_at_top_n"],
                **{f"rank{r}": result[f"rank{r}"] for r in RANKS}}
    else:
        cmc = result["cmc"]
        keys = {"mAP": result["mAP"], "mINP": result["mINP"],
                **{f"rank{r}": float(cmc[r - 1]) for r in RANKS if r <= len(cmc)},
                "cmc": [float(c) for c in cmc]}
    return {f"{prefix}{k}{suffix}": v for k, v in keys.items()}


def score(query_features: np.ndarray, gallery_features: np.ndarray, query_pids: np.ndarray,
          gallery_pids: np.ndarray, query_camids: np.ndarray, gallery_camids: np.ndarray,
          scoring: ScoringConfig | None = None, rerank_too: bool = False,
          query_files: Sequence[str] | None = None, gallery_files: Sequence[str] | None = None) -> dict:
    """The figures of `scoring.protocol` (mAP, rank-1/5/10/20, and mINP and the CMC curve, or the
    original's mAP_at_200), those of the other protocol beside them prefixed with its name
    ("original_" or "market1501_"), and `_rerank` keys when re-ranking too (`scoring.rerank_impl`).

    Queries are scored a block at a time, so the query x gallery matrix is never held whole
    unless the original re-ranking, which works on whole rows, needs it. `query_files` and
    `gallery_files` tell no_cameras which gallery item is the query's own file.
    """
    scoring = scoring or ScoringConfig()
    check_features(query_features, gallery_features, query_pids, gallery_pids)
    check_cameras(query_camids, gallery_camids, scoring.protocol, "the query/gallery set")
    qf, gf = np.asarray(query_features, np.float32), np.asarray(gallery_features, np.float32)
    if scoring.protocol == "no_cameras":
        query_camids, gallery_camids = file_cameras(query_files, gallery_files, len(qf), len(gf))
    ids = (query_pids, gallery_pids, query_camids, gallery_camids)
    other = "market1501" if scoring.protocol == "original" else "original"
    protocols = [scoring.protocol]
    if other == "market1501" and (np.asarray(query_camids) < 0).any():
        logging.info("no camera ids: the market1501 protocol's figures are left out")
    elif len(qf) * len(gf) <= SIDE_BY_SIDE_LIMIT:
        protocols.append(other)
    else:
        logging.info("%d x %d pairs: the %s protocol's figures are left out (--protocol=%s scores them)",
                     len(qf), len(gf), other, other)
    plain = {p: _accumulator(p, ids) for p in protocols}
    reranked = {p: _accumulator(p, ids) for p in protocols} if rerank_too else {}
    k1, k2, lam = scoring.k1, scoring.k2, scoring.lambda_value
    zhong = rerank.KReciprocal.of_features(qf, gf, k1, k2, lam) if rerank_too and scoring.rerank_impl == "zhong" \
        else None
    original = rerank.original_re_ranking(qf, gf, k1, k2, lam) if rerank_too and scoring.rerank_impl == "original" \
        else None
    if original is not None and not np.isfinite(original).all():  # the original's bug (e): 0/0
        logging.warning("the original re-ranking gave NaN for %d of %d probes (an empty k-reciprocal set, its"
                        " bug): the re-ranked figures are left out; --k1/--k2 larger, or --rerank_impl=zhong",
                        (~np.isfinite(original).all(axis=1)).sum(), len(original))
        rerank_too, reranked = False, {}
    distances = metrics.distances_from(gf)

    def block(start: int, stop: int) -> None:
        d = distances(qf[start:stop])
        for accumulator in plain.values():
            accumulator.add(start, stop, d)
        if rerank_too:
            r = zhong.distances(start, stop, np.square(d)) if zhong is not None else original[start:stop]
            for accumulator in reranked.values():
                accumulator.add(start, stop, r)

    metrics.for_blocks(len(qf), metrics.block_rows(len(gf)), block)
    results = {}
    for p in protocols:
        prefix = "" if p == scoring.protocol else f"{p}_"
        results.update(_summary(p, plain[p].result(), prefix, ""))
        if rerank_too:
            results.update(_summary(p, reranked[p].result(), prefix, "_rerank"))
    results["num_valid_queries"] = plain[scoring.protocol].result()["num_valid_queries"]
    return results


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


def validate(embed_fn: Callable, splits: dict, data_cfg: DataConfig, scoring: ScoringConfig,
             step: int, rerank_too: bool = False) -> dict:
    """A validation row: every scalar figure of `score` on held-out identities (`splits["valid"]`)
    and, with a `train_` prefix and no re-ranking, on training identities (`splits["train_eval"]`)."""
    result = {"step": int(step)}
    for prefix, (query, gallery) in (("", splits["valid"]), ("train_", splits["train_eval"])):
        if not query or not gallery:
            continue
        q, g = (embed_records(embed_fn, r, data_cfg.image_height, data_cfg.image_width, crop=data_cfg.crop)
                for r in (query, gallery))
        if not prefix:
            result.update({k: float(f"{v:.6g}") for k, v in embedding_statistics(q[0], g[0]).items()})
        try:
            scores = score(q[0], g[0], q[1], g[1], q[2], g[2], scoring, rerank_too=rerank_too and not prefix,
                           query_files=[r.path for r in query], gallery_files=[r.path for r in gallery])
        except metrics.MetricsError as e:
            logging.warning("%svalidation skipped: %s", prefix, e)
            continue
        result.update({prefix + k: round(v, 6) for k, v in scores.items()
                       if isinstance(v, float) and np.isfinite(v)})
    return result
