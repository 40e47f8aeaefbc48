"""Pictures of a scoring run: the CMC curve and ranked-retrieval strips (people would rather look)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from reid_tf.datasets import JUNK_PID, Record

GREEN, RED, GRAY = (0, 170, 0), (220, 0, 0), (128, 128, 128)


def plot_cmc(curves: dict[str, Sequence[float]], path: str, max_rank: int = 20) -> None:
    """CMC curves (label -> cmc array) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, cmc in curves.items():
        ranks = np.arange(1, min(max_rank, len(cmc)) + 1)
        ax.plot(ranks, np.asarray(cmc)[: len(ranks)] * 100, marker="o", markersize=3,
                label=f"{label} (rank-1 {cmc[0] * 100:.1f}%)")
    ax.set_xticks([r for r in (1, 5, 10, 15, 20, 30, 40, 50) if r <= max_rank])
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title("CMC")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _tile(path: str, size: tuple[int, int], color, border: int = 4) -> Image.Image:
    tile = Image.new("RGB", (size[0] + 2 * border, size[1] + 2 * border), color)
    tile.paste(Image.open(path).convert("RGB").resize(size), (border, border))
    return tile


def ranked_retrieval(
    distmat: np.ndarray, query: Sequence[Record], gallery: Sequence[Record], out_dir: str,
    num_queries: int = 8, top_k: int = 10, size: tuple[int, int] = (64, 128),
) -> list[str]:
    """One PNG per query: the query (gray frame) then its top-k valid gallery images, framed
    green for a match and red otherwise. Same-camera matches and junk are left out, as in
    scoring. Queries are spread evenly over the query set."""
    os.makedirs(out_dir, exist_ok=True)
    g_pids = np.array([r.pid for r in gallery])
    g_cams = np.array([r.camid for r in gallery])
    chosen = np.linspace(0, len(query) - 1, min(num_queries, len(query))).astype(int)
    written = []
    for q in chosen:
        order = np.argsort(distmat[q], kind="stable")
        same = g_pids[order] == query[q].pid
        valid = ~(same & (g_cams[order] == query[q].camid)) & (g_pids[order] != JUNK_PID)
        top = order[valid][:top_k]
        tiles = [_tile(query[q].path, size, GRAY)]
        tiles += [_tile(gallery[g].path, size, GREEN if g_pids[g] == query[q].pid else RED) for g in top]
        gap = 12
        strip = Image.new("RGB", (sum(t.width for t in tiles) + gap, tiles[0].height + 16), "white")
        x = 0
        for i, t in enumerate(tiles):
            strip.paste(t, (x, 16))
            x += t.width + (gap if i == 0 else 0)
        ImageDraw.Draw(strip).text((2, 2), f"query {os.path.basename(query[q].path)}", fill="black")
        path = os.path.join(out_dir, f"ranked_{q:05d}.png")
        strip.save(path)
        written.append(path)
    return written
