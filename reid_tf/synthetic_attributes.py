"""A population of synthetic people with their attributes (the colour names of the top and the
bottom, the top's pattern, the accessory): what the ImageNet stand-in is pretrained to classify."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from reid_tf.synthetic import _ACCESSORIES, _PATTERNS, _camera, _identity, render_pedestrian

# Coarse attributes of a synthetic person, each a class: the colour names of the top and the
# bottom (each RGB channel dark or light: 8 colours), the top's pattern and the accessory.
ATTRIBUTES = {"top": 8, "bottom": 8, "pattern": len(_PATTERNS), "accessory": len(_ACCESSORIES)}


def attribute_labels(ident: dict) -> dict[str, int]:
    """The class of each of `ATTRIBUTES` for an identity."""
    def colour(rgb):
        light = np.asarray(rgb) > 127.5
        return int(light[0] * 4 + light[1] * 2 + light[2])

    return {"top": colour(ident["top"]), "bottom": colour(ident["bottom"]),
            "pattern": _PATTERNS.index(ident["pattern"]), "accessory": _ACCESSORIES.index(ident["accessory"])}


def make_attribute_set(output_dir: str, num_ids: int = 2000, images_per_id: int = 4,
                       num_cameras: int = 8, height: int = 128, width: int = 64, seed: int = 101) -> str:
    """A population of people of its own (identities and cameras drawn from `seed`) with their
    attributes: images in `output_dir/images/` and `output_dir/attributes.csv` (file, then one
    column per attribute). Returns the CSV's path."""
    rng = np.random.default_rng(seed)
    cameras = [_camera(rng) for _ in range(num_cameras)]
    folder = os.path.join(output_dir, "images")
    os.makedirs(folder, exist_ok=True)
    lines = ["file," + ",".join(ATTRIBUTES)]
    for person in range(num_ids):
        ident = _identity(rng)
        labels = attribute_labels(ident)
        for i in range(images_per_id):
            name = f"{person:05d}_{i}.jpg"
            img = render_pedestrian(ident, cameras[rng.integers(num_cameras)], rng, height, width)
            Image.fromarray(img).save(os.path.join(folder, name), quality=92)
            lines.append(f"images/{name}," + ",".join(str(labels[k]) for k in ATTRIBUTES))
    path = os.path.join(output_dir, "attributes.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
