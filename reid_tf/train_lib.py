"""The training loop: a tf.function step under a tf.distribute strategy, batch-hard mining over the
global batch, checkpoints that survive kill -9, TensorBoard, periodic validation appended to
validation.jsonl, and a SavedModel export at the end. `python -m reid_tf.train` calls `run`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import keras
import tensorflow as tf
from absl import logging

from reid_tf import config as config_lib
from reid_tf import data, datasets, distribute, evaluate, export_lib, group, objective, optim, projector, run_dir
from reid_tf import model as model_lib
from reid_tf.resume import StopSignal, TrainingError, warm_start
from reid_tf.settings import ConfigError


def run(config: config_lib.RunConfig, output_dir: str, flags_text: str | None = None,
        strategy: tf.distribute.Strategy | None = None, note: str | None = None) -> dict:
    """Train as configured into output_dir (resuming it if it holds a run); returns a summary.

    Under several workers every worker calls this with the same config; the chief alone writes
    the run folder and holds its lock. `note` (the experiment's conclusion, say) is kept in the
    folder beside the configuration, not in it.
    """
    try:
        config.validate()
        optim.learning_rate_schedule(config.optimizer)
    except (ConfigError, ValueError) as e:
        raise TrainingError(str(e)) from None
    t, d = config.train, config.data
    if t.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{t.mixed_precision}")
    tf.config.experimental.enable_tensor_float_32_execution(t.allow_tf32)
    try:
        strategy = strategy or distribute.choose_strategy()
        batch = d.return_id_num * d.image_num_every_id
        if batch % strategy.num_replicas_in_sync:
            raise TrainingError(f"the batch P*K={batch} does not split over"
                                f" {strategy.num_replicas_in_sync} replicas")
        distribute.check_same_config(strategy, config_lib.guarded_settings(config))
        role = distribute.role_of(strategy)
        with run_dir.RunLock(output_dir) if role.is_chief else contextlib.nullcontext() as lock, \
                group.GroupWatch(strategy, on_lost=lock.release if lock else None) as watch:
            if role.is_chief:
                run_dir.prepare(output_dir, config, flags_text, note)
            try:
                return _train(config, output_dir, strategy, role, watch)
            except TrainingError as e:
                if role.is_chief:
                    run_dir.record_stop(output_dir, str(e))
                raise
    finally:
        keras.mixed_precision.set_global_policy("float32")
        tf.config.experimental.enable_tensor_float_32_execution(True)


class _Validation:
    """Validation rows of a run: scored on the chief, written to TensorBoard and validation.jsonl,
    the best so far carried on every row."""

    def __init__(self, config: config_lib.RunConfig, output_dir: str, splits: dict, embed, role, start: int):
        self.config, self.splits, self.embed, self.role = config, splits, embed, role
        self.path = os.path.join(output_dir, run_dir.VALIDATIONS)
        self.writer = (tf.summary.create_file_writer(os.path.join(output_dir, run_dir.TENSORBOARD, "validation"))
                       if role.is_chief else tf.summary.create_noop_writer())
        self.best = _best(run_dir.repair_validations(self.path, start)) if role.is_chief else None

    def __call__(self, at_step: int) -> dict | None:
        if not self.role.is_chief:
            return None
        c = self.config
        splits = self.splits
        if c.data.train_eval_final_only and at_step != c.train.max_steps:
            splits = {**splits, "train_eval": ([], [])}
        result = evaluate.validate(self.embed, splits, c.data, c.scoring, at_step, c.train.eval_rerank)
        with self.writer.as_default():
            for key, value in result.items():
                if key != "step":
                    tf.summary.scalar(key, value, step=at_step)
        if "mAP" in result and (self.best is None or result["mAP"] > self.best["mAP"]):
            self.best = {"mAP": result["mAP"], "step": at_step}
        if self.best:
            result.update(best_mAP=self.best["mAP"], best_step=self.best["step"])
        run_dir.append_validation(self.path, result)
        shown = ("mAP", "rank1", "mINP", "mAP_at_200", "mAP_rerank", "train_mAP", "original_mAP")
        logging.info("validation at step %d: %s", at_step, ", ".join(
            f"{k} {result[k]:.4g}" for k in shown if k in result))
        return result


def _train(config: config_lib.RunConfig, output_dir: str, strategy: tf.distribute.Strategy,
           role: distribute.Role, watch: group.GroupWatch) -> dict:
    t, d = config.train, config.data
    keras.utils.set_random_seed(t.seed)  # weights, dropout: a run is repeatable from its seed
    splits = datasets.split_records(datasets.load_training_sets(d), d, t.seed)
    batch = d.return_id_num * d.image_num_every_id
    with strategy.scope():
        model = model_lib.build_run_model(config)
        features = model.output["features"] if isinstance(model.output, dict) else model.output
        head = objective.build_identity_head(config.loss, len({r.pid for r in splits["train"]}),
                                             features.shape[-1], t.seed)
        optimizer = optim.build_optimizer(config.optimizer, t.mixed_precision)
        optimizer.build(model.trainable_variables + head.trainable_variables())
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, **head.trackables())
    run_checkpoints = os.path.join(output_dir, run_dir.CHECKPOINTS)
    checkpoint_dir = distribute.CheckpointDir(run_checkpoints, role)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir.path, max_to_keep=t.keep_checkpoints)
    latest = tf.train.latest_checkpoint(run_checkpoints)  # every worker resumes from the chief's
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", latest, int(step.numpy()))
    elif t.init_checkpoint:
        objects = {"model": model, **({"optimizer": optimizer, "step": step} if t.init_checkpoint_full else {})}
        logging.info("warm start from %s%s", warm_start(objects, t.init_checkpoint),
                     f" at step {int(step.numpy())}, Adam's state kept" if t.init_checkpoint_full else "")
    start = int(step.numpy())

    def save(at_step):
        nonlocal latest
        latest = manager.save(checkpoint_number=at_step)  # a collective: every worker saves
        checkpoint_dir.after_save()

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each worker decodes only its slice of every global batch; a resumed run continues
        # with fresh batches, since the stream's seed includes the start step.
        return data.train_dataset(
            splits["train"], d.return_id_num, d.image_num_every_id, d.image_height, d.image_width,
            d.augment, seed=t.seed + 7919 * start, num_shards=ctx.num_input_pipelines,
            shard=ctx.input_pipeline_id, batch_size=ctx.get_per_replica_batch_size(batch), crop=d.crop,
            original_ops=d.original_ops)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_step = objective.make_train_step(model, optimizer, strategy, config.loss, t.jit_compile, head,
                                           config.optimizer.weight_decay)
    writer = (tf.summary.create_file_writer(os.path.join(output_dir, run_dir.TENSORBOARD, "train"))
              if role.is_chief else tf.summary.create_noop_writer())
    embed = evaluate.keras_embed_fn(model)
    validation = _Validation(config, output_dir, splits, embed, role, start)
    if start == 0 and t.eval_before_training:
        validation(0)
    logging.info("training %s from step %d to %d on %d replica(s) of %d worker(s), batch %d"
                 " (P=%d x K=%d)", model.name, start, t.max_steps, strategy.num_replicas_in_sync,
                 role.num_workers, batch, d.return_id_num, d.image_num_every_id)
    any_worker = distribute.make_any_worker(strategy)
    current, last, pace = start, None, _Pace(batch, t.max_steps)
    with StopSignal() as stop, contextlib.closing(checkpoint_dir):
        while current < t.max_steps:
            began = time.perf_counter()
            loss, stats = train_step(iterator)
            loss = float(loss)
            pace.add(time.perf_counter() - began)
            if not math.isfinite(loss):
                raise TrainingError(f"the loss became {loss} at step {current + 1}: training stopped; the"
                                    f" last good checkpoint {latest or '(none yet)'} is kept")
            current = int(step.assign_add(1).numpy())
            if current == start + 1 and role.is_chief and run_dir.read_first_step(output_dir) is None:
                # this run's first step (not a resumption's): how far the initial model is from trained
                run_dir.record_first_step(output_dir, {"step": current, "loss": round(loss, 6), **{
                    k: round(float(stats[k]), 6) for k in ("triplet_loss", "id_loss") if k in stats}})
            if current % t.log_every == 0 or current in (start + 2, t.max_steps):
                lr = float(optimizer.learning_rate)
                images_per_s, line = pace.report(current)
                logging.info("step %d/%d  %s  lr %.3g  %s", current, t.max_steps, _losses_line(loss, stats), lr, line)
                with writer.as_default():
                    for key, value in {"loss": loss, "learning_rate": lr, **stats}.items():
                        tf.summary.scalar(key, value, step=current)
                    if images_per_s:
                        tf.summary.scalar("images_per_second", images_per_s, step=current)
            if current % t.checkpoint_every == 0:
                save(current)
            if current % t.eval_every == 0:
                last = validation(current)
            # Every worker stops at the same step, or the others would wait in a collective.
            if any_worker(stop.received is not None):
                if not latest or not latest.endswith(f"-{current}"):
                    save(current)
                reason = stop.received or "a signal to another worker"
                logging.info("%s: saved step %d, stopping", reason, current)
                watch.stop()
                distribute.leave_together(strategy)
                return {"step": current, "stopped_by": reason, "best": validation.best}

        # The end: a SIGTERM from here on lets the checkpoint, validation and export finish.
        if not latest or not latest.endswith(f"-{current}"):
            save(current)
        if role.is_chief:
            if last is None:  # a finished run started again has nothing new to score
                previous = run_dir.read_validations(validation.path)[-1:]
                last = previous[0] if previous and previous[0]["step"] == current else None
            final = last if last is not None and last["step"] == current else validation(current)
            if t.projector and splits["valid"][0]:
                query, gallery = splits["valid"]
                q, g = (evaluate.embed_records(embed, r, d.image_height, d.image_width, crop=d.crop)[0]
                        for r in (query, gallery))
                logging.info(projector.write_projector(
                    os.path.join(output_dir, run_dir.TENSORBOARD, "projector"), q, query, g, gallery))
            exported, exported_now = _export_final(model, config, output_dir, current)
        # Every worker leaves together: one that left while the chief still exported would end
        # its part of the coordination service, and a worker still at work would take it for lost.
        watch.stop()
        distribute.leave_together(strategy)
        if not role.is_chief:
            return {"step": current, "final": None, "best": None, "export": None}
    if validation.best:
        logging.info("best validation mAP %.4f at step %d", validation.best["mAP"], validation.best["step"])
    return {"step": current, "final": final, "best": validation.best, "export": exported,
            "exported_now": exported_now, "images_per_s": pace.images_per_second()}


class _Pace:
    """The train step's own pace, for the console's ETA and the summary: its first call in a process
    (tracing, graph optimisation) is left out, and so is everything between steps (validation,
    checkpoints), which the timer does not cover."""

    def __init__(self, batch: int, max_steps: int):
        self.batch, self.max_steps, self.traced = batch, max_steps, False
        self.window, self.total = [0, 0.0], [0, 0.0]  # [steps, seconds]

    def add(self, seconds: float) -> None:
        if not self.traced:
            self.traced = True
            return
        for acc in (self.window, self.total):
            acc[0] += 1
            acc[1] += seconds

    def report(self, current: int) -> tuple[float | None, str]:
        """(images/s since the last report, the console's words for it), and a new window."""
        steps, seconds = self.window
        self.window = [0, 0.0]
        if not steps:
            return None, "first step (tracing)"
        return steps * self.batch / seconds, (f"{steps * self.batch / seconds:.1f} images/s  ETA"
                                              f" {_duration((self.max_steps - current) * seconds / steps)}")

    def images_per_second(self) -> float | None:
        steps, seconds = self.total
        return round(steps * self.batch / seconds, 2) if steps else None


def _export_final(model: keras.Model, config: config_lib.RunConfig, output_dir: str,
                  step: int) -> tuple[str, bool]:
    """(export/<step>/ of the final step, whether it was written now): a finished run started
    again leaves its export alone."""
    export_dir = os.path.join(output_dir, run_dir.EXPORT)
    existing = os.path.join(export_dir, str(step))
    if tf.io.gfile.exists(os.path.join(existing, "saved_model.pb")):
        logging.info("this run had already finished: its export %s is left as it is", existing)
        return existing, False
    exported = export_lib.export_saved_model(model, config, export_dir, step, step, built_from_config=True)
    logging.info("exported %s", exported)
    return exported, True


def _losses_line(loss: float, stats: dict) -> str:
    """The step's losses, labelled: the triplet loss alone, or the total and its parts."""
    if "triplet_loss" not in stats:
        return f"triplet loss {loss:.4f}"
    parts = [f"{label} {float(stats[key]):.4f}" for key, label in (
        ("triplet_loss", "triplet"), ("id_loss", "id"), ("center_loss", "center"),
        ("weight_decay_loss", "weight decay")) if key in stats]
    accuracy = f"  id acc {float(stats['id_accuracy']):.3f}" if "id_accuracy" in stats else ""
    return f"total loss {loss:.4f} ({', '.join(parts)}){accuracy}"


def _best(rows: list[dict]) -> dict | None:
    scored = [r for r in rows if "mAP" in r]
    top = max(scored, key=lambda r: r["mAP"], default=None)  # the first of equal maxima
    return {"mAP": top["mAP"], "step": top["step"]} if top else None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def main(config: config_lib.RunConfig, output_dir: str, flags_text: str, note: str, cluster: str,
         cluster_port: int, kubernetes_job: str, heartbeat_timeout: float) -> None:
    """`python -m reid_tf.train`: the strategy from the cluster, the run, and one line for its end
    (an error, a lost worker, or the validation mAP before and after)."""
    import sys

    from reid_tf.datasets import DatasetError

    strategy = None
    try:
        resolver = distribute.cluster_resolver(cluster, cluster_port, kubernetes_job)
        strategy = distribute.choose_strategy(resolver, heartbeat_timeout)
        summary = run(config, output_dir, flags_text, strategy, note=note)
    except (TrainingError, DatasetError, model_lib.backbones.BackboneError, export_lib.ExportError,
            run_dir.RunDirError, distribute.DistributionError) as e:
        sys.exit(f"error: {e}")
    except tf.errors.OpError as e:  # under several workers: one of them was lost
        line = group.lost_worker_line(e, strategy)
        if line is None:
            raise
        group.report_lost_worker(line)
        os._exit(1)  # not sys.exit: TensorFlow's shutdown would wait for the lost worker
    first = next(iter(run_dir.read_validations(os.path.join(output_dir, run_dir.VALIDATIONS))), None)
    if first and summary.get("final") and first["step"] == 0:
        print(f"validation mAP before training {first['mAP']:.3f}, after {summary['final']['mAP']:.3f}"
              f" (rank-1 {first.get('rank1', 0):.3f} -> {summary['final'].get('rank1', 0):.3f})")
    if summary.get("export"):
        print(f"{'exported' if summary.get('exported_now') else 'already exported'} {summary['export']}")
