"""PyTorch's best CPU train step for the same job, for benchmarks/train_step.py --compare (run in
its own process: never load PyTorch beside TensorFlow). torchvision's ResNet50 with this project's
head (fc1 1024 no bias, BN, ReLU, fc2 128), the soft-margin batch-hard loss, Adam; bf16 autocast,
channels-last; --compile adds torch.compile. Prints one JSON line.

  python benchmarks/torch_step.py [--steps=4] [--compile] [--precision=bfloat16|float32]
"""

import argparse
import json
import time

import torch
import torchvision

P, K, H, W = 20, 4, 224, 112


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float32"))
    args = parser.parse_args()
    backbone = torchvision.models.resnet50()
    backbone.fc = torch.nn.Identity()
    net = torch.nn.Sequential(backbone, torch.nn.Linear(2048, 1024, bias=False), torch.nn.BatchNorm1d(1024),
                              torch.nn.ReLU(), torch.nn.Linear(1024, 128))
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    x = (torch.rand(P * K, 3, H, W) * 255).to(memory_format=torch.channels_last)
    y = torch.arange(P).repeat_interleave(K)
    forward = torch.compile(net) if args.compile else net

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bfloat16"):
            e = forward(x).float()
        d = torch.cdist(e, e)
        same = y[:, None] == y[None]
        d_ap = (d * same).max(1).values
        d_an = d.masked_fill(same, float("inf")).min(1).values
        loss = torch.nn.functional.softplus(d_ap - d_an).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    step()
    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    rate = args.steps * P * K / (time.perf_counter() - start)
    print(json.dumps({"framework": "torch", "compile": args.compile, "precision": args.precision,
                      "images_per_s": rate, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
