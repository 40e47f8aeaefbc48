"""The appearance model of a tracker: `--format=tracker` writes DIR/<step>/ as boxmot's ReID backends
read it, with no code on the tracker's side.

- `<backbone>.onnx`: one input `images`, NCHW float32 [batch, 3, H, W] (batch dynamic, H x W
  static), RGB scaled to [0, 1] and standardised with ImageNet's mean and std, as boxmot's crop
  pipeline makes it; an adapter inside the graph turns that back into the pixels the model takes
  (its own preprocessing follows, whatever the backbone). One output, `embeddings`, the feature
  validation scores (after the BNNeck with --neck_feat=after); boxmot L2-normalises it.
- `<backbone>.onnx.metadata.json`: boxmot's artifact sidecar (model_name, img_size, preprocess).
- `<backbone>_raw255.onnx`: RGB pixels in [0, 255] in, every normalisation inside: for DeepStream
  (whose nvinfer has one scale factor, no per-channel std) and fast-reid-style consumers;
  `deepstream_sgie.txt` holds the nvinfer keys.
- `<backbone>.tflite` (with the LiteRT extra): NHWC float32 in and out, dynamic batch, ImageNet-
  standardised input as boxmot's LiteRT backend feeds it; int8 inside with --quantize=int8.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from reid_tf import convert, export_common, exported, versions
from reid_tf.constants import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, ONNX_OPSET
from reid_tf.runtimes import standardised, tracker_onnx_run  # noqa: F401 - public here too
from reid_tf.versions import ExportError


def adapter(mode: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(scale, offset, reversed) so that `offset + scale * x[..., ::-1 if reversed]` is what the
    backbone's own preprocessing (`model.PixelPreprocessing` mode) makes of the pixels whose
    ImageNet-standardised RGB is x: one per-channel affine map, which int8 quantises as one op."""
    std, mean = np.array(IMAGENET_STD), np.array(IMAGENET_MEAN)
    if mode == "torch":  # the backbone's own input: nothing to undo
        return np.ones(3), np.zeros(3), False
    if mode == "tf":  # pixels / 127.5 - 1
        return 2 * std, 2 * mean - 1, False
    if mode == "unit":
        return std, mean, False
    if mode == "caffe":  # BGR pixels less the BGR mean
        return 255 * std[::-1], 255 * mean[::-1] - np.array(CAFFE_MEAN_BGR), True
    return 255 * std, 255 * mean, False  # "none": the network takes pixels and normalises inside itself


def tracker_function(model, height: int, width: int, layout: str):
    """The model behind the input a tracker sends: "nchw" (ImageNet-standardised), "nhwc"
    (standardised) or "raw255" (NCHW pixels in [0, 255]); frozen, its one output `embeddings`."""
    from reid_tf import model as model_lib

    shape = [None, height, width, 3] if layout == "nhwc" else [None, 3, height, width]
    preprocessing = model.get_layer("preprocessing")
    # The network past its preprocessing; its embeddings only (a dict of outputs sharing one tensor,
    # as BNNeck's with --neck_feat=after, cannot be cut so in Keras 3).
    after = keras.Model(preprocessing.output, model_lib.embeddings_of(model.output)) if layout != "raw255" else model
    scale, offset, flip = adapter(preprocessing.mode)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, "images")], autograph=False)
    def tracker(images):
        x = images if layout == "nhwc" else tf.transpose(images, [0, 2, 3, 1])
        if layout != "raw255":  # the standardisation undone and the backbone's own done, as one affine map
            x = tf.constant(offset, tf.float32) + tf.constant(scale, tf.float32) * (x[..., ::-1] if flip else x)
        return {"embeddings": tf.cast(model_lib.embeddings_of(after(x, training=False)), tf.float32)}

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(tracker.get_concrete_function())

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, "images")], autograph=False)
    def named(images):
        return {"embeddings": frozen(images)[0]}

    return named


def sidecar(backbone: str, height: int, width: int, dim: int, meta: dict) -> dict:
    """boxmot's artifact metadata (reid/core/artifacts.py, schema 1), with reid_tf's own beside it."""
    return {"schema_version": 1, "model_name": backbone, "img_size": [height, width], "preprocess": "resize",
            "model_kwargs_schema_version": 1, "model_kwargs": {"img_size": [height, width], "feat_dim": dim},
            "num_classes": None,
            "input": {"name": "images", "layout": "NCHW", "color": "RGB", "scale": "1/255", "mean": IMAGENET_MEAN,
                      "std": IMAGENET_STD},
            "output": "embeddings: the feature validation scores (not normalised)", "reid_tf": meta}


def deepstream_config(file: str, height: int, width: int) -> str:
    """The keys of DeepStream's nvinfer (a secondary GIE on person crops) for the raw-pixel model."""
    return "\n".join(["[property]", f"onnx-file={file}", "net-scale-factor=1.0", "offsets=0;0;0",
                      "model-color-format=0", f"infer-dims=3;{height};{width}", "network-input-order=0",
                      "network-type=100", "output-tensor-meta=1", "process-mode=2", "batch-size=16", ""])


def export_tracker(model, config, export_dir: str, version: int, step: int, quantize: str = "none",
                   check_images: np.ndarray | None = None, calibration: np.ndarray | None = None,
                   overwrite: bool = False, with_tflite: bool | None = None,
                   gate: dict | None = None) -> tuple[str, dict]:
    """Write the tracker files, each checked in its own runtime against the model on
    `check_images`; returns the folder and each file's smallest cosine similarity. A calibration's
    `gate` (calibration.for_model) goes into the sidecar as the cosine-distance gate of boxmot's trackers."""
    height, width, backbone = config.data.image_height, config.data.image_width, config.model.backbone
    embed = convert.embedding_function(model, height, width)  # the reference: the model on pixels
    if check_images is None:
        check_images = np.random.default_rng(0).uniform(0, 255, (8, height, width, 3)).astype(np.float32)
    reference = embed(tf.constant(check_images))["embeddings"].numpy()
    files, checks = {}, {}
    try:
        for name, layout, feed in ((f"{backbone}.onnx", "nchw", standardised(check_images)),
                                   (f"{backbone}_raw255.onnx", "raw255", check_images.transpose(0, 3, 1, 2))):
            files[name] = convert.to_onnx(tracker_function(model, height, width, layout), ONNX_OPSET)
            checks[name] = _checked(tracker_onnx_run(files[name]), feed, reference, "none", name)
        if with_tflite is None:
            with_tflite = _has_litert()
        if with_tflite:
            name = f"{backbone}.tflite"
            nhwc = standardised(check_images).transpose(0, 2, 3, 1)
            nhwc_calibration = None if calibration is None else standardised(calibration).transpose(0, 2, 3, 1)
            files[name] = convert.to_tflite(tracker_function(model, height, width, "nhwc"), quantize, nhwc_calibration)
            checks[name] = _checked(convert.tflite_embed_fn(files[name]), nhwc, reference, quantize, name)
    except convert.ConversionError as e:
        raise ExportError(str(e)) from None
    meta = export_common.export_metadata(config, step, reference.shape[-1])
    meta.update(format="tracker", quantize=quantize, files=sorted(files), verification=checks,
                input="images: float32 NCHW [batch, 3, H, W], RGB / 255, ImageNet mean and std")
    for key in ("max_images_per_request", "max_image_pixels"):
        meta.pop(key)

    def write(folder):
        tf.io.gfile.makedirs(folder)
        for name, content in files.items():
            with tf.io.gfile.GFile(os.path.join(folder, name), "wb") as f:
                f.write(content)
        with tf.io.gfile.GFile(os.path.join(folder, f"{backbone}.onnx.metadata.json"), "w") as f:
            own = {"step": int(step)}
            if gate is not None:
                own.update(max_cos_dist=gate["cosine_distance"], threshold={
                    "name": gate["name"], "euclidean": gate["distance"], "cosine_distance": gate["cosine_distance"],
                    "conversion": gate["cosine_rule"]})
            f.write(json.dumps(sidecar(backbone, height, width, reference.shape[-1], own), indent=2))
        with tf.io.gfile.GFile(os.path.join(folder, "deepstream_sgie.txt"), "w") as f:
            f.write(deepstream_config(f"{backbone}_raw255.onnx", height, width))
        with tf.io.gfile.GFile(os.path.join(folder, exported.METADATA), "w") as f:
            f.write(json.dumps(meta, indent=2, sort_keys=True))

    return versions.write_version(export_dir, version, overwrite, write), checks


def _checked(run, feed: np.ndarray, reference: np.ndarray, quantize: str, what: str) -> dict:
    difference = convert.compare(reference, run(feed))
    convert.check(difference, quantize, what)
    return {**difference, "images": len(feed)}


def _has_litert() -> bool:
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        return False
    return True
