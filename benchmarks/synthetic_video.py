"""A synthetic multi-camera video with ground-truth tracks, for the tracker benchmark: the synthetic
pedestrians (`reid_tf.synthetic`) walk across each camera's static scene in both directions, at
several depths, so that they cross, pass behind pillars and each other, and some stop a while.

Ground truth is each person's full box with its visible fraction; detections are the boxes of
people at least `DETECTED_VISIBILITY` visible, jittered, with a few misses: an ideal detector, so
the trackers differ only in how they associate.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from scipy import ndimage

from reid_tf import synthetic

FRAME = (360, 640)  # height, width
DETECTED_VISIBILITY = 0.4  # a person less visible than this is not detected
GT_VISIBILITY = 0.3  # ground truth left out below this (MOT17 counts such boxes as "ignore")
MISS_RATE = 0.05
JITTER = 0.02  # box coordinate noise, as a fraction of the person's height


def _background(rng: np.random.Generator, cam: dict) -> np.ndarray:
    h, w = FRAME
    t = np.linspace(0, 1, h)[:, None, None]
    img = cam["bg"] * (1 - t) + cam["bg2"] * t + np.zeros((h, w, 3))
    for _ in range(6):  # scene content: doors, windows, benches
        y0, x0 = rng.integers(0, h - 40), rng.integers(0, w - 40)
        img[y0:y0 + rng.integers(20, 120), x0:x0 + rng.integers(20, 160)] = rng.uniform(30, 230, 3)
    return img


def _walkers(rng: np.random.Generator, identities: list, frames: int) -> list[dict]:
    """Each person's path: depth (foot row), size, direction, speed, start frame and an optional stop."""
    h, w = FRAME
    people = []
    for pid, ident in identities:
        foot = rng.uniform(0.62, 0.97) * h
        height = 0.48 * foot
        direction = 1 if rng.random() < 0.5 else -1
        speed = rng.uniform(1.6, 3.6)
        stop = (rng.integers(10, 120), rng.integers(15, 45)) if rng.random() < 0.4 else (0, 0)
        people.append({"pid": pid, "ident": ident, "foot": foot, "height": height, "width": 0.45 * height,
                       "direction": direction, "speed": speed, "start": int(rng.integers(0, frames * 0.55)),
                       "stop": stop, "sway": rng.uniform(0, 2 * np.pi)})
    return people


def _box(person: dict, t: int) -> tuple[float, float, float, float] | None:
    """The person's box at frame t, or None before it enters or after it leaves."""
    h, w = FRAME
    age = t - person["start"]
    if age < 0:
        return None
    stop_at, stop_for = person["stop"]
    walked = min(age, stop_at) + max(0, age - stop_at - stop_for) if stop_for else age
    travel = walked * person["speed"]
    x1 = -person["width"] + travel if person["direction"] > 0 else w - travel
    if x1 > w or x1 + person["width"] < 0:
        return None
    foot = person["foot"] + 3 * np.sin(person["sway"] + 0.05 * age)
    return x1, foot - person["height"], x1 + person["width"], foot


def _render_person(person: dict, size: tuple[int, int], rng: np.random.Generator):
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    img = np.zeros((*size, 3), np.float32)
    pose = {"scale": 0.95, "cx": 0.5, "top": 0.03, "facing": person["direction"]}
    mask = synthetic.draw_person(img, yy / size[0], xx / size[1], person["ident"], rng, pose)
    return img, mask


def render_camera(rng: np.random.Generator, identities: list, frames: int, folder: str) -> dict:
    """Write one camera's frames as JPEGs into `folder`; returns its ground truth and detections."""
    h, w = FRAME
    cam = synthetic._camera(rng)
    background = _background(rng, cam)
    pillars = [(int(x), int(x + rng.integers(28, 48))) for x in rng.uniform(0.15, 0.8, 2) * w]
    people = _walkers(rng, identities, frames)
    os.makedirs(folder, exist_ok=True)
    gt, dets = [], []
    for t in range(frames):
        frame, owner = background.copy(), np.full(FRAME, -1)
        drawn = []
        for k in sorted(range(len(people)), key=lambda k: people[k]["foot"]):  # far to near
            box = _box(people[k], t)
            if box is None:
                continue
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            img, mask = _render_person(people[k], (y2 - y1, x2 - x1), rng)
            ys, xs = np.nonzero(mask)
            ys, xs, keep = ys + y1, xs + x1, None
            keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            frame[ys[keep], xs[keep]] = img[mask][keep]
            owner[ys[keep], xs[keep]] = k
            drawn.append((k, box, int(mask.sum())))
        for a, b in pillars:
            frame[40:, a:b] = cam["bg2"] * 0.6
            owner[40:, a:b] = -2
        for k, box, area in drawn:
            visible = float((owner == k).sum()) / max(area, 1)
            pid = people[k]["pid"]
            if visible >= GT_VISIBILITY:
                gt.append([t, pid, *map(float, box), visible])
            if visible >= DETECTED_VISIBILITY and rng.random() > MISS_RATE:
                noisy = np.asarray(box) + rng.normal(0, JITTER * people[k]["height"], 4)
                dets.append([t, *map(float, noisy), float(np.clip(0.5 + 0.45 * visible + rng.normal(0, 0.05),
                                                                    0.3, 0.99))])
        frame = frame * cam["gain"] * cam["cast"]
        frame = ndimage.gaussian_filter(frame, sigma=(cam["blur"], cam["blur"], 0))
        frame = np.clip(frame + rng.normal(0, cam["noise"], frame.shape), 0, 255).astype(np.uint8)
        Image.fromarray(frame).save(os.path.join(folder, f"{t:06d}.jpg"), quality=95)
    return {"frames": frames, "gt": gt, "dets": dets, "people": len(people)}


def crossings(gt: list) -> int:
    """How many times two ground-truth boxes of one camera begin to overlap (IoU > 0.3)."""
    by_frame: dict[int, list] = {}
    for t, pid, x1, y1, x2, y2, _ in gt:
        by_frame.setdefault(int(t), []).append((pid, x1, y1, x2, y2))
    overlapping, count = set(), 0
    for t in sorted(by_frame):
        now = set()
        rows = by_frame[t]
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                ix = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
                iy = max(0.0, min(a[4], b[4]) - max(a[2], b[2]))
                inter = ix * iy
                union = (a[3] - a[1]) * (a[4] - a[2]) + (b[3] - b[1]) * (b[4] - b[2]) - inter
                if inter / union > 0.3:
                    now.add(tuple(sorted((a[0], b[0]))))
        count += len(now - overlapping)
        overlapping = now
    return count


def make_video(folder: str, seed: int, cameras: int = 3, frames: int = 240, people: int = 12) -> dict:
    """`cameras` folders of frames and `annotations.json`; one pool of identities across cameras."""
    rng = np.random.default_rng(seed)
    pool = [(pid, synthetic._identity(rng)) for pid in range(2 * people)]
    out = {"seed": seed, "frame_size": list(FRAME), "cameras": {}}
    for c in range(cameras):
        chosen = [pool[i] for i in sorted(rng.choice(len(pool), people, replace=False))]
        camera = render_camera(rng, chosen, frames, os.path.join(folder, f"cam{c}"))
        camera["crossings"] = crossings(camera["gt"])
        out["cameras"][f"cam{c}"] = camera
    with open(os.path.join(folder, "annotations.json"), "w") as f:
        json.dump(out, f)
    return out
