"""A calibrated 'same person?' threshold shipped with the model: fitted on identities the model did
not train on (`tools/eval.py --calibrate`), written as calibration.json beside the export, read
where decisions are made (the gallery search, the search and tracker exports)."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from reid_tf import verification
from reid_tf.errors import ReidError

FILE = "calibration.json"
KEYS = ("far=0.01", "far=0.001", "eer", "crossing")  # the thresholds every file carries (null: too few pairs)
CURVE_POINTS = 512  # the FAR curve kept for 'FAR at this distance'


class CalibrationError(ReidError, ValueError):
    """A calibration file or threshold that cannot be used; the message names it and what to do."""


COSINE_RULE = ("boxmot's trackers compare L2-normalised embeddings by cosine distance 1 - cos(a, b) ="
               " ||a/|a| - b/|b|||^2 / 2: these thresholds were fitted on the normalised embeddings' distances d,"
               " each given as d^2 / 2")


def fit(h: verification.PairHistograms, fitted_on: dict,
        normalised: verification.PairHistograms | None = None) -> dict:
    """The calibration of a model from its pair histograms: the thresholds (a pair is the same person
    when its distance is <= d), the FAR curve, and what it was fitted on; from the histograms of
    the L2-normalised embeddings, the same thresholds as cosine distances (a tracker's gate)."""
    s = verification.summary(h)
    far, _ = verification.rates(h)
    top = (int(np.flatnonzero(h.negative + h.positive)[-1]) + 1) * h.width
    distances = np.linspace(0.0, top, CURVE_POINTS)
    pairs = {"positive": s["pairs_positive"], "negative": s["pairs_negative"]}
    return {
        "distance": "euclidean",  # the metric the model trained and searches with
        "thresholds": {k: s["thresholds"].get(k) for k in KEYS},
        "far_curve": {"distance": [round(float(d), 7) for d in distances],
                      "far": [float(far[min(int(d / h.width), len(far) - 1)]) for d in distances]},
        "fitted_on": {**fitted_on, "pairs": pairs, "bin_width": h.width},
        "verification": {k: v for k, v in s.items() if k != "thresholds"},
        **({} if normalised is None else {"cosine": {"rule": COSINE_RULE, "thresholds": {
            k: None if v is None else v * v / 2 for k, v in
            ((k, verification.summary(normalised)["thresholds"].get(k)) for k in KEYS)}}}),
    }


def model_key(identity: str) -> str:
    """A short fingerprint of a model's identity (`Exported.identity`): the same for every format of
    one checkpoint, so a calibration fitted through one format serves the others."""
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def default_path(model_path: str) -> str:
    """calibration.json in the export's version folder, beside its model."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    return os.path.join(folder, FILE)


def write(path: str, calibration: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(calibration, f, indent=1, sort_keys=True)


def read(path: str) -> dict:
    """A calibration file, checked for the keys every reader uses."""
    try:
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
    except (OSError, ValueError) as e:
        raise CalibrationError(f"--calibration={path}: {str(e).splitlines()[0]} (tools/eval.py --calibrate writes"
                               " one)") from None
    if not isinstance(c, dict) or not {"distance", "thresholds", "far_curve"} <= set(c):
        raise CalibrationError(f"--calibration={path} is not a calibration file (tools/eval.py --calibrate writes"
                               " one)")
    return c


def threshold(c: dict, name: str, path: str = "the calibration") -> float:
    """The distance of `name`: one of the file's thresholds (far=0.001, eer, crossing, ...) or a number."""
    if name in c["thresholds"]:
        value = c["thresholds"][name]
        if value is None:
            raise CalibrationError(f"--threshold={name}: {path} was fitted on too few pairs for it; use"
                                   f" {', '.join(k for k, v in c['thresholds'].items() if v is not None)}")
        return float(value)
    try:
        return float(name)
    except ValueError:
        raise CalibrationError(f"--threshold={name}: one of {', '.join(c['thresholds'])} or a distance") from None


def for_model(path: str, identity: str, name: str) -> dict:
    """The calibration file `path` of the model `identity`, and its threshold `name`, for an export:
    {"file", "name", "distance", "cosine_distance"}."""
    c = read(path)
    made_by = c.get("fitted_on", {}).get("model_identity")
    if made_by and made_by != model_key(identity):
        raise CalibrationError(f"--calibration={path} was fitted on another model: fit it on this one"
                               " (tools/eval.py --model=EXPORT --calibrate)")
    cosine = c.get("cosine", {}).get("thresholds", {}).get(name)
    return {"file": path, "name": name, "distance": threshold(c, name, path),
            "cosine_distance": cosine, "cosine_rule": c.get("cosine", {}).get("rule")}


def far_at(c: dict, distances: np.ndarray) -> np.ndarray:
    """The FAR measured on the calibration's pairs at each distance (the curve, interpolated)."""
    curve = c["far_curve"]
    return np.interp(np.asarray(distances, np.float64), curve["distance"], curve["far"])
