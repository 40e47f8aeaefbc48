"""Versioned export folders, DIR/<version>/, written whole or not at all: built in a `.tmp-`
folder beside their place (a name TF Serving ignores), then moved in."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import tensorflow as tf

from reid_tf import run_dir as run_dir_lib
from reid_tf.errors import ReidError


class ExportError(ReidError, RuntimeError):
    """An export that cannot be done; the message names the folder and what to do."""


def write_version(export_dir: str, version: int, overwrite: bool, write: Callable[[str], None]) -> str:
    """DIR/<version>/ as `write(folder)` fills a folder: built in a `.tmp-` folder beside its place
    (a name TF Serving ignores; what a killed export leaves is removed by the next one), then
    moved into place."""
    final = os.path.join(export_dir, str(int(version)))
    if tf.io.gfile.exists(final) and not overwrite:
        raise ExportError(f"{final} exists: pass --overwrite to replace it, or choose --version")
    tf.io.gfile.makedirs(export_dir)
    run_dir_lib.remove_temporaries(export_dir)
    staging = os.path.join(export_dir, f"{run_dir_lib.TEMPORARY}{version}-{uuid.uuid4().hex[:8]}")
    try:
        tf.io.gfile.makedirs(staging)
        built = os.path.join(staging, "model")
        write(built)
        if tf.io.gfile.exists(final):  # overwrite: move the old version aside first
            move_folder(final, os.path.join(staging, "old"))
        move_folder(built, final)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return final




def move_folder(source: str, destination: str) -> None:
    """Rename a folder: atomic on a local file system. Object stores (gs://, s3://) have no
    folders to rename, so their files move one by one, saved_model.pb last: a server that
    polls the folder finds no model until every file it needs is there."""
    if run_dir_lib.is_local(source):
        os.rename(source, destination)
        return
    files = [os.path.join(root, name) for root, _, names in tf.io.gfile.walk(source) for name in names]
    files.sort(key=lambda path: os.path.basename(path) == "saved_model.pb")
    for path in files:
        target = os.path.join(destination, os.path.relpath(path, source))
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.rename(path, target, overwrite=True)
    tf.io.gfile.rmtree(source)
