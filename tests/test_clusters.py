"""Pseudo-identities: the sparse Jaccard graph against the dense sum over the encodings, DBSCAN's
clusters of separable identities, and the report against true identities."""

import numpy as np
import pytest

from reid_tf import clusters
from reid_tf.rerank import KReciprocal


def _people(ids=20, per=8, dim=32, spread=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    truth = np.repeat(np.arange(ids), per)
    return (centres[truth] + spread * rng.normal(size=(ids * per, dim))).astype(np.float32), truth


def test_the_sparse_jaccard_graph_is_the_dense_one_of_the_same_encodings():
    f, _ = _people(ids=8, per=6)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    kr = KReciprocal.of_features(f, f[:0], k1=10, k2=3)
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
