"""Two worker processes (MultiWorkerMirroredStrategy on localhost) against one process, same
global batch, and the collectives' share of the two-worker step.

  python benchmarks/multi_worker.py [--backbone=resnet50] [--height=128 --width=64] [--steps=5]

Each worker gets one of the machine's cores (intra-op threads 1), the single process two. The
collectives alone (the all-gather of embeddings and pids and the all-reduce of every gradient,
at the step's shapes) are timed in the same worker processes right after the step.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from reid_tf.localhost import worker_envs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(args) -> dict:
    import tensorflow as tf

    threads = 1 if os.environ.get("TF_CONFIG") else 2
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    sys.path.insert(0, REPO)
    from reid_tf import config as C
    from reid_tf import distribute, objective, optim
    from reid_tf import model as model_lib

    strategy = distribute.choose_strategy()
    role = distribute.role_of(strategy)
    config = C.RunConfig(
        data=C.DataConfig(image_height=args.height, image_width=args.width, return_id_num=args.p,
                          image_num_every_id=args.k),
        model=C.ModelConfig(backbone=args.backbone, backbone_weights="none"))
    batch = args.p * args.k
    with strategy.scope():
        model = model_lib.build_run_model(config)
        optimizer = optim.build_optimizer(config.optimizer, "none")
        optimizer.build(model.trainable_variables)

    def dataset_fn(ctx):
        share = ctx.get_per_replica_batch_size(batch)
        images = tf.random.stateless_uniform([share, args.height, args.width, 3], [0, 1], 0, 255)
        pids = tf.repeat(tf.range(args.p), args.k)[:share]
        return tf.data.Dataset.from_tensors((images, pids)).repeat()

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    step = objective.make_train_step(model, optimizer, strategy, config.loss, False)

    def timed(fn, n):
        fn(), fn()  # trace and warm up
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    step_s = timed(lambda: float(step(iterator)[0]), args.steps)
    shapes = [v.shape for v in model.trainable_variables]
    share = batch // strategy.num_replicas_in_sync

    def collectives_only():
        ctx = tf.distribute.get_replica_context()
        gathered = ctx.all_gather(tf.ones([share, config.model.embedding_dim]), axis=0)
        pids = ctx.all_gather(tf.identity(tf.zeros([share], tf.int32)), axis=0)
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.ones(s) for s in shapes])
        total = tf.reduce_sum(gathered) + tf.cast(tf.reduce_sum(pids), tf.float32)
        return total + tf.add_n([tf.reduce_sum(g) for g in grads])

    collect = tf.function(lambda: strategy.run(collectives_only))
    collective_s = timed(lambda: strategy.experimental_local_results(collect())[0].numpy(), args.steps)
    return {"chief": role.is_chief, "workers": role.num_workers, "step_s": step_s,
            "collective_s": collective_s,
            "gradient_mb": sum(s.num_elements() for s in shapes) * 4 / 2**20}


def launch(argv, workers: int) -> dict:
    if workers > 1:
        envs = worker_envs(workers, TF_CPP_MIN_LOG_LEVEL="2")
    else:
        envs = [{k: v for k, v in os.environ.items() if k != "TF_CONFIG"} | {"TF_CPP_MIN_LOG_LEVEL": "2"}]
    procs = [subprocess.Popen([sys.executable, __file__, "--child", *argv], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for env in envs]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            sys.exit(err[-2000:])
        results.append(json.loads(out.strip().splitlines()[-1]))
    return next(r for r in results if r["chief"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--p", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    argv = [a for a in sys.argv[1:] if a != "--child"]
    one, two = launch(argv, 1), launch(argv, 2)
    batch = args.p * args.k
    print(f"{args.backbone} {args.height}x{args.width}, global batch {batch}, gradients"
          f" {two['gradient_mb']:.0f} MB")
    print(f"1 process (2 threads): {batch / one['step_s']:.1f} images/s")
    print(f"2 workers (1 thread each): {batch / two['step_s']:.1f} images/s"
          f" ({one['step_s'] / two['step_s']:.2f}x the single process)")
    print(f"collectives alone in the 2-worker step: {two['collective_s'] * 1000:.0f} ms of"
          f" {two['step_s'] * 1000:.0f} ms ({two['collective_s'] / two['step_s']:.0%})")


if __name__ == "__main__":
    main()
