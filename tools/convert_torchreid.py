"""Convert a PyTorch re-ID checkpoint (torchreid's OSNet, OSNet-IBN, OSNet-AIN; torchvision's, BoT's or
fast-reid's ResNet-50) into a backbone weights file that --backbone_weights=FILE takes.

  python tools/convert_torchreid.py osnet_x1_0_market.pth.tar --backbone=osnet_x1_0 --output=osnet.weights.h5
  python tools/convert_torchreid.py CHECKPOINT --backbone=osnet_ain_x1_0 --output=B.weights.h5 \\
      --head=fc512 --head_output=H.weights.h5     # then --head=fc512 --head_weights=H.weights.h5

Weights are mapped by name; `module.` (and BoT's `base.`, fast-reid's `backbone.`) prefixes are
stripped, the training-only classifier is left out (said in one line), and a checkpoint of
another architecture is refused in one line naming both. Reading the checkpoint needs torch.
"""

import sys

from absl import app, flags

from reid_tf import console

console.quiet()  # before the flags: the backbone registry's module imports TensorFlow
from reid_tf import backbones  # noqa: E402
from reid_tf import flags as reid_flags  # noqa: E402
from reid_tf.errors import ReidError  # noqa: E402

reid_flags.group("Conversion")
flags.DEFINE_enum("backbone", None, backbones.torch_named(),
                  "The architecture the checkpoint holds.", required=True)
flags.DEFINE_string("output", None, "The backbone weights file to write (.weights.h5).", required=True)
flags.DEFINE_enum("head", "none", ("none", "fc512"), "fc512: also convert torchreid's 512-d fc (Linear +"
                  " BatchNorm1d), into --head_output.")
flags.DEFINE_string("head_output", None, "With --head=fc512: the head weights file to write (--head_weights=FILE"
                    " of a --head=fc512 run takes it).")
reid_flags.required("backbone", "output")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: python tools/convert_torchreid.py CHECKPOINT --backbone=NAME --output=FILE.weights.h5")
    console.quiet(timestamps=False)
    from reid_tf import torch_convert

    try:
        for line in torch_convert.convert(argv[1], FLAGS.backbone, FLAGS.output, FLAGS.head, FLAGS.head_output):
            print(line)
    except ReidError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
