"""Export a training run's checkpoint: `python -m reid_tf.export --output_dir=RUN --export_dir=DIR`.

Writes DIR/<version>/ (default: the step), the layout TF Serving watches: a SavedModel, or with
--format a LiteRT or ONNX file, the backbone's weights, a tracker's ONNX, or a gallery search
SavedModel. The exports are reid_tf/export_lib.py's.
"""

from __future__ import annotations

import sys

from absl import app, flags

from reid_tf import config, console
from reid_tf import flags as reid_flags
from reid_tf.errors import ReidError

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (once per process)."""
    if "export_dir" in FLAGS:
        return
    from reid_tf import export_lib  # the format registry (its modules import TensorFlow)

    reid_flags.group("Export")
    flags.DEFINE_string("output_dir", None, "The training run folder.", required=True)
    flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
    flags.DEFINE_string("export_dir", None, "Base folder; the model goes to DIR/<version>/.", required=True)
    flags.DEFINE_integer("version", None, "Version folder name (default: the step).")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing version.")
    flags.DEFINE_enum("format", "saved_model", export_lib.FORMATS.names(), export_lib.FORMATS.help() + ".")
    flags.DEFINE_enum("quantize", "none", config.QUANTIZATIONS,
                      "With --format=tflite: float16 weights, dynamic_range (int8 weights), or int8"
                      " (full-integer, calibrated on the run's training images).")
    flags.DEFINE_enum("precision", "float32", config.PRECISIONS,
                      "What the SavedModel computes in: bfloat16 for CPUs with AVX512_BF16/AMX and TPUs,"
                      " float16 for GPUs. Inputs, weights and outputs stay float32.")
    flags.DEFINE_string("data_dir", None, "The run's dataset folder, if not where it was trained (images to"
                        " check the export and to calibrate int8).")
    flags.DEFINE_integer("calibration_images", 300, "Training images that calibrate int8.", lower_bound=1)
    reid_flags.group("Tracker and search")
    flags.DEFINE_string("index", None, "With --format=search: the gallery index (tools/gallery.py index) of this"
                        " model, served by the SavedModel's search signatures.")
    flags.DEFINE_integer("k", 10, "With --format=search: results per query.", lower_bound=1)
    flags.DEFINE_string("calibration", None, "A calibration of this model (tools/eval.py --calibrate), copied beside"
                        " it; --format=search also returns `match` at --threshold, --format=tracker's sidecar carries"
                        " it as boxmot's cosine-distance gate (max_cos_dist).")
    flags.DEFINE_string("threshold", "far=0.001", "With --calibration: far=0.01, far=0.001, eer or crossing.")
    reid_flags.group("Serving limits")
    flags.DEFINE_integer("max_images_per_request", config.MAX_IMAGES_PER_REQUEST,
                         "Images one request may carry; more is refused.", lower_bound=1)
    flags.DEFINE_integer("max_image_pixels", config.MAX_IMAGE_PIXELS,
                         "serving_bytes refuses an image whose header claims more pixels.", lower_bound=1)
    reid_flags.required("output_dir", "export_dir")


def main(argv: list[str]) -> None:
    del argv
    console.quiet()
    from reid_tf import export_lib, export_summary

    try:
        path = export_lib.export_run(
            FLAGS.output_dir, FLAGS.export_dir, step=FLAGS.step, version=FLAGS.version, overwrite=FLAGS.overwrite,
            max_images=FLAGS.max_images_per_request, max_pixels=FLAGS.max_image_pixels, fmt=FLAGS.format,
            quantize=FLAGS.quantize, data_dir=FLAGS.data_dir, calibration_images=FLAGS.calibration_images,
            precision=FLAGS.precision, index=FLAGS.index, k=FLAGS.k, calibration_file=FLAGS.calibration,
            threshold=FLAGS.threshold)
    except ReidError as e:
        sys.exit(f"error: {e}")
    line = export_summary.describe(path)
    if line:
        print(line)
    print(f"exported {path}")


if __name__ == "__main__":
    console.quiet()  # before the flags: their choices come from registries, whose modules import TensorFlow
    define_flags()
    app.run(main, flags_parser=reid_flags.parse_flags)
