"""One command for a GPU machine (benchmarks/gpu_check.sh): ResNet50 train-step throughput at
256x128, P=16 x K=4, in float32, float16 and bfloat16, each with and without XLA; a short training
run under MirroredStrategy over every visible GPU; an export of it, and the eval of that export.
One table at the end. Without a GPU it says so in one line and runs the same steps at a tiny size
(64x32, P=4 x K=2, two logical CPU devices), so that the script itself is tested anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from reid_tf import config as C  # noqa: E402
from reid_tf import distribute, objective, optim  # noqa: E402
from reid_tf import model as model_lib  # noqa: E402

GPUS = tf.config.list_physical_devices("GPU")
FULL = {"size": (256, 128), "p": 16, "k": 4, "steps": 20, "run_steps": 200, "ids": 300}
TINY = {"size": (64, 32), "p": 4, "k": 2, "steps": 2, "run_steps": 6, "ids": 40}


def step_rate(shape: dict, precision: str, jit: bool) -> float:
    """Images/s of the real train step on an in-memory batch, on the first device."""
    strategy = distribute.choose_strategy()  # what the trainer runs under
    mixed = "none" if precision == "float32" else precision
    if mixed != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{mixed}")
    try:
        with strategy.scope():
            config = C.RunConfig(data=C.DataConfig(image_height=shape["size"][0], image_width=shape["size"][1],
                                                   return_id_num=shape["p"], image_num_every_id=shape["k"]),
                                 model=C.ModelConfig(backbone="resnet50", backbone_weights="none"),
                                 train=C.TrainConfig(mixed_precision=mixed))
            model = model_lib.build_run_model(config)
            optimizer = optim.build_optimizer(config.optimizer, mixed)
            optimizer.build(model.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    batch = shape["p"] * shape["k"]
    images = tf.random.uniform([batch, *shape["size"], 3], 0, 255)
    pids = tf.repeat(tf.range(shape["p"]), shape["k"])
    batches = tf.data.Dataset.from_tensors((images, pids)).repeat()
    iterator = iter(strategy.distribute_datasets_from_function(lambda _: batches))
    step = objective.make_train_step(model, optimizer, strategy, config.loss, jit)
    for _ in range(2):
        float(step(iterator)[0])
    start = time.perf_counter()
    for _ in range(shape["steps"]):
        float(step(iterator)[0])
    return shape["steps"] * batch / (time.perf_counter() - start)


def mirrored_run(shape: dict, folder: str) -> dict:
    """Train, export and evaluate under MirroredStrategy; the figures of each step."""
    from reid_tf import datasets, evaluate, export_lib, exported, train_lib

    strategy = tf.distribute.MirroredStrategy()
    config = C.RunConfig(
        data=C.DataConfig(dataset="synthetic", synthetic_ids=shape["ids"], data_dir=os.path.join(folder, "data"),
                          image_height=shape["size"][0], image_width=shape["size"][1], return_id_num=shape["p"],
                          image_num_every_id=shape["k"], valid_ids=10, train_eval_ids=10),
        model=C.ModelConfig(backbone="resnet50", backbone_weights="none"),
        train=C.TrainConfig(max_steps=shape["run_steps"], checkpoint_every=shape["run_steps"],
                            eval_every=shape["run_steps"], log_every=max(1, shape["run_steps"] // 4)))
    run = os.path.join(folder, "run")
    start = time.perf_counter()
    train_lib.run(config, run, strategy=strategy)
    trained = time.perf_counter() - start
    export = export_lib.export_run(run, os.path.join(folder, "export"))
    model = exported.open_export(export)
    splits = datasets.load_dataset("synthetic", config.data.data_dir, config.data)
    q, qp, qc = evaluate.embed_records(model.embed, splits["query"], model.height, model.width)
    g, gp, gc = evaluate.embed_records(model.embed, splits["gallery"], model.height, model.width)
    scores = evaluate.score(q, g, qp, gp, qc, gc)
    return {"replicas": strategy.num_replicas_in_sync, "train_s": trained, "mAP": scores["mAP"],
            "rank1": scores["rank1"], "queries": len(q), "gallery": len(g)}


def main() -> None:
    shape = FULL if GPUS else TINY
    if not GPUS:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        print("no GPU visible: running the same steps at a tiny size on the CPU (these are not GPU figures)")
    rows = []
    for precision in ("float32", "float16", "bfloat16"):
        for jit in (False, True):
            try:
                rate = f"{step_rate(shape, precision, jit):.1f}"
            except Exception as e:  # noqa: BLE001 - a configuration this device lacks is a row, not a stop
                rate = f"failed: {str(e).splitlines()[0][:60]}"
            rows.append((f"train step, {precision}, XLA {'on' if jit else 'off'}", rate + " images/s"))
    with tempfile.TemporaryDirectory() as folder:
        m = mirrored_run(shape, folder)
    rows.append((f"MirroredStrategy, {m['replicas']} replicas, {shape['run_steps']} steps", f"{m['train_s']:.1f} s"))
    rows.append((f"export + eval ({m['queries']} x {m['gallery']})", f"mAP {m['mAP']:.3f}, rank-1 {m['rank1']:.3f}"))
    device = ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in GPUS) or "CPU"
    size = f"{shape['size'][0]}x{shape['size'][1]}, P={shape['p']} x K={shape['k']}"
    print(f"\n| {device}: ResNet50, {size} | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(json.dumps({"device": device, "size": size, "rows": rows}))


if __name__ == "__main__":
    main()
