"""reid_tf: TriNet-style person re-identification (batch-hard triplet loss) for TF2 / Keras 3."""

import os
import sys

__version__ = "0.1.0"

# TensorFlow's C++ INFO and WARNING records are noise on the console. On a Linux machine without
# NVIDIA's driver, its only ERROR record is "failed call to cuInit", which reads like a failure:
# keep that one off too. Set before TensorFlow loads, with the lines its library prints while it
# loads (which no setting reaches) dropped at the same levels; a user's own setting wins.
_NO_GPU_DRIVER = sys.platform.startswith("linux") and not os.path.exists("/proc/driver/nvidia")
_LEVEL = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if _NO_GPU_DRIVER else "2")
if _LEVEL.strip() in ("2", "3"):
    from reid_tf import console

    console.quiet_tensorflow_load()
