"""Write the measured tables of the docs and the README from the committed benchmark results
(docs/benchmarks/*.json), between `<!-- table:NAME -->` and `<!-- /table -->` markers, so that no
figure is typed by hand. `--check` fails, naming the file, where a table is not what the data gives.

  python benchmarks/write_docs.py [--check]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import sys

import docs_adaptation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "docs", "benchmarks")
FILES = ("README.md", "docs/benchmarks.md", "docs/trackers_and_galleries.md", "docs/backbones.md",
         "docs/cpu_kinds.md", "docs/training.md", "docs/original.md", "docs/own_data.md", "docs/datasets.md",
         "docs/adaptation.md")
MARK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- /table -->)", re.S)


def _missing(command: str) -> str:
    return f"(not measured yet: {command})\n"


def _load(name: str):
    path = os.path.join(DATA, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]) + "\n"


def tracker() -> str:
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DATA, "tracker_seed*.json")))]
    if not runs:
        return _missing("python benchmarks/tracker.py --seed=N --output_json=docs/benchmarks/tracker_seedN.json")
    rows = []
    for name, label in (("trained", "BoT-SORT + our trained osnet_x0_25"),
                        ("untrained", "BoT-SORT + the same, untrained"), ("motion_only", "ByteTrack (motion only)")):
        idsw = [r[name]["idsw"] for r in runs]
        idf1 = [r[name]["idf1"] for r in runs]
        rows.append([label, " / ".join(map(str, idsw)), f"{statistics.mean(idsw):.1f}",
                     " / ".join(f"{x:.3f}" for x in idf1), f"{statistics.mean(idf1):.3f}"])
    seeds = ", ".join(str(r["video"]["seed"]) for r in runs)
    out = _table(["tracker", "ID switches per seed", "mean", "IDF1 per seed", "mean"], rows)
    parity = [v for r in runs for v in r["parity"].values()]
    return out + (f"\nSeeds {seeds}: {runs[0]['video']['cameras']} cameras x {runs[0]['video']['frames']} frames,"
                  f" {runs[0]['video']['people_per_camera']} people a camera; boxmot {runs[0]['boxmot_version']}."
                  f" boxmot's crops against tools/eval.py's pipeline (batches 1, 7, 33): smallest cosine"
                  f" {min(p['eval_pipeline_min_cosine'] for p in parity):.4f}; on boxmot's own resized crops"
                  f" {min(p['same_input_min_cosine'] for p in parity):.6f}.\n")


def tracker_short() -> str:
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DATA, "tracker_seed*.json")))]
    if not runs:
        return "(not measured yet)\n"
    mean = {k: statistics.mean(r[k]["idsw"] for r in runs) for k in ("trained", "untrained", "motion_only")}
    return (f"Measured ({len(runs)} synthetic videos, benchmarks/tracker.py): BoT-SORT with our trained osnet_x0_25"
            f" makes {mean['trained']:.1f} identity switches a video, {mean['untrained']:.1f} with the same network"
            f" untrained, {mean['motion_only']:.1f} for ByteTrack.\n")


def embedder() -> str:
    data = _load("embedder_rows.json")
    if data is None:
        return _missing("python benchmarks/embedder.py --rows_json=docs/benchmarks/embedder_rows.json")
    rows = [[r["network"], r["contender"], r["batch"], f"{r['ms']:.1f}", f"{r['min_cosine']:.4f}",
             f"{100 * r['fraction_of_peak']:.1f}% of {r['peak_dtype']}"] for r in data["rows"]]
    peaks = data["peaks"]
    return (f"Threads: {data['threads']}. Dense matmul peak in the same run: float32 {peaks['float32'] / 1e9:.0f},"
            f" bfloat16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s.\n\n"
            + _table(["network", "contender", "batch", "ms", "cosine to torch", "multiply-adds/s"], rows))


def embedder_best() -> str:
    summary = _load("embedder.json")
    if summary is None:
        return "(not measured yet)\n"
    rows = [[s["network"], s["batch"], f"{s['ours_best']} {s['ours_ms']:.1f} ms",
             f"{s['peer_best']} {s['peer_ms']:.1f} ms", f"{s['speedup']:.2f}x", f"{s['cosine']:.4f}",
             f"{s['int8_ms']:.1f} ms ({s['int8_cosine']:.4f})" if s.get("int8_ms") else "-"] for s in summary]
    return _table(["network", "batch", "ours, fastest equal", "torchreid, fastest equal", "speed-up", "cosine",
                   "our int8 LiteRT (cosine)"], rows)


def scoring_floor() -> str:
    data = _load("scoring_floor.json")
    if data is None:
        return _missing("python benchmarks/scoring.py --galleries=82161 --skip_market --skip_dense"
                        " --output_json=docs/benchmarks/scoring_floor.json")
    rows = []
    for r in data["rows"]:
        floor = r.get("all_pairs_product_s", r["qg_product_s"])
        rows.append([f"{r['queries']:,} x {r['gallery']:,}", r["what"], f"{r['seconds']:.1f}",
                     "(Q+G)^2 product" if "all_pairs_product_s" in r else "Q x G product", f"{floor:.1f}",
                     f"{r['seconds'] / floor:.2f}x", f"{r['peak_mib'] / 1024:.2f}"])
    return _table(["scored", "scoring", "seconds", "floor", "floor seconds", "multiple of floor", "peak GiB"], rows)


def gallery_scale() -> str:
    parts = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DATA, "gallery_scale*.json")))]
    data = {**parts[0], "rows": [r for p in parts for r in p["rows"]]} if parts else None
    if data is None:
        return _missing("python benchmarks/gallery_scale.py --output_json=docs/benchmarks/gallery_scale.json")
    rows = [[f"{r['n']:,} x {r['dim']}", r["kind"] + (f" ({'efSearch' if r['kind'] == 'hnsw' else 'nprobe'}"
                                                       f" {r['setting']})" if r["setting"] else ""),
             f"{r['build_s']:.1f}", f"{1000 * r['query_100_s']:.0f}", f"{r['memory_mib']:,}",
             f"{r['recall_at_10']:.3f}"] for r in data["rows"]]
    return (f"{data['threads']} threads, {data['queries']} queries, k = {data['k']}.\n\n"
            + _table(["gallery", "index", "build s", "100 queries ms", "memory MiB", "recall@10"], rows))


GALLERY_RULE_MS = 100  # a query's budget: one query image's latency that a search service can afford


def gallery_rule() -> str:
    """The verdict on exact search, per dimension, from the measured rows and the rule stated first."""
    parts = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DATA, "gallery_scale*.json")))]
    rows = [r for p in parts for r in p["rows"]]
    if not rows:
        return "(not measured yet)\n"
    text = (f"The rule: exact search (what tools/gallery.py does) is enough while one query costs under"
            f" {GALLERY_RULE_MS} ms (its share of a batch of 100) and the gallery fits in memory; past that, the"
            " approximate index with the best measured recall@10 within that budget is worth its lost recall.")
    for dim in sorted({r["dim"] for r in rows}):
        exact = min((r for r in rows if r["dim"] == dim and r["kind"] in ("flat", "numpy")),
                    key=lambda r: r["query_100_s"])
        ms = 10 * exact["query_100_s"]
        text += f" At {exact['n']:,} x {dim}-d, exact search costs {ms:.0f} ms a query"
        if ms < GALLERY_RULE_MS:
            text += ": exact."
            continue
        fast = [r for r in rows if r["dim"] == dim and r["kind"] not in ("flat", "numpy")
                and 10 * r["query_100_s"] < GALLERY_RULE_MS]
        best = max(fast, key=lambda r: r["recall_at_10"], default=None)
        text += (f": over budget; {best['kind']} ({best['setting']}) at recall@10 {best['recall_at_10']:.3f},"
                 f" {10 * best['query_100_s']:.1f} ms a query." if best else ": over budget, and no index measured"
                 " within it.")
    return text + "\n"


def search_serving() -> str:
    data = _load("search_serving.json")
    if data is None:
        return _missing("python benchmarks/search_serving.py --run=RUN"
                        " --output_json=docs/benchmarks/search_serving.json")
    rows = [[f"{r['gallery']:,} x {r['dim']}", r["savedmodel_mib"], r["loaded_mib"], f"{r['latency_ms']:.1f}",
             "yes" if r["same_as_gallery_tool"] else "NO"] for r in data["rows"]]
    return (f"Model: {data['run_backbone']} at {data['image'][0]}x{data['image'][1]}.\n\n"
            + _table(["gallery", "SavedModel MiB", "loaded MiB", "search at batch 1, ms", "top-10 = gallery tool"],
                     rows))


def osnet_init() -> str:
    data = _load("osnet_init.json")
    if data is None:
        return _missing("python benchmarks/osnet_init.py --output_json=docs/benchmarks/osnet_init.json")
    rows = [[r["init"], r["seed"], f"{r['mAP_before']:.3f}", f"{r['mAP_after']:.3f}", f"{r['rank1_after']:.3f}",
             f"{r['seconds']:.0f}"] for r in data["rows"]]
    return _table(["--backbone_init", "seed", "mAP before", "mAP after", "rank-1 after", "seconds"], rows)


def gallery_short() -> str:
    parts = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DATA, "gallery_scale*.json")))]
    rows = [r for p in parts for r in p["rows"] if r["kind"] in ("flat", "numpy")]
    serving = _load("search_serving.json")
    if not rows:
        return "(not measured yet)\n"
    text = "Measured (benchmarks/gallery_scale.py): exact search of 100 queries over " + "; ".join(
        f"{r['n']:,} x {r['dim']}-d embeddings takes {1000 * r['query_100_s']:.0f} ms with"
        f" {'faiss' if r['kind'] == 'flat' else 'numpy'}" for r in rows) + "."
    if serving:
        big = max(serving["rows"], key=lambda r: r["gallery"])
        text += (f" The search SavedModel over {big['gallery']:,} embeddings answers one query image in"
                 f" {big['latency_ms']:.0f} ms (benchmarks/search_serving.py).")
    return text + "\n"


def embedder_readme() -> str:
    summary = _load("embedder.json")
    if summary is None:
        return "(not measured yet)\n"
    rows = []
    for network in dict.fromkeys(s["network"] for s in summary):
        mine = [s for s in summary if s["network"] == network]
        rows.append([network, " / ".join(f"{s['ours_ms']:.1f}" for s in mine),
                     " / ".join(f"{s['peer_ms']:.1f}" for s in mine),
                     " / ".join(f"{s['speedup']:.2f}x" for s in mine),
                     " / ".join(f"{s['int8_ms']:.1f}" if s.get("int8_ms") else "-" for s in mine)])
    batches = "/".join(str(s["batch"]) for s in summary if s["network"] == rows[0][0])
    return ("Fastest with embeddings equal to torch's (cosine >= 0.999), ms at batch " + batches + ":\n\n"
            + _table(["network", "ours", "torchreid", "speed-up", "our int8 LiteRT"], rows))


def cpu_kinds() -> str:
    """The log re-run's set (docs/training_log_intended) against each other kind of CPU's set, run by run."""
    import compare_kinds

    first = os.path.join(REPO, "docs", "training_log_intended")
    with open(os.path.join(first, "standin.json"), encoding="utf-8") as f:
        own = json.load(f)
    head = f"First kind: stand-in `{own['fingerprint']}`, {own['cpu']} (`docs/training_log_intended`, the doc's set).\n"
    out = []
    for second in sorted(glob.glob(os.path.join(REPO, "docs", "training_log_kinds", "*", "standin.json"))):
        folder = os.path.dirname(second)
        with open(second, encoding="utf-8") as f:
            standin = json.load(f)
        out.append(head + f"Second kind: stand-in `{standin['fingerprint']}`, {standin['cpu']}"
                   f" (`{os.path.relpath(folder, REPO)}`).\n\n" + compare_kinds.markdown(first, folder))
    return "\n".join(out) or _missing("benchmarks/rerun_log.py --summaries=docs/training_log_kinds/FINGERPRINT")


def train_step_floor() -> str:
    """Our train step over plain Keras' (the floor), per CPU kind, each round in its own processes."""
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DATA, "train_step_floor_*.json")))]
    if not runs:
        return _missing("python benchmarks/train_step.py --floor"
                        " --output_json=docs/benchmarks/train_step_floor_KIND.json")
    rows = [[run["cpu"], r["size"], r["precision"], ", ".join(f"{x:.1f}" for x in r["reid_tf"]),
             ", ".join(f"{x:.1f}" for x in r["keras"]), ", ".join(f"{x:.2f}" for x in r["ratio"]),
             f"{statistics.mean(r['ratio']):.2f}"] for run in runs for r in run["rows"]]
    return _table(["CPU kind", "ResNet50", "precision", "reid_tf step, images/s", "plain Keras, images/s",
                   "ratio, each round", "mean"], rows)


def _quickstarts() -> list[dict]:
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(DATA, "quickstart_*.json")))]


def quickstart() -> str:
    """The README's quickstart command, per CPU kind, from an empty cache (benchmarks/quickstart.py)."""
    runs = _quickstarts()
    if not runs:
        return _missing("python benchmarks/quickstart.py --output_json=docs/benchmarks/quickstart_KIND.json")
    rows = [[r["cpu"], f"`{r['flagfile']}`", f"{r['wall_s'] / 60:.1f} min",
             f"{r['mAP_before']:.3f} → {r['mAP_after']:.3f}", f"{r['rank1_before']:.3f} → {r['rank1_after']:.3f}",
             ", ".join(f"{c['mAP']:.3f} at {c['step']}" for c in r["curve"]), f"{r['peak_rss_mib'] / 1024:.1f} GB",
             f"{r['run_folder_mib']:.0f} MB"] for r in runs]
    return _table(["CPU kind", "flagfile", "wall time (data, training, validation, export)", "validation mAP",
                   "rank-1", "mAP by step", "peak memory", "run folder"], rows)


def quickstart_short() -> str:
    runs = _quickstarts()
    if not runs:
        return "(not measured yet)\n"
    kinds = "; ".join(f"{r['wall_s'] / 60:.0f} minutes on the {r['cpu']} kind, validation mAP {r['mAP_before']:.2f}"
                      f" → {r['mAP_after']:.2f}" for r in runs)
    missing = [k for k in ("avx2", "avx512_bf16") if k not in {r["cpu"] for r in runs}]
    later = f" The {' and '.join(missing)} kind: not measured yet." if missing else ""
    return f"Measured (`benchmarks/quickstart.py`, two idle cores, an empty cache): {kinds}.{later}\n"


def _replay_rows(records: dict) -> list[list]:
    """Per state, the largest figure over its records (seeds), from original_run.compare."""
    rows = []
    for state in sorted({name.split("_")[2] for name in records}):
        runs = [r for name, r in records.items() if name.split("_")[2] == state]
        top = {k: max(r[k] for r in runs) for k in ("eval_init", "loss_0", "train_embeddings_0", "loss_1_2",
                                                   "loss_later", "eval_final")}
        equal = all(r["lr_equal"] and r["global_step_equal"] for r in runs)
        seeds = ", ".join(sorted(name.split("_")[3][4:] for name in records if name.split("_")[2] == state))
        rows.append([state if state != "F" else "F (after reid_tf's own C)", seeds, f"{top['eval_init']:.1e}",
                     f"{top['loss_0']:.1e} / {top['train_embeddings_0']:.1e}", f"{top['loss_1_2']:.1e}",
                     f"{top['loss_later']:.1e}", f"{top['eval_final']:.1e}", "equal" if equal else "**differ**"])
    return rows


_REPLAY_HEADER = ["state", "seeds", "eval emb at init", "step 0: loss / train emb", "loss, steps 1–2",
                  "loss, steps 3+", "final eval emb", "lr, global step"]


def original_replay() -> str:
    """reid_tf replaying the original's records, the largest figure over the seeds of each state."""
    run = _load("original_replay.json")
    if not run or "records" not in run:
        return _missing("python benchmarks/replay_original.py --output_json=docs/benchmarks/original_replay.json")
    out = f"Measured on the {run['cpu']} CPU kind (`benchmarks/replay_original.py`).\n\n"
    out += _table(_REPLAY_HEADER, _replay_rows(run["records"]))
    if run.get("extra"):
        h = run["extra_setup"]
        out += (f"\nRecords made the same way with other settings (seed {h['init_seed']}, {h['height']}×{h['width']},"
                f" P×K {h['P']}×{h['K']}, {h['steps']} steps, decay every {h['decay_steps']}):\n\n")
        out += _table(_REPLAY_HEADER, _replay_rows(run["extra"]))
    return out


def original_teacher() -> str:
    """One step from the original's own checkpoint at step t, and F from the original's C."""
    run = _load("original_replay.json")
    if not run or "teacher_forcing" not in run:
        return _missing("python benchmarks/replay_original.py --root=WORK --output_json=...")
    rows = [[r["record"].split("_")[2], r["record"].split("_")[3][4:], r["t"], f"{r['loss_t']:.1e}",
             f"{r['loss_t1']:.1e}"] for r in run["teacher_forcing"]]
    f = run["f_from_original_c"]
    return (_table(["state", "seed", "t", "loss(t)", "loss(t + 1)"], rows) + "\nF continued from the original's own"
            f" C checkpoint (Adam's moments, beta powers and global step imported): loss at every step within"
            f" {max(f['loss_0'], f['loss_1_2'], f['loss_later']):.1e}, eval embeddings at its start"
            f" {f['eval_init']:.1e} and at its end {f['eval_final']:.1e}; lr and global step"
            f" {'equal' if f['lr_equal'] and f['global_step_equal'] else 'DIFFER'}.\n")


def original_flips() -> str:
    """Each quirk flag flipped in a state where it acts: the figures it moves (seed 0)."""
    run = _load("original_replay.json")
    if not run or "flips" not in run:
        return _missing("python benchmarks/replay_original.py --parts=flips --output_json=...")
    rows = []
    for r in run["flips"]:
        if "refused" in r:
            rows.append([r["state"], f"`{r['flag']}`", r["original"], "refused: " + r["refused"], "", "", ""])
            continue
        rows.append([r["state"], f"`{r['flag']}`", r["original"], f"{r['eval_init']:.1e}",
                     f"{r['loss_0']:.1e} / {r['train_embeddings_0']:.1e}",
                     f"{r['loss_1_2']:.1e} / {r['loss_later']:.1e}",
                     f"{r['eval_final']:.1e}; lr {'equal' if r['lr_equal'] else '**differs**'}"])
    return _table(["state", "flipped", "the log's value", "eval emb at init", "step 0: loss / train emb",
                   "loss, steps 1–2 / 3+", "final eval emb"], rows)


def calibration_far() -> str:
    data = _load("calibration_far.json")
    if not data:
        return _missing("python benchmarks/calibration_far.py --output_json=docs/benchmarks/calibration_far.json")
    rows = [[r["seed"], r["target"].replace("far=", ""), f"{r['threshold']:.4f}",
             f"{r['fitted_pairs']['positive']:,} / {r['fitted_pairs']['negative']:,}", f"{r['held_out_far']:.4f}",
             f"{r['held_out_far'] / float(r['target'][4:]):.2f}", f"{r['shifted_far']:.4f}",
             f"{r['shifted_far'] / float(r['target'][4:]):.2f}"] for r in data["rows"]]
    return (f"`{data['model']}` on the {data['identities']} test identities of the synthetic set, {data['cpu']}"
            " kind:\n\n" + _table(["seed", "target FAR", "threshold", "fitted on pairs (same / other)",
                                   "FAR on the other half", "÷ target", "FAR on other cameras and people",
                                   "÷ target"], rows))


def identity_count() -> str:
    data = _load("identity_count.json")
    if not data:
        return _missing("python benchmarks/identity_count.py --output_json=docs/benchmarks/identity_count.json")
    return _table(["training identities", "their images", f"test mAP ({data['test_identities']} unseen)",
                   "test rank-1"], [[r["identities"], r["images"], f"{r['mAP']:.3f}", f"{r['rank1']:.3f}"]
                                    for r in data["rows"]])


def verification_cost() -> str:
    data = _load("verification_cost.json")
    if not data:
        return _missing("python benchmarks/scoring.py --verification --output_json=docs/benchmarks/"
                        "verification_cost.json")
    rows = [[r["round"], r["what"], f"{r['seconds']:.1f}", f"{r['peak_mib'] / 1024:.2f}"] for r in data["rows"]
            if "seconds" in r]
    return (_table(["round", "what", "seconds", "peak RSS, GiB"], rows) + "\nverification ÷ plain scoring, per"
            " round: " + ", ".join(f"{x:.2f}" for x in data["ratios"]) + "\n")


def domain_shift() -> str:
    data = _load("domain_shift.json")
    if not data:
        return _missing("python benchmarks/domain_shift.py --output_json=docs/benchmarks/domain_shift.json")
    rows = [[f"`{r['domain']}`", r["description"], f"{r['mAP']:.3f}", f"{r['rank1']:.3f}", f"{100 * r['kept']:.0f} %"]
            for r in data["rows"]]
    return (f"`{data['model']}`, trained on the `{data['trained_on']}` domain, on each domain's test split:\n\n"
            + _table(["domain", "what it draws", "mAP", "rank-1", "of the in-domain mAP"], rows))


RENDER = {f.__name__: f for f in (tracker, tracker_short, embedder, embedder_best, embedder_readme, scoring_floor,
                                  gallery_scale, gallery_short, gallery_rule, search_serving, osnet_init,
                                  cpu_kinds, train_step_floor, quickstart, quickstart_short, original_replay,
                                  original_teacher, original_flips, calibration_far, identity_count,
                                  verification_cost, domain_shift, docs_adaptation.adaptation,
                                  docs_adaptation.cluster_scale)}


def render(text: str) -> str:
    return MARK.sub(lambda m: m.group(1) + RENDER[m.group(2)]() + m.group(4), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for name in FILES:
        path = os.path.join(REPO, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = render(text)
        if new != text:
            stale.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    if args.check and stale:
        sys.exit(f"tables out of date in {', '.join(stale)}: python benchmarks/write_docs.py")


if __name__ == "__main__":
    main()
