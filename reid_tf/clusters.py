"""Pseudo-identities of unlabeled images, as Cluster Contrast (Dai et al. 2021) makes them: DBSCAN
(scikit-learn's) over the k-reciprocal Jaccard distances (reid_tf.rerank's encodings) of the
L2-normalised features; an image that joins no cluster is an outlier (-1), left out of that epoch.
And how the clusters compare with true identities, where a set has them (a report, never training)."""

from __future__ import annotations

import dataclasses

import numpy as np

from reid_tf.errors import ReidError
from reid_tf.rerank import KReciprocal


class ClusteringError(ReidError, ValueError):
    """A set that cannot be clustered as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """Cluster Contrast's defaults for Market-1501-sized sets."""

    eps: float = 0.6  # DBSCAN's neighbourhood, in Jaccard distance
    min_samples: int = 4
    k1: int = 30
    k2: int = 6
    camera_centred: bool = True  # each camera's mean feature taken out first, where cameras are known


def jaccard_graph(features: np.ndarray, k1: int = 30, k2: int = 6, max_distance: float = 1.0):
    """The sparse [N, N] Jaccard distances of the L2-normalised features (pairs not stored: 1), as
    Cluster Contrast computes them (KReciprocal.for_clustering); only those within `max_distance`."""
    f = np.asarray(features, np.float32)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return KReciprocal.for_clustering(f, k1, k2).jaccard_graph(max_distance)


def camera_centred(features: np.ndarray, cameras: np.ndarray) -> np.ndarray:
    """The L2-normalised features less their camera's mean: what a camera adds to all its images (its
    light, colour cast, background) left out, so that clusters form across cameras, not by camera."""
    f = np.asarray(features, np.float32)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    _, camera = np.unique(cameras, return_inverse=True)
    sums = np.zeros((camera.max() + 1, f.shape[1]), np.float32)
    np.add.at(sums, camera, f)
    return f - (sums / np.bincount(camera)[:, None].astype(np.float32))[camera]


def pseudo_labels(features: np.ndarray, settings: ClusterSettings = ClusterSettings(),
                  cameras: np.ndarray | None = None) -> np.ndarray:
    """int [N] cluster of each image, -1 for an outlier; `cameras` (camera ids, -1: unknown) lets
    `settings.camera_centred` take each camera's mean out first."""
    from sklearn.cluster import DBSCAN

    if len(features) < settings.min_samples + 1:
        raise ClusteringError(f"{len(features)} target images: a cluster needs at least {settings.min_samples}"
                              " (min_samples); give the target more images")
    if settings.camera_centred and cameras is not None and len(np.unique(cameras)) > 1 and (cameras >= 0).all():
        features = camera_centred(features, cameras)
    graph = jaccard_graph(features, settings.k1, settings.k2, max_distance=settings.eps)
    graph.data = np.maximum(graph.data, 1e-9)  # a stored 0 (identical encodings) stays a neighbour; no rounding below 0
    return DBSCAN(eps=settings.eps, min_samples=settings.min_samples, metric="precomputed").fit_predict(graph)


def report(labels: np.ndarray, true_ids: np.ndarray | None = None) -> dict:
    """clusters and outliers; with the true identities, the clustered images' purity (each cluster's
    most common identity) and the NMI of the clustered images against them."""
    labels = np.asarray(labels)
    kept = labels >= 0
    out = {"clusters": int(len(np.unique(labels[kept]))), "outliers": int((~kept).sum())}
    if true_ids is not None and kept.any():
        from sklearn.metrics import normalized_mutual_info_score

        ids = np.asarray(true_ids)[kept]
        pairs, pair_counts = np.unique(np.stack([labels[kept], ids], 1), axis=0, return_counts=True)
        best = np.zeros(labels.max() + 1, np.int64)
        np.maximum.at(best, pairs[:, 0], pair_counts)
        out["purity"] = float(best.sum() / kept.sum())
        out["nmi"] = float(normalized_mutual_info_score(ids, labels[kept]))
    return out
