"""Scores a model or a features file on a dataset's test split (query against gallery): the Market-1501
protocol (or the official one, or the 2017 original's), the other protocol's figures beside it,
and re-ranking. mAP, rank-k and mINP are fractions (0.8736), as everywhere.

  python tools/eval.py --model=runs/quickstart            # a run's latest export, on its own dataset
  python tools/eval.py --model=exports/tflite/600/model.tflite --rerank --flip
  python tools/eval.py --model=runs/market --dataset=duke --data_dir=data/duke   # cross-domain
  python tools/eval.py --features=features.npz --protocol=original --rerank --rerank_impl=original
  python tools/eval.py --model=runs/mine --dataset=folders --data_dir=my_people --protocol=no_cameras
  python tools/eval.py --model=runs/mine --verification --plot_dir=plots   # same person? TAR at FAR, EER
  python tools/eval.py --model=runs/mine --calibrate    # thresholds fitted on the run's validation identities
"""

import sys

from absl import app, flags, logging

from reid_tf import console
from reid_tf import flags as reid_flags
from reid_tf.errors import ReidError

reid_flags.group("What to score")
flags.DEFINE_string("model", None, "An exported model: a SavedModel version folder, a .tflite or an .onnx"
                    " file, the version folder holding one, or a training run's folder (its latest export).")
flags.DEFINE_string("saved_model", None, "The same as --model (kept for older commands).")
flags.DEFINE_string("dataset", "", "The dataset whose test split is scored (a registered name); default: the"
                    " one the model was trained on.")
flags.DEFINE_string("data_dir", "", "Its folder; default: where the model was trained (the synthetic set: its"
                    " cache folder).")
flags.DEFINE_string("query_dir", "", "Your own data: a query folder of identity folders"
                    " (<identity>/[<camera>/]<image>), scored against --gallery_dir (an identity is the same"
                    " person where its folder has the same name). Without camera folders, score with"
                    " --protocol=no_cameras.")
flags.DEFINE_string("gallery_dir", "", "The gallery folder beside --query_dir, in the same layout.")
flags.DEFINE_enum("cuhk03_labels", None, ("detected", "labeled"), "CUHK03-NP: detected or labeled (default:"
                  " the model's, or detected).")
flags.DEFINE_string("features", None, "A .npz with query/gallery features, pids and camids.")
flags.DEFINE_boolean("rerank", False, "Also score with re-ranking (--rerank_impl, --k1, --k2, --lambda_value).")
flags.DEFINE_boolean("flip", False, "Average the embeddings of each image and its mirror.")
flags.DEFINE_integer("batch_size", 64, "Images per embedding batch.", lower_bound=1)
reid_flags.define_settings(["scoring"])  # --protocol, --rerank_impl, --k1, --k2, --lambda_value
reid_flags.group("Same person?")
flags.DEFINE_boolean("verification", False, "Also the verification figures over every query x gallery pair (same"
                     " identity a positive): TAR at FAR 1e-2/1e-3/1e-4, EER, ROC AUC, the thresholds; with --plot_dir"
                     " the two distance histograms and the ROC curve.")
flags.DEFINE_boolean("calibrate", False, "Fit the 'same person?' thresholds instead of scoring: on --dataset or"
                     " --query_dir/--gallery_dir when given, else on the run's validation identities (which it"
                     " did not train on); written to --calibration.")
flags.DEFINE_string("calibration", "", "With --calibrate: the file to write (default: calibration.json beside the"
                    " model, in its version folder).")
reid_flags.group("Outputs")
flags.DEFINE_string("output_json", None, "Write the scores as JSON here.")
flags.DEFINE_string("save_features", None, "Write the embeddings as a features .npz here.")
flags.DEFINE_string("plot_dir", None, "Write a CMC curve and ranked-retrieval pictures here.")
flags.DEFINE_integer("plot_queries", 8, "Queries shown in ranked-retrieval pictures.", lower_bound=1)
flags.DEFINE_string("projector_dir", None, "Write the query and gallery embeddings, their metadata and a sprite"
                    " of the crops here for TensorBoard's Embedding Projector (tensorboard --logdir DIR).")
flags.DEFINE_string("actmap_dir", None, "Write activation maps (torchreid's: the channel-wise squared norm of"
                    " the backbone's last feature map) of --actmap_queries queries here.")
flags.DEFINE_integer("actmap_queries", 8, "Queries drawn with --actmap_dir.", lower_bound=1)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    console.quiet()
    logging.set_verbosity(logging.WARNING)
    from reid_tf import eval_lib

    outputs = eval_lib.Outputs(FLAGS.output_json, FLAGS.save_features, FLAGS.plot_dir, FLAGS.plot_queries,
                               FLAGS.projector_dir, FLAGS.actmap_dir, FLAGS.actmap_queries)
    try:
        if FLAGS.calibrate:
            from reid_tf import eval_pairs

            eval_pairs.calibrate(FLAGS.model or FLAGS.saved_model, reid_flags.config_section("scoring"),
                                 FLAGS.calibration, FLAGS.dataset, FLAGS.data_dir, FLAGS.cuhk03_labels,
                                 FLAGS.query_dir, FLAGS.gallery_dir, FLAGS.batch_size, FLAGS.flip)
            return
        eval_lib.run(FLAGS.model or FLAGS.saved_model, FLAGS.features, reid_flags.config_section("scoring"),
                     outputs, FLAGS.dataset, FLAGS.data_dir, FLAGS.cuhk03_labels, FLAGS.rerank, FLAGS.flip,
                     FLAGS.batch_size, FLAGS.query_dir, FLAGS.gallery_dir, FLAGS.verification)
    except ReidError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
