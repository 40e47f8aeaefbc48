"""An ImageNet stand-in, pretrained as ImageNet weights are: ResNet-50 v2 from scratch as a classifier
of clothing attributes on a synthetic population of its own, at several input sizes, with scale
and colour augmentation, written as a backbone weights file that `--backbone_weights=PATH` takes
exactly as it takes keras.applications' ImageNet file.

    python benchmarks/imagenet_standin.py --output=runs/log/standin [--steps=2000] [--sizes=64x32,72x36]

The task: four attributes of each person, one softmax each: the colour names of the top and the
bottom (each RGB channel dark or light: 8 colours each), the top's pattern (4) and the accessory
(4). Like ImageNet's categories they are generic visual properties a re-ID network needs but not
identities: many people share each combination (8 x 8 x 4 x 4 = 1024), while identities differ
in exact colours, stripe period, proportions and the accessory's colour. The population
(identities, cameras) is drawn from its own seed; none of it is in the re-identification set.
As ImageNet training does, each batch comes at one of the sizes, each image a random crop of
random scale, flipped, and shifted in hue and brightness. Its preprocessing is ResNet50V2's own
([-1, 1]), as slim's resnet_v2_50 checkpoint expects.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from reid_tf import backbones, console, images, synthetic_attributes, training_log
from reid_tf import model as model_lib

WEIGHTS_FILE = "resnet50v2_standin.weights.h5"
BACKBONE = "resnet50v2"


def augmented(image: tf.Tensor, height: int, width: int, seed: tf.Tensor) -> tf.Tensor:
    """ImageNet-style: a random crop of 60-100% of the area (aspect jittered), resized, flipped,
    hue +-0.05 of a turn and brightness +-0.1 of full scale."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    box = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), seeds[0], area_range=(0.6, 1.0),
        aspect_ratio_range=(0.8, 1.25), use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, box[0], box[1])
    image = images.resize(image, height, width)
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = tf.image.stateless_random_hue(image / 255.0, 0.05, seeds[2]) * 255.0
    image = tf.image.stateless_random_brightness(image, 25.5, seeds[3])
    return tf.clip_by_value(image, 0.0, 255.0)


def attribute_dataset(csv_path: str, sizes: list[tuple[int, int]], batch: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled (images, {attribute: class}) batches, each batch at one of `sizes` in turn."""
    root = os.path.dirname(csv_path)
    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = [os.path.join(root, r["file"]) for r in rows]
    labels = {k: np.array([int(r[k]) for r in rows], np.int32) for k in synthetic_attributes.ATTRIBUTES}
    decoded = (tf.data.Dataset.from_tensor_slices((paths, labels)).repeat().shuffle(4096, seed=seed)
               .map(lambda p, t: (images.decode_image(tf.io.read_file(p)), t), num_parallel_calls=tf.data.AUTOTUNE))

    def batch_at(size_index, dataset):
        height, width = sizes[size_index]
        return (dataset.enumerate().map(
            lambda i, x: (augmented(x[0], height, width, tf.stack([tf.constant(seed + size_index, tf.int64), i])),
                          x[1]), num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True))

    streams = [batch_at(i, decoded.shard(len(sizes), i)) for i in range(len(sizes))]
    return tf.data.Dataset.sample_from_datasets(streams, seed=seed, stop_on_empty_dataset=True).prefetch(2)


def attribute_classifier() -> tuple[keras.Model, keras.Model]:
    """(classifier, its ResNet-50 v2 backbone) of any input size: pixels -> [-1, 1] -> ResNet50V2 ->
    avg pool -> one softmax per attribute."""
    inputs = keras.Input((None, None, 3))
    x = model_lib.PixelPreprocessing(backbones.preprocessing(BACKBONE))(inputs)
    backbone = backbones.plain_backbone(BACKBONE, (None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    outputs = {k: keras.layers.Dense(n, name=k)(x) for k, n in synthetic_attributes.ATTRIBUTES.items()}
    return keras.Model(inputs, outputs, name="attribute_classifier"), backbone


def fingerprint(model: keras.Model) -> str:
    """The first 16 hex digits of the sha256 of the weights' values, in order: equal files, equal prints."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w, np.float32).tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder for the population and the weights file")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ids", type=int, default=3000, help="people of the stand-in population")
    parser.add_argument("--sizes", default="64x32,72x36", help="input sizes HxW, a batch at each in turn")
    parser.add_argument("--seed", type=int, default=101, help="the population's own seed")
    args = parser.parse_args()
    console.quiet()
    weights = os.path.join(args.output, WEIGHTS_FILE)
    if os.path.exists(weights):
        print(f"{weights} exists: left as it is")
        return
    start = time.time()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    csv_path = os.path.join(args.output, "attributes.csv")
    if not os.path.exists(csv_path):
        synthetic_attributes.make_attribute_set(args.output, num_ids=args.ids, seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()  # the same file in every session, so summaries from several agree
    classifier, backbone = attribute_classifier()
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, args.steps, alpha=0.0, warmup_target=1e-3, warmup_steps=args.steps // 20)
    classifier.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss={k: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for k in synthetic_attributes.ATTRIBUTES},
        metrics={k: ["accuracy"] for k in synthetic_attributes.ATTRIBUTES})
    train = attribute_dataset(csv_path, sizes, args.batch, args.seed)
    history = classifier.fit(train, steps_per_epoch=max(args.steps // 10, 1), epochs=10, verbose=2)
    last = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    # Saved as keras.applications lays the network out, with no run's name or size attached: it
    # loads at any input size, as ImageNet weights do.
    plain = backbones.plain_backbone(BACKBONE, (sizes[0][0], sizes[0][1], 3))
    plain.set_weights(backbone.get_weights())
    plain.save_weights(weights + ".tmp.weights.h5")
    os.replace(weights + ".tmp.weights.h5", weights)
    summary = {"backbone": BACKBONE, "task": {k: f"{n} classes" for k, n in synthetic_attributes.ATTRIBUTES.items()},
               "people": args.ids, "images": args.ids * 4, "steps": args.steps, "batch": args.batch,
               "seed": args.seed, "sizes": args.sizes, "final_training_metrics": last,
               "fingerprint": fingerprint(plain), "cpu": training_log.cpu_kind(),
               **training_log.software(),
               "seconds": round(time.time() - start)}
    with open(os.path.join(args.output, "standin.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
