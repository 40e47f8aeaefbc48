"""Files of TensorBoard's Embedding Projector: query and gallery embeddings, their metadata (pid,
camera, query or gallery, file) and a sprite of the crops, in the layout `tensorboard --logdir`
reads (projector_config.pbtxt beside them)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np
from PIL import Image

from reid_tf.datasets.records import Record

SPRITE_LIMIT = 8192  # TensorBoard's largest sprite, pixels a side
TILE_HEIGHTS = (64, 16)  # a crop's tile: 64x32 when the sprite has room, down to 16x8
EMBEDDINGS, METADATA, SPRITE = "embeddings.tsv", "metadata.tsv", "sprite.png"


def _sampled(num_query: int, num_gallery: int, limit: int) -> np.ndarray:
    """Indices into query + gallery: all when they fit, else every query (up to the limit) and
    the gallery evenly spread."""
    total = num_query + num_gallery
    if total <= limit:
        return np.arange(total)
    queries = np.arange(min(num_query, limit))
    rest = limit - len(queries)
    gallery = num_query + np.linspace(0, num_gallery - 1, rest).astype(int) if rest > 0 else np.zeros(0, int)
    return np.concatenate([queries, gallery])


def write_projector(folder: str, query_features: np.ndarray, query: Sequence[Record],
                    gallery_features: np.ndarray, gallery: Sequence[Record], name: str = "embeddings") -> str:
    """Write the projector files for a query and a gallery set into `folder` (any TensorFlow file
    system); returns one line saying what was written (and what was sampled, when the sprite
    could not hold every crop)."""
    if "://" not in folder:
        return _write_local(folder, query_features, query, gallery_features, gallery, name)
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="reid_tf-projector-") as local:
        said = _write_local(local, query_features, query, gallery_features, gallery, name)
        tf.io.gfile.makedirs(folder)
        for file in os.listdir(local):
            tf.io.gfile.copy(os.path.join(local, file), os.path.join(folder, file), overwrite=True)
    return said.replace(local, folder)


def _write_local(folder, query_features, query, gallery_features, gallery, name) -> str:
    from tensorboard.plugins import projector

    largest = (SPRITE_LIMIT // TILE_HEIGHTS[-1]) ** 2
    chosen = _sampled(len(query), len(gallery), largest)
    features = np.concatenate([query_features, gallery_features])[chosen]
    records = [(r, "query") for r in query] + [(r, "gallery") for r in gallery]
    records = [records[i] for i in chosen]
    side = math.ceil(math.sqrt(len(records)))
    height = max(TILE_HEIGHTS[-1], min(TILE_HEIGHTS[0], SPRITE_LIMIT // side))
    width = height // 2
    os.makedirs(folder, exist_ok=True)
    np.savetxt(os.path.join(folder, EMBEDDINGS), features, fmt="%.6g", delimiter="\t")
    with open(os.path.join(folder, METADATA), "w", encoding="utf-8") as f:
        f.write("pid\tcamera\tset\tfile\n")  # a header row: the projector's multi-column format
        f.writelines(f"{r.pid}\t{r.camid}\t{kind}\t{os.path.basename(r.path)}\n" for r, kind in records)
    sprite = Image.new("RGB", (side * width, side * height), "black")
    for i, (record, _) in enumerate(records):
        with Image.open(record.path) as image:
            sprite.paste(image.convert("RGB").resize((width, height)), (i % side * width, i // side * height))
    sprite.save(os.path.join(folder, SPRITE))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = name
    embedding.tensor_path = EMBEDDINGS
    embedding.metadata_path = METADATA
    embedding.sprite.image_path = SPRITE
    embedding.sprite.single_image_dim.extend([width, height])
    projector.visualize_embeddings(folder, config)
    kept = f"{len(records)} of {len(query) + len(gallery)} images (every query, the gallery evenly sampled)" \
        if len(records) < len(query) + len(gallery) else f"{len(records)} images"
    return (f"projector: {kept}, sprite {side * width}x{side * height} of {width}x{height} crops, in {folder}"
            f" (tensorboard --logdir {folder})")
