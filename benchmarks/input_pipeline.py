"""Input-pipeline throughput against what training consumes: can `image_datasets` feed
the ResNet-20 training step on this machine?

    python benchmarks/input_pipeline.py                   # full CIFAR-10 folder, batch 128
    python benchmarks/input_pipeline.py --quick           # the packaged sample, a smoke run

Times, in images/s: the first epoch (file reads + JPEG decode, filling the in-memory
cache), a later epoch (cache + augmentation + normalization + batching), the test
pipeline, and the training step of the default ResNet-20 (BiPer) on the same batches
(TF backend, `train_on_batch` on batches held in memory). The pipeline is fast enough
when a later epoch's images/s is well above the step's. Beside it, the same data kept on
the device (`biper_keras.device_data`, on the Keras backend in use: run with
KERAS_BACKEND=jax for the JAX path): the in-memory load, and a later epoch (gather + crop +
flip + normalize on the device), as a ratio to the tf.data epoch. Writes JSON and Markdown
with `--out`.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402

DEFAULT_DATA = _common.CIFAR_FOLDER
SAMPLE = _common.SAMPLE


def images_per_second(dataset, limit_batches=None):
    start, count = time.perf_counter(), 0
    for i, (x, _) in enumerate(dataset):
        count += int(x.shape[0])
        if limit_batches and i + 1 >= limit_batches:
            break
    return count / (time.perf_counter() - start), count


def device_epoch_images_per_second(batches):
    """One pass over a `device_data` split; the last batch is read back to the host, so
    asynchronous backends (JAX) have finished the work."""
    import numpy as np

    start = time.perf_counter()
    for i in range(len(batches)):
        x, _ = batches[i]
    np.asarray(x)
    return batches._n / (time.perf_counter() - start)


def training_images_per_second(dataset, batch, steps, rounds):
    import keras

    from biper_keras.models import get_model

    model = get_model("resnet20")
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = [b for _, b in zip(range(steps), dataset)]
    if keras.backend.backend() != "tensorflow":  # tf.data yields TF tensors; other backends take NumPy
        batches = [(x.numpy(), y.numpy()) for x, y in batches]
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
    _common.require_data(args.data)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from biper_keras.data import image_datasets

    start = time.perf_counter()
    data = image_datasets(args.data, batch_size=args.batch_size)
    setup = time.perf_counter() - start
    first, n = images_per_second(data.train)  # decode + cache fill
    later, _ = images_per_second(data.train)  # from the cache
    test, _ = images_per_second(data.test)
    from biper_keras.device_data import device_datasets
    import keras

    start = time.perf_counter()
    on_device = device_datasets(args.data, batch_size=args.batch_size)
    device_load = time.perf_counter() - start
    device_epoch_images_per_second(on_device.train)  # compiles (JAX)
    on_device.train.on_epoch_end()
    device_later = device_epoch_images_per_second(on_device.train)
    step = training_images_per_second(data.train, args.batch_size, args.train_steps, args.rounds)
    result = {"date": time.strftime("%Y-%m-%d"), "data": str(args.data), "train_images": n,
              "batch_size": args.batch_size, "setup_seconds": setup,
              "first_epoch_images_per_second": first, "later_epoch_images_per_second": later,
              "test_images_per_second": test, "training_images_per_second": step,
              "headroom": later / step, "backend": keras.backend.backend(),
              "device_load_seconds": device_load, "device_later_epoch_images_per_second": device_later,
              "device_over_tf_data": device_later / later}
    table = "\n".join([
        f"Input pipeline on {n} training images, batch {args.batch_size} ({result['date']})", "",
        "| stage | images/s |", "|---|---|",
        f"| listing the folder (setup) | {n / setup:.0f} ({setup:.1f} s) |",
        f"| first epoch: read + decode + cache | {first:.0f} |",
        f"| later epochs: cache + augment + batch | {later:.0f} |",
        f"| test pipeline, first pass: read + decode + cache | {test:.0f} |",
        f"| ResNet-20 BiPer training step consumes | {step:.0f} |",
        f"| device data ({result['backend']}): load into memory | {n / device_load:.0f} ({device_load:.1f} s) |",
        f"| device data ({result['backend']}): later epochs, gather + augment on the device | {device_later:.0f} |",
        "",
        f"Device data, later epoch / tf.data later epoch: {device_later / later:.2f}x.",
        f"Later epochs produce {later / step:.1f}x what training consumes; the first epoch "
        f"{first / step:.1f}x.", ""])
    print(table)
    if args.out:
        _common.write_results(args.out, result, table)


if __name__ == "__main__":
    main()
