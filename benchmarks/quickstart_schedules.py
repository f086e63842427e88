"""Which short-run schedule learns most in the quickstart's budget: the two-stage BiPer
ResNet-20 on the package's 700-image CIFAR-10 sample (500 train / 200 test), one
`training.train` per variant and seed, test top-1 after each stage and wall clock.

    python benchmarks/quickstart_schedules.py                       # every variant, seeds 0,1,2
    python benchmarks/quickstart_schedules.py --variants quickstart,trial --seeds 0

Writes `<out>.json` (every run) and `<out>.md` (mean and range over the seeds). 200 test
images: one image is 0.5 points, and the spread between seeds is several points, so
compare means over seeds, not single runs.
"""

import argparse
import dataclasses
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402


def variants():
    from biper_keras.training import Recipe, Stage, quickstart_recipe

    def rates(epochs, lr, wd, batch_size, warmup_epochs):
        paper = Recipe()
        return Recipe(stage1=Stage(epochs[0], lr[0], wd[0], paper.stage1.tau),
                      stage2=Stage(epochs[1], lr[1], wd[1], paper.stage2.tau),
                      batch_size=batch_size, warmup_epochs=warmup_epochs)

    return {
        # The quickstart before: 3+3 epochs at batch 50 (60 steps), hand-set rates.
        "old_quickstart": rates((3, 3), (0.05, 0.02), (1e-4, 1e-5), 50, 1),
        # The paper's recipe in the old budget (warm-up capped at half a stage).
        "paper_3_3_b50": Recipe.trial((3, 3), batch_size=50),
        # More, smaller steps (400): the paper's recipe, 12+8 epochs at batch 25. The quickstart now.
        "paper_12_8_b25": quickstart_recipe((12, 8)),
        # The same with a one-epoch warm-up, with the old quickstart's rates, and with twice those.
        "paper_12_8_b25_warmup1": Recipe.trial((12, 8), batch_size=25, warmup_epochs=1),
        "old_rates_12_8_b25": rates((12, 8), (0.05, 0.02), (1e-4, 1e-5), 25, 1),
        "high_rates_12_8_b25": rates((12, 8), (0.1, 0.04), (1e-4, 1e-5), 25, 1),
    }


def run(name, recipe, seed, data_source):
    from biper_keras.data import image_datasets
    from biper_keras.training import make_deterministic, train

    recipe = dataclasses.replace(recipe, seed=seed)
    make_deterministic(seed)
    data = image_datasets(data_source, batch_size=recipe.batch_size, seed=seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        summary = train(recipe, data, out, verbose=0)
    return {"variant": name, "seed": seed, "seconds": time.perf_counter() - start,
            "stage1": summary["stage1"]["test_accuracy"], "stage2": summary["stage2"]["test_accuracy"],
            "recipe": dataclasses.asdict(recipe)}


def table(runs, names):
    rows = ["| variant | epochs | batch | stage 1 top-1 | stage 2 top-1 (min-max) | seconds |", "|---|---|---|---|---|---|"]
    for name in names:
        mine = [r for r in runs if r["variant"] == name]
        if not mine:
            continue
        r = mine[0]["recipe"]
        s1 = [m["stage1"] for m in mine]
        s2 = [m["stage2"] for m in mine]
        rows.append(f"| {name} | {r['stage1']['epochs']}+{r['stage2']['epochs']} | {r['batch_size']} "
                    f"| {statistics.mean(s1):.3f} | {statistics.mean(s2):.3f} ({min(s2):.3f}-{max(s2):.3f}) "
                    f"| {statistics.mean(m['seconds'] for m in mine):.0f} |")
    return "\n".join(rows)


def main():
    known = variants()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(known), help=f"comma-separated, of: {', '.join(known)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data", default=str(_common.SAMPLE))
    p.add_argument("--out", default=str(_common.RESULTS / "quickstart_schedules"))
    p.add_argument("--append", action="store_true",
                   help="keep the runs already in <out>.json and add the missing ones")
    args = p.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown variants: {', '.join(unknown)}")
    stored = pathlib.Path(args.out).with_suffix(".json")
    runs = json.loads(stored.read_text())["runs"] if args.append and stored.exists() else []
    names = [n for n in known if n in names or any(r["variant"] == n for r in runs)]
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in names:
            if any(r["variant"] == name and r["seed"] == seed for r in runs) or name not in args.variants.split(","):
                continue  # kept from <out>.json (--append): the runs are deterministic
            runs.append(run(name, known[name], seed, args.data))
            r = runs[-1]
            print(f"{name} seed {seed}: stage1 {r['stage1']:.3f} stage2 {r['stage2']:.3f} ({r['seconds']:.0f} s)",
                  flush=True)
            _common.write_results(args.out, {"runs": runs}, header(runs) + table(runs, names))
    print(table(runs, names))


def header(runs):
    seeds = ",".join(str(s) for s in sorted({r["seed"] for r in runs}))
    return ("Short-run schedules on the package's CIFAR-10 sample (500 train / 200 test images), ResNet-20 "
            f"BiPer, two stages, seeds {seeds}, every variant: `python benchmarks/quickstart_schedules.py "
            f"--seeds {seeds}`. Mean over the seeds; 200 test images: one image is 0.5 points. Seconds: "
            "`train()`'s wall clock, measured while other jobs shared the machine (rows of equal cost differ).\n\n")


if __name__ == "__main__":
    main()
