"""Replay a record of the 2017 original trainer (../shared/oracles/original_training/) through
reid_tf.train: the state's log flagfile with the record's size, P x K and schedule, the record's
initial weights (make_original_init.py beside it writes them as a TF1 checkpoint) or --init, and the
record's batches; writes what reid_tf computed under the record's own keys.

  python tools/replay_original.py --record=DIR/original_train_D_seed0.npz --output=D0.npz
  python tools/replay_original.py --record=R.npz --output=OUT.npz --adam_epsilon=1e-7   # a flag overridden

Keys of OUTPUT: loss, lr, global_step, train_embeddings, eval_probe_init, eval_gallery_init,
eval_probe_final, eval_gallery_final. A continuation (state F) first replays the record it continues,
unless --init names the checkpoint it starts from (the original's own C checkpoint, say).
"""

import sys
import tempfile

from absl import app, flags

from reid_tf import console
from reid_tf import flags as reid_flags

SETTINGS = reid_flags.define_settings()
reid_flags.group("Replay")
flags.DEFINE_string("record", None, "The record: FILE.npz with FILE.json beside it.", required=True)
flags.DEFINE_string("output", None, "The .npz to write.", required=True)
flags.DEFINE_string("init", "", "A TF1 checkpoint to start from instead of the record's initial weights.")
flags.DEFINE_string("work_dir", "", "Where the runs go (default: a temporary folder, removed at the end).")
flags.DEFINE_string("flags_dir", "flags", "The folder of the log flagfiles.")
reid_flags.required("record", "output")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}")
    console.quiet(timestamps=False)
    from reid_tf import original_run
    from reid_tf.errors import ReidError

    overrides = [FLAGS[name].serialize() for name in SETTINGS if FLAGS[name].present]
    try:
        with tempfile.TemporaryDirectory() as temporary:
            out = original_run.replay_record(FLAGS.record, FLAGS.output, FLAGS.work_dir or temporary, overrides,
                                             FLAGS.init or None, FLAGS.flags_dir)
    except ReidError as e:
        sys.exit(f"error: {e}")
    print(f"replayed {len(out['loss'])} steps (global steps {out['global_step'][0]} to {out['global_step'][-1]}),"
          f" loss {out['loss'][0]:.6g} -> {out['loss'][-1]:.6g}: {FLAGS.output}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
