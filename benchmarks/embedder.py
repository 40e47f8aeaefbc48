"""The latency race: our exports of osnet_x1_0, osnet_x0_25 and resnet50 (torchvision's layout,
our resnet50_torch) against torchreid's own modules holding the same weights, embedding batches of
1, 16 and 64 crops at 256x128 on this CPU. Every contender runs in its own process with the same
thread count; this CPU's dense-matmul peak (float32, bfloat16) is measured in the same run.

  python benchmarks/embedder.py [--output_json=F] [--rows_json=F] [--rounds=2] [--networks=osnet_x1_0,...]

The weights are torchreid's, random (BN statistics too), carried over by tools/convert_torchreid.py's
mapping. Ours: SavedModel float32 and bfloat16, LiteRT float32 and int8, ONNX (tf2onnx) under
onnxruntime. The peers: torch eager (contiguous and channels_last, float32 and bfloat16 autocast),
torch.compile, and torch.onnx's export under onnxruntime. Cosine is against torch eager float32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NETWORKS = {"osnet_x1_0": "osnet_x1_0", "osnet_x0_25": "osnet_x0_25", "resnet50": "resnet50_torch"}
OURS = ("savedmodel_f32", "savedmodel_bf16", "litert_f32", "litert_int8", "onnx_tf2onnx")
PEERS = ("torch_eager", "torch_eager_channels_last", "torch_eager_bf16", "torch_compile", "torch_onnx_ort")
BATCHES, SIZE, CROPS = (1, 16, 64), (256, 128), 64


def _timed(embed, crops, batches) -> dict:
    """Median milliseconds per call of each batch size (after two warm-up calls; at least 3 calls
    and 2 seconds), and the embeddings of all crops."""
    import numpy as np

    out = {}
    for b in batches:
        x = crops[:b]
        for _ in range(2):
            embed(x)
        times, start = [], time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < 2 and len(times) < 20):
            t = time.perf_counter()
            embed(x)
            times.append(time.perf_counter() - t)
        out[b] = 1000 * statistics.median(times)
    return out, np.asarray(embed(crops), np.float32)


def macs_per_crop(model) -> float:
    """Multiply-adds of one crop: every convolution (depthwise too) and dense layer, nested ones included."""
    import keras

    total = 0.0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out = layer.output.shape
            total += out[1] * out[2] * out[3] * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            shape = layer.output.shape if layer._inbound_nodes else None
            if shape is None:  # a gate's 1x1 convolution on the pooled vector
                total += layer.kernel.shape[2] * layer.kernel.shape[3]
            else:
                kh, kw, c_in = layer.kernel.shape[:3]
                total += shape[1] * shape[2] * shape[3] * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def prepare(network: str, work: str) -> dict:
    """torchreid's random network as a checkpoint, converted; our exports of it; the crops."""
    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(REPO, "tests"))
    import torchreid_models

    from reid_tf import config as C
    from reid_tf import export_lib, model, synthetic, torch_convert

    backbone, folder = NETWORKS[network], os.path.join(work, network)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    crops = np.stack([synthetic.render_pedestrian(synthetic._identity(rng), synthetic._camera(rng), rng, *SIZE)
                      for _ in range(CROPS)]).astype(np.float32)
    np.save(os.path.join(work, "crops.npy"), crops)
    net = torchreid_models.build(backbone)
    torch.save({"state_dict": net.state_dict()}, os.path.join(folder, "torchreid.pth"))
    fc = backbone.startswith("osnet")
    weights, head = os.path.join(folder, "backbone.weights.h5"), os.path.join(folder, "head.weights.h5")
    torch_convert.convert(os.path.join(folder, "torchreid.pth"), backbone, weights, "fc512" if fc else "none", head)
    m = C.ModelConfig(backbone=backbone, backbone_weights=weights, head="fc512" if fc else "none",
                      head_weights=head if fc else None)
    config = C.RunConfig(data=C.DataConfig(dataset="synthetic", image_height=SIZE[0], image_width=SIZE[1]), model=m)
    ours = model.build_model((*SIZE, 3), m)
    paths = {}
    for precision in ("float32", "bfloat16"):
        paths[{"float32": "savedmodel_f32", "bfloat16": "savedmodel_bf16"}[precision]] = export_lib.export_saved_model(
            ours, config, os.path.join(folder, f"savedmodel_{precision}"), 1, 0, overwrite=True, precision=precision)
    for fmt, quantize, name in (("tflite", "none", "litert_f32"), ("tflite", "int8", "litert_int8"),
                                ("onnx", "none", "onnx_tf2onnx")):
        paths[name] = export_lib.export_converted(ours, config, os.path.join(folder, name), 1, 0, fmt, quantize,
                                                  crops[:8], crops, overwrite=True)[0]
    return {"paths": paths, "macs": macs_per_crop(ours), "torch": os.path.join(folder, "torchreid.pth")}


def run_ours(kind: str, path: str, threads: int, crops):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from reid_tf import exported

    model = exported.open_export(path, threads)
    return _timed(model.embed, crops, BATCHES)


def run_peer(kind: str, network: str, checkpoint: str, threads: int, crops, work: str):
    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(REPO, "tests"))
    import torchreid_models

    torch.set_num_threads(threads)
    net = torchreid_models.build(NETWORKS[network])
    net.load_state_dict(torch.load(checkpoint)["state_dict"])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    standard = ((crops / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    if kind == "torch_onnx_ort":
        import onnxruntime

        path = os.path.join(work, network, "torch.onnx")
        torch.onnx.export(net, torch.from_numpy(standard[:1]), path, input_names=["images"], output_names=["e"],
                          dynamic_axes={"images": {0: "batch"}}, opset_version=17, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def embed(x):
            return session.run(None, {"images": standard[: len(x)]})[0]
        return _timed(embed, crops, BATCHES)
    if kind == "torch_compile":
        net = torch.compile(net, dynamic=False)
    layout = torch.channels_last if kind == "torch_eager_channels_last" else torch.contiguous_format
    net = net.to(memory_format=layout)

    def embed(x):
        batch = torch.from_numpy(standard[: len(x)]).contiguous(memory_format=layout)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=kind == "torch_eager_bf16"):
            return net(batch).float().numpy()
    return _timed(embed, crops, BATCHES)


def peaks(threads: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    sys.path.insert(0, HERE)
    from common import matmul_flops_per_second

    return {"float32": matmul_flops_per_second(tf.float32), "bfloat16": matmul_flops_per_second(tf.bfloat16)}


def child(job: dict) -> dict:
    """One contender (or the preparation, or the peaks) in this process; its result as JSON."""
    import numpy as np

    if job["what"] == "prepare":
        return prepare(job["network"], job["work"])
    if job["what"] == "peaks":
        return peaks(job["threads"])
    crops = np.load(os.path.join(job["work"], "crops.npy"))
    if job["kind"] in OURS:
        ms, embeddings = run_ours(job["kind"], job["path"], job["threads"], crops)
    else:
        ms, embeddings = run_peer(job["kind"], job["network"], job["torch"], job["threads"], crops, job["work"])
    np.save(os.path.join(job["work"], job["network"], f"{job['kind']}.npy"), embeddings)
    return {"ms": ms}


def _spawn(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {job.get('kind', job['what'])} failed: {tail[:300]}", flush=True)
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def race(networks: list[str], threads: int, work: str, rounds: int = 2) -> tuple[list[dict], list[dict], dict]:
    """Every contender of every network, each in its own process, `rounds` times in turn (each
    figure the best round's, so that a busy moment of the machine does not decide a row);
    (rows, summary, peaks)."""
    import numpy as np

    peak = _spawn({"what": "peaks", "threads": threads})
    print(f"matmul peak: float32 {peak['float32'] / 1e9:.1f}, bfloat16 {peak['bfloat16'] / 1e9:.1f} GFLOP/s",
          flush=True)
    rows = []
    for network in networks:
        prep = _spawn({"what": "prepare", "network": network, "work": work})
        best: dict[str, dict] = {}
        for _ in range(rounds):
            for kind in ("torch_eager", *OURS, *PEERS[1:]):  # the reference first
                job = {"what": "time", "kind": kind, "network": network, "work": work, "threads": threads,
                       "path": prep["paths"].get(kind), "torch": prep["torch"]}
                for batch, ms in _spawn(job).get("ms", {}).items():
                    best.setdefault(kind, {})[batch] = min(ms, best.get(kind, {}).get(batch, float("inf")))
        reference = np.load(os.path.join(work, network, "torch_eager.npy"))
        for kind, times in best.items():
            mine = np.load(os.path.join(work, network, f"{kind}.npy"))
            cosine = float(((mine * reference).sum(1) / np.linalg.norm(mine, axis=1)
                            / np.linalg.norm(reference, axis=1)).min())
            for batch, ms in times.items():
                dtype = "bfloat16" if "bf16" in kind else "float32"
                rate = 2 * prep["macs"] * int(batch) / (ms / 1000)
                rows.append({"network": network, "contender": kind, "side": "ours" if kind in OURS else "peer",
                             "batch": int(batch), "ms": round(ms, 3), "min_cosine": round(cosine, 5),
                             "gmacs_per_crop": round(prep["macs"] / 1e9, 4),
                             "fraction_of_peak": round(rate / peak[dtype], 4), "peak_dtype": dtype})
                print(json.dumps(rows[-1]), flush=True)
    return rows, summarise(rows), peak


EQUAL = 0.999  # cosine to torch eager float32 at which embeddings count as equal


def summarise(rows: list[dict]) -> list[dict]:
    """Per network and batch: our fastest and the peers' fastest among those whose embeddings equal
    torch eager float32's (cosine >= EQUAL), and our fastest int8 file beside, with its cosine."""
    out = []
    for network in dict.fromkeys(r["network"] for r in rows):
        for batch in BATCHES:
            mine = [r for r in rows if r["network"] == network and r["batch"] == batch]

            ours, peer = (min((r for r in mine if r["side"] == side and r["min_cosine"] >= EQUAL),
                              key=lambda r: r["ms"], default=None) for side in ("ours", "peer"))
            int8 = next((r for r in mine if r["contender"] == "litert_int8"), None)
            if ours and peer:
                out.append({"network": network, "batch": batch, "ours_best": ours["contender"], "ours_ms": ours["ms"],
                            "peer_best": peer["contender"], "peer_ms": peer["ms"], "cosine": ours["min_cosine"],
                            "peer_cosine": peer["min_cosine"], "speedup": round(peer["ms"] / ours["ms"], 3),
                            "int8_ms": int8 and int8["ms"], "int8_cosine": int8 and int8["min_cosine"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2, help="each contender's turns; the best counts")
    parser.add_argument("--output_json", help="the summary list: network, batch, ours_best, ours_ms, peer_best, ...")
    parser.add_argument("--rows_json", help="every contender's row")
    parser.add_argument("--work_dir", default=os.path.join(REPO, "runs", "embedder"))
    parser.add_argument("--summarise", help="write --output_json from this --rows_json file, running nothing")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    if args.summarise:
        with open(args.summarise) as f:
            summary = summarise(json.load(f)["rows"])
        with open(args.output_json, "w") as f:
            json.dump(summary, f, indent=2)
        return
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    os.makedirs(args.work_dir, exist_ok=True)
    rows, summary, peak = race(args.networks.split(","), args.threads, args.work_dir, args.rounds)
    for line in summary:
        print(json.dumps(line))
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(summary, f, indent=2)
    if args.rows_json:
        with open(args.rows_json, "w") as f:
            json.dump({"threads": args.threads, "peaks": peak, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
