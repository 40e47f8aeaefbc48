"""Train a re-identification model: `python -m reid_tf.train --flagfile=flags/resnet_finetuning.cfg`.

Every run setting is a flag (declared in reid_tf/config.py); this command's own flags say where
the run goes and which machines train it. The loop is reid_tf/train_lib.py.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from reid_tf import config, console
from reid_tf import flags as reid_flags

FLAGS = flags.FLAGS
OWN_FLAGS = ("output_dir", "note", "cluster", "cluster_port", "kubernetes_job", "heartbeat_timeout")


def define_flags() -> None:
    """The run settings' flags and this command's own (once per process)."""
    if "output_dir" in FLAGS and "dataset" in FLAGS:
        return
    reid_flags.define_settings()
    reid_flags.group("Output")
    flags.DEFINE_string("output_dir", "runs/default", "Run folder: config, checkpoints, logs, export.")
    flags.DEFINE_string("note", "", "A note on the experiment, kept in the run folder (note.txt), not in its"
                        " configuration: change it on resume at will. Shown by tools/report.py.")
    reid_flags.group("Several machines")
    flags.DEFINE_enum("cluster", "tf_config", config.CLUSTERS,
                      "Where the workers come from: tf_config (the TF_CONFIG variable; none = one machine),"
                      " slurm (the srun job step, one task per node), kubernetes (an Indexed Job's pods).")
    flags.DEFINE_integer("cluster_port", 23456, "With --cluster=slurm|kubernetes: the port every worker"
                         " listens on.", lower_bound=1, upper_bound=65535)
    flags.DEFINE_string("kubernetes_job", "reid-train", "With --cluster=kubernetes: the Indexed Job's name"
                        " (its pods carry job-name=NAME; see docs/kubernetes.yaml).")
    flags.DEFINE_float("heartbeat_timeout", 10.0, "Seconds without a heartbeat after which TensorFlow's"
                       " coordination service takes a worker for lost (every worker then exits); a busy"
                       " worker keeps sending heartbeats.", lower_bound=1.0)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}")
    console.quiet()
    from reid_tf import group, train_lib
    from reid_tf.errors import ReidError

    flags_text = reid_flags.flags_file([s.name for s in config.ALL_SETTINGS] + list(OWN_FLAGS))
    try:
        train_lib.main(reid_flags.config_from_flags(), FLAGS.output_dir, flags_text, FLAGS.note, FLAGS.cluster,
                       FLAGS.cluster_port, FLAGS.kubernetes_job, FLAGS.heartbeat_timeout, end_process=_end_now)
    except group.LostWorkerError as e:
        group.report_lost_worker(str(e))
        _end_now(str(e))
    except ReidError as e:
        sys.exit(f"error: {e}")


def _end_now(line: str) -> None:
    """A worker of the group was lost (`line` is already printed): end this one at once, since
    sys.exit would wait in TensorFlow's shutdown for the lost worker."""
    os._exit(1)


if __name__ == "__main__":
    console.quiet()  # before the flags: their choices come from registries, whose modules import TensorFlow
    define_flags()
    app.run(main, flags_parser=reid_flags.parse_flags)
