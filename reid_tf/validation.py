"""A run's validation rows: scored on the chief, written to TensorBoard and validation.jsonl, the
best so far carried on every row."""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from reid_tf import config as config_lib
from reid_tf import evaluate, run_dir


def check_splits(splits: dict, config: config_lib.RunConfig) -> None:
    """Before any step: enough training identities for P, and validation sets the protocol can
    score (one line naming the dataset and what to do)."""
    d = config.data
    where = f"--dataset={d.dataset}" + (f" (--data_dir={d.data_dir})" if d.data_dir else "")
    num_ids = len({r.pid for r in splits["train"]})
    if num_ids < d.return_id_num:
        raise config_lib.ConfigError(
            f"{where} has {num_ids} training identities (after --valid_ids held some out), fewer than"
            f" P={d.return_id_num}: lower --return_id_num or --valid_ids, or add identities")
    for name in ("valid", "train_eval"):
        query, gallery = splits[name]
        evaluate.check_cameras([r.camid for r in query], [r.camid for r in gallery], config.scoring.protocol,
                               f"{where}'s {'validation' if name == 'valid' else 'training'} identities")


class Validation:
    """Validation rows of a run: scored on the chief, written to TensorBoard and validation.jsonl,
    the best so far carried on every row."""

    def __init__(self, config: config_lib.RunConfig, output_dir: str, splits: dict, embed, role, start: int):
        self.config, self.splits, self.embed, self.role = config, splits, embed, role
        self.path = os.path.join(output_dir, run_dir.VALIDATIONS)
        self.writer = (tf.summary.create_file_writer(os.path.join(output_dir, run_dir.TENSORBOARD, "validation"))
                       if role.is_chief else tf.summary.create_noop_writer())
        self.best = best_of(run_dir.repair_rows(self.path, start)) if role.is_chief else None

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
        run_dir.append_row(self.path, result)
        shown = ("mAP", "rank1", "mINP", "mAP_at_200", "mAP_rerank", "train_mAP", "original_mAP")
        logging.info("validation at step %d: %s", at_step, ", ".join(
            f"{k} {result[k]:.4g}" for k in shown if k in result))
        return result


def best_of(rows: list[dict]) -> dict | None:
    scored = [r for r in rows if "mAP" in r]
    top = max(scored, key=lambda r: r["mAP"], default=None)  # the first of equal maxima
    return {"mAP": top["mAP"], "step": top["step"]} if top else None
