"""A small, fixed subset of the real CIFAR-10 images in ../shared/datasets (read-only)."""

import os
import pathlib

from biper_keras.data import load_image_folder

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_DIR = pathlib.Path(
    os.environ.get("BIPER_CIFAR10_DIR", REPO.parent / "shared" / "datasets" / "cifar10-jpeg")
)


def cifar_subset(per_class=8, split="train", offset=0):
    """Returns (x float32 in [-1, 1], NHWC 32x32x3; y int32) with `per_class` images a class."""
    if not CIFAR_DIR.is_dir():
        raise FileNotFoundError(f"CIFAR-10 image folder not found at {CIFAR_DIR}; set BIPER_CIFAR10_DIR.")
    x, y, _ = load_image_folder(CIFAR_DIR, split, per_class=per_class, offset=offset)
    return (x.astype("float32") / 127.5 - 1.0), y
