"""Inference latency and size on the LCE interpreter: binary model vs its float twin.

    python benchmarks/inference.py                     # ResNet-18 224x224x3 and ResNet-20 32x32x3
    python benchmarks/inference.py --quick             # ResNet-20 only, few runs (smoke)
    python benchmarks/inference.py --out docs/results/inference.json

The binary model is converted with LCE; the float twin (same graph, plain Conv2D/Dense,
same latent weights) with the standard TFLite converter. Both are timed in the same run
on LCE's interpreter with every kernel option (LCE: default, indirect bgemm, indirect
bgemm + XNNPACK; float: default, XNNPACK); the table reports the best of each.
Untrained weights: latency does not depend on them (BatchNorm statistics are randomized
so that no layer is degenerate).
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from biper_keras.benchmark import compare_with_float  # noqa: E402
from biper_keras.models import get_model  # noqa: E402

MODELS = {
    "resnet18_imagenet": dict(name="resnet18_imagenet"),
    "resnet20": dict(name="resnet20"),
}


def randomize_batch_norms(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]  # (QuickNet has BNs without gamma)
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="write JSON here (and a .md table and a .png chart beside it)")
    parser.add_argument("--replot", help="only redraw the .png of a JSON written by --out")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(pathlib.Path(args.replot).read_text())["results"], pathlib.Path(args.replot).with_suffix(".png"))
        return
    if args.quick:
        args.models, args.runs, args.warmup = "resnet20", 3, 1
    threads = tuple(int(t) for t in args.threads.split(","))
    results = {}
    for name in args.models.split(","):
        print(f"== {name}", file=sys.stderr)
        model = get_model(name)
        randomize_batch_norms(model, np.random.default_rng(0))
        results[name] = compare_with_float(model, threads=threads, warmup=args.warmup, runs=args.runs,
                                           progress=True)
    lines = ["| model | threads | binary ms (option) | float ms (option) | binary speed-up | size binary / float (MB) | smaller |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        for n, b in r["best"].items():
            lines.append(f"| {name} | {n} | {b['binary_ms']:.2f} ({b['binary_option']}) | {b['float_ms']:.2f} "
                         f"({b['float_option']}) | {b['speedup']:.2f}x | {r['binary_bytes'] / 1e6:.2f} / "
                         f"{r['float_bytes'] / 1e6:.2f} | {r['size_ratio']:.1f}x |")
    print("\n".join(lines))
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"date": time.strftime("%Y-%m-%d"), "runs": args.runs, "warmup": args.warmup,
                "keras": keras.__version__}
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        plot(results, out.with_suffix(".png"))


def plot(results, path):
    """Latency of the binary model and its float twin (best option each), per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        threads = list(r["best"])
        xs = range(len(threads))
        ax.bar([x - 0.2 for x in xs], [r["best"][t]["binary_ms"] for t in threads], 0.4, label="binary (LCE)")
        ax.bar([x + 0.2 for x in xs], [r["best"][t]["float_ms"] for t in threads], 0.4, label="float twin")
        ax.set_xticks(list(xs), [f"{t} thread(s)" for t in threads])
        ax.set_ylabel("ms per image (median)")
        ax.set_title(f"{name}: {r['size_ratio']:.1f}x smaller")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
