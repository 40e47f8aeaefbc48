"""Gallery search inside TF Serving: `--format=search --index=OUT [--k=K]` writes a SavedModel whose
signatures `search` (float32 pixels, as `serving_default`) and `search_bytes` (JPEG/PNG bytes)
embed the query images and return `indices` (rows of the index, in its order), `paths` and
`distances` (Euclidean) of the k nearest gallery entries, nearest first. The gallery's embeddings
and paths are variables of the SavedModel, from an index that tools/gallery.py made with the same
model; the exact top-k is a loop of matrix products over blocks of the gallery."""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from reid_tf import export_common, exported, gallery, versions
from reid_tf import model as model_lib
from reid_tf.images import checked_image_bytes, load_eval_image
from reid_tf.signatures import request_limit
from reid_tf.versions import ExportError

BLOCK = 1 << 16  # gallery rows a matrix product covers


class SearchModule(tf.Module):
    """The model, the gallery, and the two search signatures."""

    def __init__(self, model, index: gallery.Index, k: int, height: int, width: int, crop: str,
                 max_images: int, max_pixels: int, config_path: str, match: float | None = None):
        super().__init__()
        self.model_variables = model_lib.tracked_variables(model)  # as ServingModule: the variables, not the layers
        count, dim = index.embeddings.shape
        blocks = -(-count // BLOCK)
        padded = np.zeros((blocks * BLOCK if blocks > 1 else count, dim), np.float32)
        padded[:count] = index.embeddings
        self.gallery = tf.Variable(padded, trainable=False, name="gallery")
        self.squares = tf.Variable(np.square(padded).sum(1), trainable=False, name="gallery_squares")
        self.paths = tf.Variable(index.paths.astype(object), trainable=False, name="gallery_paths", dtype=tf.string)
        self.config_file = tf.saved_model.Asset(config_path)
        block, k = min(BLOCK, len(padded)), min(k, count)

        def top_k(queries):
            q_sq = tf.reduce_sum(tf.square(queries), axis=1, keepdims=True)
            best_d = tf.fill([tf.shape(queries)[0], k], np.inf)
            best_i = tf.zeros([tf.shape(queries)[0], k], tf.int64)
            for b in tf.range(len(padded) // block, dtype=tf.int64):  # a tf.while_loop under tf.function
                rows = tf.range(b * block, (b + 1) * block)
                g, g_sq = tf.gather(self.gallery, rows), tf.gather(self.squares, rows)
                d = tf.maximum(q_sq + g_sq[None, :] - 2.0 * tf.matmul(queries, g, transpose_b=True), 0.0)
                d = tf.where(rows[None, :] < count, d, np.inf)  # the padding never wins
                cand_d = tf.concat([best_d, d], axis=1)
                cand_i = tf.concat([best_i, tf.broadcast_to(rows[None, :], tf.shape(d))], axis=1)
                top = tf.math.top_k(-cand_d, k)  # equal distances: the earlier candidate, the lower index
                best_d, best_i = -top.values, tf.gather(cand_i, top.indices, batch_dims=1)
            out = {"indices": best_i, "paths": tf.gather(self.paths, best_i), "distances": tf.sqrt(best_d)}
            if match is not None:  # the calibration's threshold: same person when distance <= it
                out["match"] = out["distances"] <= match
            return out

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, "images")])
        def search(images):
            with tf.control_dependencies([request_limit(tf.shape(images)[0], max_images)]):
                embeddings = tf.cast(model_lib.embeddings_of(model(images, training=False)), tf.float32)
            return top_k(embeddings)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "image_bytes")])
        def search_bytes(image_bytes):
            with tf.control_dependencies([request_limit(tf.size(image_bytes), max_images)]):
                pixels = tf.map_fn(lambda c: load_eval_image(checked_image_bytes(c, max_pixels), height, width, crop),
                                   image_bytes, fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
            return search(pixels)

        self.search, self.search_bytes = search, search_bytes


def export_search(model, config, index_dir: str, export_dir: str, version: int, step: int, k: int = 10,
                  overwrite: bool = False, max_images: int = 256, max_pixels: int = 4096 * 4096,
                  gate: dict | None = None) -> str:
    """Write DIR/<version>/, the search SavedModel over the index `index_dir`; with a calibration's
    `gate` (calibration.for_model) it also returns `match`."""
    dim = model_lib.embeddings_of(model.output).shape[-1]
    metadata = export_common.export_metadata(config, step, dim, max_images, max_pixels)
    try:
        index = gallery.load(index_dir, exported.identity_of(metadata))
    except gallery.GalleryError as e:
        raise ExportError(str(e)) from None
    metadata.update(format="search", k=int(min(k, index.meta["count"])), gallery_size=int(index.meta["count"]),
                    index=os.path.abspath(index_dir), outputs="indices (rows of the index), paths, distances"
                    " (Euclidean), nearest first" + (", match (distance <= the threshold)" if gate else ""))
    if gate:
        metadata["threshold"] = {"name": gate["name"], "distance": gate["distance"]}
    clone = export_common.copy_in(model, config)

    def write(folder):
        staged = os.path.join(os.path.dirname(folder), "config-asset")
        tf.io.gfile.makedirs(staged)
        config_path = os.path.join(staged, exported.METADATA)
        with tf.io.gfile.GFile(config_path, "w") as f:
            f.write(json.dumps(metadata, indent=2, sort_keys=True))
        module = SearchModule(clone, index, k, config.data.image_height, config.data.image_width, config.data.crop,
                              max_images, max_pixels, config_path, gate["distance"] if gate else None)
        tf.saved_model.save(module, folder, signatures={"search": module.search, "search_bytes": module.search_bytes},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))

    return versions.write_version(export_dir, version, overwrite, write)
