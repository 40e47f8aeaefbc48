"""The 2017 trainer's checkpoints and records as runs: a TF1 checkpoint it wrote becomes a run folder
at that checkpoint's step (tools/import_original.py), and a record of its steps is replayed through
reid_tf.train from the same weights and batches (tools/replay_original.py); see
../shared/oracles/original_training/README.md for the records."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re

import numpy as np
import tensorflow as tf

from reid_tf import config as config_lib
from reid_tf import export_lib, run_dir, slim_checkpoint, train_lib
from reid_tf.backbones import backbone_of
from reid_tf.errors import ReidError
from reid_tf.resume import TrainingError
from reid_tf.settings import flagfile_lines

# The log flagfile each state of the original stands for; F's record ran batch-hard, not batch-hardest.
STATE_FLAGFILES = {"A": "resnet.cfg", "B": "resnet_finetuning.cfg", "C": "resnet_noprocess.cfg",
                   "D": "resnet_IDE.cfg", "E": "resnet_enhance_rerank.cfg", "F": "resnet_finetuning_hardest.cfg"}
STATE_OVERRIDES = {"F": ["--mining=batch_hard"]}
RECORD_KEYS = ("loss", "lr", "global_step", "train_embeddings", "eval_probe_init", "eval_gallery_init",
               "eval_probe_final", "eval_gallery_final")


class OriginalRunError(ReidError, ValueError):
    """A checkpoint or record that cannot become a run; the message is one line naming it."""


def import_checkpoint(prefix: str, config: config_lib.RunConfig, output_dir: str,
                      flags_text: str | None = None) -> dict:
    """Write a run folder holding the TF1 checkpoint `prefix` at its global step, with TF1 Adam's
    moments where it has them, so `reid_tf.train` continues it as `train(retain_flag=False)` did;
    returns what was read (global_step, adam_slots, variables) and the checkpoint written."""
    return _import(prefix, config, output_dir, flags_text)[0]


def _import(prefix: str, config: config_lib.RunConfig, output_dir: str, flags_text: str | None):
    if run_dir.has_checkpoint(output_dir):
        raise OriginalRunError(f"{output_dir} already holds a run: import into a new --output_dir")
    if config.loss.id_loss_weight > 0 or config.loss.center_loss_weight > 0:
        raise OriginalRunError("the 2017 checkpoint has no identity classifier or centres: import it with"
                               " --id_loss_weight=0 --center_loss_weight=0")
    config.validate()
    state = train_lib.build_state(config, tf.distribute.get_strategy(), num_classes=1, restoring=True)
    try:
        read = slim_checkpoint.load_training_state(state.model, backbone_of(state.model), state.optimizer,
                                                   state.step, prefix)
    except slim_checkpoint.SlimCheckpointError as e:
        raise OriginalRunError(str(e)) from None
    run_dir.prepare(output_dir, config, flags_text)
    manager = tf.train.CheckpointManager(state.checkpoint(), os.path.join(output_dir, run_dir.CHECKPOINTS),
                                         max_to_keep=config.train.keep_checkpoints)
    return {**read, "checkpoint": manager.save(checkpoint_number=read["global_step"])}, state.model


@dataclasses.dataclass(frozen=True)
class Record:
    """A record of the original trainer: its json (how it was made) and arrays (what each step saw)."""

    path: str
    meta: dict
    arrays: dict

    @classmethod
    def read(cls, path: str) -> Record:
        json_path = re.sub(r"\.npz$", "", path) + ".json"
        if not (os.path.isfile(path) and os.path.isfile(json_path)):
            raise OriginalRunError(f"--record={path}: a record is FILE.npz with FILE.json beside it")
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
        with np.load(path) as arrays:
            return cls(path, meta, {k: arrays[k] for k in arrays.files})

    def beside(self, name: str) -> str:
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), name)

    def flag_lines(self, flags_dir: str) -> list[str]:
        """The state's flagfile with the record's size, P x K, schedule and length."""
        h, state = self.meta["harness"], self.meta["state"]
        start = int(self.arrays["global_step"][0])
        return flagfile_lines(os.path.join(flags_dir, STATE_FLAGFILES[state])) + STATE_OVERRIDES.get(state, []) + [
            f"--image_height={h['height']}", f"--image_width={h['width']}", f"--return_id_num={h['P']}",
            f"--image_num_every_id={h['K']}", f"--decay_steps={h['decay_steps']}",
            f"--max_steps={start + len(self.arrays['loss'])}", "--backbone_weights=none", "--log_every=1",
            "--checkpoint_every=1000000", "--keep_checkpoints=2"]

    def recipe_name(self) -> str:
        """A name for the record's initial weights, shared by the records of one recipe."""
        return "_".join(self.meta["init_recipe"].split()[1:]).replace("--", "")

    def write_init(self, prefix: str) -> str:
        """The initial weights as a TF1 checkpoint: written by make_original_init.py beside the record
        from its recipe, else the harness's own (its work folder's init/, above the record's out/)."""
        recipe = self.meta["init_recipe"]  # "make_original_init.py --seed 0 --head v1"
        seed, head = int(re.search(r"--seed (\d+)", recipe).group(1)), re.search(r"--head (\w+)", recipe).group(1)
        script = self.beside("make_original_init.py")
        if not os.path.isfile(script):
            made = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(self.path))),
                                self.meta.get("init_checkpoint", "-"))
            if slim_checkpoint.is_checkpoint(made):
                return made
            raise OriginalRunError(f"neither {script} (it writes the record's weights) nor {made} is there:"
                                   " give the initial weights with --init=PREFIX")
        if slim_checkpoint.is_checkpoint(prefix):  # written for another record of this recipe
            return prefix
        spec = importlib.util.spec_from_file_location("make_original_init", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        module.write_checkpoint(module.make_values(seed, head), prefix)
        return prefix


def embed(model, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Eval-mode embeddings of uint8 crops, in chunks of the original's test_batch_size."""
    return np.concatenate([model(images[i:i + batch].astype(np.float32), training=False).numpy()
                           for i in range(0, len(images), batch)])


def _eval(run: str, record: Record, model=None) -> tuple[np.ndarray, np.ndarray]:
    model = model or export_lib.restore_run_model(run)[0]
    return tuple(embed(model, record.arrays[f"valid_{k}_images"]) for k in ("probe", "gallery"))


def replay_record(record_path: str, output: str, work_dir: str, overrides: list[str] = (),
                  init: str | None = None, flags_dir: str = "flags") -> dict:
    """Replay a record through reid_tf.train into `work_dir` and write what reid_tf computed to
    `output` (the record's keys); returns those arrays. `init`: a TF1 checkpoint to start from
    instead of the record's initial weights (the original's own state at some step)."""
    record = Record.read(record_path)
    state = record.meta["state"]
    lines = record.flag_lines(flags_dir) + list(overrides)
    run = os.path.join(work_dir, os.path.basename(record_path)[:-4])
    if state == "F" and not init:  # a continuation: replay the record it continues, then go on from it
        name = record.meta["continues_record"]
        if not tf.io.gfile.exists(os.path.join(work_dir, name, run_dir.REPLAY_TRACE)):  # not replayed here yet
            replay_record(record.beside(name + ".npz"), os.path.join(work_dir, name + ".out.npz"), work_dir,
                          overrides, None, flags_dir)
        lines.append(f"--init_checkpoint={os.path.join(work_dir, name)}")
    config = config_lib.RunConfig.from_flag_lines(lines)
    init_model = None
    if init or state != "F":
        prefix = init or record.write_init(os.path.join(work_dir, "init", record.recipe_name()))
        init_model = _import(prefix, config, run, None)[1]
    else:
        run_dir.prepare(run, config, None)
    return _replay(record, config, run, output, init_model)


def _replay(record: Record, config: config_lib.RunConfig, run: str, output: str, init_model) -> dict:
    """Train `run` on the record's batches from the run's step; write and return the comparison arrays."""
    first = int(record.arrays["global_step"][0])
    at = _run_step(run, config)
    skip = at - first
    if not 0 <= skip < len(record.arrays["loss"]):
        raise OriginalRunError(f"{run} is at step {at}; the record covers steps {first} to"
                               f" {first + len(record.arrays['loss']) - 1}")
    images = np.round(record.arrays["pre_aug"][skip:] * 255.0).astype(np.float32)
    batches = os.path.join(run, "replay_batches.npz")
    np.savez(batches, images=images, pids=record.arrays["pids"][skip:])
    probe_init, gallery_init = _eval(run, record, init_model) if init_model else (None, None)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, replay_batches=batches))
    try:
        train_lib.run(config, run)
    except TrainingError as e:
        raise OriginalRunError(f"replaying {record.path}: {e}") from None
    if probe_init is None:  # a continuation: the state it started from is its warm start's
        probe_init, gallery_init = _eval(config.train.init_checkpoint, record)
    rows = run_dir.read_validations(os.path.join(run, run_dir.TRAIN_LOG))
    with np.load(os.path.join(run, run_dir.REPLAY_TRACE)) as trace:
        train_embeddings = trace["train_embeddings"]
    if init_model is not None:  # the imported model, at the run's final weights: no second build
        final = tf.train.Checkpoint(model=init_model).read(export_lib.checkpoint_path(run))
        final.expect_partial().assert_existing_objects_matched()
    probe_final, gallery_final = _eval(run, record, init_model)
    out = {"loss": np.array([r["loss"] for r in rows], np.float32),
           "lr": np.array([r["learning_rate"] for r in rows], np.float32),
           "global_step": np.array([r["global_step"] for r in rows], np.int64),
           "train_embeddings": train_embeddings, "eval_probe_init": probe_init, "eval_gallery_init": gallery_init,
           "eval_probe_final": probe_final, "eval_gallery_final": gallery_final}
    np.savez(output, **out)
    return out


def _run_step(run: str, config: config_lib.RunConfig) -> int:
    """The step a run starts from: its checkpoint's, or (a continuation) its warm start's."""
    source = run if run_dir.has_checkpoint(run) else config.train.init_checkpoint
    step = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(step=step).read(export_lib.checkpoint_path(source)).expect_partial()
    return int(step.numpy())


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def compare(out: dict, record: dict) -> dict:
    """How far a replay is from the record, relative (the loss: |a - b| / |b|; embeddings: relative
    L2): at the start, at step 0, at steps 1-2, at steps 3 and later, at the end."""
    n = min(len(out["loss"]), len(record["loss"]))
    loss = np.abs(out["loss"][:n].astype(np.float64) - record["loss"][:n]) / np.abs(record["loss"][:n])
    return {
        "eval_init": max(_relative(out[f"eval_{k}_init"], record[f"eval_{k}_init"]) for k in ("probe", "gallery")),
        "loss_0": float(loss[0]),
        "train_embeddings_0": _relative(out["train_embeddings"][0], record["train_embeddings"][0]),
        "loss_1_2": float(loss[1:3].max()) if n > 1 else 0.0,
        "loss_later": float(loss[3:].max()) if n > 3 else 0.0,
        "eval_final": max(_relative(out[f"eval_{k}_final"], record[f"eval_{k}_final"]) for k in ("probe", "gallery")),
        "lr_equal": bool(np.array_equal(out["lr"][:n].astype(np.float32), record["lr"][:n])),
        "global_step_equal": bool(np.array_equal(out["global_step"][:n], record["global_step"][:n])),
        "steps": int(n),
    }
