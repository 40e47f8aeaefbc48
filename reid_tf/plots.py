"""Pictures of a scoring run: the CMC curve and ranked-retrieval strips (people would rather look)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reid_tf.config import JUNK_PID
from reid_tf.datasets import Record

GREEN, RED, GRAY = (0, 170, 0), (220, 0, 0), (128, 128, 128)


def plot_cmc(curves: dict[str, Sequence[float]], path: str, max_rank: int = 20, title: str = "CMC") -> None:
    """CMC curves (label -> cmc array) as a PNG; `title` says what was scored and how."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, cmc in curves.items():
        ranks = np.arange(1, min(max_rank, len(cmc)) + 1)
        ax.plot(ranks, np.asarray(cmc)[: len(ranks)], marker="o", markersize=3,
                label=f"{label} (rank-1 {cmc[0]:.3f})")
    ax.set_xticks([r for r in (1, 5, 10, 15, 20, 30, 40, 50) if r <= max_rank])
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def verification_picture(h, figures: dict, path: str, title: str) -> None:
    """The positive and negative distance histograms (each normalised, thresholds marked) and the ROC
    curve (TAR against FAR, log FAR) side by side, as a PNG. `h`: verification.PairHistograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = np.flatnonzero(h.positive + h.negative)
    group = max(1, (used[-1] + 1 - used[0]) // 100)
    start = used[0] - used[0] % group
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for counts, label in ((h.positive, "same person"), (h.negative, "different people")):
        sums = np.add.reduceat(counts[start:], np.arange(0, len(counts) - start, group))
        centres = (start + np.arange(len(sums)) * group + group / 2) * h.width
        left.plot(centres, sums / counts.sum(), label=f"{label} ({counts.sum():,} pairs)")
    for name, d in figures["thresholds"].items():
        left.axvline(d, color="gray", linestyle=":", linewidth=1)
        left.text(d, left.get_ylim()[1] * 0.95, name, rotation=90, fontsize=7, va="top")
    left.set_xlabel("Euclidean distance")
    left.set_ylabel("fraction of pairs per bin")
    left.legend(fontsize=8)
    far, tar = np.cumsum(h.negative) / h.negative.sum(), np.cumsum(h.positive) / h.positive.sum()
    shown = far > 0
    right.semilogx(far[shown], tar[shown], label=f"ROC AUC {figures['roc_auc']:.4f}, EER {figures['eer']:.4f}")
    right.set_xlabel("false accept rate")
    right.set_ylabel("true accept rate")
    right.grid(alpha=0.3)
    right.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _font(size: int = 13):
    return ImageFont.load_default(size=size)  # Pillow's own scalable font: no system font needed


def _tile(path: str, size: tuple[int, int], color, top: str, bottom: str, border: int = 4) -> Image.Image:
    """An image framed in `color`, a caption line above it and one below."""
    line = 18
    tile = Image.new("RGB", (size[0] + 2 * border, size[1] + 2 * border + 2 * line), "white")
    tile.paste(Image.new("RGB", (size[0] + 2 * border, size[1] + 2 * border), color), (0, line))
    tile.paste(Image.open(path).convert("RGB").resize(size), (border, line + border))
    draw = ImageDraw.Draw(tile)
    draw.text((1, 2), top, fill="black", font=_font())
    draw.text((1, line + size[1] + 2 * border + 2), bottom, fill="black", font=_font(12))
    return tile


def _who(record: Record) -> str:
    return f"id {record.pid} c{record.camid}" if record.camid >= 0 else f"id {record.pid}"


def ranked_retrieval(
    distmat: np.ndarray, query: Sequence[Record], gallery: Sequence[Record], out_dir: str,
    num_queries: int = 8, top_k: int = 10, size: tuple[int, int] = (64, 128), order: str = "Euclidean",
) -> list[str]:
    """One PNG per query: the query (gray frame) then its top-k valid gallery images in the order
    of `distmat` (named by `order`, e.g. "re-ranked"), framed green for a match and red
    otherwise, each captioned with its rank and distance above and its identity and camera
    below, and beside it a .json of the same list. Same-camera matches (without camera ids: the
    query's own file) and junk are left out, as in scoring. Queries are spread evenly over the
    query set."""
    os.makedirs(out_dir, exist_ok=True)
    g_pids = np.array([r.pid for r in gallery])
    g_cams = np.array([r.camid for r in gallery])
    g_paths = np.array([r.path for r in gallery])
    chosen = np.linspace(0, len(query) - 1, min(num_queries, len(query))).astype(int)
    written = []
    for q in chosen:
        order_q = np.argsort(distmat[q], kind="stable")
        same = g_pids[order_q] == query[q].pid
        seen_alike = g_cams[order_q] == query[q].camid if query[q].camid >= 0 else g_paths[order_q] == query[q].path
        valid = ~(same & seen_alike) & (g_pids[order_q] != JUNK_PID)
        top = order_q[valid][:top_k]
        path = os.path.join(out_dir, f"ranked_{q:05d}.png")
        ranked_strip(query[q], [(gallery[g], distmat[q, g]) for g in top], path, order, size)
        with open(path[:-len(".png")] + ".json", "w", encoding="utf-8") as f:
            json.dump({"query": query[q].path, "order": order, "results": [
                {"path": gallery[g].path, "distance": float(distmat[q, g]), "pid": int(gallery[g].pid),
                 "camid": int(gallery[g].camid)} for g in top]}, f, indent=1)
        written.append(path)
    return written


def ranked_strip(query: Record, results: Sequence[tuple[Record, float]], path: str, order: str,
                 size: tuple[int, int] = (64, 128)) -> str:
    """One PNG: the query (gray frame), then each result in order, framed green where its identity is
    the query's, red where it is another, gray where either is unknown (-1), captioned with its rank
    and distance above and its identity and camera below."""
    def frame(record):
        if record.pid < 0 or query.pid < 0:
            return GRAY
        return GREEN if record.pid == query.pid else RED

    tiles = [_tile(query.path, size, GRAY, "query", _who(query))]
    tiles += [_tile(r.path, size, frame(r), f"#{rank} {d:.3g}", _who(r)) for rank, (r, d) in enumerate(results, 1)]
    gap, header = 12, 22
    strip = Image.new("RGB", (sum(t.width for t in tiles) + gap, tiles[0].height + header), "white")
    x = 0
    for i, t in enumerate(tiles):
        strip.paste(t, (x, header))
        x += t.width + (gap if i == 0 else 0)
    ImageDraw.Draw(strip).text((2, 3), f"query {os.path.basename(query.path)}   order: {order}", fill="black",
                               font=_font(14))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    strip.save(path)
    return path


def activation_pictures(images: np.ndarray, maps: np.ndarray, records: Sequence[Record], out_dir: str,
                        scale: int = 3) -> list[str]:
    """One PNG per image, as torchreid's `visualize_actmap` draws it: the image, its activation
    map (bilinearly upsampled, min-max scaled, jet colours) and the two overlaid (0.3 / 0.7)."""
    from matplotlib import colormaps

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for image, amap, record in zip(images, maps, records):
        height, width = image.shape[0] * scale, image.shape[1] * scale
        picture = Image.fromarray(np.uint8(np.clip(image, 0, 255))).resize((width, height))
        picture = np.asarray(picture, np.float32)
        heat = Image.fromarray(amap.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)
        heat = np.asarray(heat)
        heat = (heat - heat.min()) / (heat.max() - heat.min() + 1e-12)
        colored = colormaps["jet"](heat)[..., :3] * 255.0
        overlay = picture * 0.3 + colored * 0.7
        gap = np.full((height, 10, 3), 255.0)
        strip = np.concatenate([picture, gap, colored, gap, overlay], axis=1)
        canvas = Image.new("RGB", (strip.shape[1], height + 22), "white")
        canvas.paste(Image.fromarray(np.uint8(strip)), (0, 22))
        ImageDraw.Draw(canvas).text((2, 3), f"{os.path.basename(record.path)}  ({_who(record)})",
                                    fill="black", font=_font(14))
        path = os.path.join(out_dir, f"actmap_{os.path.splitext(os.path.basename(record.path))[0]}.png")
        canvas.save(path)
        written.append(path)
    return written


def plot_runs(runs: list, path: str) -> None:
    """Validation mAP (train mAP dashed) and the triplet loss against step, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6))
    colours = plt.get_cmap("tab20" if len(runs) > 10 else "tab10")
    for i, run in enumerate(runs):
        colour = colours(i % colours.N)
        for key, style in (("mAP", "-"), ("train_mAP", "--")):
            points = [(r["step"], r[key]) for r in run.validations if key in r]
            if points:
                left.plot(*zip(*points), style, color=colour, marker=".",
                          label=run.name if key == "mAP" else None)
        from reid_tf.runs import scalar_curves

        losses = scalar_curves(run, "train", ("triplet_loss", "loss"))
        series = losses.get("triplet_loss") or losses.get("loss")
        if series:
            right.plot(*zip(*series), color=colour, label=run.name)
    left.set(xlabel="step", ylabel="mAP", title="validation mAP (train mAP dashed)", ylim=(0, 1))
    right.set(xlabel="step", ylabel="loss", title="triplet loss (batch-hard)")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    fig.legend(*left.get_legend_handles_labels(), loc="lower center", ncol=min(len(runs), 5),
               fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(runs) - 1) // 5), 1, 1))
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def comparison_panels(panels: list[dict], path: str, title: str) -> None:
    """Small panels, 4 a row: each a `title`, a `ylabel`, the `judged` step (dashed) and `lines`
    of {label, colour, style, steps, mean, low, high} (the range between low and high shaded)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 4
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.5 * rows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        for line in panel["lines"]:
            ax.plot(line["steps"], line["mean"], color=line["colour"], ls=line["style"], marker=".",
                    label=line["label"])
            ax.fill_between(line["steps"], line["low"], line["high"], color=line["colour"], alpha=0.18)
        ax.axvline(panel["judged"], color="0.35", lw=0.8, ls="--")
        ax.set_title("\n".join(textwrap.wrap(panel["title"], 58)[:3]), fontsize=7.5)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel(panel["ylabel"], fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
