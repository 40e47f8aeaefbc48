"""Embed a folder of person crops into an index, and search it: "where else did this person appear?"

  python tools/gallery.py index --model=runs/quickstart --images=crops/ --index=gallery.idx
  python tools/gallery.py search --index=gallery.idx --query=person.jpg --k=10 [--other_cameras]
      [--time_window=FRAMES] [--rerank] [--output_json=F] [--plot_dir=D]

`index` is resumable and appendable: run it again (on the same or another folder) and it embeds
only what is not in the index yet. Distances are Euclidean, the metric the model was trained for.
"""

import sys

from absl import app, flags

from reid_tf import console
from reid_tf import flags as reid_flags
from reid_tf.errors import ReidError

reid_flags.group("Index")
flags.DEFINE_string("model", None, "An export (or a training run's folder: its latest export). For search:"
                    " default, the index's own.")
flags.DEFINE_string("images", None, "index: the folder of crops (searched recursively).")
flags.DEFINE_string("index", None, "The index folder.", required=True)
flags.DEFINE_integer("batch_size", 64, "Images per embedding batch.", lower_bound=1)
reid_flags.group("Search")
flags.DEFINE_string("query", None, "search: an image, or a folder of them.")
flags.DEFINE_integer("k", 10, "Results per query.", lower_bound=1)
flags.DEFINE_boolean("other_cameras", False, "Only results seen by another camera than the query's (where the"
                     " file names give cameras).")
flags.DEFINE_integer("time_window", None, "Only results within this many frames of the query's (where the file"
                     " names give frames).", lower_bound=0)
flags.DEFINE_boolean("rerank", False, "Re-rank each query's candidates (k-reciprocal, Zhong et al.).")
flags.DEFINE_enum("engine", "auto", ("auto", "numpy", "faiss"), "Exact search: faiss's flat index where"
                  " installed (auto), or numpy; both give the same results.")
flags.DEFINE_string("calibration", None, "search: a calibration (tools/eval.py --calibrate): each result says"
                    " same person or not at --threshold, with the FAR at its distance.")
flags.DEFINE_string("threshold", None, "search: far=0.01, far=0.001 (default with --calibration), eer, crossing, or"
                    " a distance: a result is the same person when its distance is at most it.")
flags.DEFINE_string("output_json", None, "Write the results as JSON here.")
flags.DEFINE_string("plot_dir", None, "Write each query's ranked strip here.")
reid_flags.required("index")
FLAGS = flags.FLAGS


def main(argv):
    console.quiet()
    from reid_tf import exported, gallery, gallery_queries

    command = argv[1] if len(argv) == 2 else None
    if command not in ("index", "search"):
        sys.exit("usage: python tools/gallery.py index|search --index=FOLDER ... (--help lists the flags)")
    try:
        if command == "index":
            if not FLAGS.model or not FLAGS.images:
                raise gallery.GalleryError("index needs --model=EXPORT and --images=FOLDER")
            meta = gallery.index_folder(exported.open_export(FLAGS.model), FLAGS.images, FLAGS.index,
                                        FLAGS.batch_size)
            print(f"{FLAGS.index}: {meta['count']} embeddings of {meta['dim']} dimensions")
        else:
            gallery_queries.search_images(FLAGS.index, FLAGS.query, FLAGS.model, FLAGS.k, FLAGS.other_cameras,
                                          FLAGS.time_window, FLAGS.rerank, FLAGS.engine, FLAGS.batch_size,
                                          FLAGS.plot_dir, FLAGS.output_json, FLAGS.calibration, FLAGS.threshold)
    except ReidError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
