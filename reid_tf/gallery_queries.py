"""Searching a gallery index with image files, as `tools/gallery.py search` does: embed the
queries with the index's own model, search, print each query's ranked results and write them as
JSON and ranked strips where asked. Refusals raise `gallery.GalleryError`."""

from __future__ import annotations

import json
import os

import numpy as np

from reid_tf import calibration, evaluate, exported, gallery, plots
from reid_tf.datasets.records import Record, drop_unreadable


def search_images(index_folder: str, query: str, model_path: str | None = None, k: int = 10,
                  other_cameras: bool = False, time_window: int | None = None, rerank: bool = False,
                  engine: str = "auto", batch_size: int = 64, plot_dir: str | None = None,
                  output_json: str | None = None, calibration_path: str | None = None,
                  threshold: str | None = None) -> dict:
    """{"queries": [{"query": path, "results": [{"path", "distance"}, ...]}, ...]} for an image or a
    folder of them; file names that give cameras and frames allow `other_cameras`, `time_window`.
    With a calibration (tools/eval.py --calibrate) each result also says whether it is the same
    person at `threshold` (far=0.001, eer, crossing or a distance) and the FAR at its distance."""
    if not query:
        raise gallery.GalleryError("search needs --query=IMAGE_OR_FOLDER")
    index = gallery.load(index_folder)
    model = exported.open_export(model_path or index.meta["model_path"])
    if model.identity != index.meta["model"]:
        raise gallery.GalleryError(f"--index={index_folder} was made by another model ({index.meta['model_path']}):"
                                   " search it with that model")
    decide = _decision(calibration_path, threshold, model)
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
        results = [{"path": str(index.paths[r]), "distance": float(d), **decide(d)}
                   for r, d in zip(rows[q][kept], distances[q][kept])]
        out["queries"].append({"query": record.path, "results": results})
        print(record.path)
        for rank, result in enumerate(results, 1):
            verdict = "" if "same_person" not in result else (
                f"  {'same person' if result['same_person'] else 'other':11}" + (
                    f" (FAR {result['far']:.2g})" if "far" in result else ""))
            print(f"  {rank:3d}. {result['distance']:9.4f}  {result['path']}{verdict}")
        if plot_dir:
            plots.ranked_strip(record, [(r, d) for r, d in zip(index.records(rows[q][kept]), distances[q][kept])],
                               os.path.join(plot_dir, f"search_{q:05d}.png"),
                               "re-ranked, Euclidean distance" if rerank else "Euclidean distance")
    if threshold:
        out["threshold"] = decide.threshold
    if output_json:
        with open(output_json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return out


def _decision(calibration_path: str | None, threshold: str | None, model: exported.Exported):
    """distance -> {"same_person", "far"} at the threshold chosen (nothing without one)."""
    if not calibration_path and not threshold:
        return _NoDecision()
    if calibration_path:
        c = calibration.read(calibration_path)
        made_by = c.get("fitted_on", {}).get("model_identity")
        if made_by and made_by != calibration.model_key(model.identity):
            raise gallery.GalleryError(f"--calibration={calibration_path} was fitted on another model: fit it on this"
                                       f" one (tools/eval.py --model={model.path} --calibrate)")
        d = calibration.threshold(c, threshold or "far=0.001", calibration_path)
        return _Decision(d, c)
    try:
        return _Decision(float(threshold), None)
    except ValueError:
        raise gallery.GalleryError(f"--threshold={threshold} needs --calibration=FILE (tools/eval.py --calibrate"
                                   " writes it), or give a distance") from None


class _NoDecision:
    def __call__(self, distance: float) -> dict:
        return {}


class _Decision:
    def __init__(self, threshold: float, fitted: dict | None):
        self.threshold, self.fitted = threshold, fitted

    def __call__(self, distance: float) -> dict:
        out = {"same_person": bool(distance <= self.threshold)}
        if self.fitted is not None:
            out["far"] = float(calibration.far_at(self.fitted, distance))
        return out
