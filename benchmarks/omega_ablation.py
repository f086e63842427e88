"""The omega_0 ablation (the paper's Figure 4) at a CPU budget: the two-stage BiPer
recipe on ResNet-20, once per omega_0, reporting test accuracy, the fitted Laplace scale
b of the latent weights, b*omega_0, and the quantization error (measured, and the closed
form at the fitted b).

    python benchmarks/omega_ablation.py                   # 5 omegas, 10k train images, 2+1 epochs (~15 min)
    python benchmarks/omega_ablation.py --omegas 1,5,20,50 --limit 0 --epochs 6,3   # full data
    python benchmarks/omega_ablation.py --quick           # the packaged sample, a smoke run

Runs `biper-keras qe sweep` (printed before it runs; a stopped sweep continues where it
was), then writes `<out>.json`, `<out>.md` and `<out>.png`.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402
REPO, DEFAULT_DATA, SAMPLE = _common.REPO, _common.CIFAR_FOLDER, _common.SAMPLE


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    omegas = [r["omega"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].plot(omegas, [r["test_accuracy"] for r in rows], marker="o")
    axes[0].set_ylabel("test accuracy (stage 2)")
    axes[1].plot(omegas, [r["qe"] for r in rows], marker="o", label="measured")
    axes[1].plot(omegas, [r["qe_analytic"] for r in rows], marker="x", ls="--", label="Laplace closed form")
    axes[1].set_ylabel("quantization error")
    axes[1].legend()
    axes[2].plot(omegas, [r["b_omega"] for r in rows], marker="o")
    axes[2].axhline(0.954882, color="grey", ls=":", label="QE maximum (b*omega = 0.955)")
    axes[2].set_ylabel("b * omega_0 (mean over layers)")
    axes[2].legend()
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("omega_0")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--omegas", default="1,5,10,20,50")
    parser.add_argument("--epochs", default="2,1", help="stage 1,stage 2 epochs per omega")
    parser.add_argument("--limit", type=int, default=10000, help="first N images of each split (0: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--runs", default=str(REPO / "runs" / "omega_ablation"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "omega_ablation"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.omegas, args.epochs, args.limit, args.batch_size = str(SAMPLE), "1,20", "1,1", 100, 50
        args.runs = str(pathlib.Path(args.runs).with_name("omega_ablation-quick"))
    _common.require_data(args.data)
    command = ["qe", "sweep", "--data", args.data, "--omegas", args.omegas, "--epochs", args.epochs,
               "--batch-size", str(args.batch_size), "--warmup-epochs", "1", "--out", args.runs]
    if args.limit:
        command += ["--limit", str(args.limit)]
    print("$ biper-keras " + " ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "biper_keras.cli", *command], check=True)
    rows = json.loads((pathlib.Path(args.runs) / "sweep.json").read_text())
    out = pathlib.Path(args.out)
    meta = {"date": time.strftime("%Y-%m-%d"), "command": "biper-keras " + " ".join(command)}
    lines = [f"ResNet-20, two-stage BiPer recipe, epochs {args.epochs}, "
             f"{'first ' + str(args.limit) + ' images of each split' if args.limit else 'all images'} "
             f"({meta['date']})", "",
             "| omega_0 | test accuracy | mean b | b*omega_0 | QE measured | QE closed form |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['omega']:g} | {r['test_accuracy']:.4f} | {r['b']:.5f} | {r['b_omega']:.3f} | "
              f"{r['qe']:.5f} | {r['qe_analytic']:.5f} |" for r in rows]
    _common.write_results(out, {"command": meta["command"], "rows": rows}, "\n".join(lines))
    plot(rows, out.with_suffix(".png"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
