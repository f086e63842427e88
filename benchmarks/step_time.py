"""Training-step time of ResNet-20 (CIFAR, 32x32) with BiPer layers vs its float twin,
per Keras backend, variants interleaved in one process per backend.

    python benchmarks/step_time.py                       # TF, JAX, torch; batch 128
    python benchmarks/step_time.py --quick               # a smoke run
    python benchmarks/step_time.py --backends tensorflow --rounds 5 --out results.json

Prints a Markdown table of median ms/step and the BiPer/float ratio; `--out` also
writes the raw numbers as JSON. Timings on shared machines are noisy: compare the
ratios, which are measured in the same process, rather than absolute times.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(backend, batch, rounds, steps, warmup):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    from biper_keras.models import get_model

    assert keras.backend.backend() == backend
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch)
    variants = {
        "biper": get_model("resnet20"),
        "float": get_model("resnet20", kernel_quantizer=None, input_quantizer=None),
    }
    for model in variants.values():
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        for _ in range(warmup):
            model.train_on_batch(x, y)
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, model in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(t) for name, t in times.items()} | {"raw_ms": times}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 16, 1 round of 2 steps")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.rounds, args.steps, args.warmup = 16, 1, 2, 1
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.rounds, args.steps, args.warmup)))
        return

    results = {}
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--worker", backend, "--batch", str(args.batch),
               "--rounds", str(args.rounds), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_USE_LEGACY_KERAS", None)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: the {backend} run failed:\n{done.stderr[-2000:]}")
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{backend}: done", file=sys.stderr)

    print(f"ResNet-20, batch {args.batch}, median of {args.rounds} rounds x {args.steps} steps\n")
    print("| backend | BiPer ms/step | float ms/step | BiPer / float |")
    print("|---|---|---|---|")
    for backend, r in results.items():
        print(f"| {backend} | {r['biper']:.0f} | {r['float']:.0f} | {r['biper'] / r['float']:.2f} |")
    if args.out:
        meta = {"batch": args.batch, "rounds": args.rounds, "steps": args.steps,
                "date": time.strftime("%Y-%m-%d")}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
