"""The real train step against this machine's arithmetic limit.

images/s of the train step (fine-tune all, soft-margin batch-hard loss, P x K = 20 x 4, 224x112)
for ResNet50 and the small quickstart backbone, in float32, with mixed bfloat16 and with XLA; the
achieved FLOP/s (3x the forward FLOPs counted from the model's layers, per image) over the
float32 matrix-multiply rate measured in the same run.

  python benchmarks/train_step.py [--steps=4] [--backbones=resnet50,small]
  python benchmarks/train_step.py --floor [--rounds=2]   # our step / plain Keras, side by side
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
    cpu_kind,
    fmt_rate,
    forward_flops_per_image,
    matmul_flops_per_second,
    table,
    tf,
)

from reid_tf import config as C  # noqa: E402
from reid_tf import distribute, objective, optim  # noqa: E402
from reid_tf import model as model_lib  # noqa: E402

P, K, H, W = 20, 4, 224, 112
# The floor's sizes (issue 54): the quickstart's 64x32 and the log's 224x112, P x K each.
FLOOR_SIZES = {"64x32": (64, 32, 16, 4), "224x112": (224, 112, 8, 4)}


def build(backbone: str, mixed_precision: str, size=(H, W, P, K)):
    height, width, p, k = size
    if mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    try:
        config = C.RunConfig(
            data=C.DataConfig(image_height=height, image_width=width, return_id_num=p, image_num_every_id=k),
            model=C.ModelConfig(backbone=backbone, backbone_weights="none"),
            train=C.TrainConfig(mixed_precision=mixed_precision),
        )
        model = model_lib.build_run_model(config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return config, model


def step_images_per_second(backbone: str, mixed_precision: str, jit: bool, steps: int, size=(H, W, P, K)) -> float:
    """Images/s of the train step, under the strategy the trainer picks, on an in-memory batch
    (the input pipeline is measured apart)."""
    height, width, p, k = size
    strategy = distribute.choose_strategy()
    with strategy.scope():
        config, model = build(backbone, mixed_precision, size)
        optimizer = optim.build_optimizer(config.optimizer, mixed_precision)
        optimizer.build(model.trainable_variables)
    images = tf.random.uniform([p * k, height, width, 3], 0, 255)
    pids = tf.repeat(tf.range(p), k)
    batches = tf.data.Dataset.from_tensors((images, pids)).repeat()
    iterator = iter(strategy.distribute_datasets_from_function(lambda _: batches))
    step = objective.make_train_step(model, optimizer, strategy, config.loss, jit)
    return _rate(lambda: float(step(iterator)[0]), steps, p * k)


def keras_images_per_second(backbone: str, mixed_precision: str, steps: int, size=(H, W, P, K)) -> float:
    """The floor: the same network in plain Keras, no strategy (mean-square loss on its output,
    Keras Adam, `train_on_batch` on the same in-memory batch)."""
    height, width, p, k = size
    _, model = build(backbone, mixed_precision, size)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
    images = tf.random.uniform([p * k, height, width, 3], 0, 255)
    targets = tf.zeros([p * k, model.output.shape[-1]])
    return _rate(lambda: model.train_on_batch(images, targets), steps, p * k)


def _rate(run_step, steps: int, batch: int) -> float:
    run_step()  # trace and warm up
    run_step()
    start = time.perf_counter()
    for _ in range(steps):
        run_step()
    return steps * batch / (time.perf_counter() - start)


def one_process(backbone: str, precision: str, steps: int) -> dict:
    """images/s of our step in this process (precision: float32, bfloat16 (Keras mixed policy) or
    onednn_bf16 (float32 model, TensorFlow's oneDNN bf16 graph rewrite))."""
    if precision == "onednn_bf16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    mixed = "bfloat16" if precision == "bfloat16" else "none"
    return {"framework": "tensorflow", "precision": precision,
            "images_per_s": step_images_per_second(backbone, mixed, False, steps), "tf": tf.__version__}


def floor(rounds: int, steps: int, output_json: str | None = None) -> None:
    """Our step over plain Keras' (its floor), each in its own process, interleaved per round, at
    64x32 and 224x112, float32 and (where the CPU computes bfloat16 natively) bfloat16."""
    precisions = ["float32"] + (["bfloat16"] if _native_bfloat16() else [])
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_step.py")
    rows = []
    for size in FLOOR_SIZES:
        for precision in precisions:
            ours, theirs = [], []
            for _ in range(rounds):
                for who, rates in (("reid_tf", ours), ("keras", theirs)):
                    done = subprocess.run([sys.executable, here, f"--one=resnet50:{precision}:{size}:{who}",
                                           f"--steps={steps}"], capture_output=True, text=True)
                    line = [x for x in done.stdout.splitlines() if x.startswith("{")]
                    if done.returncode or not line:
                        raise SystemExit(f"{who} {size} {precision}: failed\n{done.stderr[-1500:]}")
                    rates.append(json.loads(line[-1])["images_per_s"])
            rows.append({"size": size, "precision": precision, "reid_tf": ours, "keras": theirs,
                         "ratio": [a / b for a, b in zip(ours, theirs)]})
            print(rows[-1], flush=True)
    cells = [[r["size"], r["precision"], *(", ".join(f"{x:.2f}" for x in r[k]) for k in ("reid_tf", "keras", "ratio"))]
             for r in rows]
    print(table(cells, ["ResNet50", "precision", "reid_tf step, images/s", "plain Keras, images/s",
                        "ratio, each round"]))
    if output_json:
        with open(output_json, "w") as f:
            json.dump({"cpu": cpu_kind(), "steps": steps, "rounds": rounds, "tf": tf.__version__, "rows": rows}, f,
                      indent=1)


def _native_bfloat16() -> bool:
    return cpu_kind() == "avx512_bf16"


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
    parser.add_argument("--output_json", default=None, help="with --floor: the rows, for docs/benchmarks/")
    parser.add_argument("--floor", action="store_true",
                        help="our step against the same network in plain Keras, each in its own process")
    parser.add_argument("--one", default="", help="BACKBONE:PRECISION[:SIZE:reid_tf|keras]: one measurement, as JSON")
    args = parser.parse_args()
    if args.one.count(":") == 3:
        backbone, precision, size, who = args.one.split(":")
        mixed = "none" if precision == "float32" else precision
        measure = step_images_per_second if who == "reid_tf" else keras_images_per_second
        extra = (False,) if who == "reid_tf" else ()
        rate = measure(backbone, mixed, *extra, args.steps, FLOOR_SIZES[size])
        print(json.dumps({"who": who, "size": size, "precision": precision, "images_per_s": rate}))
        return
    if args.one:
        backbone, precision = args.one.split(":")
        print(json.dumps(one_process(backbone, precision, args.steps)))
        return
    if args.floor:
        floor(args.rounds, args.steps, args.output_json)
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
