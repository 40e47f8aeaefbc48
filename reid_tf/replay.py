"""Recorded batches as the trainer's input (--replay_batches): a training trace fed step by step,
the same batches another trainer (the 2017 original) was fed, for comparing their steps."""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import tensorflow as tf

from reid_tf.errors import ReidError


class ReplayError(ReidError, ValueError):
    """A batches file that cannot be replayed; the message is one line naming the file."""


@dataclasses.dataclass(frozen=True)
class Batches:
    """The batches of a replay file: images [steps, B, H, W, 3] float32 0-255, pids [steps, B]."""

    path: str
    images: np.ndarray
    pids: np.ndarray

    @classmethod
    def read(cls, path: str, batch: int, height: int, width: int) -> Batches:
        """The file's batches, checked against the run's P*K and image size."""
        try:
            with np.load(path) as arrays:
                missing = [k for k in ("images", "pids") if k not in arrays.files]
                if missing:
                    raise ReplayError(f"--replay_batches={path} has no {missing[0]!r} array (it needs images"
                                      " [steps, P*K, H, W, 3] and pids [steps, P*K])")
                images, pids = arrays["images"], arrays["pids"]
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            if isinstance(e, ReplayError):
                raise
            raise ReplayError(f"--replay_batches={path} cannot be read as a .npz ({e})") from None
        expected = f"[steps, {batch}, {height}, {width}, 3]"
        if images.ndim != 5 or images.shape[1:] != (batch, height, width, 3):
            raise ReplayError(f"--replay_batches={path}: images are {list(images.shape)}, the run needs {expected}"
                              " (P*K and --image_height/--image_width)")
        if pids.shape != images.shape[:2]:
            raise ReplayError(f"--replay_batches={path}: pids are {list(pids.shape)}, not {list(images.shape[:2])}")
        images = images.astype(np.float32)
        if not np.isfinite(images).all() or images.min() < 0 or images.max() > 255:
            raise ReplayError(f"--replay_batches={path}: images must be finite pixels in [0, 255]"
                              f" (found {images.min():.4g} to {images.max():.4g})")
        return cls(path, images, pids.astype(np.int64))

    @property
    def steps(self) -> int:
        return len(self.images)

    def dataset_fn(self, num_replicas: int):
        """The `distribute_datasets_from_function` input: each pipeline yields its replicas' slices of
        every batch, in replica order, so the gathered batch is the recorded one."""
        def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            per_pipeline = num_replicas // ctx.num_input_pipelines
            share = self.images.shape[1] // num_replicas
            first = ctx.input_pipeline_id * per_pipeline * share
            cut = slice(first, first + per_pipeline * share)
            images, pids = self.images[:, cut], self.pids[:, cut]
            shape = (self.steps * per_pipeline, share)
            return tf.data.Dataset.from_tensor_slices((images.reshape(shape + images.shape[2:]),
                                                       pids.reshape(shape)))
        return fn
