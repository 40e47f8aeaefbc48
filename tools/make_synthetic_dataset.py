"""Writes a synthetic Market-1501-layout dataset: python tools/make_synthetic_dataset.py --output_dir=D."""

from absl import app

from reid_tf import console, synthetic
from reid_tf import flags as reid_flags

reid_flags.define_synthetic_flags()
FLAGS = reid_flags.FLAGS


def main(argv):
    del argv
    console.quiet()
    counts = synthetic.make_synthetic_market(
        FLAGS.output_dir, FLAGS.num_ids, FLAGS.num_cameras, FLAGS.images_per_camera,
        FLAGS.height, FLAGS.width, FLAGS.seed,
    )
    print(f"wrote {FLAGS.output_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
