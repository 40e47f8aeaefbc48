"""A gallery of person crops to search: embed a folder with an export (in batches, resumable and
appendable: each chunk is written whole), keep each embedding's path and, where the file name
has them, identity, camera and frame; search it exactly (faiss when installed, numpy otherwise,
the same results), with camera and time filters, and optional re-ranking of the candidates.

An index is a folder: `index.json` (the model's identity, the dimension, the count) and
`chunk-NNNNN.npz` files (embeddings, paths, pids, camids, frames; -1 where unknown).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
import zipfile

import numpy as np

from reid_tf.datasets.market import parse_market_name
from reid_tf.datasets.records import IMAGE_EXTENSIONS, Record, drop_unreadable
from reid_tf.errors import ReidError

INDEX_FILE = "index.json"
CHUNK = 1024  # embeddings a chunk file holds
_FRAME = re.compile(r"_c\d+s\d+_(\d+)|_f(\d+)")  # Market-1501's c1s1_000451, Duke's f0046985


class GalleryError(ReidError, ValueError):
    """An index or a folder that cannot be used; one line naming it and what to do."""


@dataclasses.dataclass
class Index:
    """A loaded index: embeddings [N, D] float32 with their paths, pids, camids and frames."""

    folder: str
    meta: dict
    embeddings: np.ndarray
    paths: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    frames: np.ndarray

    def records(self, rows: np.ndarray) -> list[Record]:
        return [Record(str(self.paths[i]), int(self.pids[i]), int(self.camids[i])) for i in rows]


def describe_name(path: str) -> tuple[int, int, int]:
    """(pid, camid, frame) from a file name where it has them (Market-1501, Duke, CUHK03-NP), else -1."""
    name = os.path.basename(path)
    parsed = parse_market_name(name)
    frame = _FRAME.search(name)
    number = next((int(g) for g in frame.groups() if g), -1) if frame else -1
    return (parsed[0], parsed[1], number) if parsed else (-1, -1, number)


def image_files(folder: str) -> list[str]:
    """The JPEG/PNG files under `folder`, sorted; one line when there is none."""
    if not os.path.isdir(folder):
        raise GalleryError(f"--images={folder}: not a folder of crops")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise GalleryError(f"--images={folder} holds no .jpg or .png image: nothing to index")
    return files


def load(folder: str, model_identity: str | None = None) -> Index:
    """The index in `folder`; one line for a missing or corrupt one, or one of another model."""
    meta_path = os.path.join(folder, INDEX_FILE)
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        chunks = [np.load(os.path.join(folder, name), allow_pickle=False) for name in meta["chunks"]]
        arrays = {k: np.concatenate([c[k] for c in chunks]) if chunks else np.zeros((0,)) for k in
                  ("embeddings", "paths", "pids", "camids", "frames")}
    except FileNotFoundError as e:
        raise GalleryError(f"--index={folder}: no index there ({os.path.basename(e.filename or meta_path)} missing);"
                           " make one with tools/gallery.py index") from None
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise GalleryError(f"--index={folder} is corrupt ({type(e).__name__}: {str(e)[:80]}): index the folder"
                           " again into a new --index") from None
    if model_identity is not None and meta["model"] != model_identity:
        raise GalleryError(f"--index={folder} was made by another model ({meta['model_path']}): search it with"
                           " that model, or index the gallery again with this one")
    embeddings = arrays["embeddings"].reshape(-1, meta["dim"]).astype(np.float32)
    if len(embeddings) != meta["count"] or len(arrays["paths"]) != meta["count"]:
        raise GalleryError(f"--index={folder} is corrupt: {len(embeddings)} embeddings for a count of"
                           f" {meta['count']}; index the folder again into a new --index")
    return Index(folder, meta, embeddings, arrays["paths"].astype(str), arrays["pids"], arrays["camids"],
                 arrays["frames"])


def _write_meta(folder: str, meta: dict) -> None:
    temporary = os.path.join(folder, f".tmp-{INDEX_FILE}")
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    os.replace(temporary, os.path.join(folder, INDEX_FILE))


def new_meta(model_identity: str, model_path: str) -> dict:
    """The metadata of an empty index of the model `model_identity`."""
    return {"model": model_identity, "model_path": model_path, "dim": None, "count": 0, "chunks": [],
            "metric": "euclidean", "version": 1}


def append(folder: str, meta: dict, embeddings: np.ndarray, paths: list[str]) -> dict:
    """Write one chunk of embeddings (and their paths, with what their names say) to the index in
    `folder`, then its metadata; returns the new metadata. A stop between the two leaves a chunk
    unlisted, never a listed chunk missing."""
    if meta["dim"] not in (None, embeddings.shape[1]):
        raise GalleryError(f"--index={folder} holds {meta['dim']}-d embeddings; this model gives"
                           f" {embeddings.shape[1]}-d")
    described = np.array([describe_name(p) for p in paths], np.int64).reshape(-1, 3)
    chunk = f"chunk-{len(meta['chunks']):05d}.npz"
    temporary = os.path.join(folder, f".tmp-{chunk}")
    with open(temporary, "wb") as f:
        np.savez(f, embeddings=np.asarray(embeddings, np.float32), paths=np.array(paths), pids=described[:, 0],
                 camids=described[:, 1], frames=described[:, 2])
    os.replace(temporary, os.path.join(folder, chunk))
    meta = {**meta, "dim": int(embeddings.shape[1]), "count": meta["count"] + len(paths),
            "chunks": meta["chunks"] + [chunk]}
    _write_meta(folder, meta)
    return meta


def index_folder(model, images_dir: str, folder: str, batch_size: int = 64, progress=sys.stderr) -> dict:
    """Embed the crops of `images_dir` not yet in the index `folder` with `model` (an
    `exported.Exported`), a chunk at a time; returns the index's metadata. Unreadable images are
    named and skipped; a run that is stopped keeps every chunk it wrote."""
    from reid_tf import evaluate

    files = image_files(images_dir)
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(os.path.join(folder, INDEX_FILE)):
        index = load(folder, model.identity)
        meta, done = index.meta, set(index.paths.tolist())
    else:
        meta, done = new_meta(model.identity, model.path), set()
    todo = [p for p in files if p not in done]
    readable = drop_unreadable([Record(p, *describe_name(p)[:2]) for p in todo])
    start, total = time.time(), len(readable)
    for first in range(0, total, CHUNK):
        records = readable[first:first + CHUNK]
        feats, _, _ = evaluate.embed_records(model.embed, records, model.height, model.width, batch_size,
                                             crop=model.crop)
        meta = append(folder, meta, feats, [r.path for r in records])
        if progress is not None:
            done_now = first + len(records)
            bar = "#" * int(30 * done_now / total)
            progress.write(f"\rindexed {done_now}/{total} [{bar:<30}] {done_now / (time.time() - start):.0f} images/s")
            progress.flush()
    if progress is not None and total:
        progress.write("\n")
    if meta["dim"] is None:
        raise GalleryError(f"--images={images_dir}: no readable image to index")
    return meta


def _squared_distances(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    d = (queries * queries).sum(1)[:, None] + (gallery * gallery).sum(1)[None, :] - 2.0 * queries @ gallery.T
    return np.maximum(d, 0.0, out=d)


def _block_candidates(d: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of its k smallest values, ties at the k-th value broken to the lower
    column (a partial sort; rows whose tie at the k-th value straddles the cut are sorted whole)."""
    k = min(k, d.shape[1])
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(d, part, axis=1).max(axis=1)
    ties = (d == kth[:, None]).sum(1) != (np.take_along_axis(d, part, axis=1) == kth[:, None]).sum(1)
    if ties.any():
        columns = np.broadcast_to(np.arange(d.shape[1]), (int(ties.sum()), d.shape[1]))
        part[ties] = np.lexsort((columns, d[ties]), axis=1)[:, :k]
    return part


def exact_search(queries: np.ndarray, gallery: np.ndarray, k: int, allowed=None, engine: str = "auto",
                 block: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """(indices [Q, k], Euclidean distances [Q, k]) of each query's k nearest gallery rows, nearest
    first, ties to the lower index; `allowed(rows, start, stop)` masks a block of gallery columns.
    faiss's exact index where installed and no filter applies, else numpy in gallery blocks."""
    queries, gallery = np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(gallery, np.float32)
    k = min(k, len(gallery))
    if allowed is None and engine in ("auto", "faiss"):
        try:
            import faiss
        except ImportError:
            if engine == "faiss":
                raise GalleryError("--engine=faiss needs faiss: pip install -e '.[search]'") from None
        else:
            flat = faiss.IndexFlatL2(gallery.shape[1])
            flat.add(gallery)
            d, i = flat.search(queries, k)
            return i.astype(np.int64), np.sqrt(np.maximum(d, 0.0))
    best_d = np.full((len(queries), k), np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(gallery), block):
        stop = min(start + block, len(gallery))
        d = _squared_distances(queries, gallery[start:stop])
        if allowed is not None:
            d[~allowed(start, stop)] = np.inf
        cand_i = _block_candidates(d, k) + start
        cand_d = np.concatenate([best_d, np.take_along_axis(d, cand_i - start, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, cand_i], axis=1)
        order = np.lexsort((cand_i, cand_d), axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(cand_d, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
    return best_i, np.sqrt(best_d)


def search(index: Index, queries: np.ndarray, k: int = 10, query_camids: np.ndarray | None = None,
           query_frames: np.ndarray | None = None, other_cameras: bool = False, time_window: int | None = None,
           rerank: bool = False, engine: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Each query's k nearest gallery entries (rows of the index) and their distances, nearest
    first; `other_cameras` keeps entries seen by another camera than the query's, `time_window`
    those within that many frames of the query's (where both are known); `rerank` re-ranks each
    query's candidates by Zhong et al.'s k-reciprocal encoding among them."""
    if queries.shape[1] != index.meta["dim"]:
        raise GalleryError(f"the queries are {queries.shape[1]}-d but --index={index.folder} holds"
                           f" {index.meta['dim']}-d embeddings: search with the model that made it")
    if len(index.embeddings) == 0:
        raise GalleryError(f"--index={index.folder} is empty")
    allowed = None
    if other_cameras or time_window is not None:
        q_cams = np.full(len(queries), -1) if query_camids is None else np.asarray(query_camids)
        q_frames = np.full(len(queries), -1) if query_frames is None else np.asarray(query_frames)

        def allowed(start, stop):
            keep = np.ones((len(queries), stop - start), bool)
            cams, frames = index.camids[start:stop], index.frames[start:stop]
            if other_cameras:
                keep &= ~((cams[None, :] == q_cams[:, None]) & (q_cams[:, None] >= 0))
            if time_window is not None:
                known = (frames[None, :] >= 0) & (q_frames[:, None] >= 0)
                keep &= ~known | (np.abs(frames[None, :] - q_frames[:, None]) <= time_window)
            return keep
    wanted = max(k, 100) if rerank else k
    rows, distances = exact_search(queries, index.embeddings, wanted, allowed, engine)
    if not rerank:
        return rows, distances
    from reid_tf import rerank as rerank_lib

    finite = np.isfinite(distances)
    pool = np.unique(rows[finite])
    reranked = rerank_lib.re_ranking_features(queries, index.embeddings[pool])
    own = np.zeros(reranked.shape, bool)  # only each query's own candidates compete
    own[np.nonzero(finite)[0], np.searchsorted(pool, rows[finite])] = True
    reranked[~own] = np.inf
    order = np.argsort(reranked, axis=1, kind="stable")[:, :k]
    chosen = pool[order]
    euclidean = np.linalg.norm(queries[:, None, :] - index.embeddings[chosen], axis=2)  # the trained metric
    return chosen, np.where(np.isfinite(np.take_along_axis(reranked, order, axis=1)), euclidean, np.inf)
