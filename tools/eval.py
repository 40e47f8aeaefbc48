"""Scores a model or a features file on a dataset's test split (query against gallery): the Market-1501
protocol (or the official one, or the 2017 original's), the other protocol's figures beside it,
and re-ranking. mAP, rank-k and mINP are fractions (0.8736), as everywhere.

  python tools/eval.py --model=runs/quickstart            # a run's latest export, on its own dataset
  python tools/eval.py --model=exports/tflite/600/model.tflite --rerank --flip
  python tools/eval.py --model=runs/market --dataset=duke --data_dir=data/duke   # cross-domain
  python tools/eval.py --features=features.npz --protocol=original --rerank --rerank_impl=original
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
flags.DEFINE_enum("cuhk03_labels", None, ("detected", "labeled"), "CUHK03-NP: detected or labeled (default:"
                  " the model's, or detected).")
flags.DEFINE_string("features", None, "A .npz with query/gallery features, pids and camids.")
flags.DEFINE_boolean("rerank", False, "Also score with re-ranking (--rerank_impl, --k1, --k2, --lambda_value).")
flags.DEFINE_boolean("flip", False, "Average the embeddings of each image and its mirror.")
flags.DEFINE_integer("batch_size", 64, "Images per embedding batch.", lower_bound=1)
reid_flags.define_settings(["scoring"])  # --protocol, --rerank_impl, --k1, --k2, --lambda_value
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
        eval_lib.run(FLAGS.model or FLAGS.saved_model, FLAGS.features, reid_flags.config_section("scoring"),
                     outputs, FLAGS.dataset, FLAGS.data_dir, FLAGS.cuhk03_labels, FLAGS.rerank, FLAGS.flip,
                     FLAGS.batch_size)
    except ReidError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
