"""Embed a folder of person crops into an index, and search it: "where else did this person appear?"

  python tools/gallery.py index --model=runs/quickstart --images=crops/ --index=gallery.idx
  python tools/gallery.py search --index=gallery.idx --query=person.jpg --k=10 [--other_cameras]
      [--time_window=FRAMES] [--rerank] [--output_json=F] [--plot_dir=D]

`index` is resumable and appendable: run it again (on the same or another folder) and it embeds
only what is not in the index yet. Distances are Euclidean, the metric the model was trained for.
"""

import json
import os
import sys

from absl import app, flags

from reid_tf import console
from reid_tf import flags as reid_flags

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
flags.DEFINE_string("output_json", None, "Write the results as JSON here.")
flags.DEFINE_string("plot_dir", None, "Write each query's ranked strip here.")
reid_flags.required("index")
FLAGS = flags.FLAGS


def _search() -> None:
    import numpy as np

    from reid_tf import evaluate, exported, gallery, plots
    from reid_tf.datasets.records import Record, drop_unreadable

    if not FLAGS.query:
        raise gallery.GalleryError("search needs --query=IMAGE_OR_FOLDER")
    index = gallery.load(FLAGS.index)
    model = exported.open_export(FLAGS.model or index.meta["model_path"])
    if model.identity != index.meta["model"]:
        raise gallery.GalleryError(f"--index={FLAGS.index} was made by another model ({index.meta['model_path']}):"
                                   " search it with that model")
    paths = gallery.image_files(FLAGS.query) if os.path.isdir(FLAGS.query) else [FLAGS.query]
    queries = drop_unreadable([Record(p, *gallery.describe_name(p)[:2]) for p in paths])
    if not queries:
        raise gallery.GalleryError(f"--query={FLAGS.query}: no readable image")
    feats, _, _ = evaluate.embed_records(model.embed, queries, model.height, model.width, FLAGS.batch_size,
                                         crop=model.crop)
    described = np.array([gallery.describe_name(r.path) for r in queries]).reshape(-1, 3)
    rows, distances = gallery.search(index, feats, FLAGS.k, described[:, 1], described[:, 2], FLAGS.other_cameras,
                                     FLAGS.time_window, FLAGS.rerank, FLAGS.engine)
    out = {"queries": []}
    for q, record in enumerate(queries):
        kept = np.isfinite(distances[q])
        results = [{"path": str(index.paths[r]), "distance": float(d)}
                   for r, d in zip(rows[q][kept], distances[q][kept])]
        out["queries"].append({"query": record.path, "results": results})
        print(record.path)
        for rank, result in enumerate(results, 1):
            print(f"  {rank:3d}. {result['distance']:9.4f}  {result['path']}")
        if FLAGS.plot_dir:
            plots.ranked_strip(record, [(r, d) for r, d in zip(index.records(rows[q][kept]), distances[q][kept])],
                               os.path.join(FLAGS.plot_dir, f"search_{q:05d}.png"),
                               "re-ranked, Euclidean distance" if FLAGS.rerank else "Euclidean distance")
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


def main(argv):
    console.quiet()
    from reid_tf import exported, gallery

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
            _search()
    except (gallery.GalleryError, exported.ExportedModelError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
