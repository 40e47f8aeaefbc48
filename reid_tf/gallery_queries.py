"""Searching a gallery index with image files, as `tools/gallery.py search` does: embed the
queries with the index's own model, search, print each query's ranked results and write them as
JSON and ranked strips where asked. Refusals raise `gallery.GalleryError`."""

from __future__ import annotations

import json
import os

import numpy as np

from reid_tf import evaluate, exported, gallery, plots
from reid_tf.datasets.records import Record, drop_unreadable


def search_images(index_folder: str, query: str, model_path: str | None = None, k: int = 10,
                  other_cameras: bool = False, time_window: int | None = None, rerank: bool = False,
                  engine: str = "auto", batch_size: int = 64, plot_dir: str | None = None,
                  output_json: str | None = None) -> dict:
    """{"queries": [{"query": path, "results": [{"path", "distance"}, ...]}, ...]} for an image or a
    folder of them; file names that give cameras and frames allow `other_cameras`, `time_window`."""
    if not query:
        raise gallery.GalleryError("search needs --query=IMAGE_OR_FOLDER")
    index = gallery.load(index_folder)
    model = exported.open_export(model_path or index.meta["model_path"])
    if model.identity != index.meta["model"]:
        raise gallery.GalleryError(f"--index={index_folder} was made by another model ({index.meta['model_path']}):"
                                   " search it with that model")
    paths = gallery.image_files(query) if os.path.isdir(query) else [query]
    queries = drop_unreadable([Record(p, *gallery.describe_name(p)[:2]) for p in paths])
    if not queries:
        raise gallery.GalleryError(f"--query={query}: no readable image")
    feats, _, _ = evaluate.embed_records(model.embed, queries, model.height, model.width, batch_size,
                                         crop=model.crop)
    described = np.array([gallery.describe_name(r.path) for r in queries]).reshape(-1, 3)
    rows, distances = gallery.search(index, feats, k, described[:, 1], described[:, 2], other_cameras,
                                     time_window, rerank, engine)
    out = {"queries": []}
    for q, record in enumerate(queries):
        kept = np.isfinite(distances[q])
        results = [{"path": str(index.paths[r]), "distance": float(d)}
                   for r, d in zip(rows[q][kept], distances[q][kept])]
        out["queries"].append({"query": record.path, "results": results})
        print(record.path)
        for rank, result in enumerate(results, 1):
            print(f"  {rank:3d}. {result['distance']:9.4f}  {result['path']}")
        if plot_dir:
            plots.ranked_strip(record, [(r, d) for r, d in zip(index.records(rows[q][kept]), distances[q][kept])],
                               os.path.join(plot_dir, f"search_{q:05d}.png"),
                               "re-ranked, Euclidean distance" if rerank else "Euclidean distance")
    if output_json:
        with open(output_json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return out
