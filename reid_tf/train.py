"""Training entry point: `python -m reid_tf.train --flagfile=flags/resnet_finetuning.cfg`.

A tf.function step under a tf.distribute strategy; batch-hard mining over the global batch
(embeddings gathered across replicas); checkpoints that survive kill -9; TensorBoard; periodic
validation appended to validation.jsonl; a SavedModel export at the end.
"""

from __future__ import annotations

import json
import logging as std_logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter off the console

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, logging  # noqa: E402

from reid_tf import config as config_lib
from reid_tf import data, datasets, evaluate, export, synthetic
from reid_tf import model as model_lib
from reid_tf.datasets import DatasetError
from reid_tf.losses import batch_hard_triplet_loss, batch_stats


class TrainingError(RuntimeError):
    """A run that cannot go on; the message is one line saying why and what to do."""


# ---------------------------------------------------------------------------- data


def synthetic_cache_dir(num_ids: int) -> str:
    """Where the generated synthetic dataset lives between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "reid_tf", f"synthetic-v1-{num_ids}ids")


def ensure_synthetic(folder: str, num_ids: int) -> None:
    """Generate the synthetic dataset into `folder` unless it is already complete there."""
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return
    logging.info("generating the synthetic dataset (%d identities) in %s", num_ids, folder)
    synthetic.make_synthetic_market(folder, num_ids=num_ids, seed=0)
    with open(done, "w") as f:
        f.write("ok\n")


def load_training_records(cfg: config_lib.DataConfig) -> list[datasets.Record]:
    """The training records of the configured dataset, unreadable images left out."""
    if cfg.dataset == "csv":
        if not cfg.train_csv:
            raise DatasetError("--dataset=csv needs --train_csv=FILE (rows 'pid,path[,camid]')")
        records = datasets.load_csv(cfg.train_csv, cfg.data_dir)
    else:
        folder = cfg.data_dir
        if cfg.dataset == "synthetic":
            folder = folder or synthetic_cache_dir(cfg.synthetic_ids)
            ensure_synthetic(folder, cfg.synthetic_ids)
        elif not folder:
            raise DatasetError(f"--dataset={cfg.dataset} needs --data_dir=FOLDER")
        records = datasets.load_market1501(folder)["train"]
    if not records:
        raise DatasetError(f"no training images found for --dataset={cfg.dataset} in {cfg.data_dir!r}")
    return datasets.drop_unreadable(records)


def split_records(records: list[datasets.Record], cfg: config_lib.DataConfig, seed: int) -> dict:
    """Train records (relabelled) and the validation / train-subset query-gallery sets."""
    train, val_query, val_gallery = datasets.split_validation(records, cfg.valid_ids, seed)
    subset = datasets.subset_ids(train, cfg.train_eval_ids, seed) if cfg.train_eval_ids else []
    train_query, train_gallery = datasets.query_gallery_split(subset, seed)
    return {
        "train": datasets.relabel(train),
        "valid": _cameras_for_unknown(val_query, val_gallery),
        "train_eval": _cameras_for_unknown(train_query, train_gallery),
    }


def _cameras_for_unknown(query, gallery):
    """Without cameras (a CSV list without camid), every other image of the identity is a match:
    query and gallery get different pseudo cameras so the same-camera rule removes nothing."""
    if any(r.camid != -1 for r in query + gallery):
        return query, gallery
    return [r._replace(camid=0) for r in query], [r._replace(camid=1) for r in gallery]


# ---------------------------------------------------------------------------- model and step


def choose_strategy() -> tf.distribute.Strategy:
    """All GPUs of this machine (MirroredStrategy), several machines with TF_CONFIG, else one device."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def build_run_model(config: config_lib.RunConfig) -> keras.Model:
    m, d = config.model, config.data
    return model_lib.build_model(
        (d.image_height, d.image_width, 3), backbone=m.backbone, backbone_weights=m.backbone_weights,
        pooling=m.pooling, head=m.head, embedding_dim=m.embedding_dim,
        output_activation=m.output_activation, dropout=m.dropout, head_init=m.head_init,
        head_init_stddev=m.head_init_stddev, trainable=m.trainable, seed=config.train.seed,
    )


def build_optimizer(cfg: config_lib.OptimizerConfig, mixed_precision: str) -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.ExponentialDecay(
        cfg.initial_learning_rate, cfg.decay_steps, cfg.decay_rate, staircase=cfg.staircase
    )
    optimizer = keras.optimizers.Adam(schedule)
    if mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
    loss_cfg: config_lib.LossConfig, jit_compile: bool,
):
    """A tf.function running one step on the next global batch of a distributed iterator."""
    margin = loss_cfg.margin if loss_cfg.margin == "soft" else float(loss_cfg.margin)

    def replica_step(images, pids):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            embeddings = model(images, training=True)
            # Batch-hard mining needs the whole batch: gather every replica's share.
            all_embeddings = ctx.all_gather(embeddings, axis=0)
            all_pids = ctx.all_gather(pids, axis=0)
            loss = batch_hard_triplet_loss(all_embeddings, all_pids, margin, loss_cfg.mining)
            # Each replica holds the global loss and the optimiser sums the replicas' gradients.
            scaled = loss / ctx.num_replicas_in_sync
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = optimizer.scale_loss(scaled)
        variables = model.trainable_variables
        grads = tape.gradient(scaled, variables)
        # A NaN step spoils the weights in memory only: the loop stops before any save.
        optimizer.apply_gradients(zip(grads, variables))
        return loss, batch_stats(all_embeddings, all_pids, margin)

    def global_step(images, pids):
        loss, stats = strategy.run(replica_step, args=(images, pids))
        first = strategy.experimental_local_results  # every replica holds the same global values
        return first(loss)[0], {k: first(v)[0] for k, v in stats.items()}

    # XLA compiles the whole step, optimiser update included; the iterator stays outside it.
    compiled_step = tf.function(global_step, jit_compile=True) if jit_compile else global_step

    @tf.function
    def train_step(iterator):
        images, pids = next(iterator)
        return compiled_step(images, pids)

    return train_step


# ---------------------------------------------------------------------------- run folder


def prepare_output_dir(output_dir: str, config: config_lib.RunConfig, flags_text: str | None) -> None:
    """Write config.json (and flags.cfg); refuse a folder whose saved configuration differs."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "config.json")
    if os.path.exists(path):
        diffs = config_lib.config_differences(config_lib.load_config(path), config)
        if diffs:
            raise TrainingError(
                f"{output_dir} holds a run with another configuration ({'; '.join(diffs[:4])}):"
                " use a new --output_dir, or the same flags to resume"
            )
    config_lib.save_config(config, path)
    if flags_text is not None:
        with open(os.path.join(output_dir, "flags.cfg"), "w", encoding="utf-8") as f:
            f.write(flags_text)


def warm_start(model: keras.Model, init_checkpoint: str) -> str:
    """Load only the model's weights from another run (folder or checkpoint prefix)."""
    path = init_checkpoint
    if os.path.isdir(path):
        in_run = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
        path = in_run or tf.train.latest_checkpoint(path)
    if not path or not tf.io.gfile.exists(path + ".index"):
        raise TrainingError(f"--init_checkpoint={init_checkpoint}: no checkpoint found there")
    try:
        tf.train.Checkpoint(model=model).read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise TrainingError(
            f"--init_checkpoint={path} does not fit this model: {str(e).splitlines()[0][:160]}"
        ) from None
    return path


class _StopSignal:
    """Remembers SIGTERM / SIGINT so the loop can checkpoint and stop between steps."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------- validation


def validate(embed: Callable[[tf.Tensor], tf.Tensor], splits: dict, config: config_lib.RunConfig,
             step: int) -> dict:
    """mAP and rank-1 on held-out identities and on a subset of training identities."""
    d = config.data
    result = {"step": int(step)}
    for prefix, (query, gallery) in (("", splits["valid"]), ("train_", splits["train_eval"])):
        if not query or not gallery:
            continue
        q = evaluate.embed_records(embed, query, d.image_height, d.image_width)
        g = evaluate.embed_records(embed, gallery, d.image_height, d.image_width)
        try:
            scores = evaluate.score(q[0], g[0], q[1], g[1], q[2], g[2],
                                    rerank_too=config.train.eval_rerank and not prefix)
        except evaluate.metrics.MetricsError as e:
            logging.warning("%svalidation skipped: %s", prefix or "", e)
            continue
        for key in ("mAP", "rank1", "mINP", "mAP_rerank", "rank1_rerank"):
            if key in scores:
                result[prefix + key] = round(scores[key], 6)
    return result


# ---------------------------------------------------------------------------- the loop


def run(config: config_lib.RunConfig, output_dir: str, flags_text: str | None = None,
        strategy: tf.distribute.Strategy | None = None) -> dict:
    """Train as configured into output_dir (resuming it if it holds a run); returns a summary."""
    t = config.train
    if t.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{t.mixed_precision}")
    try:
        return _run(config, output_dir, flags_text, strategy or choose_strategy())
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _run(config, output_dir, flags_text, strategy) -> dict:
    t, d = config.train, config.data
    if d.image_num_every_id < 2:
        raise TrainingError(
            f"--image_num_every_id={d.image_num_every_id}: batch-hard mining needs K >= 2 images per"
            " identity in a batch, or no anchor has a positive"
        )
    prepare_output_dir(output_dir, config, flags_text)
    keras.utils.set_random_seed(t.seed)  # weights, dropout: a run is repeatable from its seed
    splits = split_records(load_training_records(d), d, t.seed)
    replicas = strategy.num_replicas_in_sync
    batch = d.return_id_num * d.image_num_every_id
    if batch % replicas:
        raise TrainingError(f"the batch P*K={batch} does not split over {replicas} replicas")

    with strategy.scope():
        model = build_run_model(config)
        optimizer = build_optimizer(config.optimizer, t.mixed_precision)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(output_dir, "checkpoints"),
                                         max_to_keep=5)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", manager.latest_checkpoint, int(step))
    elif t.init_checkpoint:
        logging.info("warm start from %s", warm_start(model, t.init_checkpoint))
    start = int(step)

    # A resumed run continues with fresh batches: the stream's seed includes the start step.
    dataset = data.train_dataset(splits["train"], d.return_id_num, d.image_num_every_id,
                                 d.image_height, d.image_width, d.augment, seed=t.seed + 7919 * start)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    train_step = make_train_step(model, optimizer, strategy, config.loss, t.jit_compile)
    writers = {k: tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard", k))
               for k in ("train", "validation")}
    history_path = os.path.join(output_dir, "validation.jsonl")
    best = _best(read_validations(history_path))

    embed = evaluate.keras_embed_fn(model)

    def run_validation(at_step):
        nonlocal best
        result = validate(embed, splits, config, at_step)
        with writers["validation"].as_default():
            for key, value in result.items():
                if key != "step":
                    tf.summary.scalar(key, value, step=at_step)
        if "mAP" in result and (best is None or result["mAP"] > best["mAP"]):
            best = {"mAP": result["mAP"], "step": at_step}
        if best:
            result.update(best_mAP=best["mAP"], best_step=best["step"])
        with open(history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        logging.info("validation at step %d: %s", at_step, ", ".join(
            f"{k} {v:.4f}" for k, v in result.items() if k not in ("step", "best_step", "best_mAP")))
        return result

    if start == 0 and t.eval_before_training:
        run_validation(0)
    logging.info("training %s from step %d to %d on %d replica(s), batch %d (P=%d x K=%d)",
                 model.name, start, t.max_steps, replicas, batch, d.return_id_num, d.image_num_every_id)
    current, last, window_start, window_steps = start, None, time.time(), 0
    with _StopSignal() as stop:
        while current < t.max_steps:
            loss, stats = train_step(iterator)
            loss = float(loss)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss} at step {current + 1}: training stopped; the last good"
                    f" checkpoint {manager.latest_checkpoint or '(none yet)'} is kept"
                )
            current = int(step.assign_add(1))
            window_steps += 1
            if current % t.log_every == 0 or current == t.max_steps:
                elapsed = time.time() - window_start
                images_per_s = window_steps * batch / max(elapsed, 1e-9)
                lr = float(optimizer.learning_rate)
                eta = (t.max_steps - current) * elapsed / window_steps
                logging.info("step %d/%d  loss %.4f  lr %.3g  %.1f images/s  ETA %s",
                             current, t.max_steps, loss, lr, images_per_s, _duration(eta))
                with writers["train"].as_default():
                    tf.summary.scalar("loss", loss, step=current)
                    tf.summary.scalar("learning_rate", lr, step=current)
                    tf.summary.scalar("images_per_second", images_per_s, step=current)
                    for key, value in stats.items():
                        tf.summary.scalar(key, value, step=current)
                window_start, window_steps = time.time(), 0
            if current % t.checkpoint_every == 0:
                manager.save(checkpoint_number=current)
            if current % t.eval_every == 0:
                last = run_validation(current)
            if stop.received:
                manager.save(checkpoint_number=current)
                logging.info("%s: saved step %d, stopping", stop.received, current)
                return {"step": current, "stopped_by": stop.received, "best": best}

    if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(f"-{current}"):
        manager.save(checkpoint_number=current)
    if last is None:  # a finished run started again has nothing new to score
        previous = read_validations(history_path)[-1:]
        last = previous[0] if previous and previous[0]["step"] == current else None
    final = last if last is not None and last["step"] == current else run_validation(current)
    exported = export.export_saved_model(model, config, os.path.join(output_dir, "export"),
                                         current, current, overwrite=True)
    logging.info("exported %s", exported)
    if best:
        logging.info("best validation mAP %.4f at step %d", best["mAP"], best["step"])
    return {"step": current, "final": final, "best": best, "export": exported}


def read_validations(path: str) -> list[dict]:
    """The rows of a run's validation.jsonl, oldest first (none if it does not exist yet)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _best(rows: list[dict]) -> dict | None:
    scored = [r for r in rows if "mAP" in r]
    top = max(scored, key=lambda r: r["mAP"], default=None)  # the first of equal maxima
    return {"mAP": top["mAP"], "step": top["step"]} if top else None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}")
    from reid_tf import flags as reid_flags

    tf.get_logger().setLevel("WARNING")
    handler = logging.get_absl_handler()
    handler.setFormatter(std_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    # TensorFlow's own INFO records (saver, signature names) are noise on this console.
    handler.addFilter(lambda r: r.levelno >= std_logging.WARNING or f"{os.sep}reid_tf{os.sep}" in r.pathname)
    config = reid_flags.config_from_flags()
    output_dir = reid_flags.FLAGS.output_dir
    try:
        summary = run(config, output_dir, reid_flags.train_flags_file())
    except (TrainingError, DatasetError, model_lib.WeightsUnavailableError, export.ExportError) as e:
        sys.exit(f"error: {e}")
    first = next(iter(read_validations(os.path.join(output_dir, "validation.jsonl"))), None)
    if first and summary.get("final") and first["step"] == 0:
        print(f"validation mAP before training {first['mAP']:.3f}, after {summary['final']['mAP']:.3f}"
              f" (rank-1 {first.get('rank1', 0):.3f} -> {summary['final'].get('rank1', 0):.3f})")
    if summary.get("export"):
        print(f"exported {summary['export']}")


if __name__ == "__main__":
    from reid_tf import flags as reid_flags

    reid_flags.define_train_flags()
    np.set_printoptions(precision=4)
    app.run(main)
