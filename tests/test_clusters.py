"""Pseudo-identities: the sparse Jaccard graph against the dense sum over the encodings, DBSCAN's
clusters of separable identities, and the report against true identities."""

import sys

import numpy as np
import pytest

from reid_tf import clusters
from reid_tf.rerank import KReciprocal


def _people(ids=20, per=8, dim=32, spread=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    truth = np.repeat(np.arange(ids), per)
    return (centres[truth] + spread * rng.normal(size=(ids * per, dim))).astype(np.float32), truth


def cluster_contrast_jaccard(f: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Cluster Contrast's compute_jaccard_distance, item by item in float64 (its faiss search of k1
    neighbours, self included; k-reciprocal sets, half-size expansion over 2/3; softmax(-d^2);
    query expansion over k2; 1 - min-sum / (2 - min-sum))."""
    n = len(f)
    d = ((f[:, None, :].astype(np.float64) - f[None, :, :]) ** 2).sum(-1)
    rank = np.argsort(d, axis=1, kind="stable")[:, :k1]

    def reciprocal(i, k):
        forward = rank[i, :k + 1]
        return np.array([j for j in forward if i in rank[j, :k + 1]], int)

    v = np.zeros((n, n))
    for i in range(n):
        own = reciprocal(i, k1)
        members = own
        for c in own:
            half = reciprocal(c, int(np.around(k1 / 2)))
            if len(np.intersect1d(half, own)) > 2 / 3 * len(half):
                members = np.append(members, half)
        members = np.unique(members)
        w = np.exp(-d[i, members])
        v[i, members] = w / w.sum()
    v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    shared = np.minimum(v[:, None, :], v[None, :, :]).sum(-1)
    return 1 - shared / (2 - shared)


@pytest.mark.parametrize("faiss", [True, False])
def test_the_jaccard_graph_is_cluster_contrasts(faiss, monkeypatch):
    if not faiss:  # the blocked search instead: the same neighbours
        monkeypatch.setitem(sys.modules, "faiss", None)
    f, _ = _people(ids=10, per=6, spread=0.6)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    graph = clusters.jaccard_graph(f, k1=8, k2=3).toarray()
    stored = clusters.jaccard_graph(f, k1=8, k2=3)
    stored.data[:] = 1
    dense = np.where(stored.toarray() > 0, graph, 1.0)
    np.testing.assert_allclose(dense, cluster_contrast_jaccard(f, 8, 3), atol=1e-5)


def test_the_sparse_jaccard_graph_is_the_dense_one_of_the_same_encodings():
    f, _ = _people(ids=8, per=6)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    kr = KReciprocal.for_clustering(f, k1=10, k2=3)
    v = kr.queries.toarray().astype(np.float64)
    shared = np.minimum(v[:, None, :], v[None, :, :]).sum(-1)
    dense = 1 - shared / (2 - shared)
    graph = clusters.jaccard_graph(f, k1=10, k2=3)
    kept = graph.copy()
    kept.data[:] = 1
    kept = kept.toarray() > 0  # the stored pairs, explicit zeros (an item and itself) included
    assert np.array_equal(kept, shared > 0)  # exactly the pairs whose encodings overlap
    assert np.allclose(graph.toarray()[kept], dense[kept], atol=1e-5)
    assert np.allclose(np.diag(graph.toarray()), 0, atol=1e-6)


def test_the_graph_kept_within_eps_clusters_as_the_whole_one():
    from sklearn.cluster import DBSCAN

    f, _ = _people(ids=15, per=6, spread=0.7, seed=4)
    whole = clusters.jaccard_graph(f, k1=10, k2=3)
    kept = clusters.jaccard_graph(f, k1=10, k2=3, max_distance=0.5)
    assert kept.nnz < whole.nnz and kept.data.max() <= 0.5 and kept.data.min() > 0
    whole.data = np.maximum(whole.data, 1e-9)
    expected = DBSCAN(eps=0.5, min_samples=4, metric="precomputed").fit_predict(whole)
    assert np.array_equal(clusters.pseudo_labels(f, clusters.ClusterSettings(eps=0.5, k1=10, k2=3)), expected)
    assert len(set(expected)) > 3


def test_dbscan_over_jaccard_recovers_separable_identities():
    f, truth = _people()
    labels = clusters.pseudo_labels(f, clusters.ClusterSettings(k1=10, k2=3))
    r = clusters.report(labels, truth)
    assert r["clusters"] == 20 and r["outliers"] <= 4 and r["purity"] >= 0.99 and r["nmi"] >= 0.95
    noise, _ = _people(spread=5.0, seed=1)  # no structure: few clusters, or many outliers
    r = clusters.report(clusters.pseudo_labels(noise, clusters.ClusterSettings(k1=10, k2=3)), truth)
    assert r["outliers"] >= 40 or r["clusters"] <= 5
    with pytest.raises(clusters.ClusteringError, match="at least 4"):
        clusters.pseudo_labels(f[:3])


def test_the_report_counts_purity_and_nmi():
    r = clusters.report(np.array([0, 0, 0, 1, 1, -1]), np.array([5, 5, 6, 7, 7, 9]))
    assert r == {"clusters": 2, "outliers": 1, "purity": pytest.approx(0.8), "nmi": pytest.approx(r["nmi"])}
    assert 0 < r["nmi"] < 1 and clusters.report(np.array([0, 0, 1, 1]), np.array([3, 3, 4, 4]))["nmi"] == 1.0


def test_camera_centring_lets_clusters_form_across_cameras():
    rng = np.random.default_rng(3)
    f, truth = _people(ids=12, per=8, dim=32, spread=0.2)
    cameras = np.tile(np.arange(4), 24)  # each identity seen twice by each of 4 cameras
    shifted = f + 3.0 * rng.normal(size=(4, 32)).astype(np.float32)[cameras]  # each camera's own cast
    plain = clusters.ClusterSettings(k1=10, k2=3, camera_centred=False)
    by_camera = clusters.report(clusters.pseudo_labels(shifted, plain, cameras), cameras)
    assert by_camera["purity"] > 0.9  # without centring, clusters are cameras
    centred = clusters.pseudo_labels(shifted, clusters.ClusterSettings(k1=10, k2=3), cameras)
    assert clusters.report(centred, truth)["purity"] >= 0.95 and clusters.report(centred, truth)["clusters"] >= 10
    unknown = clusters.pseudo_labels(shifted, clusters.ClusterSettings(k1=10, k2=3), np.full(96, -1))
    assert np.array_equal(unknown, clusters.pseudo_labels(shifted, plain))  # no cameras known: left alone
