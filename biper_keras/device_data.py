"""Image data that fits in memory, kept on the accelerator: no tf.data, no TensorFlow.

The uint8 images live on the backend's default device (a GPU under JAX or torch) for the
whole run. Once per epoch the host draws the permutation, the crop offsets and the flips
(a few hundred kilobytes for CIFAR-10) and sends them over; every step then only slices
those, gathers its images on the device, and crops, flips and normalizes them there with
`keras.ops` (one compiled function on JAX). No image crosses the host-device link after
the first copy and nothing runs per image in Python.

The training augmentation draws the same distribution as `data.image_datasets`' CIFAR
pipeline: zero padding of 4 pixels (before normalization), a crop offset uniform over the
9 x 9 positions, a horizontal flip with probability 1/2. Test batches equal that
pipeline's (same image order, same normalization).
"""

import concurrent.futures
import io
import math
import pathlib

import keras
import numpy as np
from keras import ops

from biper_keras.data import NORMALIZATION, Datasets, _class_files, data_folder

__all__ = ["device_datasets", "load_arrays", "crop_flip"]

PAD = 4  # the CIFAR augmentation's padding


def _decode(data):
    from PIL import Image

    with Image.open(data if isinstance(data, (str, pathlib.Path)) else io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _decode_all(items):
    # PIL's JPEG decoder releases the GIL: threads scale over the cores.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        images = list(pool.map(_decode, items, chunksize=256))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"Images of different sizes {sorted(shapes)[:3]}: device data needs one size.")
    return np.stack(images)


def _folder_order(n):
    # The fixed permutation `data.image_datasets` applies to a folder's listing, so
    # that test batches come in the same order as that pipeline's.
    return np.random.RandomState(0).permutation(n)


def load_arrays(source=None, split="train"):
    """`(images uint8 NHWC RGB, labels int32, class_names)` of one split, decoded in memory.

    `source`: an image folder `root/{train,test}/<class>/*` (default $BIPER_DATA_DIR), or
    the path of a `cifar10.bin` blob whose `cifar10_index.npz` (arrays `offs`, `labels`,
    `split` with 0 = train / 1 = test, `classes`) lies beside it. Images come in the order
    `data.image_datasets` feeds them.
    """
    if split not in ("train", "test"):
        raise ValueError(f"Argument `split` must be 'train' or 'test'. Received: {split!r}.")
    path = pathlib.Path(str(source)) if source is not None else None
    if path is not None and path.suffix == ".bin":
        index_path = path.with_name(path.stem + "_index.npz")
        if not path.is_file() or not index_path.is_file():
            raise ValueError(f"Blob {path} needs {index_path.name} beside it; one of them is missing.")
        index = dict(np.load(index_path))
        blob = path.read_bytes()
        offs = index["offs"]
        if offs[-1] != len(blob):
            raise ValueError(f"{path} has {len(blob)} bytes but its index ends at {offs[-1]}: truncated or mismatched.")
        chosen = np.flatnonzero(index["split"] == (0 if split == "train" else 1))
        images = _decode_all([blob[offs[k]:offs[k + 1]] for k in chosen])
        labels = index["labels"][chosen].astype(np.int32)
        classes = [str(c) for c in index["classes"]]
    else:
        listing = _class_files(data_folder(source) / split)
        files = [f for _, fs in listing for f in fs]
        labels = np.asarray([label for label, (_, fs) in enumerate(listing) for _ in fs], np.int32)
        images = _decode_all(files)
        classes = [name for name, _ in listing]
    order = _folder_order(len(labels))
    return images[order], labels[order], classes


def crop_flip(images, offsets, flips):
    """Pads `images` (B, H, W, C) by 4 zero pixels, crops each back to H x W at its
    `offsets` (B, 2) row/column in [0, 8], and mirrors it left-right where `flips` (B,).
    One gather per axis; the flip is folded into the column gather."""
    b, h, w = images.shape[0], images.shape[1], images.shape[2]
    x = ops.pad(images, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]])
    offsets = ops.cast(offsets, "int32")
    rows = offsets[:, :1] + ops.arange(h, dtype="int32")[None, :]
    forward = ops.arange(w, dtype="int32")[None, :]
    cols = offsets[:, 1:] + ops.where(ops.expand_dims(flips, 1), (w - 1) - forward, forward)
    x = ops.take_along_axis(x, ops.broadcast_to(rows[:, :, None, None], (b, h, w + 2 * PAD, x.shape[3])), axis=1)
    return ops.take_along_axis(x, ops.broadcast_to(cols[:, None, :, None], (b, h, w, x.shape[3])), axis=2)


class _DeviceBatches(keras.utils.PyDataset):
    """Batches of a device-resident split; a new permutation/crops/flips each epoch."""

    def __init__(self, images, labels, batch_size, mean, std, augment, shuffle, seed):
        super().__init__(workers=1, use_multiprocessing=False)
        self._n = int(labels.shape[0])
        self._batch_size = batch_size
        self._augment, self._shuffle, self._seed = augment, shuffle, seed
        self._images = ops.convert_to_tensor(images)  # uint8, on the default device
        self._labels = ops.convert_to_tensor(labels)
        self._mean = ops.convert_to_tensor(np.asarray(mean, np.float32))
        self._std = ops.convert_to_tensor(np.asarray(std, np.float32))
        self._batch = self._compiled(self._make_batch)
        self.epoch = 0
        self._draw()

    @staticmethod
    def _compiled(fn):
        """One compiled graph per batch size (the last batch may be smaller)."""
        if keras.backend.backend() == "jax":
            import jax

            return jax.jit(fn, static_argnums=(2,))
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            graph = tf.function(fn)  # `start` as a tensor: no retrace per step
            return lambda images, state, size, start: graph(images, state, size, tf.constant(start, tf.int32))
        return fn  # torch: eager kernels on the device

    def _draw(self):
        """The epoch's random choices, drawn on the host from (seed, epoch), sent once."""
        rng = np.random.default_rng([self._seed, self.epoch])
        order = rng.permutation(self._n) if self._shuffle else np.arange(self._n)
        self._order = ops.convert_to_tensor(order.astype(np.int32))
        if self._augment:
            self._offsets = ops.convert_to_tensor(rng.integers(0, 2 * PAD + 1, (self._n, 2)).astype(np.int32))
            self._flips = ops.convert_to_tensor(rng.random(self._n) < 0.5)

    def _make_batch(self, images, state, size, start):
        order, offsets, flips = state
        idx = ops.slice(order, (start,), (size,))
        x = ops.take(images, idx, axis=0)
        if offsets is not None:
            x = crop_flip(x, ops.slice(offsets, (start, 0), (size, 2)), ops.slice(flips, (start,), (size,)))
        return (ops.cast(x, "float32") - self._mean) / self._std, ops.take(self._labels, idx, axis=0)

    def __len__(self):
        return math.ceil(self._n / self._batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self._batch_size
        size = min(self._batch_size, self._n - start)
        state = (self._order, self._offsets, self._flips) if self._augment else (self._order, None, None)
        return self._batch(self._images, state, size, start)

    def on_epoch_end(self):
        self.epoch += 1
        if self._shuffle or self._augment:
            self._draw()


def device_datasets(source=None, *, batch_size=128, augment="cifar", normalize="cifar10", shuffle=True,
                    seed=0, limit_per_split=None, arrays=None, class_names=None):
    """Training and test batches kept on the accelerator (see the module docstring), as a
    `data.Datasets` (so `training.train` takes it) whose `train` and `test` are
    `keras.utils.PyDataset`s yielding backend tensors on the default device.

    Args:
        source: an image folder or a `cifar10.bin` blob (see `load_arrays`); or None with
            `arrays=((x_train, y_train), (x_test, y_test))` (uint8 NHWC images, int labels).
        batch_size: per-step batch.
        augment: "cifar" (pad-4 random crop + flip) or None; training split only.
        normalize: "cifar10", "imagenet", "unit" or ((mean...), (std...)), as in `image_datasets`.
        shuffle: a new permutation each epoch, drawn from (seed, epoch).
        limit_per_split: keep the first n examples of each split (smoke runs).
        class_names: with `arrays`; default "0", "1", ...
    """
    if augment not in ("cifar", None):
        raise ValueError(f"Argument `augment` must be 'cifar' or None on the device. Received: {augment!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be an integer >= 1. Received: {batch_size!r}.")
    if isinstance(normalize, str) and normalize not in NORMALIZATION:
        raise ValueError(f"Argument `normalize` must be one of {sorted(NORMALIZATION)} or (mean, std). "
                         f"Received: {normalize!r}.")
    mean, std = NORMALIZATION[normalize] if isinstance(normalize, str) else normalize
    if arrays is None:
        (xtr, ytr, classes), (xte, yte, _) = load_arrays(source, "train"), load_arrays(source, "test")
    else:
        if source is not None:
            raise ValueError("Pass either `source` or `arrays`, not both.")
        (xtr, ytr), (xte, yte) = arrays
        xtr, xte = np.asarray(xtr), np.asarray(xte)
        ytr, yte = np.asarray(ytr, np.int32), np.asarray(yte, np.int32)
        for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
            if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y) or len(x) == 0:
                raise ValueError(f"`arrays` {name} images must be non-empty uint8 (N, H, W, C) with one label "
                                 f"each. Received: {x.dtype} {x.shape}, {len(y)} labels.")
        classes = list(class_names) if class_names else [str(i) for i in range(int(max(ytr.max(), yte.max())) + 1)]
    if limit_per_split:
        xtr, ytr, xte, yte = xtr[:limit_per_split], ytr[:limit_per_split], xte[:limit_per_split], yte[:limit_per_split]
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(f"Train images are {xtr.shape[1:]} but test images {xte.shape[1:]}.")
    train = _DeviceBatches(xtr, ytr, batch_size, mean, std, augment, shuffle, seed)
    test = _DeviceBatches(xte, yte, batch_size, mean, std, None, False, seed)
    return Datasets(train, test, classes, tuple(xtr.shape[1:]), len(ytr), len(yte))
