"""Writes a synthetic Market-1501-layout dataset: python tools/make_synthetic_dataset.py --output_dir=D."""

from absl import app, flags

from reid_tf import console, synthetic
from reid_tf import flags as reid_flags

reid_flags.group("Synthetic dataset")
flags.DEFINE_string("output_dir", None, "Folder to write the dataset into.", required=True)
flags.DEFINE_integer("num_ids", 200, "Identities in all; half train, half test.", lower_bound=2)
flags.DEFINE_integer("num_cameras", 6, "Cameras.", lower_bound=2)
flags.DEFINE_integer("images_per_camera", 3, "Images per identity and camera.", lower_bound=1)
flags.DEFINE_integer("height", 128, "Image height in pixels.", lower_bound=32)
flags.DEFINE_integer("width", 64, "Image width in pixels.", lower_bound=16)
flags.DEFINE_integer("seed", 0, "Random seed.")
reid_flags.required("output_dir")
FLAGS = flags.FLAGS


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
