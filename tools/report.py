"""The experiment table of run folders, as the original log's "train note" table.

  python tools/report.py runs/ [--output=report.md] [--plot=curves.png] [--baseline=RUN] [--json=FILE]

Arguments are run folders or folders holding them. Without --output the table is printed.
"""

import logging as std_logging
import sys

from absl import app, logging

from reid_tf import flags as reid_flags
from reid_tf import report

reid_flags.define_report_flags()
FLAGS = reid_flags.FLAGS


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: python tools/report.py RUN_DIR_OR_PARENT... [--output=report.md]")
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().setFormatter(std_logging.Formatter("%(message)s"))  # one plain line each
    runs = report.load_runs(argv[1:])
    try:
        table = report.markdown(runs, FLAGS.baseline)
    except ValueError as e:
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
    app.run(main)
