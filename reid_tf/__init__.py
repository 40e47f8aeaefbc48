"""reid_tf: TriNet-style person re-identification (batch-hard triplet loss) for TF2 / Keras 3."""

__version__ = "0.1.0"
