"""The report's words for settings (tools/report.py reads them through each declaration in
config.py), and the checks a few declarations name."""

from __future__ import annotations

import os


def dataset_names() -> tuple:
    from reid_tf import datasets  # the registry: each dataset module registers its name

    return datasets.REGISTRY.names()


def backbone_names() -> tuple:
    from reid_tf import backbones  # the registry: each backbone registered beside its builder

    return backbones.REGISTRY.names()


def torch_named(backbone: str) -> bool:
    from reid_tf import backbones

    return backbone in backbones.torch_named()


def domain_names() -> tuple:
    from reid_tf import synthetic  # the registry of the generator's domains

    return synthetic.DOMAINS.names()


def augmentation_names() -> tuple:
    from reid_tf import augment  # the registry: each augmentation registered beside its code

    return augment.AUGMENTATIONS.names()


def datasets_ok(value: str) -> bool:
    return all(name.strip() in dataset_names() for name in value.split(","))


def margin_ok(value: str) -> bool:
    try:
        return value == "soft" or float(value) >= 0
    except ValueError:
        return False


def number(x: float) -> str:
    return f"{x:g}"


def weights(m) -> str:
    w = m.backbone_weights
    return "from scratch" if w == "none" else w if w == "imagenet" else os.path.basename(w)


def head(head: str, c) -> str:
    d = c.model.embedding_dim
    return {"fc1024": f"fc1(1024)-BN-ReLU-fc2({d})", "fc": f"fc({d})", "fc512": "fc(512)-BN-ReLU",
            "none": "pooled feature"}[head]


def head_init(head_init: str, c) -> str:
    m = c.model
    if head_init == "keras_default":
        return "Keras head init"
    sigmas = number(m.fc1_init_stddev) if m.head == "fc" else f"{number(m.fc1_init_stddev)}/{number(m.fc2_init_stddev)}"
    return f"head init N(0, {sigmas})"


def rate(rate: float, c) -> str:
    o = c.optimizer
    if o.lr_schedule == "piecewise":
        return (f"Adam {' → '.join(number(v) for v in o.lr_values)} at steps "
                + ", ".join(str(b) for b in o.lr_boundaries))
    if o.lr_schedule == "cosine":
        return f"Adam {number(rate)}, cosine to 0 over {o.decay_steps} steps"
    if o.decay_rate == 1.0:
        return f"Adam {number(rate)}, constant"
    return (f"Adam {number(rate)}, decay {number(o.decay_rate)} every {o.decay_steps} steps"
            + (" (staircase)" if o.staircase else ""))


def source_name(checkpoint: str) -> str:
    """A warm start's source as 'RUN' or 'RUN step N' (from a folder or a checkpoint prefix)."""
    source = checkpoint.rstrip("/")
    prefix, _, number = os.path.basename(source).rpartition("-")
    if prefix == "ckpt" and number.isdigit():  # RUN/checkpoints/ckpt-N
        folder = os.path.dirname(source)
        folder = os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
        return f"{os.path.basename(folder)} step {number}"
    return os.path.basename(source)
