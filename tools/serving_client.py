"""Sends image files to a running TF Serving and prints their embeddings (or a distance).

  python tools/serving_client.py --images=a.jpg,b.jpg --distance              # REST, port 8501
  python tools/serving_client.py --images=a.jpg --protocol=grpc --port=8500   # gRPC
"""

import sys

import numpy as np
from absl import app

from reid_tf import console, serving
from reid_tf import flags as reid_flags

reid_flags.define_serving_client_flags()
FLAGS = reid_flags.FLAGS


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
    call = serving.predict_rest if FLAGS.protocol == "rest" else serving.predict_grpc
    port = FLAGS.port or (8501 if FLAGS.protocol == "rest" else 8500)
    try:
        embeddings = call(images, FLAGS.host, port, FLAGS.model_name, FLAGS.signature_name,
                          FLAGS.timeout)
    except serving.ServingError as e:
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
