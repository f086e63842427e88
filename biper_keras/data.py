"""Image data: local image folders (`root/{train,test}/<class>/*`) as arrays.

No data is bundled or downloaded here: point `BIPER_DATA_DIR` (or the `root`
argument) at a folder, e.g. the CIFAR-10 JPEG copy `cifar10-jpeg/`.
"""

import os
import pathlib

import numpy as np

__all__ = ["load_image_folder", "data_dir"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def data_dir(root=None):
    """`root`, else $BIPER_DATA_DIR; raises ValueError naming both when neither is set
    or the folder does not exist."""
    chosen = root or os.environ.get("BIPER_DATA_DIR")
    if not chosen:
        raise ValueError("No data folder given: pass `root` or set BIPER_DATA_DIR.")
    path = pathlib.Path(chosen).expanduser()
    if not path.is_dir():
        raise ValueError(f"Data folder not found: {path}")
    return path


def load_image_folder(root=None, split="train", per_class=None, offset=0, image_size=(32, 32)):
    """Loads `root/split/<class>/*` into memory.

    Classes are the sub-folders in alphabetical order (label i = i-th folder); files
    are taken in name order, `per_class` of them (all if None) from `offset` on.
    Returns `(images uint8 NHWC RGB, labels int32, class_names)`.
    """
    from PIL import Image

    folder = data_dir(root) / split
    if not folder.is_dir():
        raise ValueError(f"Split folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"No class folders in {folder}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"Class folder {folder / name} has no images")
        end = None if per_class is None else offset + per_class
        for f in files[offset:end]:
            with Image.open(f) as img:
                img = img.convert("RGB")
                if img.size != tuple(image_size[::-1]):
                    img = img.resize(image_size[::-1], Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int32), classes
