"""Train a small BiPer CNN on a CIFAR-10 subset for about a minute, both stages.

    python examples/train_cifar_subset.py                      # ~1 minute on 2 cores
    python examples/train_cifar_subset.py --smoke              # a few seconds (tests)
    python examples/train_cifar_subset.py --data /path/to/cifar10-jpeg --per-class 500

Stage 1 trains with real sine weights (`BiPer(binarize=False)`), stage 2 starts from
stage 1's weights with binarized ones, as in the BiPer paper. Activations are binary in
both stages. Data: the CIFAR-10 image folder (`<data>/{train,test}/<class>/*.jpg`).
"""

import argparse
import os
import pathlib
import time

import keras

import biper_keras as bk
from biper_keras.data import load_image_folder
from biper_keras.training import to_binary_stage

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg"


def load_subset(root, split, per_class):
    x, y, classes = load_image_folder(root, split, per_class=per_class)
    return x.astype("float32") / 127.5 - 1.0, y, len(classes)


def build(num_classes, binarize, omega=20.0):
    def binary_conv(filters):
        return bk.QuantConv2D(
            filters, 3, padding="same", pad_values=1.0, use_bias=False,
            input_quantizer="approx_sign",
            kernel_quantizer=bk.BiPer(omega=omega, binarize=binarize),
            kernel_scale="channel",
        )

    def bn():
        # A short run: the default momentum (0.99) leaves the moving statistics that
        # evaluation uses far from the batch statistics training saw.
        return keras.layers.BatchNormalization(momentum=0.9)

    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(64, 3, padding="same", use_bias=False),  # first layer: float
        bn(),
        binary_conv(64), keras.layers.MaxPooling2D(), bn(),
        binary_conv(128), keras.layers.MaxPooling2D(), bn(),
        binary_conv(128), bn(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(num_classes),  # last layer: float
    ])


class TimeBudget(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.deadline = time.monotonic() + seconds

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self.model.stop_training = True


def train_stage(model, data, epochs, seconds, lr):
    (x, y), (xt, yt) = data
    model.compile(
        keras.optimizers.Adam(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=2, callbacks=[TimeBudget(seconds)])
    return model.evaluate(xt, yt, verbose=0)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("BIPER_CIFAR10_DIR", DEFAULT_DATA))
    parser.add_argument("--per-class", type=int, default=200, help="training images per class")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per stage (upper bound)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time budget per stage")
    parser.add_argument("--omega", type=float, default=20.0)
    parser.add_argument("--smoke", action="store_true", help="tiny run for tests")
    args = parser.parse_args()
    if args.smoke:
        args.per_class, args.epochs, args.seconds = 10, 1, 20.0
    if not pathlib.Path(args.data, "train").is_dir():
        raise SystemExit(f"error: no CIFAR-10 image folder at {args.data}: pass --data PATH "
                         "(an image folder with train/ and test/) or set BIPER_CIFAR10_DIR")

    keras.utils.set_random_seed(0)
    train = load_subset(args.data, "train", args.per_class)
    test = load_subset(args.data, "test", max(args.per_class // 4, 10))
    data = (train[:2], test[:2])
    print(f"{len(train[1])} training / {len(test[1])} test images, backend {keras.backend.backend()}")

    stage1 = build(train[2], binarize=False, omega=args.omega)
    acc1 = train_stage(stage1, data, args.epochs, args.seconds, lr=3e-3)
    stage2 = to_binary_stage(stage1)  # stage 2 starts from stage 1
    acc2 = train_stage(stage2, data, args.epochs, args.seconds, lr=1e-3)
    print(f"test accuracy: stage 1 (sine weights) {acc1:.3f}, stage 2 (binary weights) {acc2:.3f}")


if __name__ == "__main__":
    main()
