"""A run folder: config.json and its guard, flags.cfg, validation.jsonl, the one-trainer lock.

Every read and write goes through `tf.io.gfile`, so a run folder may live on local disk or on
shared storage (gs://, s3://, hdfs://; ram:// in tests). Small files are written whole or not at
all (a temporary file renamed over the old one), readers skip what they cannot read with one line
naming it, and a kill at any instant leaves a folder that the same command resumes.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
import uuid

import tensorflow as tf
from absl import logging

from reid_tf import config as config_lib
from reid_tf.errors import ReidError

CONFIG = "config.json"
FLAGS_FILE = "flags.cfg"
VALIDATIONS = "validation.jsonl"
LOCK = "run.lock"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
EXPORT = "export"
NOTE = "note.txt"  # the run's --note: not configuration, so it may change on resume
STARTED = "started.txt"  # when the run first started (ISO 8601, UTC)
STOPPED = "stopped.txt"  # why the last start stopped early (a NaN loss); gone on the next start
TRAIN_LOG = "train_log.jsonl"  # a row every --log_every steps: the step's loss, learning rate, global step
REPLAY_TRACE = "replay_trace.npz"  # a replayed run's train-mode embeddings of every step
FIRST_STEP = "first_step.json"  # the losses of step 1: how far the initial model is from trained
TEMPORARY = ".tmp-"  # marks a file or folder being written; never a run's own, removed on start


class RunDirError(ReidError, RuntimeError):
    """A run folder that cannot be used as asked; the message says why and what to do."""


def is_local(path: str) -> bool:
    """True for a plain path on this machine's file system (where os.rename is atomic)."""
    return "://" not in path


def write_atomic(path: str, text: str) -> None:
    """Write a small file whole or not at all: a temporary file beside it, renamed over it."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f"{TEMPORARY}{name}-{uuid.uuid4().hex[:8]}")
    try:
        with tf.io.gfile.GFile(temporary, "w") as f:
            f.write(text)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)


def read_text(path: str) -> str | None:
    """A file's text, or None where it does not exist."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def remove_temporaries(folder: str) -> None:
    """Remove what a killed writer left half-done in `folder` (names starting with .tmp-)."""
    if not tf.io.gfile.isdir(folder):
        return
    for name in tf.io.gfile.listdir(folder):
        name = name.rstrip("/")
        if name.startswith(TEMPORARY):
            path = os.path.join(folder, name)
            logging.info("removing %s, left by an interrupted write", path)
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


# ---------------------------------------------------------------------------- configuration


def has_checkpoint(output_dir: str) -> bool:
    """True once training has saved a checkpoint here: only then does the folder hold a run."""
    return tf.train.latest_checkpoint(os.path.join(output_dir, CHECKPOINTS)) is not None


def load_config(output_dir: str) -> config_lib.RunConfig:
    """The run's saved configuration, or one line saying why it cannot be read."""
    path = os.path.join(output_dir, CONFIG)
    text = read_text(path)
    if text is None:
        raise RunDirError(f"{path} not found: is {output_dir} a training run's --output_dir?")
    try:
        return config_lib.RunConfig.from_dict(json.loads(text))
    except (ValueError, TypeError) as e:
        raise RunDirError(f"{path} is not a run configuration ({e}): restore it or start a new run") from None


def prepare(output_dir: str, config: config_lib.RunConfig, flags_text: str | None,
            note: str | None = None) -> None:
    """Make the folder ready for this configuration (the chief's job).

    A folder holds a run once it holds a checkpoint: then a configuration that differs from the
    saved one is refused. Before that (a start that failed, say offline) the new one replaces it.
    """
    tf.io.gfile.makedirs(output_dir)
    remove_temporaries(output_dir)
    if has_checkpoint(output_dir) and tf.io.gfile.exists(os.path.join(output_dir, CONFIG)):
        diffs = config_lib.config_differences(load_config(output_dir), config)
        if diffs:
            raise RunDirError(
                f"{output_dir} holds a run with another configuration ({'; '.join(diffs[:4])}):"
                " use a new --output_dir, or the same flags to resume"
            )
    write_atomic(os.path.join(output_dir, CONFIG), config_lib.config_json(config))
    if flags_text is not None:
        write_atomic(os.path.join(output_dir, FLAGS_FILE), flags_text)
    if note:
        write_atomic(os.path.join(output_dir, NOTE), note.strip() + "\n")
    if not has_checkpoint(output_dir) or not tf.io.gfile.exists(os.path.join(output_dir, STARTED)):
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write_atomic(os.path.join(output_dir, STARTED), started + "\n")
    if tf.io.gfile.exists(os.path.join(output_dir, STOPPED)):
        tf.io.gfile.remove(os.path.join(output_dir, STOPPED))


def record_stop(output_dir: str, reason: str) -> None:
    """Say in the folder why training stopped early (read by the experiment report)."""
    write_atomic(os.path.join(output_dir, STOPPED), reason.strip() + "\n")


def record_first_step(output_dir: str, losses: dict) -> None:
    """Keep the losses of a run's first step (the log's "fc init ... so loss near 0.7")."""
    write_atomic(os.path.join(output_dir, FIRST_STEP), json.dumps(losses, sort_keys=True) + "\n")


def read_first_step(output_dir: str) -> dict | None:
    """The losses of the run's first step, or None (not recorded, or unreadable)."""
    try:
        row = json.loads(read_text(os.path.join(output_dir, FIRST_STEP)) or "null")
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def lock_is_live(output_dir: str, stale_after: float = 60.0) -> bool:
    """Whether a trainer holds the folder now (a lock with a recent heartbeat)."""
    try:
        lock = json.loads(read_text(os.path.join(output_dir, LOCK)) or "null")
    except ValueError:
        return False
    return bool(lock) and time.time() - float(lock.get("time", 0)) <= stale_after


# ---------------------------------------------------------------------------- validation.jsonl


def _parse_lines(path: str, text: str, action: str) -> list[dict]:
    """The readable rows of validation.jsonl text; each unreadable line is named in one line."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("no step")
            rows.append(row)
        except ValueError:
            logging.warning("%s:%d: unreadable line %s (a run killed mid-write?)", path, number, action)
    return rows


def read_validations(path: str) -> list[dict]:
    """The readable rows of a validation.jsonl, oldest first; each unreadable line is named."""
    text = read_text(path)
    if text is None:
        return []
    return _parse_lines(path, text, "skipped")


def repair_rows(path: str, resume_step: int) -> list[dict]:
    """Make a run's .jsonl (validation.jsonl, train_log.jsonl) whole again on start; returns its rows.

    Unreadable lines (a kill mid-write by an older writer, a hand edit) are cut, each named in
    one line; so are rows the resumed run will write again: those after `resume_step` (the
    checkpoint it restarts from), and all of them when it starts from scratch.
    """
    text = read_text(path)
    if text is None:
        return []
    rows = _parse_lines(path, text, "cut")
    kept = [r for r in rows if r["step"] < resume_step or 0 < r["step"] == resume_step]
    if len(kept) < len(rows):
        logging.warning("%s: %d row(s) after step %d dropped: the run resumes from step %d",
                        path, len(rows) - len(kept), resume_step, resume_step)
    if kept != rows or text.count("\n") != len(rows) or (text and not text.endswith("\n")):
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def append_row(path: str, row: dict) -> None:
    """Add one row. The file is rewritten whole, so a kill mid-append leaves the old file intact
    on every storage (object stores cannot append in place)."""
    write_atomic(path, (read_text(path) or "") + json.dumps(row) + "\n")


# ---------------------------------------------------------------------------- the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """One trainer per run folder: a lock file naming its owner, refreshed by a heartbeat.

    A trainer that died leaves a lock that the next start takes over: at once on the same host
    (its process is gone), after `stale_after` seconds without a heartbeat from another host.
    """

    def __init__(self, output_dir: str, stale_after: float = 60.0, heartbeat: float = 10.0):
        self.path = os.path.join(output_dir, LOCK)
        self.stale_after, self.heartbeat = stale_after, heartbeat
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread = None

    def _read(self) -> dict | None:
        try:
            return json.loads(read_text(self.path) or "null")
        except ValueError:
            return None  # a lock that cannot be read protects nothing

    def _held_by_other(self, lock: dict | None) -> str | None:
        if not lock or lock.get("token") == self.owner["token"]:
            return None
        age = time.time() - float(lock.get("time", 0))
        if age > self.stale_after:
            return None
        if lock.get("host") == self.owner["host"] and not _pid_alive(int(lock.get("pid", 0))):
            return None
        return f"host {lock.get('host')}, pid {lock.get('pid')}, heartbeat {age:.0f} s ago"

    def _write(self) -> None:
        write_atomic(self.path, json.dumps({**self.owner, "time": time.time()}) + "\n")

    def acquire(self) -> RunLock:
        folder = os.path.dirname(self.path)
        tf.io.gfile.makedirs(folder)
        holder = self._held_by_other(self._read())
        if holder:
            raise RunDirError(
                f"{folder} is in use by a live trainer ({holder}): stop it first, or use another"
                f" --output_dir (a lock without a heartbeat for {self.stale_after:.0f} s is taken over)"
            )
        self._write()
        time.sleep(0.05)  # two trainers starting together: the last writer wins, the other sees it
        if (self._read() or {}).get("token") != self.owner["token"]:
            raise RunDirError(f"{folder} was taken by another trainer starting at the same time")
        self._thread = threading.Thread(target=self._beat, daemon=True, name="run-lock")
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self._write()
            except (OSError, tf.errors.OpError) as e:
                logging.warning("cannot refresh %s: %s", self.path, e)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if (self._read() or {}).get("token") == self.owner["token"]:
            tf.io.gfile.remove(self.path)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
