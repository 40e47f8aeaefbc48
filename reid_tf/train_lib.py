"""The training loop: a tf.function step under a tf.distribute strategy, batch-hard mining over the
global batch, checkpoints that survive kill -9, TensorBoard, periodic validation appended to
validation.jsonl, and a SavedModel export at the end. `python -m reid_tf.train` calls `run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf
from absl import logging

from reid_tf import (
    adapt,
    data,
    datasets,
    distribute,
    evaluate,
    export_lib,
    group,
    hooks,
    objective,
    optim,
    projector,
    replay,
    run_dir,
    step_log,
)
from reid_tf import config as config_lib
from reid_tf import model as model_lib
from reid_tf.metrics import MetricsError
from reid_tf.resume import TrainingError, warm_start
from reid_tf.settings import ConfigError
from reid_tf.validation import Validation, check_splits


def run(config: config_lib.RunConfig, output_dir: str, flags_text: str | None = None,
        strategy: tf.distribute.Strategy | None = None, note: str | None = None,
        end_process: Callable[[str], None] | None = None, extra_hooks: Sequence[hooks.Hook] = ()) -> dict:
    """Train as configured into output_dir (resuming it if it holds a run); returns a summary.
    `end_process(line)`: how the command ends this worker when the group watch sees another lost;
    `extra_hooks` run after validation's and before the stop's (a test's fault, say).

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
                group.GroupWatch(strategy, on_lost=lock.release if lock else None, end=end_process) as watch:
            if role.is_chief:
                run_dir.prepare(output_dir, config, flags_text, note)
            try:
                return _train(config, output_dir, strategy, role, watch, extra_hooks)
            except TrainingError as e:
                if role.is_chief:
                    run_dir.record_stop(output_dir, str(e))
                raise
    finally:
        keras.mixed_precision.set_global_policy("float32")
        tf.config.experimental.enable_tensor_float_32_execution(True)


@dataclasses.dataclass
class TrainingState:
    """What a run trains and checkpoints: the model, BoT's identity head, the optimiser, the step."""

    model: keras.Model
    head: objective.IdentityHead
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable
    memory: adapt.ClusterMemory | None = None

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                   **self.head.trackables(), **(self.memory.trackables() if self.memory else {}))


def build_state(config: config_lib.RunConfig, strategy: tf.distribute.Strategy, num_classes: int,
                restoring: bool = False, target_images: int = 0) -> TrainingState:
    """The run's model, identity head and built optimiser at step 0, in the strategy's scope;
    `restoring`: a checkpoint will overwrite the weights, so no backbone weights are read;
    `target_images`: an adaptation's target, whose cluster memory is made too."""
    t = config.train
    with strategy.scope():
        model = model_lib.build_run_model(config, backbone_weights="none" if restoring else None)
        features = model.output["features"] if isinstance(model.output, dict) else model.output
        head = objective.build_identity_head(config.loss, num_classes, features.shape[-1], t.seed)
        optimizer = optim.build_optimizer(config.optimizer, t.mixed_precision)
        optimizer.build(model.trainable_variables + head.trainable_variables())
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        memory = adapt.ClusterMemory(target_images, features.shape[-1]) if target_images else None
    return TrainingState(model, head, optimizer, step, memory)


def _restore(state: TrainingState, t: config_lib.TrainConfig, run_checkpoints: str) -> str | None:
    """Resume from the run's latest checkpoint, or warm start; returns the latest checkpoint."""
    latest = tf.train.latest_checkpoint(run_checkpoints)  # every worker resumes from the chief's
    if latest:
        state.checkpoint().restore(latest).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", latest, int(state.step.numpy()))
    elif t.init_checkpoint:
        objects = {"model": state.model,
                   **({"optimizer": state.optimizer, "step": state.step} if t.init_checkpoint_full else {})}
        logging.info("warm start from %s%s", warm_start(objects, t.init_checkpoint),
                     f" at step {int(state.step.numpy())}, Adam's state kept" if t.init_checkpoint_full else "")
    return latest


def _source(config: config_lib.RunConfig) -> tuple[dict | None, replay.Batches | None, int]:
    """(the dataset's splits, or the replayed batches; the number of training identities)."""
    t, d = config.train, config.data
    if t.replay_batches:
        try:
            batches = replay.Batches.read(t.replay_batches, d.return_id_num * d.image_num_every_id,
                                          d.image_height, d.image_width)
        except replay.ReplayError as e:
            raise TrainingError(str(e)) from None
        return None, batches, int(batches.pids.max()) + 1
    splits = datasets.split_records(datasets.load_training_sets(d), d, t.seed)
    try:
        check_splits(splits, config)
    except (ConfigError, MetricsError) as e:
        raise TrainingError(str(e)) from None
    return splits, None, len({r.pid for r in splits["train"]})


def _iterator(config: config_lib.RunConfig, strategy: tf.distribute.Strategy, records: list | None,
              batches: replay.Batches | None, start: int):
    """The distributed iterator of global batches of `records` (or of the replayed batches), from `start` on."""
    t, d = config.train, config.data
    if batches is not None:
        if batches.steps < t.max_steps - start:
            raise TrainingError(f"--replay_batches={t.replay_batches} holds {batches.steps} batches; steps"
                                f" {start} to {t.max_steps} need {t.max_steps - start}: set"
                                f" --max_steps={start + batches.steps}")
        return iter(strategy.distribute_datasets_from_function(batches.dataset_fn(strategy.num_replicas_in_sync)))

    batch = d.return_id_num * d.image_num_every_id

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each worker decodes only its slice of every global batch; a resumed run continues
        # with fresh batches, since the stream's seed includes the start step.
        return data.train_dataset(
            records, d.return_id_num, d.image_num_every_id, d.image_height, d.image_width,
            d.augment, seed=t.seed + 7919 * start, num_shards=ctx.num_input_pipelines,
            shard=ctx.input_pipeline_id, batch_size=ctx.get_per_replica_batch_size(batch), crop=d.crop,
            original_ops=d.original_ops)

    return iter(strategy.distribute_datasets_from_function(dataset_fn))


def _train(config: config_lib.RunConfig, output_dir: str, strategy: tf.distribute.Strategy,
           role: distribute.Role, watch: group.GroupWatch, extra_hooks: Sequence[hooks.Hook] = ()) -> dict:
    t, d = config.train, config.data
    keras.utils.set_random_seed(t.seed)  # weights, dropout: a run is repeatable from its seed
    run_checkpoints = os.path.join(output_dir, run_dir.CHECKPOINTS)
    splits, batches, num_classes = _source(config)
    target = adapt.load_target(config) if config.adapt.adapt_to else None
    restoring = run_dir.has_checkpoint(output_dir) or bool(t.init_checkpoint)  # either overwrites the weights
    state = build_state(config, strategy, num_classes, restoring, len(target.records) if target else 0)
    checkpoint_dir = distribute.CheckpointDir(run_checkpoints, role)
    manager = tf.train.CheckpointManager(state.checkpoint(), checkpoint_dir.path, max_to_keep=t.keep_checkpoints)
    latest = _restore(state, t, run_checkpoints)
    start = int(state.step.numpy())
    train_step = objective.make_train_step(state.model, state.optimizer, strategy, config.loss, t.jit_compile,
                                           state.head, config.optimizer.weight_decay, batches is not None)
    loop = hooks.Loop(train_step, _iterator(config, strategy, splits and splits["train"], batches, start), state.step,
                      t.max_steps)
    embed = evaluate.keras_embed_fn(state.model)
    validation = Validation(config, output_dir, splits, embed, role, start) if splits else None
    logging.info("training %s from step %d to %d on %d replica(s) of %d worker(s), batch %d"
                 " (P=%d x K=%d)%s", state.model.name, start, t.max_steps, strategy.num_replicas_in_sync,
                 role.num_workers, d.return_id_num * d.image_num_every_id, d.return_id_num, d.image_num_every_id,
                 f", replaying {t.replay_batches}" if batches else "")
    report = step_log.StepReport(config, output_dir, role, start)
    chain = [hooks.ReportHook(report)]
    if target:
        chain.append(_adapt_hook(config, strategy, state, target, embed, output_dir, role))
    chain.append(hooks.CheckpointHook(manager, checkpoint_dir, t.checkpoint_every, latest))
    if validation:
        chain.append(hooks.ValidationHook(validation, t.eval_every, t.eval_before_training))
    chain += [*extra_hooks, hooks.StopHook(distribute.make_any_worker(strategy))]
    if role.is_chief and validation:
        chain.append(hooks.FinishHook(lambda lp: _finish(state.model, config, output_dir, lp.current,
                                                         lp.last_validation, validation, splits, embed)))
    chain.append(hooks.LeaveTogetherHook(strategy, watch))
    loop = hooks.train(loop, chain)
    if loop.stopped_by:
        return {"step": loop.current, "stopped_by": loop.stopped_by, "best": validation.best if validation else None}
    summary = {"step": loop.current, "final": None, "best": None, "export": None, **loop.summary}
    return summary if role.is_chief else {k: summary[k] for k in ("step", "final", "best", "export")}


def _adapt_hook(config: config_lib.RunConfig, strategy: tf.distribute.Strategy, state: TrainingState,
                target: adapt.Target, embed, output_dir: str, role: distribute.Role) -> adapt.AdaptHook:
    """The hook that clusters the target and trains on it with the contrastive step."""
    a = config.adapt
    step = objective.make_train_step(state.model, state.optimizer, strategy, config.loss, config.train.jit_compile,
                                     loss_fn=state.memory.loss_fn(a.temperature),
                                     after_update=state.memory.updater(a.memory_momentum))
    return adapt.AdaptHook(config, target, state.memory, embed, step,
                           lambda records, start: _iterator(config, strategy, records, None, start), output_dir,
                           role.is_chief)


def _finish(model: keras.Model, config: config_lib.RunConfig, output_dir: str, current: int, last: dict | None,
            validation: Validation, splits: dict, embed) -> dict:
    """The chief's end of a run: the final validation (unless this step has one), the projector,
    the export; returns the run's summary."""
    d = config.data
    if last is None:  # a finished run started again has nothing new to score
        previous = [r for r in run_dir.read_validations(validation.path) if "mAP" in r][-1:]
        last = previous[0] if previous and previous[0]["step"] == current else None
    final = last if last is not None and last["step"] == current else validation(current)
    if config.train.projector and splits["valid"][0]:
        query, gallery = splits["valid"]
        q, g = (evaluate.embed_records(embed, r, d.image_height, d.image_width, crop=d.crop)[0]
                for r in (query, gallery))
        logging.info(projector.write_projector(
            os.path.join(output_dir, run_dir.TENSORBOARD, "projector"), q, query, g, gallery))
    exported, exported_now = _export_final(model, config, output_dir, current)
    if validation.best:
        logging.info("best validation mAP %.4f at step %d", validation.best["mAP"], validation.best["step"])
    return {"step": current, "final": final, "best": validation.best, "export": exported,
            "exported_now": exported_now}


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


def main(config: config_lib.RunConfig, output_dir: str, flags_text: str, note: str, cluster: str,
         cluster_port: int, kubernetes_job: str, heartbeat_timeout: float,
         end_process: Callable[[str], None] | None = None) -> None:
    """`python -m reid_tf.train`: the strategy from the cluster, the run, and one line for its end
    (the validation mAP before and after). Raises ReidError, or group.LostWorkerError when another
    worker of the group was lost; the command turns either into its exit."""
    strategy = None
    try:
        resolver = distribute.cluster_resolver(cluster, cluster_port, kubernetes_job)
        strategy = distribute.choose_strategy(resolver, heartbeat_timeout)
        summary = run(config, output_dir, flags_text, strategy, note=note, end_process=end_process)
    except tf.errors.OpError as e:  # under several workers: one of them was lost
        line = group.lost_worker_line(e, strategy)
        if line is None:
            raise
        raise group.LostWorkerError(line) from None
    rows = run_dir.read_validations(os.path.join(output_dir, run_dir.VALIDATIONS))
    first = next((r for r in rows if "mAP" in r), None)  # not an adaptation's clustering row
    if first and summary.get("final") and first["step"] == 0:
        print(f"validation mAP before training {first['mAP']:.3f}, after {summary['final']['mAP']:.3f}"
              f" (rank-1 {first.get('rank1', 0):.3f} -> {summary['final'].get('rank1', 0):.3f})")
    if summary.get("export"):
        print(f"{'exported' if summary.get('exported_now') else 'already exported'} {summary['export']}")
    elif config.train.replay_batches and "stopped_by" not in summary:
        print(f"replayed to step {summary['step']}: {os.path.join(output_dir, run_dir.TRAIN_LOG)},"
              f" {os.path.join(output_dir, run_dir.REPLAY_TRACE)}")
