"""An ImageNet stand-in: ResNet50 pretrained from scratch as a classifier of clothing attributes on
a synthetic population of its own, written as a backbone weights file that
`--backbone_weights=PATH` takes exactly as it takes keras.applications' ImageNet file.

    python benchmarks/imagenet_standin.py --output=runs/log/standin [--steps=1500]

The task: four attributes of each person, one softmax each: the colour names of the top and the
bottom (each RGB channel dark or light: 8 colours each), the top's pattern (4) and the accessory
(4). Like ImageNet's categories they are generic visual properties a re-ID network needs but not
identities: many people share each combination (8 x 8 x 4 x 4 = 1024), while identities differ
in exact colours, stripe period, proportions and the accessory's colour. So features pretrained
on them help re-identification without already solving it. The population (identities, cameras)
is drawn from its own seed; none of it is in the re-identification set.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from reid_tf import backbones, data, synthetic  # noqa: E402
from reid_tf import model as model_lib  # noqa: E402

WEIGHTS_FILE = "resnet50_standin.weights.h5"


def attribute_dataset(csv_path: str, height: int, width: int, batch: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled (images, {attribute: class}) batches, augmented as the log's rows are."""
    root = os.path.dirname(csv_path)
    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = [os.path.join(root, r["file"]) for r in rows]
    labels = {k: np.array([int(r[k]) for r in rows], np.int32) for k in synthetic.ATTRIBUTES}

    def load(index, example):
        path, targets = example
        image = data.decode_image(tf.io.read_file(path))
        pair = tf.stack([tf.constant(seed, tf.int64), index])
        return data.augment_image(image, height, width, "basic", pair), targets

    return (tf.data.Dataset.from_tensor_slices((paths, labels)).repeat().shuffle(4096, seed=seed)
            .enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def attribute_classifier(height: int, width: int) -> tuple[keras.Model, keras.Model]:
    """(classifier, its ResNet50 backbone): pixels -> ResNet50 -> avg pool -> one softmax per
    attribute; the backbone's preprocessing inside, as in every reid_tf model."""
    inputs = keras.Input((height, width, 3))
    x = model_lib.PixelPreprocessing("caffe")(inputs)
    backbone = backbones.build_backbone("resnet50", "none", (height, width, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    outputs = {k: keras.layers.Dense(n, name=k)(x) for k, n in synthetic.ATTRIBUTES.items()}
    return keras.Model(inputs, outputs, name="attribute_classifier"), backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder for the population and the weights file")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ids", type=int, default=3000, help="people of the stand-in population")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=101, help="the population's own seed")
    args = parser.parse_args()
    weights = os.path.join(args.output, WEIGHTS_FILE)
    if os.path.exists(weights):
        print(f"{weights} exists: left as it is")
        return
    start = time.time()
    csv_path = os.path.join(args.output, "attributes.csv")
    if not os.path.exists(csv_path):
        synthetic.make_attribute_set(args.output, num_ids=args.ids, seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    classifier, backbone = attribute_classifier(args.height, args.width)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, args.steps, alpha=0.0, warmup_target=1e-3, warmup_steps=args.steps // 20)
    classifier.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss={k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in synthetic.ATTRIBUTES},
        metrics={k: ["accuracy"] for k in synthetic.ATTRIBUTES})
    train = attribute_dataset(csv_path, args.height, args.width, args.batch, args.seed)
    history = classifier.fit(train, steps_per_epoch=max(args.steps // 10, 1), epochs=10, verbose=2)
    last = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    # Saved as keras.applications lays the network out, with no run's name or size attached: it
    # loads at any input size, as ImageNet weights do.
    plain = backbones.plain_backbone("resnet50", (args.height, args.width, 3))
    plain.set_weights(backbone.get_weights())
    plain.save_weights(weights + ".tmp.weights.h5")
    os.replace(weights + ".tmp.weights.h5", weights)
    summary = {"task": {k: f"{n} classes" for k, n in synthetic.ATTRIBUTES.items()}, "people": args.ids,
               "images": args.ids * 4, "steps": args.steps, "batch": args.batch, "seed": args.seed,
               "input": f"{args.height}x{args.width}", "final_training_metrics": last,
               "seconds": round(time.time() - start)}
    with open(os.path.join(args.output, "standin.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
