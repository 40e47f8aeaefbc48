"""Backbones side by side, each measured in a process of its own in one run: parameters, train
images/s at 256x128 (float32 and mixed bfloat16), batch-1 serving latency of the bfloat16
SavedModel and of the int8 LiteRT file, and the validation mAP each reaches from scratch with the
quickstart recipe (flags/quickstart.cfg, synthetic set, 64x32) in the same number of steps.

  python benchmarks/backbones.py [--names=resnet50,resnet50+ls1,...] [--steps=300]
  python benchmarks/backbones.py --smoke      # every --backbone name: 2 steps and a SavedModel export

A name with "+ls1" trains with --last_stride=1.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = "resnet50,resnet50+ls1,mobilenet_v3_large,efficientnetv2_b0,convnext_tiny,osnet_x1_0,osnet_x0_25"

CHILD = r"""
import json, sys, tempfile, time
import numpy as np
import keras
import tensorflow as tf
from reid_tf import backbones, distribute, export_lib, objective
from reid_tf import config as C
from reid_tf import convert, optim
from reid_tf import model as model_lib

name, last_stride = sys.argv[1], int(sys.argv[2])
H, W, P, K, STEPS = 256, 128, 16, 4, 3
out = {}


def config(mixed="none"):
    data = C.DataConfig(image_height=H, image_width=W, return_id_num=P, image_num_every_id=K)
    return C.RunConfig(data=data,
                       model=C.ModelConfig(backbone=name, backbone_weights="none", last_stride=last_stride),
                       train=C.TrainConfig(mixed_precision=mixed))


for mixed in ("none", "bfloat16"):
    if mixed != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{mixed}")
    strategy = distribute.choose_strategy()  # what the trainer runs under
    with strategy.scope():
        cfg = config(mixed)
        model = model_lib.build_run_model(cfg)
        optimizer = optim.build_optimizer(cfg.optimizer, mixed)
        optimizer.build(model.trainable_variables)
    keras.mixed_precision.set_global_policy("float32")
    if mixed == "none":
        out["parameters"] = backbones.backbone_of(model).count_params()
    images = tf.random.uniform([P * K, H, W, 3], 0, 255)
    batches = tf.data.Dataset.from_tensors((images, tf.repeat(tf.range(P), K))).repeat()
    iterator = iter(strategy.distribute_datasets_from_function(lambda _: batches))
    step = objective.make_train_step(model, optimizer, strategy, cfg.loss, False)
    for _ in range(2):
        float(step(iterator)[0])
    start = time.perf_counter()
    for _ in range(STEPS):
        float(step(iterator)[0])
    out[f"train_{mixed}"] = STEPS * P * K / (time.perf_counter() - start)

cfg, model = config(), model_lib.build_run_model(config(), "none")
pixels = np.random.default_rng(0).uniform(0, 255, (64, H, W, 3)).astype(np.float32)
one = pixels[:1]


def latency(fn, repeats=30):
    for _ in range(3):
        fn(one)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(one)
    return (time.perf_counter() - start) / repeats * 1000


with tempfile.TemporaryDirectory() as tmp:
    served = tf.saved_model.load(export_lib.export_saved_model(model, cfg, tmp, 1, 0, precision="bfloat16"))
    signature = served.signatures["serving_default"]
    out["bf16_savedmodel_ms"] = latency(lambda x: signature(images=tf.constant(x))["embeddings"].numpy())
    # The latency of the int8 file, whether or not this untrained model passes the export's check
    # (an untrained head's tiny outputs can round to 0 in int8): the check's cosine is noted.
    function = convert.embedding_function(model, H, W)
    try:
        content = convert.to_tflite(function, "int8", pixels)
        run = convert.tflite_embed_fn(content)
        out["int8_tflite_ms"] = latency(run)
        reference = function(tf.constant(pixels[:8]))["embeddings"].numpy()
        out["int8_min_cosine"] = convert.compare(reference, run(pixels[:8]))["min_cosine"]
    except convert.ConversionError as e:
        out["int8_tflite_error"] = str(e)
print("RESULT " + json.dumps(out))
"""


def child(name: str, last_stride: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(last_stride)], cwd=REPO, capture_output=True, text=True
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[0][7:]) if lines else {"error": proc.stderr.strip().splitlines()[-1][:200]}


def quickstart(name: str, out: str, *flags: str) -> subprocess.CompletedProcess:
    """The quickstart recipe (flags/quickstart.cfg) with this backbone, into `out` emptied first
    (a finished run there would only be found finished)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "reid_tf.train", "--flagfile=flags/quickstart.cfg", f"--backbone={name}",
               f"--output_dir={out}", *flags]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def train_map(name: str, last_stride: int, steps: int, runs: str) -> dict:
    """Best validation mAP of the quickstart recipe with this backbone, `steps` steps."""
    out = os.path.join(runs, name + ("+ls1" if last_stride == 1 else ""))
    start = time.time()
    proc = quickstart(name, out, f"--last_stride={last_stride}", f"--max_steps={steps}",
                      f"--checkpoint_every={steps}", f"--eval_every={max(steps // 3, 1)}")
    if proc.returncode:
        return {"map_error": proc.stderr.strip().splitlines()[-1][:200]}
    rows = [json.loads(line) for line in open(os.path.join(out, "validation.jsonl"))]
    return {"map_before": rows[0]["mAP"], "map": max(r["mAP"] for r in rows),
            "map_minutes": (time.time() - start) / 60}


def smoke(runs: str) -> None:
    """Every --backbone name: two steps of the quickstart recipe, then its SavedModel export."""
    from reid_tf.backbones import REGISTRY

    for name in REGISTRY.names():
        out = os.path.join(runs, "smoke", name)
        start = time.time()
        proc = quickstart(name, out, "--max_steps=2", "--eval_every=2", "--checkpoint_every=2",
                          "--noeval_before_training")
        exported = os.path.exists(os.path.join(out, "export", "2", "saved_model.pb"))
        status = "2 steps, SavedModel exported" if proc.returncode == 0 and exported else (
            "FAILED: " + proc.stderr.strip().splitlines()[-1][:200])
        print(f"{name:20} {status} ({time.time() - start:.0f} s)", flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--names", default=TABLE)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--skip_map", action="store_true", help="leave out the training runs")
    parser.add_argument("--runs", default=os.path.join(tempfile.gettempdir(), "reid_tf-backbones"))
    args = parser.parse_args()
    if args.smoke:
        smoke(args.runs)
        return
    rows = []
    for entry in args.names.split(","):
        name, _, option = entry.partition("+")
        last_stride = 1 if option == "ls1" else 2
        result = {"name": entry, **child(name, last_stride)}
        if not args.skip_map:
            result.update(train_map(name, last_stride, args.steps, args.runs))
        print(json.dumps(result), flush=True)
        rows.append(result)
    print(
        f"\n| backbone | parameters (M) | train images/s fp32 | train images/s bf16 | bf16 SavedModel"
        f" batch 1 (ms) | int8 LiteRT batch 1 (ms) | validation mAP after {args.steps} steps |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            f"{r['parameters'] / 1e6:.2f}" if "parameters" in r else "-",
            f"{r['train_none']:.1f}" if "train_none" in r else "-",
            f"{r['train_bfloat16']:.1f}" if "train_bfloat16" in r else "-",
            f"{r['bf16_savedmodel_ms']:.1f}" if "bf16_savedmodel_ms" in r else "-",
            f"{r['int8_tflite_ms']:.2f}" if "int8_tflite_ms" in r else r.get("int8_tflite_error", "-")[:60],
            f"{r['map']:.3f}" if "map" in r else r.get("map_error", "-")[:60],
        ]
        print(f"| `{r['name']}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
