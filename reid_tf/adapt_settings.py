"""The settings of unsupervised adaptation to a target's cameras (Cluster Contrast, Dai et al. 2021),
declared once as every other section of config.py."""

from __future__ import annotations

from dataclasses import dataclass

from reid_tf import phrases
from reid_tf.settings import ConfigError, check_fields, declared, setting

GROUP = "Adaptation to new cameras (no target labels)"


def _target_ok(value: str) -> bool:
    return value == "" or value in phrases.dataset_names()


@dataclass(frozen=True)
class AdaptConfig:
    adapt_to: str = setting(
        "", "Adapt to this dataset's images without reading its identity labels (Cluster Contrast):"
        " a layout of --dataset's, with --adapt_data_dir; empty: no adaptation. The target's labels,"
        " where it has them, are read only for validation's purity, NMI and target_mAP.",
        check=(_target_ok, "a dataset name, or empty"), group=GROUP,
        words=lambda v, c: f"adapted to {v}" if v else "")
    adapt_data_dir: str = setting("", "The target's folder, in the layout of --adapt_to.", group=GROUP)
    adapt_after: int = setting(
        0, "Steps trained on the labeled source (--dataset) before adaptation starts; 0: adapt from the"
        " first step (from --init_checkpoint's source run, say).", lower=0, group=GROUP)
    cluster_every: int = setting(200, "Adaptation steps between re-clusterings of the target.", lower=1, group=GROUP)
    cluster_eps: float = setting(0.6, "DBSCAN's neighbourhood in k-reciprocal Jaccard distance.", lower=0.001,
                                 upper=1.0, group=GROUP)
    cluster_min_samples: int = setting(4, "DBSCAN's min_samples: the images a cluster's core needs.", lower=2,
                                       group=GROUP)
    cluster_k1: int = setting(30, "The k-reciprocal neighbours (k1) of the Jaccard distance; k2 is 6, as Cluster"
                              " Contrast's. A small target (a few images an identity) needs a smaller k1.", lower=1,
                              group=GROUP)
    cluster_camera_centred: bool = setting(
        True, "Take each camera's mean feature out before clustering, where the target's cameras are known:"
        " otherwise clusters form by camera (light, colour cast, background) more than by person.", group=GROUP)
    memory_momentum: float = setting(
        0.1, "The cluster memory keeps this share of a centroid at each update (Cluster Contrast's 0.1); the"
        " rest is the batch's mean feature of that pseudo-identity.", lower=0.0, upper=1.0, group=GROUP)
    temperature: float = setting(0.05, "The InfoNCE loss's temperature over the memory's centroids.", lower=1e-4,
                                 group=GROUP)

    def validate(self) -> None:
        check_fields(self, declared(AdaptConfig, "adapt", GROUP, "training"))
        if self.adapt_to and not self.adapt_data_dir:  # a synthetic target too: its own domain's folder
            raise ConfigError(f"--adapt_to={self.adapt_to} needs --adapt_data_dir=FOLDER (the target's images; a"
                              " synthetic domain's: tools/make_synthetic_dataset.py --domain=NAME)")
