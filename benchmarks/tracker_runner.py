"""Runs in boxmot's own virtual environment (made by benchmarks/tracker.py; no reid_tf, no TF):
loads each ReID ONNX through boxmot's real ReID backend, tracks every camera of the synthetic video
with BoT-SORT (and ByteTrack, motion only), scores the tracks with motmetrics, and writes boxmot's
own embeddings of chosen crops for the parity check.

  python tracker_runner.py --video=DIR --model=trained=A.onnx --model=untrained=B.onnx --output=F.json
"""

from __future__ import annotations

import argparse
import json
import os

import cv2
import motmetrics as mm
import numpy as np

PARITY_BATCHES = (1, 7, 33)


def _tracker(kind: str, onnx: str | None):
    from pathlib import Path

    import boxmot

    if onnx is None:
        return boxmot.ByteTrack(frame_rate=30)
    # A static camera: no camera-motion compensation (ECC), as boxmot advises for fixed views.
    return boxmot.BotSort(reid_weights=Path(onnx), device="cpu", half=False, use_cmc=False, frame_rate=30)


def iou_distances(a: np.ndarray, b: np.ndarray, max_iou: float = 0.5) -> np.ndarray:
    """motmetrics' iou_matrix (1 - IoU of x, y, w, h boxes; NaN past max_iou), which NumPy 2 broke."""
    if len(a) == 0 or len(b) == 0:
        return np.empty((len(a), len(b)))
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = a[:, None, 2:].prod(2) + b[None, :, 2:].prod(2) - inter
    distance = 1 - inter / union
    return np.where(distance > max_iou, np.nan, distance)


def track_camera(tracker, folder: str, camera: dict) -> mm.MOTAccumulator:
    """Feed one camera's detections frame by frame; the accumulator of motmetrics' IoU matching."""
    dets = np.asarray(camera["dets"], np.float64).reshape(-1, 6)
    gt = np.asarray(camera["gt"], np.float64).reshape(-1, 7)
    acc = mm.MOTAccumulator(auto_id=True)
    for t in range(camera["frames"]):
        frame = cv2.imread(os.path.join(folder, f"{t:06d}.jpg"))
        now = dets[dets[:, 0] == t]
        detections = np.concatenate([now[:, 1:6], np.zeros((len(now), 1))], axis=1)  # x1 y1 x2 y2 conf cls
        tracks = np.asarray(tracker.update(detections, frame)).reshape(-1, 8)
        truth = gt[gt[:, 0] == t]
        gt_xywh = np.c_[truth[:, 2:4], truth[:, 4:6] - truth[:, 2:4]]
        hyp_xywh = np.c_[tracks[:, 0:2], tracks[:, 2:4] - tracks[:, 0:2]]
        acc.update(truth[:, 1].astype(int).tolist(), tracks[:, 4].astype(int).tolist(),
                   iou_distances(gt_xywh, hyp_xywh, max_iou=0.5))
    return acc


def score(accumulators: dict) -> dict:
    """IDF1, identity switches and MOTA over all cameras (motmetrics' definitions)."""
    host = mm.metrics.create()
    names = list(accumulators)
    table = host.compute_many([accumulators[n] for n in names], names=names,
                              metrics=["idf1", "num_switches", "mota", "num_unique_objects"],
                              generate_overall=True)
    overall = table.loc["OVERALL"]
    return {"idsw": int(overall["num_switches"]), "idf1": round(float(overall["idf1"]), 4),
            "mota": round(float(overall["mota"]), 4),
            "per_camera": {n: {"idsw": int(table.loc[n]["num_switches"]), "idf1": round(float(table.loc[n]["idf1"]), 4)}
                           for n in names}}


def parity_crops(video: str, annotations: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The busiest frame of cam0 and boxes of its people: its detections, then jittered, grown and
    shifted copies of them (some reaching past the frame's edges, clipped as boxmot clips)."""
    camera = annotations["cameras"]["cam0"]
    dets = np.asarray(camera["dets"]).reshape(-1, 6)
    t = int(np.bincount(dets[:, 0].astype(int)).argmax())
    frame = cv2.imread(os.path.join(video, "cam0", f"{t:06d}.jpg"))
    boxes = dets[dets[:, 0] == t][:, 1:5]
    picks = boxes[rng.integers(0, len(boxes), max(PARITY_BATCHES))]
    centre, size = (picks[:, :2] + picks[:, 2:]) / 2, picks[:, 2:] - picks[:, :2]
    centre = centre + rng.uniform(-0.3, 0.3, centre.shape) * size
    size = size * rng.uniform(0.85, 1.3, (len(size), 1))
    return frame, np.concatenate([boxes, np.c_[centre - size / 2, centre + size / 2]])[:max(PARITY_BATCHES)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--model", action="append", default=[], help="NAME=FILE.onnx")
    parser.add_argument("--output", required=True)
    parser.add_argument("--parity", help="write boxmot's embeddings of the parity crops here (.npz)")
    args = parser.parse_args()
    with open(os.path.join(args.video, "annotations.json")) as f:
        annotations = json.load(f)
    from boxmot.reid.core.runtime import ReID

    models = dict(m.split("=", 1) for m in args.model)
    results, parity = {}, {}
    for name, onnx in [*models.items(), ("motion_only", None)]:
        accumulators = {}
        for camera, data in annotations["cameras"].items():
            accumulators[camera] = track_camera(_tracker(name, onnx), os.path.join(args.video, camera), data)
        results[name] = score(accumulators)
        if onnx is not None:
            reid = ReID(path=onnx, device="cpu")
            results[name]["boxmot_input_shape"] = list(reid.model.input_shape)
            frame, boxes = parity_crops(args.video, annotations, np.random.default_rng(0))
            parity["frame"], parity["boxes"] = frame, boxes
            for n in PARITY_BATCHES:
                parity[f"{name}_{n}"] = np.asarray(reid(frame, boxes[:n]))
    import boxmot

    results["boxmot_version"] = boxmot.__version__
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    if args.parity:
        np.savez(args.parity, **parity)


if __name__ == "__main__":
    main()
