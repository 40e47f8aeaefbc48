"""A straightforward dense k-reciprocal re-ranking, step by step as in Zhong et al. (CVPR 2017)
and their published Python code: the test oracle for reid_tf.rerank."""

import numpy as np


def dense_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    num_q = q_g_dist.shape[0]
    full = np.block([[q_q_dist, q_g_dist], [q_g_dist.T, g_g_dist]])
    dist = np.power(full, 2).astype(np.float32)
    dist = np.transpose(dist / np.max(dist, axis=0))  # each row over its max (symmetric input)
    n = dist.shape[0]
    rank = np.argsort(dist, axis=1, kind="stable").astype(np.int32)
    kh = int(np.around(k1 / 2.0))

    def reciprocal(i, k):
        forward = rank[i, : k + 1]
        backward = rank[forward, : k + 1]
        return forward[np.where(backward == i)[0]]

    V = np.zeros_like(dist)
    for i in range(n):
        r = reciprocal(i, k1)
        expansion = r
        for c in r:
            rc = reciprocal(c, kh)
            if len(np.intersect1d(rc, r)) > 2.0 / 3 * len(rc):
                expansion = np.append(expansion, rc)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        V[i, expansion] = w / np.sum(w)
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)]).astype(np.float32)
    jaccard = np.zeros((num_q, n), np.float32)
    for i in range(num_q):
        mins = np.minimum(V[i][None, :], V).sum(axis=1)
        jaccard[i] = 1 - mins / (2.0 - mins)
    final = jaccard * (1 - lambda_value) + dist[:num_q] * lambda_value
    return final[:, num_q:]
