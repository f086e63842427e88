"""Binarize `keras.applications` networks (built offline, weights=None), convert them with
LCE and check them in LCE's interpreter against Keras.

    python examples/convert_keras_applications.py                 # ResNet50, 32x32
    python examples/convert_keras_applications.py ResNet50 MobileNetV2 --size 64

Untrained BatchNorm statistics (gamma 1, beta 0, mean 0, var 1) make exact zeros at the
binarizers, so they are randomized first, as a trained network's would be. The same
checks run in tests/test_binarize.py.
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from biper_keras.binarize import binarize  # noqa: E402
from biper_keras.convert import convert, randomize_batch_norms  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["ResNet50"], help="keras.applications names")
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--samples", type=int, default=8, help="random inputs for the parity check")
    args = parser.parse_args()
    for name in args.models:
        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(weights=None, input_shape=(args.size, args.size, 3), classes=10)
        binary, report = binarize(model)
        rng = np.random.default_rng(1)
        randomize_batch_norms(binary, rng)
        x = rng.normal(size=(args.samples, args.size, args.size, 3)).astype("float32")
        result = convert(binary, data=x)  # strict: raises if a conv did not fuse or parity fails
        p = result.parity
        print(f"{name} {args.size}x{args.size}: binarized {len(report.binarized)} layers, "
              f"{result.ops.get('LceBconv2d', 0)} LceBconv2d, {len(result.unfused)} unfused, "
              f"{result.size / 2**20:.2f} MiB; loads and runs in LCE's interpreter; on {p.samples} "
              f"inputs top-1 agreement {p.top1_agreement:.2f}, max |diff| {p.max_abs_diff:.2g} "
              f"(outputs up to {p.max_abs_output:.2g})")


if __name__ == "__main__":
    main()
