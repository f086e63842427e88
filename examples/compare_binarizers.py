"""BiPer against the ProxConnect++ family (BC, BNN, BNN+, BNN++) on CIFAR-10 images:
the same ResNet-20, data, seed and epochs; only the weight binarizer differs.

    python examples/compare_binarizers.py                        # ~35 min on 2 cores
    python examples/compare_binarizers.py --quick                # smoke run
    python examples/compare_binarizers.py --variants biper,bnn_pp --epochs 4

Every variant uses approx-sign activations, SAME padding with +1, and a per-channel
scale alpha; Adam with cosine decay. BNN++ anneals mu from 1 to 16 (exponential) and is
evaluated after hard binarization (`harden`), i.e. as deployed. "biper_2stage" spends
half of the epochs in BiPer's stage 1 (sine weights) and half in stage 2. Results are
appended to a JSON file variant by variant (a stopped run continues where it was), and a
training-curve PNG and a Markdown table are written next to it.
"""

import argparse
import json
import os
import pathlib
import time

import keras
import numpy as np

from biper_keras import quantizers
from biper_keras.data import load_image_folder
from biper_keras.models import get_model
from biper_keras.training import annealing_callbacks, harden, to_binary_stage

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"
VARIANTS = ("biper", "biper_2stage", "bc", "bnn", "bnn_plus", "bnn_pp")


def kernel_quantizer(variant, binarize=True):
    if variant.startswith("biper"):
        return quantizers.BiPer(omega=20.0, binarize=binarize)
    return quantizers.get(variant)


def build(variant, binarize=True):
    keras.utils.set_random_seed(0)
    return get_model("resnet20", kernel_quantizer=kernel_quantizer(variant, binarize))


def compile_model(model, lr, steps):
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def run_variant(variant, data, epochs, batch, lr):
    (x, y), (xt, yt) = data
    steps_per_epoch = int(np.ceil(len(x) / batch))
    start = time.perf_counter()
    curves = {"loss": [], "accuracy": [], "val_accuracy": []}

    def fit(model, n_epochs, callbacks=()):
        compile_model(model, lr, steps_per_epoch * n_epochs)
        h = model.fit(x, y, batch_size=batch, epochs=n_epochs, validation_data=(xt, yt),
                      verbose=2, callbacks=list(callbacks))
        for k in curves:
            curves[k] += [float(v) for v in h.history[k]]

    if variant == "biper_2stage":
        stage1 = build(variant, binarize=False)
        fit(stage1, epochs // 2)
        model = to_binary_stage(stage1)
        fit(model, epochs - epochs // 2)
    else:
        model = build(variant)
        fit(model, epochs, annealing_callbacks(model, epochs))
    deployed = harden(model)  # BNN++ ends hard-binarized; the others are unchanged
    compile_model(deployed, lr, 1)
    test_acc = float(deployed.evaluate(xt, yt, verbose=0, batch_size=500)[1])
    seconds = time.perf_counter() - start
    return {"test_accuracy": test_acc, "seconds": seconds,
            "images_per_second": len(x) * epochs / seconds, **curves}


def write_reports(results, meta, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        f"ResNet-20, {meta['train_images']} train / {meta['test_images']} test CIFAR-10 images, "
        f"{meta['epochs']} epochs, batch {meta['batch']}, seed 0",
        "",
        "| weights | test accuracy (deployed) | final train accuracy | images/s |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['test_accuracy']:.4f} | {r['accuracy'][-1]:.4f} | {r['images_per_second']:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for name, r in results.items():
        epochs = range(1, len(r["loss"]) + 1)
        axes[0].plot(epochs, r["loss"], label=name)
        axes[1].plot(epochs, r["val_accuracy"], label=name)
    axes[0].set(xlabel="epoch", ylabel="training loss")
    axes[1].set(xlabel="epoch", ylabel="test accuracy (latent model)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("BIPER_CIFAR10_DIR", DEFAULT_DATA))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--per-class", type=int, default=1000, help="training images per class")
    parser.add_argument("--test-per-class", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "compare_binarizers.json"))
    parser.add_argument("--fresh", action="store_true", help="ignore results already in --out")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, 2 epochs")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"error: unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if args.quick:
        args.per_class, args.test_per_class, args.epochs = 20, 10, 2
    if args.epochs < 2:
        raise SystemExit("error: --epochs must be at least 2 (biper_2stage splits them)")

    if not pathlib.Path(args.data, "train").is_dir():
        raise SystemExit(f"error: no CIFAR-10 image folder at {args.data}: pass --data PATH "
                         "(an image folder with train/ and test/) or set BIPER_CIFAR10_DIR")
    x, y, _ = load_image_folder(args.data, "train", per_class=args.per_class)
    xt, yt, _ = load_image_folder(args.data, "test", per_class=args.test_per_class)
    data = ((x.astype("float32") / 127.5 - 1.0, y), (xt.astype("float32") / 127.5 - 1.0, yt))
    meta = {"train_images": len(y), "test_images": len(yt), "epochs": args.epochs, "batch": args.batch,
            "lr": args.lr, "backend": keras.backend.backend(), "keras": keras.__version__,
            "date": time.strftime("%Y-%m-%d")}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    if out.exists() and not args.fresh:
        previous = json.loads(out.read_text())
        if previous["meta"] | {"date": None} == meta | {"date": None}:
            results = previous["results"]
    for variant in variants:
        if variant in results:
            print(f"{variant}: already in {out}, skipped")
            continue
        print(f"== {variant}")
        results[variant] = run_variant(variant, data, args.epochs, args.batch, args.lr)
        write_reports(results, meta, out)  # after each variant: a stopped run loses little


if __name__ == "__main__":
    main()
