"""The real train step against this machine's arithmetic limit.

images/s of the train step (fine-tune all, soft-margin batch-hard loss, P x K = 20 x 4, 224x112)
for ResNet50 and the small quickstart backbone, in float32, with mixed bfloat16 and with XLA; the
achieved FLOP/s (3x the forward FLOPs counted from the model's layers, per image) over the
float32 matrix-multiply rate measured in the same run.

  python benchmarks/train_step.py [--steps=4] [--backbones=resnet50,small] [--torch]
"""

import argparse
import os
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
from reid_tf import train  # noqa: E402

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
        model = train.build_run_model(config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return config, model


def step_images_per_second(backbone: str, mixed_precision: str, jit: bool, steps: int) -> float:
    """Images/s of the train step on an in-memory batch (the input pipeline is measured apart)."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        config, model = build(backbone, mixed_precision)
        optimizer = train.build_optimizer(config.optimizer, mixed_precision)
        optimizer.build(model.trainable_variables)
    images = tf.random.uniform([P * K, H, W, 3], 0, 255)
    pids = tf.repeat(tf.range(P), K)
    batches = tf.data.Dataset.from_tensors((images, pids)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    step = train.make_train_step(model, optimizer, strategy, config.loss, jit)
    float(step(iterator)[0])  # trace and warm up
    float(step(iterator)[0])
    start = time.perf_counter()
    for _ in range(steps):
        float(step(iterator)[0])
    return steps * P * K / (time.perf_counter() - start)


def _torch_resnet50(torch):
    """torchvision's ResNet50 (v1.5) without torchvision, which does not install beside the CPU
    torch wheel here: the same layers and FLOPs."""
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
            cin = width * 4
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def torch_images_per_second(steps: int) -> float | None:
    """The same step in PyTorch (ResNet50, this head and loss, bf16 autocast), if torch is installed."""
    try:
        import torch
    except ImportError:
        return None
    try:
        import torchvision

        net = torchvision.models.resnet50()
        net.fc = torch.nn.Identity()
    except Exception:  # noqa: BLE001 - torchvision missing or broken beside this torch
        net = _torch_resnet50(torch)
    net = torch.nn.Sequential(net, torch.nn.Linear(2048, 1024, bias=False), torch.nn.BatchNorm1d(1024),
                              torch.nn.ReLU(), torch.nn.Linear(1024, 128))
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    x = (torch.rand(P * K, 3, H, W) * 255).to(memory_format=torch.channels_last)
    y = torch.arange(P).repeat_interleave(K)

    def one():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            e = net(x).float()
        d = torch.cdist(e, e)
        same = y[:, None] == y[None]
        d_ap = (d * same).max(1).values
        d_an = d.masked_fill(same, float("inf")).min(1).values
        loss = torch.nn.functional.softplus(d_ap - d_an).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()
    one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return steps * P * K / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--backbones", default="resnet50,small")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch step")
    parser.add_argument("--skip_xla", action="store_true", help="leave out the (slow on CPU) XLA runs")
    parser.add_argument("--compare_only", action="store_true",
                        help="only the ResNet50 bf16 step beside PyTorch's (implies --torch)")
    args = parser.parse_args()
    if args.compare_only:
        ours = step_images_per_second("resnet50", "bfloat16", False, args.steps)
        theirs = torch_images_per_second(args.steps)
        print(f"ResNet50 bf16 step: reid_tf {ours:.1f} images/s, PyTorch "
              + ("not installed" if theirs is None else f"{theirs:.1f} images/s, ratio {ours / theirs:.2f}"))
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
    if args.torch:
        rate = torch_images_per_second(args.steps)
        print("PyTorch ResNet50 bf16 step: " + ("not installed" if rate is None else f"{rate:.1f} images/s"))


if __name__ == "__main__":
    main()
