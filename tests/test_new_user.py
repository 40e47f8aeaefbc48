"""What a new user meets, through the commands the README gives: help that lists the project's
flags, a quiet console from a clone named reid_tf, eval after the quickstart without
--data_dir, messages that say what to do, failed starts kept out of the report."""

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import REPO

NOISE = ("INFO:tensorflow", "Sharding callback", "Writing fingerprint", "contains input name",
         "Assets written", "fully_quantize", "Created TensorFlow Lite", "Warning:", "Traceback",
         "tf2onnx", "cuInit", "E0000")
# TensorFlow's C++ lines (INFO, WARNING), those printed while its library loads too.
NATIVE = (r"^[IWE]0000 ", r"^WARNING: All log messages before absl::InitializeLog")


def run(args, cwd=REPO, python=sys.executable, env=None):
    env = {k: v for k, v in (env or os.environ).items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([python, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def console_lines(proc):
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("tool, expected", [
    (["-m", "reid_tf.train"], ["Data:", "Model:", "Loss:", "Optimiser:", "Run:", "--return_id_num=20",
                               "--[no]eval_rerank  (default: false)", "--backbone=resnet50"]),
    (["-m", "reid_tf.export"], ["Export:", "--format=saved_model", "--export_dir  (required)"]),
    (["tools/eval.py"], ["What to score:", "Scoring:", "Outputs:", "--k1=20", "--model"]),
    (["tools/report.py"], ["Report:", "--baseline"]),
    (["tools/import_original.py"], ["Import:", "--checkpoint  (required)", "Model:", "--backbone=resnet50"]),
    (["tools/replay_original.py"], ["Replay:", "--record  (required)", "--init", "Optimiser:"]),
])
def test_help_lists_the_projects_flags_and_nothing_else(tool, expected):
    flags = ["--help", "--helpshort"] if tool == ["tools/report.py"] else ["--help"]
    with ThreadPoolExecutor(2) as pool:  # two processes at once: each mostly imports, on one core
        *helps, full = pool.map(lambda flag: run([*tool, flag]), [*flags, "--helpfull"])
    for proc in helps:
        assert proc.returncode == 0, proc.stderr[-1000:]
        for text in expected:
            assert text in proc.stdout, (text, proc.stdout)
        for foreign in ("--verbosity", "--logtostderr", "--only_check_args", "--test_srcdir", "absl.flags"):
            assert foreign not in proc.stdout
    assert "absl.logging:" in full.stdout  # the full list, as absl has it


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The repository as a new user has it: a folder named reid_tf, the venv inside it (a link
    to this one, so that TensorFlow's own files sit under .../reid_tf/.venv/ too)."""
    root = tmp_path_factory.mktemp("home") / "reid_tf"
    for name in ("reid_tf", "flags", "tools"):
        shutil.copytree(os.path.join(REPO, name), root / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    python = sys.executable
    if sys.prefix != sys.base_prefix:  # in a venv: the clone's .venv is it
        os.symlink(sys.prefix, root / ".venv")
        python = str(root / ".venv" / "bin" / os.path.basename(sys.executable))
    return root, python


@pytest.fixture(scope="module")
def clone_run(clone, market_dir):
    root, python = clone
    out = str(root / "runs" / "tiny")
    args = ["-m", "reid_tf.train", "--dataset=market1501", f"--data_dir={market_dir}", "--image_height=64",
            "--image_width=32", "--backbone=small", "--backbone_weights=none", "--return_id_num=4",
            "--image_num_every_id=2", "--valid_ids=2", "--train_eval_ids=2", "--max_steps=2",
            "--eval_every=2", "--checkpoint_every=2", "--log_every=1", "--keep_checkpoints=1",
            f"--output_dir={out}"]
    first = run(args, cwd=root, python=python)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run(args, cwd=root, python=python)
    return out, args, first, again


def quiet(proc):
    """A command's console as a user sees it: lines, each short, none of TensorFlow's own."""
    lines = console_lines(proc)
    assert lines, proc
    for line in lines:
        assert len(line) <= 300, line[:400]
        assert not any(noise in line for noise in NOISE), line
        assert not any(re.search(pattern, line) for pattern in NATIVE), line
    return lines


def test_the_console_is_quiet_from_a_clone_named_reid_tf(clone_run):
    out, _, first, again = clone_run
    quiet(first)
    # The run keeps one checkpoint, as asked; a finished run started again exports nothing.
    kept = sorted(os.listdir(os.path.join(out, "checkpoints")))
    assert kept == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert again.stdout.strip().splitlines()[-1] == f"already exported {out}/export/2"
    assert "this run had already finished" in again.stderr


CHECKED = r"against the model on 8 images: largest difference \S+ \(\S+ of the largest value\), smallest cosine"
# --format (or --precision) -> (flags, the files it promises, its summary lines before "exported DIR")
EXPORTS = {
    "saved_model": ([], ["saved_model.pb", "assets/reid_config.json"],
                    [r"SavedModel: \d+\.\d MiB; computes in float32; signatures serving_bytes, serving_default$"]),
    "bf16": (["--precision=bfloat16"], ["saved_model.pb", "assets/reid_config.json"],
             [r"SavedModel: \d+\.\d MiB; computes in bfloat16; signatures serving_bytes, serving_default$"]),
    "tflite": (["--format=tflite", "--quantize=int8", "--calibration_images=8"], ["model.tflite", "reid_config.json"],
               [rf"model\.tflite: \d+\.\d MiB; {CHECKED}"]),
    "onnx": (["--format=onnx"], ["model.onnx", "reid_config.json"], [rf"model\.onnx: \d+\.\d MiB; {CHECKED}"]),
    "tracker": (["--format=tracker"], ["small.onnx", "small.onnx.metadata.json", "small_raw255.onnx", "small.tflite",
                                       "deepstream_sgie.txt", "reid_config.json"],
                [rf"small\.onnx: \d+\.\d MiB; {CHECKED}", rf"small\.tflite: \d+\.\d MiB; {CHECKED}",
                 rf"small_raw255\.onnx: \d+\.\d MiB; {CHECKED}"]),
    "search": (["--format=search", "--index=INDEX", "--k=3"], ["saved_model.pb", "assets/reid_config.json"],
               [r"SavedModel: \d+\.\d MiB; searches a gallery of \d+ embeddings, 3 results a query; signatures"
                r" search, search_bytes$"]),
    "backbone": (["--format=backbone"], ["backbone.weights.h5", "reid_config.json"],
                 [r"backbone\.weights\.h5: \d+\.\d MiB$"]),
}


@pytest.fixture(scope="module")
def gallery_index(clone, clone_run, market_dir):
    """tools/gallery.py index and search as the README shows them (the search export serves the index)."""
    root, python = clone
    index = str(root / "gallery.idx")
    made = run(["tools/gallery.py", "index", f"--model={clone_run[0]}", f"--images={market_dir}/bounding_box_test",
                f"--index={index}"], cwd=root, python=python)
    assert made.returncode == 0 and "Traceback" not in made.stderr, made.stderr[-2000:]
    query = sorted(os.listdir(f"{market_dir}/query"))[0]
    found = run(["tools/gallery.py", "search", f"--index={index}", f"--query={market_dir}/query/{query}", "--k=3",
                 "--other_cameras", f"--output_json={root}/hits.json"], cwd=root, python=python)
    assert found.returncode == 0 and "Traceback" not in found.stderr, found.stderr[-2000:]
    quiet(made), quiet(found)
    assert os.path.exists(f"{root}/hits.json")
    return index


@pytest.mark.parametrize("name", list(EXPORTS))
def test_each_export_format_from_the_command_line(clone, clone_run, gallery_index, name):
    """`python -m reid_tf.export ... --format=F` as the README shows it: exit 0, no traceback, its
    summary line(s), then the folder, which holds the files the format promises."""
    root, python = clone
    flags, files, lines = EXPORTS[name]
    flags = [f.replace("INDEX", gallery_index) for f in flags]
    folder = f"{root}/exports/{name}"
    proc = run(["-m", "reid_tf.export", f"--output_dir={clone_run[0]}", f"--export_dir={folder}", *flags],
               cwd=root, python=python)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    printed = [line for line in proc.stdout.splitlines() if line.strip()]
    assert printed[-1] == f"exported {folder}/2"
    assert len(printed) == len(lines) + 1, printed
    for line, pattern in zip(printed, lines):
        assert re.match(pattern, line), (line, pattern)
    for file in files:
        assert os.path.isfile(f"{folder}/2/{file}"), (file, os.listdir(f"{folder}/2"))
    quiet(proc)


def test_eval_follows_the_quickstart_without_data_dir(clone, clone_run, market_dir):
    root, python = clone
    out = clone_run[0]
    for model in (out, f"{out}/export/2"):
        proc = run(["tools/eval.py", f"--model={model}"], cwd=root, python=python)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = console_lines(proc)
        assert lines[0].startswith(f"scoring on the test split of --dataset=market1501 in {market_dir}")
        assert any(re.match(r"plain +0\.\d{4} +0\.\d{4}", line) for line in lines), lines  # fractions
        assert any(line.startswith("original ") for line in lines)  # the other protocol, beside it
    proc = run(["tools/eval.py", f"--model={root}/runs"], cwd=root, python=python)
    assert proc.returncode != 0 and console_lines(proc)[-1].startswith("error: ")


def test_a_missing_dataset_says_what_to_do_and_the_report_keeps_failed_starts_apart(tmp_path):
    missing = tmp_path / "market1501"
    proc = run(["-m", "reid_tf.train", "--flagfile=flags/resnet_finetuning.cfg", f"--data_dir={missing}",
                "--backbone_weights=none", f"--output_dir={tmp_path / 'runs' / 'failed'}"])
    last = console_lines(proc)[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert last.startswith(f"error: missing dataset folder {missing}: --dataset=market1501 expects --data_dir"
                           f"={missing} to hold bounding_box_train/, query/ and bounding_box_test/")
    assert last.endswith("(0002_c1s1_000451_03.jpg; -1 junk, 0000 distractors)")
    report = run(["tools/report.py", str(tmp_path / "runs")])
    assert report.returncode == 0
    assert console_lines(report) == ["No runs found.", "never started: 1 folder(s) (failed)"]


def test_the_rest_client_does_not_import_tensorflow():
    code = ("import sys, runpy; sys.argv = ['serving_client.py', '--images=README.md', '--port=9'];"
            "\ntry: runpy.run_path('tools/serving_client.py', run_name='__main__')"
            "\nexcept SystemExit as e: print(e.code)"
            "\nprint('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "False" and "is TF Serving running there?" in lines[-2]
