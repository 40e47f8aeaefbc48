"""The experiment table of run folders, as the original log's "train note" table.

  python tools/report.py runs/ [--output=report.md] [--plot=curves.png] [--baseline=RUN] [--json=FILE]

Arguments are run folders or folders holding them. Without --output the table is printed.
"""

import json
import os
import sys

from absl import app, flags, logging

from reid_tf import console
from reid_tf import flags as reid_flags

reid_flags.group("Report")
flags.DEFINE_string("output", None, "Write the markdown table here (default: print it).")
flags.DEFINE_string("plot", None, "Write the curves (mAP and loss against step) as a PNG here.")
flags.DEFINE_string("baseline", None, "The run (name or folder) others are compared with; default: the first"
                    " run.")
flags.DEFINE_string("json", None, "Write the same data as JSON here.")
flags.DEFINE_string("training_log", None, "Write docs/training_log.md (--output) from the log re-run's summaries"
                    " in this folder (benchmarks/rerun_log.py --summaries), with verdicts.json and the panels.")
flags.DEFINE_string("reference", None, "A JSON file {run name: text} shown in a column beside the result (e.g."
                    " the original log's results).")
FLAGS = flags.FLAGS


def main(argv):
    console.quiet(timestamps=False)  # one plain line each
    if FLAGS.training_log:
        from reid_tf import training_log_report

        template = os.path.join(FLAGS.training_log, "doc_template.md")
        if not os.path.isfile(template):
            sys.exit(f"--training_log={FLAGS.training_log}: no {template}; name the folder of the re-run's"
                     " summaries (benchmarks/rerun_log.py --summaries), e.g. docs/training_log_intended")
        output = FLAGS.output or "docs/training_log.md"
        with open(template, encoding="utf-8") as f:
            verdicts = training_log_report.write(FLAGS.training_log, output, f.read())
        print(f"wrote {output} ({len(verdicts)} verdicts)")
        return
    if len(argv) < 2:
        sys.exit("usage: python tools/report.py RUN_DIR_OR_PARENT... [--output=report.md]")
    logging.set_verbosity(logging.WARNING)
    from reid_tf import plots, report
    from reid_tf import runs as runs_lib

    runs = runs_lib.load_runs(argv[1:])
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
        plots.plot_runs(runs, FLAGS.plot)
        print(f"wrote {FLAGS.plot}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
