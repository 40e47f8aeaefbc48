"""Turn a checkpoint written by the 2017 original (slim's resnet_v2_50 and its head fc1_add / bn1_add /
fc2_add, with TF1 Adam's slots, beta powers and global_step where present) into a run folder at
that checkpoint's step, which `python -m reid_tf.train --output_dir=RUN` continues as the original's
`train(retain_flag=False)` did, and which reid_tf.export and tools/eval.py use like any run.

  python tools/import_original.py --checkpoint=ROOT/C/seed0/check_point/model.ckpt-12 \\
      --flagfile=flags/resnet_noprocess.cfg --image_height=64 --image_width=32 --output_dir=RUN

Flags after the flagfile override it (size, P x K, decay steps, learning rate). A model that does
not match the checkpoint (another embedding size, the one-fc head) is refused in one line.
"""

import sys

from absl import app, flags

from reid_tf import config, console
from reid_tf import flags as reid_flags

reid_flags.define_settings()
reid_flags.group("Import")
flags.DEFINE_string("checkpoint", None, "The TF1 checkpoint's prefix (PREFIX.index beside it).", required=True)
flags.DEFINE_string("output_dir", None, "The run folder to write (new).", required=True)
reid_flags.required("checkpoint", "output_dir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}")
    console.quiet(timestamps=False)
    from reid_tf import original_run
    from reid_tf.errors import ReidError

    flags_text = reid_flags.flags_file([s.name for s in config.ALL_SETTINGS] + ["output_dir"])
    try:
        read = original_run.import_checkpoint(FLAGS.checkpoint, reid_flags.config_from_flags(), FLAGS.output_dir,
                                              flags_text)
    except ReidError as e:
        sys.exit(f"error: {e}")
    print(f"imported {read['variables']} variables and {read['adam_slots']} pairs of Adam moments at global step"
          f" {read['global_step']}: {read['checkpoint']}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
