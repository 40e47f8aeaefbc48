"""Our tracker export in boxmot's real client: BoT-SORT with our ONNX as its appearance model on a
synthetic multi-camera video (crossings, pillars, stops), against the same architecture untrained
and against ByteTrack (motion only); IDF1 and identity switches by motmetrics.

  python benchmarks/tracker.py [--seed=0] [--output_json=F]

It makes boxmot's own virtual environment (boxmot, motmetrics, onnxruntime, torch's CPU build)
under --work_dir, trains osnet_x0_25 with the OSNet quickstart's recipe (a few minutes; kept and
reused), exports it with --format=tracker, draws the video of --seed, and runs
benchmarks/tracker_runner.py in that environment. It also checks that boxmot's crops of one frame
embed as tools/eval.py's pipeline embeds the same crops (cosine, batches of 1, 7 and 33).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BOXMOT = ("boxmot==25.0.0", "motmetrics==1.4.0", "onnxruntime==1.24.3")  # the onnxruntime boxmot pins
# torch's CPU build where pip finds one (a local wheel, or --extra-index-url of PyTorch's CPU index);
# boxmot's trackers and ONNX backend do not need a working torchvision.
TORCH = "torch<2.14"


def ensure_venv(venv: str) -> str:
    """boxmot's environment, made once; returns its python."""
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import boxmot, motmetrics, onnxruntime"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"making boxmot's environment in {venv} (once; about 2 GB)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", TORCH, *BOXMOT], check=True)
    subprocess.run(probe, check=True)
    return python


def _python(*args: str) -> None:
    subprocess.run([sys.executable, *args], check=True, cwd=REPO)


def trained_run(work: str, backbone: str) -> str:
    """The OSNet quickstart's recipe with `backbone`; resumes (or is a no-op) when already there."""
    run = os.path.join(work, f"run_{backbone}")
    _python("-m", "reid_tf.train", "--flagfile=flags/quickstart_osnet.cfg", f"--backbone={backbone}",
            f"--output_dir={run}")
    return run


def exports(run: str, work: str) -> dict:
    """The trained run's tracker and SavedModel exports, and the untrained model's tracker export."""
    from reid_tf import export_lib, model, run_dir, tracker_export

    out = {}
    for name, fmt in (("trained", "tracker"), ("saved_model", "saved_model")):
        out[name] = export_lib.export_run(run, os.path.join(work, "exports", name), fmt=fmt, overwrite=True)
    config = run_dir.load_config(run)
    untrained = model.build_run_model(config, backbone_weights="none")
    out["untrained"] = tracker_export.export_tracker(untrained, config, os.path.join(work, "exports", "untrained"),
                                                     0, 0, overwrite=True)[0]
    return out


def parity(saved_model: str, npz: str, name: str) -> dict:
    """Per batch, the smallest cosine of boxmot's embedding of a crop with tools/eval.py's pipeline on
    the same crop (boxmot's rounding and clipping of the box; the eval pipeline's resize of the RGB
    crop), and with our model on boxmot's own resized crop (the export alone)."""
    import cv2
    import numpy as np

    from reid_tf import exported, images

    data = np.load(npz)
    frame, boxes = data["frame"], data["boxes"]
    model = exported.open_export(saved_model)
    h, w = frame.shape[:2]
    eval_pixels, boxmot_pixels = [], []
    for x1, y1, x2, y2 in boxes.round().astype(int):
        crop = frame[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
        eval_pixels.append(images.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32),
                                         model.height, model.width).numpy())
        resized = cv2.resize(crop, (model.width, model.height), interpolation=cv2.INTER_LINEAR)
        boxmot_pixels.append(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32))

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    pipeline, export = unit(model.embed(np.stack(eval_pixels))), unit(model.embed(np.stack(boxmot_pixels)))
    out = {}
    for key in sorted((k for k in data.files if k.startswith(f"{name}_")), key=lambda k: int(k.split("_")[-1])):
        theirs = data[key]
        n = len(theirs)
        out[f"batch_{n}"] = {"eval_pipeline_min_cosine": round(float((theirs * pipeline[:n]).sum(1).min()), 6),
                             "same_input_min_cosine": round(float((theirs * export[:n]).sum(1).min()), 6),
                             "all_finite": bool(np.isfinite(theirs).all())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="draws the video")
    parser.add_argument("--output_json")
    parser.add_argument("--work_dir", default=os.path.join(REPO, "runs", "tracker"))
    parser.add_argument("--venv", help="boxmot's environment (default: WORK_DIR/venv)")
    parser.add_argument("--backbone", default="osnet_x0_25")
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--frames", type=int, default=240)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    sys.path.insert(0, HERE)
    os.makedirs(args.work_dir, exist_ok=True)
    python = ensure_venv(args.venv or os.path.join(args.work_dir, "venv"))
    run = trained_run(args.work_dir, args.backbone)
    files = exports(run, args.work_dir)
    import synthetic_video

    video = os.path.join(args.work_dir, f"video_seed{args.seed}")
    annotations = synthetic_video.make_video(video, args.seed, args.cameras, args.frames)
    onnx = {name: os.path.join(files[name], f"{args.backbone}.onnx") for name in ("trained", "untrained")}
    raw, npz = os.path.join(args.work_dir, f"boxmot_seed{args.seed}.json"), os.path.join(args.work_dir, "parity.npz")
    subprocess.run([python, os.path.join(HERE, "tracker_runner.py"), f"--video={video}", f"--output={raw}",
                    f"--parity={npz}", *[f"--model={k}={v}" for k, v in onnx.items()]], check=True)
    with open(raw) as f:
        result = json.load(f)
    result["parity"] = parity(files["saved_model"], npz, "trained")
    result["video"] = {"seed": args.seed, "cameras": args.cameras, "frames": args.frames,
                       "people_per_camera": annotations["cameras"]["cam0"]["people"],
                       "crossings": sum(c["crossings"] for c in annotations["cameras"].values()),
                       "ground_truth_boxes": sum(len(c["gt"]) for c in annotations["cameras"].values())}
    result["model"] = {"backbone": args.backbone, "recipe": "flags/quickstart_osnet.cfg"}
    text = json.dumps(result, indent=2)
    print(text)
    if args.output_json:
        with open(args.output_json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
