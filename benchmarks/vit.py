"""ProxConnect++ on a small vision transformer, at a CPU budget: the float ViT trained on
CIFAR-10, then BC, BNN, BNN+, BNN++ and BiPer fine-tuned from it (the paper's route:
`Recipe.init_from`, the same as `biper-keras train --init-from`), plus BNN++ trained end to
end; test top-1 per seed, parameter memory and file size float vs binary, and the LCE
interpreter latency of the W1A1 model against its float twin.

    python benchmarks/vit.py --seeds 0               # the CPU budget run (docs/results/vit.*)
    python benchmarks/vit.py --quick                 # smoke run: packaged sample, 1 epoch each
    KERAS_BACKEND=jax python benchmarks/vit.py --data ../shared/datasets/cifar10.bin --device-data \\
        --dim 192 --depth 6 --heads 3 --mlp-dim 768 --train-images 50000 --test-images 10000 \\
        --batch-size 256 --float-epochs 300 --fine-tune-epochs 100 --lr 0.1 --fine-tune-lr 0.02 \\
        --seeds 0,1,2 --runs runs/vit-full --out docs/results/vit_full   # the full-scale run (GPU)

Weights are binary, activations float (W1A32, the PC++ setting) in the accuracy table.
Runs are resumable (rerun the same command); with `--deadline HH:MM` (UTC) a run that
would not finish before it, at the measured epoch time, is skipped and listed as such.
"""

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
METHODS = ("bc", "bnn", "bnn_plus", "bnn_pp", "biper")
LABELS = {"float": "float", "bc": "BC", "bnn": "BNN", "bnn_plus": "BNN+", "bnn_pp": "BNN++", "biper": "BiPer",
          "bnn_pp_e2e": "BNN++ end-to-end"}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(_common.CIFAR_FOLDER))
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--test-images", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--mlp-dim", type=int, default=128)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--float-epochs", type=int, default=4, help="float model and BNN++ end-to-end")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="each fine-tune (BiPer: split over its two stages)")
    parser.add_argument("--lr", type=float, default=0.05, help="peak SGD rate from scratch")
    parser.add_argument("--fine-tune-lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=5e-5)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--deadline", default="none", help="HH:MM UTC: skip runs that would end after it; none")
    parser.add_argument("--reserve-minutes", type=float, default=4, help="kept before the deadline for deployment")
    parser.add_argument("--runs", default=str(_common.REPO / "runs" / "vit"))
    parser.add_argument("--out", default=str(_common.RESULTS / "vit"))
    parser.add_argument("--device-data", action="store_true", help="keep the images on the accelerator (GPU runs)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.train_images, args.test_images = str(_common.SAMPLE), 200, 100
        args.dim, args.depth, args.heads, args.mlp_dim, args.batch_size = 32, 1, 2, 64, 50
        args.float_epochs, args.fine_tune_epochs, args.seeds = 1, 2, "0"
        for name in ("runs", "out"):
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, getattr(args, name) + "-quick")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


def datasets(args):
    """`train_images` training and `test_images` test images (fixed random subsets)."""
    from biper_keras.data import Datasets, image_datasets

    if args.device_data:  # uint8 images on the accelerator (biper_keras.device_data), as gpu_recipe.py
        from biper_keras.device_data import device_datasets as image_datasets  # noqa: F811
    train = image_datasets(args.data, batch_size=args.batch_size, limit_per_split=args.train_images)
    test = image_datasets(args.data, batch_size=args.batch_size, limit_per_split=args.test_images)
    return Datasets(train.train, test.test, train.class_names, train.image_shape, train.train_size, test.test_size)


def recipes(args, float_model):
    """(run name, seed, Recipe) in the order they run: seed by seed, the float model first."""
    from biper_keras.training import Recipe, Stage

    options = {"patch_size": args.patch_size, "depth": args.depth, "dim": args.dim, "heads": args.heads,
               "mlp_dim": args.mlp_dim}
    base = Recipe(model="vit", input_quantizer=None, batch_size=args.batch_size, warmup_epochs=1,
                  model_options=options)
    scratch = Stage(args.float_epochs, args.lr, args.weight_decay, 0.0)
    tune = Stage(args.fine_tune_epochs, args.fine_tune_lr, args.weight_decay, 0.0)
    half = max(1, args.fine_tune_epochs // 2)
    defaults = Recipe()
    runs = [("float", args.seeds[0], dataclasses.replace(base, kernel_quantizer=None, stage2=scratch,
                                                         seed=args.seeds[0]))]
    for seed in args.seeds:
        for method in METHODS:
            if method == "biper":  # the two stages, the paper's sin^2 weights
                recipe = dataclasses.replace(
                    base, kernel_quantizer="biper",
                    stage1=Stage(half, args.fine_tune_lr, args.weight_decay, defaults.stage1.tau),
                    stage2=Stage(half, args.fine_tune_lr / 2, args.weight_decay, defaults.stage2.tau))
            else:
                recipe = dataclasses.replace(base, kernel_quantizer=method, stage2=tune)
            runs.append((method, seed, dataclasses.replace(recipe, seed=seed, init_from=str(float_model))))
        runs.append(("bnn_pp_e2e", seed, dataclasses.replace(base, kernel_quantizer="bnn_pp", stage2=scratch,
                                                             seed=seed)))
    return runs


def epochs_of(recipe):
    return recipe.stage1.epochs + recipe.stage2.epochs if recipe.two_stage else recipe.stage2.epochs


def train_all(args, data, deadline):
    from biper_keras import training

    root = pathlib.Path(args.runs)
    float_model = root / f"float-s{args.seeds[0]}" / "stage2" / "model.keras"
    rows, epoch_seconds = [], None
    for name, seed, recipe in recipes(args, float_model):
        folder = root / f"{name}-s{seed}"
        done = (folder / "summary.json").exists() and all(
            "test_accuracy" in json.loads((folder / "summary.json").read_text()).get(f"stage{s}", {})
            for s in ((1, 2) if recipe.two_stage else (2,)))
        if not done and deadline and epoch_seconds:
            # fine-tuned models cost up to 1.3x the float epoch (the quantizers); +1 epoch of slack
            needed = (epochs_of(recipe) + 1) * epoch_seconds * 1.3
            if time.time() + needed > deadline:
                print(f"{name} seed {seed}: skipped, {needed / 60:.0f} min would pass the deadline", flush=True)
                rows.append({"method": name, "seed": seed, "skipped": "deadline"})
                continue
        print(f"--- {name} seed {seed} ({epochs_of(recipe)} epochs)", flush=True)
        summary = training.train(recipe, data, folder, resume=folder.exists(), verbose=2)
        stages = [summary[f"stage{s}"] for s in ((1, 2) if recipe.two_stage else (2,))]
        seconds = sum(s.get("seconds") or 0 for s in stages)
        if name == "float" and seconds:
            epoch_seconds = seconds / epochs_of(recipe)
        rows.append({"method": name, "seed": seed, "epochs": [s["epochs"] for s in stages],
                     "test_accuracy": stages[-1]["test_accuracy"], "train_accuracy": stages[-1].get("train_accuracy"),
                     # the last epoch's model on the test images: before BNN++'s hard sign (harden)
                     "last_epoch_test_accuracy": _last_logged(folder / "stage2" / "log.csv", "val_accuracy"),
                     "seconds": seconds, "init_from": recipe.init_from, "recipe": dataclasses.asdict(recipe)})
        if epoch_seconds is None and seconds:
            epoch_seconds = seconds / epochs_of(recipe)
    return rows, float_model


def _last_logged(path, column):
    import csv

    with open(path) as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1][column]) if rows else None


def deployment(args, float_path, runs_root, images=None):
    """Parameter memory (summary) and sizes of the float, W1A32 (the fine-tuned BNN++) and
    W1A1 (the float weights under sign weights and activations: `initialize_from`) models,
    and the LCE interpreter latency of the W1A1 model against its float twin; the
    conversions' parity is checked on `images` (test images). What fails to convert is
    recorded with its error, not hidden."""
    import inspect

    import keras

    from biper_keras import benchmark, convert
    from biper_keras.models import get_model
    from biper_keras.summary import summary
    from biper_keras.training import initialize_from

    shape = (32, 32, 3)
    options = dict(input_shape=shape, num_classes=10, patch_size=args.patch_size, depth=args.depth, dim=args.dim,
                   heads=args.heads, mlp_dim=args.mlp_dim)
    tuned = runs_root / f"bnn_pp-s{args.seeds[0]}" / "stage2" / "model.keras"
    flt = (keras.models.load_model(float_path) if float_path.exists() else
           get_model("vit", kernel_quantizer=None, input_quantizer=None, **options))
    models = {"float": flt,
              "w1a32": keras.models.load_model(tuned) if tuned.exists() else
              initialize_from(get_model("vit", kernel_quantizer="ste_sign", input_quantizer=None, **options), flt),
              "w1a1": initialize_from(get_model("vit", kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                                                **options), flt)}
    out = {}
    for name, model in models.items():
        stats = summary(model, print_fn=None)
        row = {"params": stats.params, "params_1bit": stats.total("params_1bit"),
               "memory_bytes": stats.memory_bytes, "float32_bytes": stats.float32_bytes}
        try:
            result = convert.convert(model, verify=True, strict=False, data=images)
            row.update(tflite_bytes=len(result.flatbuffer), conversion=result.to_dict())
            if name == "w1a32" and "weights" in inspect.signature(convert.convert).parameters:
                # +-alpha per channel stored as int8 +-1 with scale alpha (a converter that offers it)
                row["tflite_bytes_int8"] = len(convert.convert(model, verify=True, strict=False, data=images,
                                                               weights="int8").flatbuffer)
        except Exception as err:  # what converts today, with the reason
            row["conversion_error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        out[name] = row
        print(f"{name}: {stats.params} parameters, {stats.memory_bytes / 1024:.1f} KiB; "
              f"{row.get('tflite_bytes', row.get('conversion_error'))}", flush=True)
    # The paper's scale: parameter memory of DeiT-Tiny/Small W1A32 (summary() of the
    # registry's models, 32x32 inputs, 10 classes; no training needed).
    out["paper_scale"] = {}
    for name in ("deit_tiny", "deit_small"):
        stats = summary(get_model(name, input_shape=shape, num_classes=10, kernel_quantizer="ste_sign",
                                  input_quantizer=None), print_fn=None)
        out["paper_scale"][name] = {"params": stats.params, "params_1bit": stats.total("params_1bit"),
                                    "memory_bytes": stats.memory_bytes, "float32_bytes": stats.float32_bytes}
    try:
        timing = benchmark.compare_with_float(models["w1a1"], threads=(1,), warmup=3, runs=20)
        out["latency"] = {"binary_ms": timing["best"][1]["binary_ms"], "float_ms": timing["best"][1]["float_ms"],
                          "speedup": timing["best"][1]["speedup"], "binary_bytes": timing["binary_bytes"],
                          "float_bytes": timing["float_bytes"]}
    except Exception as err:
        out["latency"] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
    return out


def table(args, rows, deploy, data):
    import statistics

    lines = [f"ViT on CIFAR-10 at a CPU budget: depth {args.depth}, dim {args.dim}, {args.heads} heads, MLP "
             f"{args.mlp_dim}, patch {args.patch_size}; {data.train_size} training / {data.test_size} test images; "
             f"float and BNN++ end-to-end {args.float_epochs} epochs, each fine-tune {args.fine_tune_epochs} "
             f"(BiPer {max(1, args.fine_tune_epochs // 2)} + {max(1, args.fine_tune_epochs // 2)}); W1A32; "
             "SGD + warm-up/cosine, batch " + str(args.batch_size), "",
             "| method | route | seeds | test top-1 per seed | mean | last epoch, before the hard sign (BNN++) |",
             "|---|---|---|---|---|---|"]
    for method in ("float", *METHODS, "bnn_pp_e2e"):
        done = [r for r in rows if r["method"] == method and "test_accuracy" in r]
        if not done:
            continue
        accs = [r["test_accuracy"] for r in done]
        route = "from scratch" if method in ("float", "bnn_pp_e2e") else "fine-tuned from float"
        before = ", ".join(f"{r['last_epoch_test_accuracy']:.4f}" for r in done) if method.startswith("bnn_pp") else ""
        lines.append(f"| {LABELS[method]} | {route} | {', '.join(str(r['seed']) for r in done)} | "
                     f"{', '.join(f'{a:.4f}' for a in accs)} | {statistics.mean(accs):.4f} | {before} |")
    skipped = [r for r in rows if r.get("skipped")]
    if skipped:
        lines += ["", "Skipped (deadline): " + ", ".join(f"{LABELS[r['method']]} seed {r['seed']}" for r in skipped)]
    lines += ["", "| model | parameters | 1-bit | parameter memory (KiB) | float32 bytes / memory | .tflite (KiB) | "
              "LceBconv2d | LCE vs Keras parity |", "|---|---|---|---|---|---|---|---|"]
    for name in ("float", "w1a32", "w1a1"):
        d = deploy[name]
        size = f"{d['tflite_bytes'] / 1024:.1f}" if "tflite_bytes" in d else "did not convert"
        if "tflite_bytes_int8" in d:
            size += f" (int8 weights: {d['tflite_bytes_int8'] / 1024:.1f})"
        conversion = d.get("conversion") or {}
        parity = conversion.get("parity")
        checked = "-" if not parity else ("ok" if parity["passed"] else "FAILED") + f", max |diff| {parity['max_abs_diff']:.2g}"
        lines.append(f"| {name} | {d['params']:,} | {d['params_1bit']:,} | {d['memory_bytes'] / 1024:.1f} | "
                     f"{d['float32_bytes'] / d['memory_bytes']:.1f}x | {size} | "
                     f"{conversion.get('ops', {}).get('LceBconv2d', 0) if conversion else '-'} | {checked} |")
    for name, d in deploy.get("paper_scale", {}).items():
        lines.append(f"| {name} W1A32 (not trained) | {d['params']:,} | {d['params_1bit']:,} | "
                     f"{d['memory_bytes'] / 1024:.1f} | {d['float32_bytes'] / d['memory_bytes']:.1f}x | - | - | - |")
    lat = deploy["latency"]
    lines += [""]
    if "error" in lat:
        lines.append(f"LCE interpreter latency: not measured ({lat['error']}).")
    else:
        lines.append(f"LCE interpreter, 1 thread, batch 1: W1A1 {lat['binary_ms']:.2f} ms, float twin "
                     f"{lat['float_ms']:.2f} ms (float / binary = {lat['speedup']:.2f}).")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in ("float", *METHODS, "bnn_pp_e2e") if any(r["method"] == m and "test_accuracy" in r
                                                                   for r in rows)]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, method in enumerate(methods):
        accs = [r["test_accuracy"] for r in rows if r["method"] == method and "test_accuracy" in r]
        ax.bar(i, sum(accs) / len(accs), color="0.8" if method == "float" else "tab:blue")
        ax.scatter([i] * len(accs), accs, color="k", s=12, zorder=3)
    ax.set_xticks(range(len(methods)), [LABELS[m] for m in methods], rotation=20)
    ax.set_ylabel("test top-1")
    ax.set_title("ViT, CIFAR-10, CPU budget (bars: mean, dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse(argv)
    import numpy as np

    from biper_keras.models import available_models

    if "vit" not in available_models():
        raise SystemExit("the model registry has no 'vit' (biper_keras.models): nothing to benchmark")
    deadline = None
    if args.deadline != "none":
        hours, minutes = (int(v) for v in args.deadline.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        end = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
        deadline = end.timestamp() - 60 * args.reserve_minutes
    start = time.perf_counter()
    data = datasets(args)
    rows, float_path = train_all(args, data, deadline)
    images = next(iter(data.test))[0]
    deploy = deployment(args, float_path, pathlib.Path(args.runs), np.asarray(images)[:64])
    text = table(args, rows, deploy, data)
    payload = {"settings": {k: v for k, v in vars(args).items() if k not in ("runs", "out")},
               "train_images": data.train_size, "test_images": data.test_size, "rows": rows, "deployment": deploy,
               "wall_seconds": time.perf_counter() - start}
    _common.write_results(args.out, payload, text)
    plot(rows, pathlib.Path(args.out).with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
