"""A run's validation rows: scored on the chief, written to TensorBoard and validation.jsonl, the
best so far carried on every row."""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from reid_tf import config as config_lib
from reid_tf import evaluate, run_dir


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
