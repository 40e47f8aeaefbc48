"""The experiment table of run folders, as the original log's "train note" table.

  python tools/report.py runs/ [--output=report.md] [--plot=curves.png] [--baseline=RUN] [--json=FILE]

Arguments are run folders or folders holding them. Without --output the table is printed.
"""

import json
import sys

from absl import app, logging

from reid_tf import console, report
from reid_tf import flags as reid_flags

reid_flags.define_report_flags()
FLAGS = reid_flags.FLAGS


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: python tools/report.py RUN_DIR_OR_PARENT... [--output=report.md]")
    console.quiet(timestamps=False)  # one plain line each
    logging.set_verbosity(logging.WARNING)
    runs = report.load_runs(argv[1:])
    try:
        reference = None
        if FLAGS.reference:
            with open(FLAGS.reference, encoding="utf-8") as f:
                reference = json.load(f)
        table = report.markdown(runs, FLAGS.baseline, reference)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(table)
        print(f"wrote {FLAGS.output} ({len(runs)} runs)")
    else:
        print(table, end="")
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            f.write(report.to_json(runs))
        print(f"wrote {FLAGS.json}")
    if FLAGS.plot:
        report.plot(runs, FLAGS.plot)
        print(f"wrote {FLAGS.plot}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
