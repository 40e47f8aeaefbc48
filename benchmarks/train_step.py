"""The real train step against this machine's arithmetic limit.

images/s of the train step (fine-tune all, soft-margin batch-hard loss, P x K = 20 x 4, 224x112)
for ResNet50 and the small quickstart backbone, in float32, with mixed bfloat16 and with XLA; the
achieved FLOP/s (3x the forward FLOPs counted from the model's layers, per image) over the
float32 matrix-multiply rate measured in the same run.

  python benchmarks/train_step.py [--steps=4] [--backbones=resnet50,small]
  python benchmarks/train_step.py --compare [--rounds=2] [--torch_python=PYTHON_WITH_TORCH]
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras  # noqa: E402
from common import (  # noqa: E402
    fmt_rate,
    forward_flops_per_image,
    matmul_flops_per_second,
    table,
    tf,
)

from reid_tf import config as C  # noqa: E402
from reid_tf import model as model_lib  # noqa: E402
from reid_tf import objective, optim  # noqa: E402

P, K, H, W = 20, 4, 224, 112


def build(backbone: str, mixed_precision: str):
    if mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    try:
        config = C.RunConfig(
            data=C.DataConfig(image_height=H, image_width=W, return_id_num=P, image_num_every_id=K),
            model=C.ModelConfig(backbone=backbone, backbone_weights="none"),
            train=C.TrainConfig(mixed_precision=mixed_precision),
        )
        model = model_lib.build_run_model(config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return config, model


def step_images_per_second(backbone: str, mixed_precision: str, jit: bool, steps: int) -> float:
    """Images/s of the train step on an in-memory batch (the input pipeline is measured apart)."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        config, model = build(backbone, mixed_precision)
        optimizer = optim.build_optimizer(config.optimizer, mixed_precision)
        optimizer.build(model.trainable_variables)
    images = tf.random.uniform([P * K, H, W, 3], 0, 255)
    pids = tf.repeat(tf.range(P), K)
    batches = tf.data.Dataset.from_tensors((images, pids)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    step = objective.make_train_step(model, optimizer, strategy, config.loss, jit)
    float(step(iterator)[0])  # trace and warm up
    float(step(iterator)[0])
    start = time.perf_counter()
    for _ in range(steps):
        float(step(iterator)[0])
    return steps * P * K / (time.perf_counter() - start)


def one_process(backbone: str, precision: str, steps: int) -> dict:
    """images/s of our step in this process (precision: float32, bfloat16 (Keras mixed policy) or
    onednn_bf16 (float32 model, TensorFlow's oneDNN bf16 graph rewrite))."""
    if precision == "onednn_bf16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    mixed = "bfloat16" if precision == "bfloat16" else "none"
    return {"framework": "tensorflow", "precision": precision,
            "images_per_s": step_images_per_second(backbone, mixed, False, steps), "tf": tf.__version__}


def compare(rounds: int, steps: int, torch_python: str) -> None:
    """Our bf16 step against PyTorch's (eager and compiled), each in its own process, interleaved."""
    here = os.path.dirname(os.path.abspath(__file__))
    runs = {
        "reid_tf bf16 (Keras mixed policy)": [sys.executable, os.path.join(here, "train_step.py"),
                                              "--one=resnet50:bfloat16"],
        "reid_tf bf16 (oneDNN graph rewrite)": [sys.executable, os.path.join(here, "train_step.py"),
                                                "--one=resnet50:onednn_bf16"],
        "torchvision bf16 autocast, channels-last": [torch_python, os.path.join(here, "torch_step.py")],
        "the same + torch.compile": [torch_python, os.path.join(here, "torch_step.py"), "--compile"],
    }
    results = {name: [] for name in runs}
    for r in range(rounds):
        for name, command in runs.items():
            done = subprocess.run([*command, f"--steps={steps}"], capture_output=True, text=True)
            line = [x for x in done.stdout.splitlines() if x.startswith("{")]
            if done.returncode or not line:
                print(f"{name}: failed\n{done.stderr[-1500:]}")
                continue
            results[name].append(json.loads(line[-1])["images_per_s"])
            print(f"round {r + 1}: {name}: {results[name][-1]:.1f} images/s", flush=True)
    theirs = "torchvision bf16 autocast, channels-last"
    print("\n| step (ResNet50, 224x112, P x K = 20 x 4) | images/s, each round |"
          " / torchvision bf16, same round |")
    print("|---|---|---|")
    for name, rates in results.items():
        ratios = [a / b for a, b in zip(rates, results[theirs])]
        rates_text, ratios_text = ", ".join(f"{x:.1f}" for x in rates), ", ".join(f"{x:.2f}" for x in ratios)
        print(f"| {name} | {rates_text} | {ratios_text} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--backbones", default="resnet50,small")
    parser.add_argument("--skip_xla", action="store_true", help="leave out the (slow on CPU) XLA runs")
    parser.add_argument("--compare", action="store_true",
                        help="our bf16 step against PyTorch's, each in its own process, interleaved")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--torch_python", default=sys.executable,
                        help="a Python with torch and torchvision (for --compare)")
    parser.add_argument("--one", default="", help="BACKBONE:PRECISION: one measurement, as JSON")
    args = parser.parse_args()
    if args.one:
        backbone, precision = args.one.split(":")
        print(json.dumps(one_process(backbone, precision, args.steps)))
        return
    if args.compare:
        compare(args.rounds, args.steps, args.torch_python)
        return
    fp32 = matmul_flops_per_second(tf.float32)
    bf16 = matmul_flops_per_second(tf.bfloat16)
    print(f"matmul rate: float32 {fmt_rate(fp32)}, bfloat16 {fmt_rate(bf16)}")
    rows = []
    for backbone in args.backbones.split(","):
        flops = forward_flops_per_image(build(backbone, "none")[1])
        steps = args.steps if backbone != "small" else 10 * args.steps
        for mixed, jit in (("none", False), ("bfloat16", False), ("none", True))[: 2 if args.skip_xla else 3]:
            rate = step_images_per_second(backbone, mixed, jit, steps)
            achieved = rate * 3 * flops
            rows.append([backbone, mixed, "xla" if jit else "-", f"{flops / 1e9:.2f}", f"{rate:.1f}",
                         f"{achieved / 1e9:.0f}", f"{achieved / fp32:.2f}"])
            print(rows[-1], flush=True)
    header = ["backbone", "mixed precision", "jit", "fwd GFLOP/img", "images/s", "GFLOP/s",
              "÷ fp32 matmul"]
    print(table(rows, header))


if __name__ == "__main__":
    main()
