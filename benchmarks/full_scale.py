"""What the paper's full recipes would cost: measured training throughput of each paper
model on this machine (TF backend, BiPer stage 2, a few steps), extrapolated to the
recipe's epochs, beside the MACs per image so the estimate can be scaled to other hardware.

    python benchmarks/full_scale.py                      # CIFAR ResNet-20/18, VGG-Small, ImageNet ResNet-18/34
    python benchmarks/full_scale.py --quick              # ResNet-20 only, 2 steps

Writes JSON and a Markdown table with `--out`.
"""

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402

# model, input size, classes, paper epochs (stage 1 + stage 2), train images, batch to time with
RECIPES = [
    ("resnet20", 32, 10, 600 + 300, 50_000, 128),
    ("resnet18", 32, 10, 600 + 300, 50_000, 64),
    ("vgg_small", 32, 10, 600 + 300, 50_000, 64),
    ("resnet18_imagenet", 224, 1000, 200 + 100, 1_281_167, 16),
    ("resnet34_imagenet", 224, 1000, 200 + 100, 1_281_167, 16),
]


def measure(name, size, classes, batch, steps, warmup=2):
    import keras
    import numpy as np

    from biper_keras.models import get_model
    from biper_keras.summary import summary

    model = get_model(name, input_shape=(size, size, 3), num_classes=classes)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, size=batch)
    step = _common.time_calls(lambda: model.train_on_batch(x, y), repeats=steps, warmup=warmup)
    stats = summary(model, print_fn=None).to_dict()
    return batch / step["median"], stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    recipes = RECIPES[:1] if args.quick else RECIPES
    rows = []
    for name, size, classes, epochs, images, batch in recipes:
        rate, stats = measure(name, size, classes, 8 if args.quick else batch, 2 if args.quick else args.steps)
        hours = epochs * images / rate / 3600
        rows.append({"model": name, "input": size, "epochs": epochs, "train_images": images,
                     "images_per_second": rate, "cpu_hours": hours,
                     "macs_per_image": stats["macs_1bit"] + stats["macs_32bit"],
                     "binary_mac_ratio": stats["binary_mac_ratio"], "parameters": stats["params"]})
        print(f"{name}: {rate:.1f} images/s", flush=True)
    lines = [f"Training throughput on this machine (TF backend, BiPer, {time.strftime('%Y-%m-%d')}) and the "
             "paper recipes extrapolated", "",
             "| model | input | params (M) | MMACs / image | images/s here | paper epochs | CPU-hours here |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['input']}² | {r['parameters'] / 1e6:.2f} | {r['macs_per_image'] / 1e6:.0f} | "
                     f"{r['images_per_second']:.1f} | {r['epochs']} | {r['cpu_hours']:,.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        _common.write_results(args.out, {"rows": rows}, table)

if __name__ == "__main__":
    main()
