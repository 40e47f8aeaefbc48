"""The synthetic Market-1501 (`reid_tf.synthetic`), generated on first use into a cache folder."""

from __future__ import annotations

import os

from absl import logging

from reid_tf.datasets.market import load_market1501
from reid_tf.datasets.records import Record
from reid_tf.datasets.registry import register
from reid_tf.synthetic import make_synthetic_market


def synthetic_cache_dir(num_ids: int, domain: str = "default") -> str:
    """Where the generated synthetic dataset lives between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "reid_tf", f"synthetic-v1-{num_ids}ids" if domain == "default"
                        else f"synthetic-v1-{domain}-{num_ids}ids")


def ensure_synthetic(folder: str, num_ids: int, domain: str = "default") -> None:
    """Generate the synthetic dataset into `folder` unless it is already complete there."""
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return
    logging.info("generating the synthetic dataset (%d identities, %s domain) in %s", num_ids, domain, folder)
    make_synthetic_market(folder, num_ids=num_ids, seed=0, domain=domain)
    with open(done, "w") as f:
        f.write("ok\n")


@register("synthetic", "empty = the cache folder ~/.cache/reid_tf (or a folder to generate it into)",
          "generated on first use (--synthetic_ids identities)", needs_folder=False)
def _synthetic(folder: str, cfg) -> dict[str, list[Record]]:
    folder = folder or synthetic_cache_dir(cfg.synthetic_ids, cfg.synthetic_domain)
    ensure_synthetic(folder, cfg.synthetic_ids, cfg.synthetic_domain)
    return load_market1501(folder, "synthetic")
