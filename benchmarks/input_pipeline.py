"""Input-pipeline throughput against what training consumes: can `image_datasets` feed
the ResNet-20 training step on this machine?

    python benchmarks/input_pipeline.py                   # full CIFAR-10 folder, batch 128
    python benchmarks/input_pipeline.py --quick           # the packaged sample, a smoke run

Times, in images/s: the first epoch (file reads + JPEG decode, filling the in-memory
cache), a later epoch (cache + augmentation + normalization + batching), the test
pipeline, and the training step of the default ResNet-20 (BiPer) on the same batches
(TF backend, `train_on_batch` on batches held in memory). The pipeline is fast enough
when a later epoch's images/s is well above the step's. Writes JSON and Markdown with
`--out`.
"""

import argparse
import json
import os
import pathlib
import statistics
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"
SAMPLE = REPO / "biper_keras" / "sample_data" / "cifar10"


def images_per_second(dataset, limit_batches=None):
    start, count = time.perf_counter(), 0
    for i, (x, _) in enumerate(dataset):
        count += int(x.shape[0])
        if limit_batches and i + 1 >= limit_batches:
            break
    return count / (time.perf_counter() - start), count


def training_images_per_second(dataset, batch, steps, rounds):
    import keras

    from biper_keras.models import get_model

    model = get_model("resnet20")
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = [b for _, b in zip(range(steps), dataset)]
    for x, y in batches[:2]:  # trace and warm up
        model.train_on_batch(x, y)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for x, y in batches:
            model.train_on_batch(x, y)
        rates.append(sum(int(x.shape[0]) for x, _ in batches) / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=10, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="write JSON here (and Markdown beside it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.batch_size, args.train_steps, args.rounds = str(SAMPLE), 50, 2, 1
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from biper_keras.data import image_datasets

    start = time.perf_counter()
    data = image_datasets(args.data, batch_size=args.batch_size)
    setup = time.perf_counter() - start
    first, n = images_per_second(data.train)  # decode + cache fill
    later, _ = images_per_second(data.train)  # from the cache
    test, _ = images_per_second(data.test)
    step = training_images_per_second(data.train, args.batch_size, args.train_steps, args.rounds)
    result = {"date": time.strftime("%Y-%m-%d"), "data": str(args.data), "train_images": n,
              "batch_size": args.batch_size, "setup_seconds": setup,
              "first_epoch_images_per_second": first, "later_epoch_images_per_second": later,
              "test_images_per_second": test, "training_images_per_second": step,
              "headroom": later / step}
    table = "\n".join([
        f"Input pipeline on {n} training images, batch {args.batch_size} ({result['date']})", "",
        "| stage | images/s |", "|---|---|",
        f"| listing the folder (setup) | {n / setup:.0f} ({setup:.1f} s) |",
        f"| first epoch: read + decode + cache | {first:.0f} |",
        f"| later epochs: cache + augment + batch | {later:.0f} |",
        f"| test pipeline, first pass: read + decode + cache | {test:.0f} |",
        f"| ResNet-20 BiPer training step consumes | {step:.0f} |", "",
        f"Later epochs produce {later / step:.1f}x what training consumes; the first epoch "
        f"{first / step:.1f}x.", ""])
    print(table)
    if args.out:
        out = pathlib.Path(args.out)
        out.write_text(json.dumps(result, indent=2))
        out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
