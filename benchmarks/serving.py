"""Serving speed: the exported SavedModel's images/s at batch 64 and its batch-1 latency, in
float32 and bfloat16 (--precision at export), against the Keras model's predict in the same run
(ResNet50 at 224x112, random weights).

  python benchmarks/serving.py [--backbone=resnet50] [--repeats=5]
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import np, tf, timed  # noqa: E402

from reid_tf import config as C
from reid_tf import export_lib  # noqa: E402
from reid_tf import model as model_lib  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = C.RunConfig(model=C.ModelConfig(backbone=args.backbone, backbone_weights="none"))
    model = model_lib.build_run_model(config, "none")
    h, w = config.data.image_height, config.data.image_width
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        signatures = {
            f"savedmodel {p}": tf.saved_model.load(export_lib.export_saved_model(
                model, config, tmp, i, 0, precision=p)).signatures["serving_default"]
            for i, p in enumerate(("float32", "bfloat16"))}
        for batch in (64, 1):
            x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, h, w, 3)).astype(np.float32))
            reps = args.repeats if batch == 64 else 10 * args.repeats
            for kind, signature in signatures.items():
                results[(kind, batch)] = timed(
                    lambda x=x, s=signature: s(images=x)["embeddings"].numpy(), reps)
            results[("keras", batch)] = timed(
                lambda x=x: model.predict(x, batch_size=64, verbose=0), reps)
    for kind in (*signatures, "keras"):
        print(f"{kind:19} batch 64: {64 / results[(kind, 64)]:7.1f} images/s;"
              f" batch 1 latency {results[(kind, 1)] * 1000:7.1f} ms")
    speedup = results[("keras", 64)] / results[("savedmodel float32", 64)]
    latency = results[("savedmodel float32", 1)] / results[("keras", 1)]
    print(f"SavedModel / Keras predict: throughput {speedup:.2f}x, batch-1 latency {latency:.2f}x")
    bf16 = results[("savedmodel float32", 64)] / results[("savedmodel bfloat16", 64)]
    bf16_latency = results[("savedmodel float32", 1)] / results[("savedmodel bfloat16", 1)]
    print(f"SavedModel bfloat16 / float32: throughput {bf16:.2f}x, batch-1 speed {bf16_latency:.2f}x")


if __name__ == "__main__":
    main()
