"""Shared helpers of the benchmarks: timing loops, peak memory, a machine's matmul rate."""

from __future__ import annotations

import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def cpu_kind() -> str:
    """This machine's CPU kind as the docs name them: avx512_bf16, or avx2."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read().split()
    except OSError:
        return "unknown"
    return "avx512_bf16" if "avx512_bf16" in flags else "avx2" if "avx2" in flags else "other"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Seconds per call of fn(), after warm-up calls (tracing, caches)."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def matmul_flops_per_second(dtype=tf.float32, n: int = 2048, repeats: int = 10) -> float:
    """The machine's dense matrix-multiply rate with TensorFlow: 2n^3 FLOP per product."""
    a = tf.random.uniform([n, n], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)

    @tf.function
    def chain():
        x = a
        for _ in range(4):
            x = tf.matmul(x, b)
            x = x / tf.cast(n, dtype)
        return tf.reduce_sum(tf.cast(x, tf.float32))

    seconds = timed(lambda: chain().numpy(), repeats, warmup=2)
    return 4 * 2 * n**3 / seconds


def forward_flops_per_image(model) -> float:
    """FLOPs of one image's forward pass, counted from the model's conv and dense layers."""
    import keras

    total = 0.0

    def visit(layer):
        nonlocal total
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                visit(inner)
            return
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape  # (None, h, w, c_out)
            kh, kw = layer.kernel_size
            c_in = layer.kernel.shape[2]
            total += 2.0 * out[1] * out[2] * out[3] * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.kernel.shape[0] * layer.kernel.shape[1]

    visit(model)
    return total


def fmt_rate(x: float) -> str:
    return f"{x / 1e9:8.1f} GFLOP/s"


def table(rows: list[list], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["np", "tf", "peak_rss_mib", "timed", "matmul_flops_per_second", "forward_flops_per_image",
           "fmt_rate", "table"]
