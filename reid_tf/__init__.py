"""reid_tf: TriNet-style person re-identification (batch-hard triplet loss) for TF2 / Keras 3.

Importing it changes nothing: the entry points set up their console (`console.quiet`).
"""

__version__ = "0.1.0"
