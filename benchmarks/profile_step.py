"""Where the ResNet50 train step spends its time: a tf.profiler trace of a few steps, summed by op
type from the trace's host plane (TensorFlow's own XSpace protobuf), as shares of all op time.

  python benchmarks/profile_step.py [--precision=bfloat16|float32|onednn_bf16] [--steps=3] [--strategy=one_device]
"""

import argparse
import collections
import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # noqa: E402
from common import tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from reid_tf import distribute, optim  # noqa: E402

GROUPS = {  # op type -> what it is
    "Conv2D": "conv forward", "_FusedConv2D": "conv forward", "_MklFusedConv2D": "conv forward",
    "Conv2DBackpropFilter": "conv weight gradient", "Conv2DBackpropInput": "conv input gradient",
    "_MklNativeConv2D": "conv forward", "_MklNativeConv2DBackpropFilter": "conv weight gradient",
    "_MklNativeConv2DBackpropInput": "conv input gradient",
    "_MklNativeConv2DBackpropFilterWithBias": "conv weight gradient",
    "_MklNativeFusedConv2D": "conv forward",
    "FusedBatchNormV3": "batch norm forward", "_MklNativeFusedBatchNormV3": "batch norm forward",
    "FusedBatchNormGradV3": "batch norm backward", "_MklNativeFusedBatchNormGradV3": "batch norm backward",
    "_MklFusedBatchNormEx": "batch norm forward", "_MklNativeFusedBatchNormEx": "batch norm forward",
    "Cast": "casts", "_MklCast": "casts",
    "Relu": "relu", "ReluGrad": "relu gradient", "_MklRelu": "relu", "_MklReluGrad": "relu gradient",
    "ResourceApplyAdam": "optimiser", "AssignVariableOp": "optimiser / variables",
    "ReadVariableOp": "optimiser / variables",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precision", default="bfloat16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--strategy", choices=["trainer", "one_device"], default="trainer",
                        help="the trainer's choice, or OneDeviceStrategy('/cpu:0') (what it chose before issue 54)")
    args = parser.parse_args()
    if args.precision == "onednn_bf16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    mixed = "bfloat16" if args.precision == "bfloat16" else "none"
    strategy = (tf.distribute.OneDeviceStrategy("/cpu:0") if args.strategy == "one_device"
                else distribute.choose_strategy())
    with strategy.scope():
        config, model = train_step.build("resnet50", mixed)
        optimizer = optim.build_optimizer(config.optimizer, mixed)
        optimizer.build(model.trainable_variables)
    images = tf.random.uniform([train_step.P * train_step.K, train_step.H, train_step.W, 3], 0, 255)
    pids = tf.repeat(tf.range(train_step.P), train_step.K)
    batches = tf.data.Dataset.from_tensors((images, pids)).repeat()
    iterator = iter(strategy.distribute_datasets_from_function(lambda _: batches))
    step = train_step.objective.make_train_step(model, optimizer, strategy, config.loss, False)
    for _ in range(2):
        float(step(iterator)[0])
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(args.steps):
            float(step(iterator)[0])
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    by_type = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            if "Executor" in line.name or "tf_" not in line.name and "Tensorflow" not in line.name:
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                op_type = name.rsplit(":", 1)[1] if ":" in name else ""  # "layer/op:OpType"
                if op_type and op_type != "Process":  # "Process" spans a whole function call
                    by_type[op_type] += event.duration_ps
    total = sum(by_type.values())
    groups = collections.Counter()
    for op, ps in by_type.items():
        groups[GROUPS.get(op, "other: " + op)] += ps
    per_step = total / 1e12 / args.steps
    print(f"ResNet50 step, {args.precision}: {per_step:.2f} s of op time per step (all threads)")
    other = sum(ps for g, ps in groups.items() if g.startswith("other: "))
    for group, ps in groups.most_common():
        if not group.startswith("other: "):
            print(f"  {group:28} {100 * ps / total:5.1f} %")
    largest = ", ".join(f"{g[7:]} {100 * ps / total:.1f} %" for g, ps in groups.most_common()
                        if g.startswith("other: "))
    print(f"  {'everything else':28} {100 * other / total:5.1f} %  (largest: {largest[:300]})")


if __name__ == "__main__":
    main()
