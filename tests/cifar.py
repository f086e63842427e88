"""A small, fixed subset of the real CIFAR-10 images in ../shared/datasets (read-only)."""

import os
import pathlib

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_DIR = pathlib.Path(
    os.environ.get("BIPER_CIFAR10_DIR", REPO.parent / "shared" / "datasets" / "cifar10-jpeg")
)
CLASSES = sorted(
    "airplane automobile bird cat deer dog frog horse ship truck".split()
)


def cifar_subset(per_class=8, split="train", offset=0):
    """Returns (x float32 in [-1, 1], NHWC 32x32x3; y int32) with `per_class` images a class."""
    from PIL import Image

    if not CIFAR_DIR.is_dir():
        raise FileNotFoundError(
            f"CIFAR-10 image folder not found at {CIFAR_DIR}; set BIPER_CIFAR10_DIR."
        )
    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((CIFAR_DIR / split / name).glob("*.jpg"))[offset : offset + per_class]
        for f in files:
            xs.append(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32))
            ys.append(label)
    x = np.stack(xs) / 127.5 - 1.0
    return x.astype("float32"), np.asarray(ys, dtype="int32")
