"""What the log re-run's runs cost: each run's steps, passes over the data and summed learning rate
(here and at the log's step counts), and the whole set at the train step's measured pace."""

from __future__ import annotations

from reid_tf.training_log import RUNS
from reid_tf.training_log_classes import lr_sum
from reid_tf.training_log_rule import flag


def budget(summary: dict) -> list[str]:
    """[its own steps, passes over the data, sum of lr here, at the log's steps] of one run: a
    continuation's own steps start at the step it resumed from (its first step's number - 1)."""
    steps = flag(summary, "max_steps", int)
    start = (summary.get("first_step") or {}).get("step", 1) - 1
    batch = flag(summary, "return_id_num", int) * flag(summary, "image_num_every_id", int)
    images = summary.get("train_images")
    passes = f"{(steps - start) * batch / images:.1f}" if images else "–"
    own = f"{steps - start}" + (f" (from step {start})" if start else "")
    return [own, passes, f"{lr_sum(summary, start, steps):.3g}", f"{lr_sum(summary, start, steps, 100):.3g}"]


def last_step(summaries: dict, run: str) -> int | None:
    steps = [r["step"] for s in summaries.get(run, {}).values() for r in s["validations"]]
    return max(steps) if steps else None


def made_on(summary: dict) -> str:
    """Where a summary was made, as it recorded: the CPU's kind, TensorFlow's and Keras's versions."""
    versions = [f"{name} {summary[key]}" for key, name in (("tensorflow", "TensorFlow"), ("keras", "Keras"))
                if summary.get(key)]
    return (summary.get("cpu") or "a CPU not recorded") + (f" with {' and '.join(versions)}" if versions else "")


def pace_lines(summaries: dict, floors: list[dict]) -> list[str]:
    """What the set's training steps cost at the train step's measured pace, per CPU kind (ResNet-50
    at 64x32, benchmarks/train_step.py --floor): the budget of a re-run."""
    images = sum((flag(s, "max_steps", int) - (s.get("first_step") or {}).get("step", 1) + 1)
                 * flag(s, "return_id_num", int) * flag(s, "image_num_every_id", int)
                 for seeds in summaries.values() for s in seeds.values())
    runs = sum(len(seeds) for seeds in summaries.values())
    out = []
    for floor in floors:
        rates = [x for row in floor["rows"] if (row["size"], row["precision"]) == ("64x32", "float32")
                 for x in row["reid_tf"]]
        if rates:
            rate = sum(rates) / len(rates)
            out.append(f"The {runs} runs above train on {images:,} images in all; at the train step's measured"
                       f" pace on the {floor['cpu']} kind ({rate:.1f} images/s for ResNet-50 at 64x32,"
                       f" `docs/benchmarks/train_step_floor_{floor['cpu']}.json`), that is"
                       f" {images / rate / 3600:.1f} hours of training steps, before validation and the stand-in.")
    return out or ["(The train step's pace is not measured yet: benchmarks/train_step.py --floor.)"]


def budget_section(summaries: dict, floors: list[dict] | None) -> list[str]:
    out = ["## The budget", "", "Per run, from its flags: its own steps (a continuation's from the step it"
           " resumed at), how often each training image was seen in them (steps x P x K / training images),"
           " and its schedule's learning rate (warm-up included) summed over them, here and at the log's step"
           " counts (x 100). Adam moves a weight by about the learning rate a step at most (Kingma and Ba,"
           " 2015, section 2.1), so the sum bounds how far any weight can move.", "",
           "| run | steps | passes over the data | sum of lr | the log's sum of lr |", "|---|---|---|---|---|"]
    for run in RUNS:
        seeds = summaries.get(run.name, {})
        if seeds:
            out.append(f"| `{run.name}` | " + " | ".join(budget(next(iter(seeds.values())))) + " |")
    return out + ["", *pace_lines(summaries, floors or []), ""]
