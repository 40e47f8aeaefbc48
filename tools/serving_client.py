"""Sends image files to a running TF Serving and prints their embeddings (or a distance).

  python tools/serving_client.py --images=a.jpg,b.jpg --distance              # REST, port 8501
  python tools/serving_client.py --images=a.jpg --protocol=grpc --port=8500   # gRPC
"""

import sys

import numpy as np
from absl import app, flags

from reid_tf import console, serving
from reid_tf import flags as reid_flags
from reid_tf.errors import ReidError

reid_flags.group("TF Serving client")
flags.DEFINE_list("images", None, "Image files to embed (or, with --search, to look for).", required=True)
flags.DEFINE_enum("protocol", "rest", ("rest", "grpc"), "How to call TF Serving.")
flags.DEFINE_string("host", "localhost", "TF Serving host.")
flags.DEFINE_integer("port", None, "Port (default: 8501 for REST, 8500 for gRPC).")
flags.DEFINE_string("model_name", "reid", "Model name TF Serving serves.")
flags.DEFINE_string("signature_name", "serving_bytes", "Signature taking JPEG/PNG bytes.")
flags.DEFINE_float("timeout", 30.0, "Seconds to wait for an answer.")
flags.DEFINE_boolean("distance", False, "Print the distance between the first two images.")
flags.DEFINE_boolean("search", False, "Ask a --format=search export (its search_bytes signature, REST) for each"
                     " image's nearest gallery entries.")
reid_flags.required("images")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    console.quiet()
    images = []
    for path in FLAGS.images:
        try:
            with open(path, "rb") as f:
                images.append(f.read())
        except OSError as e:
            sys.exit(f"error: cannot read {path}: {e.strerror}")
    if FLAGS.search:
        try:
            found = serving.search_rest(images, FLAGS.host, FLAGS.port or 8501, FLAGS.model_name, FLAGS.timeout)
        except ReidError as e:
            sys.exit(f"error: {e}")
        for q, path in enumerate(FLAGS.images):
            print(path)
            for rank, (p, d) in enumerate(zip(found["paths"][q], found["distances"][q]), 1):
                print(f"  {rank:3d}. {float(d):9.4f}  {p}")
        return
    call = serving.predict_rest if FLAGS.protocol == "rest" else serving.predict_grpc
    port = FLAGS.port or (8501 if FLAGS.protocol == "rest" else 8500)
    try:
        embeddings = call(images, FLAGS.host, port, FLAGS.model_name, FLAGS.signature_name,
                          FLAGS.timeout)
    except ReidError as e:
        sys.exit(f"error: {e}")
    if FLAGS.distance:
        if len(embeddings) < 2:
            sys.exit("error: --distance needs two --images")
        print(f"distance {np.linalg.norm(embeddings[0] - embeddings[1]):.6f}")
        return
    np.set_printoptions(precision=5, suppress=True, linewidth=120)
    for path, embedding in zip(FLAGS.images, embeddings):
        print(f"{path}: {embedding.shape[0]}-d {embedding}")


if __name__ == "__main__":
    app.run(main, flags_parser=reid_flags.parse_flags)
