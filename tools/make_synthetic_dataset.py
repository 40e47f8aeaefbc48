"""Writes a synthetic Market-1501-layout dataset: python tools/make_synthetic_dataset.py --output_dir=D
[--domain=NAME --seed=S]; --list_domains prints the domains, one name a line."""

import sys

from absl import app, flags

from reid_tf import console, synthetic
from reid_tf import flags as reid_flags

reid_flags.group("Synthetic dataset")
flags.DEFINE_string("output_dir", None, "Folder to write the dataset into.")
flags.DEFINE_string("domain", "default", "The domain: its cameras, their count and its people (--list_domains).")
flags.DEFINE_boolean("list_domains", False, "Print the domains, one name a line, and stop.")
flags.DEFINE_integer("num_ids", 200, "Identities in all; half train, half test.", lower_bound=2)
flags.DEFINE_integer("num_cameras", 6, "Cameras (the default domain's; another domain has its own count).",
                     lower_bound=2)
flags.DEFINE_integer("images_per_camera", 3, "Images per identity and camera.", lower_bound=1)
flags.DEFINE_integer("height", 128, "Image height in pixels.", lower_bound=32)
flags.DEFINE_integer("width", 64, "Image width in pixels.", lower_bound=16)
flags.DEFINE_integer("seed", 0, "Random seed.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    console.quiet()
    if FLAGS.list_domains:
        print("\n".join(synthetic.DOMAINS.names()))
        return
    if not FLAGS.output_dir:
        sys.exit("error: --output_dir=FOLDER is required (or --list_domains)")
    if FLAGS.domain not in synthetic.DOMAINS:
        sys.exit(f"error: --domain={FLAGS.domain}: one of {', '.join(synthetic.DOMAINS.names())} (--list_domains)")
    counts = synthetic.make_synthetic_market(
        FLAGS.output_dir, FLAGS.num_ids, FLAGS.num_cameras, FLAGS.images_per_camera,
        FLAGS.height, FLAGS.width, FLAGS.seed, domain=FLAGS.domain,
    )
    print(f"wrote {FLAGS.output_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
