"""The real CIFAR-10 images the package ships (biper_keras/sample_data: 50 training and
20 test images a class), so that tests need nothing outside the repository."""

import pathlib

from biper_keras.data import load_image_folder

SAMPLE_DIR = pathlib.Path(__file__).resolve().parents[1] / "biper_keras" / "sample_data" / "cifar10"


def cifar_subset(per_class=8, split="train", offset=0):
    """Returns (x float32 in [-1, 1], NHWC 32x32x3; y int32) with `per_class` images a class."""
    x, y, _ = load_image_folder(SAMPLE_DIR, split, per_class=per_class, offset=offset)
    if len(y) != 10 * per_class:
        raise ValueError(f"the sample has fewer than offset + per_class = {offset + per_class} "
                         f"{split} images a class")
    return (x.astype("float32") / 127.5 - 1.0), y
