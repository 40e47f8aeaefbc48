"""What the tests share: the repository's root, the tiny run configuration (the small CNN at 64x32,
P=4 x K=2) and its command-line flags, and readers of a run folder."""

from __future__ import annotations

import dataclasses
import os

from reid_tf import config as C

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_has(feature: str) -> bool:
    """Whether this CPU reports `feature` (a /proc/cpuinfo flag, such as avx512_bf16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return feature in f.read().split()
    except OSError:
        return False


def tiny_config(market_dir: str, **train_kw) -> C.RunConfig:
    """Four steps of the small CNN on the tiny synthetic Market-1501, validated every two."""
    return C.RunConfig(
        data=C.DataConfig(dataset="market1501", data_dir=market_dir, image_height=64, image_width=32,
                          return_id_num=4, image_num_every_id=2, valid_ids=2, train_eval_ids=2),
        model=C.ModelConfig(backbone="small", backbone_weights="none"),
        optimizer=C.OptimizerConfig(initial_learning_rate=1e-3),
        train=C.TrainConfig(**{"max_steps": 4, "checkpoint_every": 2, "eval_every": 2, "log_every": 1,
                               **train_kw}),
    )


def with_train(config: C.RunConfig, **kw) -> C.RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **kw))


def replaced(config: C.RunConfig, section: str, **kw) -> C.RunConfig:
    """The config with some settings of one section replaced."""
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **kw)})


def tiny_flags(market_dir: str, out, **extra) -> list[str]:
    """Command-line flags equal to tiny_config(market_dir) with trainable=head."""
    values = {"dataset": "market1501", "data_dir": market_dir, "image_height": 64, "image_width": 32,
              "backbone": "small", "backbone_weights": "none", "trainable": "head",
              "return_id_num": 4, "image_num_every_id": 2, "valid_ids": 2, "train_eval_ids": 2,
              "initial_learning_rate": 1e-3, "max_steps": 4, "checkpoint_every": 2, "eval_every": 2,
              "log_every": 1, "output_dir": str(out), **extra}
    return [f"--{k}={v}" for k, v in values.items()]


def checkpoint_steps(run_dir: str) -> list[int]:
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths] if state else []


def tensorboard_losses(out: str) -> dict[int, float]:
    """The per-step training loss a run wrote to TensorBoard (the last value of each step)."""
    import tensorflow as tf

    losses = {}
    folder = os.path.join(out, "tensorboard", "train")
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                if value.tag == "loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def png_claiming(width: int, height: int, idat: bytes | None = None) -> bytes:
    """An 8-bit grayscale PNG whose header claims width x height; its pixel data is `idat`
    (default: a few zero bytes, far fewer than the header promises)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 16) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def touch_image(path, size=(32, 64), mode="RGB"):
    """A plain grey image file (its size is width x height, as PIL counts)."""
    from PIL import Image

    Image.new(mode, size, 128).save(path)


def make_msmt17(root, version="V1"):
    """A tiny MSMT17 in its exact layout: 3 train identities (one in list_val), 2 test ones."""
    train_dir, test_dir = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}[version]
    lists = {"list_train.txt": [], "list_val.txt": [], "list_query.txt": [], "list_gallery.txt": []}
    for label, cams in ((0, (1, 3)), (1, (2, 15)), (2, (4, 5))):
        for i, cam in enumerate(cams):
            rel = f"{label:04d}/{label:04d}_{i:03d}_{cam:02d}_0303morning_{i:04d}_0.jpg"
            os.makedirs(os.path.join(root, train_dir, f"{label:04d}"), exist_ok=True)
            touch_image(os.path.join(root, train_dir, rel))
            lists["list_val.txt" if label == 2 else "list_train.txt"].append(f"{rel} {label}")
    for label, cams in ((0, (1, 2, 7)), (1, (3, 9))):
        for i, cam in enumerate(cams):
            rel = f"{label:04d}/{label:04d}_{i:03d}_{cam:02d}_0302noon_{i:04d}_1.jpg"
            os.makedirs(os.path.join(root, test_dir, f"{label:04d}"), exist_ok=True)
            touch_image(os.path.join(root, test_dir, rel))
            lists["list_query.txt" if i == 0 else "list_gallery.txt"].append(f"{rel} {label}")
    for name, lines in lists.items():
        with open(os.path.join(root, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    return str(root)
