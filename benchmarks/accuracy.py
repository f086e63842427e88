"""Accuracy at a fixed CPU budget: ResNet-20 on the full CIFAR-10 folder, the two-stage
BiPer recipe against the same network with SteSign weights (one stage, as many epochs
as BiPer's two stages together), same seed, batch and learning-rate schedule.

    python benchmarks/accuracy.py                         # ~1 hour on 2 cores (6+3 epochs)
    python benchmarks/accuracy.py --epochs 60,30          # a longer budget
    python benchmarks/accuracy.py --quick                 # smoke run: 2x(1+1) epochs, 512 images

Each variant is one `biper-keras train ... --resume` command (printed before it runs),
so a stopped run continues where it was. Writes `<out>.json` (test accuracy, images/s,
per-epoch curves, the commands), `<out>.md` and `<out>.png` (training curves).
"""

import argparse
import csv
import json
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402
REPO, DEFAULT_DATA = _common.REPO, _common.CIFAR_FOLDER


def commands(args):
    e1, e2 = args.epochs
    common = ["--model", "resnet20", "--data", str(args.data), "--batch-size", str(args.batch_size),
              "--seed", str(args.seed), "--warmup-epochs", "1", "--no-convert", "--resume"]
    if args.limit:
        common += ["--limit", str(args.limit)]
    runs = pathlib.Path(args.runs)
    return {
        # The paper's recipe (default lr, weight decay, tau), short budget.
        "biper": common + ["--epochs", f"{e1},{e2}", "--out", str(runs / "biper")],
        # One stage of e1 + e2 epochs with stage 1's lr and weight decay; no sin^2 term.
        "ste_sign": common + ["--quantizer", "ste_sign", "--epochs", f"{e1 + e2}",
                              "--lr", "0.021", "--weight-decay", "0.0016",
                              "--tau", "0", "--out", str(runs / "ste_sign")],
    }


def read_log(path):
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def collect(name, folder, command):
    summary = json.loads((folder / "summary.json").read_text())
    stages = [s for s in ("stage1", "stage2") if s in summary]
    curve = []
    for stage in stages:
        for row in read_log(folder / stage / "log.csv"):
            curve.append({"stage": stage, "epoch": len(curve) + 1, "accuracy": row["accuracy"],
                          "val_accuracy": row["val_accuracy"], "loss": row["loss"]})
    seconds = sum(summary[s]["seconds"] for s in stages)
    images = sum(summary[s]["images_per_second"] * summary[s]["seconds"] for s in stages)
    return {"variant": name, "command": "biper-keras train " + " ".join(command),
            "test_accuracy": summary[stages[-1]]["test_accuracy"],
            "stage_accuracy": {s: summary[s]["test_accuracy"] for s in stages},
            "epochs": len(curve), "minutes": seconds / 60, "images_per_second": images / seconds,
            "curve": curve}


def write_outputs(results, out, meta):
    lines = [f"ResNet-20, CIFAR-10 ({meta['train_images']} train / {meta['test_images']} test images), "
             f"batch {meta['batch_size']}, seed {meta['seed']}, {meta['date']}", "",
             "| weights | epochs | test accuracy | train images/s | minutes |", "|---|---|---|---|---|"]
    for r in results:
        stages = ", ".join(f"{s} {a:.4f}" for s, a in r["stage_accuracy"].items())
        lines.append(f"| {r['variant']} | {r['epochs']} | {r['test_accuracy']:.4f} ({stages}) | "
                     f"{r['images_per_second']:.0f} | {r['minutes']:.1f} |")
    _common.write_results(out, {"settings": meta, "results": results}, "\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        epochs = [c["epoch"] for c in r["curve"]]
        line, = ax.plot(epochs, [c["val_accuracy"] for c in r["curve"]], marker="o", label=f"{r['variant']} test")
        ax.plot(epochs, [c["accuracy"] for c in r["curve"]], ls="--", color=line.get_color(),
                label=f"{r['variant']} train")
    ax.set_xlabel("epoch (BiPer: stage 1 then stage 2)")
    ax.set_ylabel("accuracy")
    ax.set_title("ResNet-20 on CIFAR-10, 2-core CPU budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--epochs", default="6,3", help="BiPer stage 1,stage 2 epochs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="first N images of each split")
    parser.add_argument("--runs", default=str(REPO / "runs" / "accuracy"), help="training output folders")
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "accuracy"))
    parser.add_argument("--variants", default="biper,ste_sign")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.epochs, args.limit = str(_common.SAMPLE), "1,1", args.limit or 512
        args.runs = str(pathlib.Path(args.runs).with_name("accuracy-quick"))
    _common.require_data(args.data)
    args.epochs = [int(e) for e in args.epochs.split(",")]
    cmds = commands(args)
    results = []
    for name in args.variants.split(","):
        if name not in cmds:
            parser.error(f"unknown variant {name!r}; known: {', '.join(cmds)}")
        print("$ biper-keras train " + " ".join(cmds[name]), flush=True)
        subprocess.run([sys.executable, "-m", "biper_keras.cli", "train", *cmds[name]], check=True)
        results.append(collect(name, pathlib.Path(args.runs) / name, cmds[name]))
    import datetime

    from biper_keras.data import image_datasets

    data = image_datasets(args.data, batch_size=args.batch_size, limit_per_split=args.limit, augment=None)
    meta = {"date": datetime.date.today().isoformat(), "batch_size": args.batch_size, "seed": args.seed,
            "train_images": data.train_size, "test_images": data.test_size, "epochs": args.epochs}
    write_outputs(results, pathlib.Path(args.out), meta)
    print(pathlib.Path(args.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
