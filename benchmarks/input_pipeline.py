"""Train input pipeline throughput: images/s of P x K batches at 224x112 with `enhanced`
augmentation, on a synthetic Market-1501 (128x64 JPEGs, as Market's), and the ratio to the
ResNet50 train step's consumption measured in the same run (--with_step).

  python benchmarks/input_pipeline.py [--batches=30] [--with_step]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import tf  # noqa: E402

from reid_tf import data, datasets, synthetic  # noqa: E402


def pipeline_images_per_second(records, batches: int, augment: str = "enhanced") -> float:
    ds = data.train_dataset(records, 20, 4, 224, 112, augment, seed=0)
    it = iter(ds)
    for _ in range(3):  # warm-up: tracing, thread pools, autotune
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)[0].numpy()
    return batches * 80 / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--with_step", action="store_true", help="also time the ResNet50 step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        synthetic.make_synthetic_market(root, num_ids=200, num_cameras=6, images_per_camera=3, seed=0)
        records = datasets.records.relabel(datasets.market.load_market1501(root)["train"])
        rates = {a: pipeline_images_per_second(records, args.batches, a) for a in data.AUGMENTATIONS.names()}
    for augment, rate in rates.items():
        print(f"input pipeline, {augment:8} augmentation: {rate:8.1f} images/s (224x112, P=20 x K=4)")
    if args.with_step:
        from train_step import step_images_per_second

        step = step_images_per_second("resnet50", "none", False, steps=3)
        print(f"ResNet50 train step (float32):         {step:8.1f} images/s")
        print(f"pipeline / step: {rates['enhanced'] / step:.1f}x (aim >= 3)")
    print(f"cores: {os.cpu_count()}, TF {tf.__version__}")


if __name__ == "__main__":
    main()
