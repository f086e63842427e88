"""Image data: local image folders (`root/{train,test}/<class>/*`) or
tensorflow-datasets names, as arrays or as tf.data pipelines.

No data is bundled or downloaded here: point `BIPER_DATA_DIR` (or the `root`
argument) at a folder, e.g. the CIFAR-10 JPEG copy `cifar10-jpeg/`.
"""

import concurrent.futures
import os
import pathlib

import numpy as np

__all__ = ["load_image_folder", "data_folder", "image_datasets", "Datasets", "preprocessing_for"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The first bytes of the formats tf.io.decode_image reads.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")


def data_folder(root=None):
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

    images, labels = [], []
    classes = _class_files(data_folder(root) / split)
    for label, (_, files) in enumerate(classes):
        end = None if per_class is None else offset + per_class
        for f in files[offset:end]:
            with _open_image(f) as img:
                img = img.convert("RGB")
                if img.size != tuple(image_size[::-1]):
                    img = img.resize(image_size[::-1], Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int32), [name for name, _ in classes]


def _open_image(path):
    from PIL import Image

    try:
        return Image.open(path)
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"Cannot read image {path}: {err}") from None


def _class_files(folder):
    """[(class name, sorted image files)] of an image folder, classes alphabetical;
    files that are not images (by suffix) are ignored."""
    if not folder.is_dir():
        raise ValueError(f"Split folder not found: {folder} (expected root/{{train,test}}/<class>/*)")
    # Hidden folders (.ipynb_checkpoints, .git) are not classes.
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"No class folders in {folder}")
    result, skipped = [], []
    # Reading the first bytes of every file is I/O-bound: threads overlap the waits
    # (ImageNet-sized folders, network file systems). One pool for the whole split.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for name in classes:
            files = sorted(f for f in (folder / name).iterdir()
                           if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            images = []
            for f, ok in zip(files, pool.map(_looks_like_an_image, files)):
                (images if ok else skipped).append(f)
            if not images:
                raise ValueError(f"Class folder {folder / name} has no images")
            result.append((name, images))
    if len(classes) == 1:
        raise ValueError(f"Only one class folder in {folder} ({classes[0]}): a classifier needs at least two")
    if skipped:
        import warnings

        warnings.warn(f"{len(skipped)} file(s) in {folder} have an image suffix but are not JPEG/PNG/BMP/GIF "
                      f"data, skipped (first: {skipped[0]}; wrong first bytes, truncated, or over "
                      f"{_MAX_PIXELS} pixels).", stacklevel=3)
    return result


# PIL's own decompression-bomb limit (it raises above twice Image.MAX_IMAGE_PIXELS).
_MAX_PIXELS = 2 * 89_478_485


def _looks_like_an_image(path):
    # Checked when listing, not when decoding: a file that fails to decode inside
    # tf.data stops training mid-epoch, and tf.data's ignore_errors() makes the dataset
    # size unknown (then Keras 3.15 counts one extra optimizer step per epoch). Cheap
    # checks only (head and tail): a truncated JPEG has no end marker, a truncated PNG
    # no IEND chunk, and a PNG's header gives its size (decompression bombs).
    with open(path, "rb") as f:
        head = f.read(24)
        if not head.startswith(_MAGIC):
            return False
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        tail = f.read()
    if head.startswith(b"\xff\xd8\xff"):
        return b"\xff\xd9" in tail
    if head.startswith(b"\x89PNG"):
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return b"IEND" in tail and 0 < width * height <= _MAX_PIXELS
    return True


# --- tf.data pipelines (TensorFlow's tf.data feeds every Keras backend) ---------------

NORMALIZATION = {
    "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    "unit": ((127.5,), (127.5,)),  # [-1, 1], any number of channels
}
AUGMENTATIONS = ("cifar", "imagenet", None)


class Datasets:
    """What `image_datasets` returns: `train` and `test` tf.data pipelines (batched,
    prefetched) and what a model builder needs to know about them."""

    def __init__(self, train, test, class_names, image_shape, train_size, test_size):
        self.train, self.test = train, test
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.image_shape = image_shape
        self.train_size, self.test_size = train_size, test_size

    def __repr__(self):
        return (f"Datasets({self.num_classes} classes, images {self.image_shape}, "
                f"{self.train_size} train / {self.test_size} test)")


def _folder_files(folder):
    classes = _class_files(folder)
    paths = [str(f) for _, files in classes for f in files]
    labels = [label for label, (_, files) in enumerate(classes) for _ in files]
    return paths, labels, [name for name, _ in classes]


def _folder_split(root, split, image_size, channels):
    import tensorflow as tf

    paths, labels, classes = _folder_files(root / split)
    # A fixed permutation: files are listed class by class, and a `take(n)` or a
    # shuffle buffer smaller than the split must still see every class.
    order = np.random.RandomState(0).permutation(len(paths))
    paths, labels = [paths[i] for i in order], [labels[i] for i in order]
    if image_size is None:
        with _open_image(paths[0]) as first:
            image_size = (first.height, first.width)

    def decode(path, label):
        data = tf.io.read_file(path)
        # JPEGs with the accurate integer DCT, as PIL (and so torchvision) decodes them;
        # TensorFlow's default fast DCT is up to 4 grey levels off.
        image = tf.cond(
            tf.io.is_jpeg(data),
            lambda: tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=channels, expand_animations=False))
        image = tf.image.resize(image, image_size, antialias=True)
        return tf.cast(tf.round(image), tf.uint8), label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return ds, classes, len(paths), (*image_size, channels)


def _tfds_split(name, split, image_size, channels, data_dir, download):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        try:
            builder.download_and_prepare()
        except AssertionError as err:  # e.g. imagenet2012's missing manual dir: say what tfds says
            raise ValueError(f"tensorflow-datasets cannot prepare {name!r}: {' '.join(str(err).split())}") from err
    try:
        ds = builder.as_dataset(split=split, as_supervised=True)
    except AssertionError as err:  # tfds asserts when the data is not prepared
        raise ValueError(
            f"tensorflow-datasets {name!r} is not prepared in {builder.data_dir!r}: pass "
            "download=True (CLI: --download), or a manual dir for sets like imagenet2012."
        ) from err
    info = builder.info
    classes = list(info.features["label"].names)
    shape = info.features["image"].shape
    size = tuple(image_size or shape[:2])
    if None in size:
        raise ValueError(f"{name!r} has images of varying size: pass image_size")
    ds = ds.map(lambda x, y: (tf.cast(tf.round(tf.image.resize(
        x if channels == shape[-1] else (tf.image.grayscale_to_rgb(x) if channels == 3 else tf.image.rgb_to_grayscale(x)),
        size, antialias=True)), tf.uint8), y), num_parallel_calls=tf.data.AUTOTUNE)
    try:
        count = info.splits[split].num_examples
    except KeyError:  # e.g. under tfds.testing.mock_data: ask the dataset itself
        count = int(ds.cardinality())
    return ds, classes, count, (*size, channels)


def _augment(kind, image_shape):
    """`f(image, seed)`: the training augmentation, with stateless random ops driven
    by a per-image seed (shape [2]), so that a parallel map is deterministic."""
    import tensorflow as tf

    h, w, c = image_shape
    if kind == "cifar":  # pad 4, random crop back, random horizontal flip

        def f(x, seed):
            crop, flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            x = tf.pad(x, [[4, 4], [4, 4], [0, 0]])
            x = tf.image.stateless_random_crop(x, (h, w, c), seed=crop)
            return tf.image.stateless_random_flip_left_right(x, seed=flip)

        return f
    if kind == "imagenet":  # random resized crop (8%-100% of the area), flip

        def f(x, seed):
            box, flip = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.shape(x), tf.zeros((1, 0, 4)), seed=box, min_object_covered=0.0,
                aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), use_image_if_no_bounding_boxes=True)
            x = tf.image.resize(tf.slice(x, begin, size), (h, w))
            return tf.image.stateless_random_flip_left_right(x, seed=flip)

        return f
    return lambda x, seed: x


def _center_crop(image_shape, fraction):
    import tensorflow as tf

    h, w, _ = image_shape

    def f(x):
        if fraction >= 1.0:
            return x
        bigger = (int(round(h / fraction)), int(round(w / fraction)))
        x = tf.image.resize(x, bigger)
        return tf.image.resize_with_crop_or_pad(x, h, w)

    return f


def image_datasets(source=None, *, batch_size=128, image_size=None, channels=3, augment="cifar",
                   normalize="cifar10", eval_crop=1.0, cache=True, shuffle=True, seed=0,
                   data_dir=None, download=False, train_split="train", test_split="test",
                   limit_per_split=None):
    """Training and test pipelines from an image folder or a tensorflow-datasets name.

    Args:
        source: a folder `root/{train,test}/<class>/*` (default: $BIPER_DATA_DIR), or a
            tensorflow-datasets name such as "cifar10" (offline unless `download`).
        batch_size: per-step batch (the global batch under a distribution strategy).
        image_size: (height, width) to resize to; default: the data's own size.
        channels: 3 (RGB; grayscale images are repeated) or 1.
        augment: "cifar" (pad-4 random crop + flip), "imagenet" (random resized crop +
            flip) or None; applied to the training split only.
        normalize: "cifar10", "imagenet", "unit" ([-1, 1]) or ((mean...), (std...)).
        eval_crop: test images are resized by 1/eval_crop and center-cropped back
            (ImageNet: 0.875); 1.0 keeps them as they are.
        cache: keep decoded images in memory (the pipeline decodes once).
        limit_per_split: take only the first n examples of each split (smoke runs).
    """
    import tensorflow as tf

    if augment not in AUGMENTATIONS:
        raise ValueError(f"Argument `augment` must be 'cifar', 'imagenet' or None. Received: {augment!r}.")
    if channels not in (1, 3):
        raise ValueError(f"Argument `channels` must be 1 or 3. Received: {channels!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be an integer >= 1. Received: {batch_size!r}.")
    if limit_per_split is not None and (isinstance(limit_per_split, bool) or not isinstance(limit_per_split, int)
                                        or limit_per_split < 1):
        raise ValueError(f"Argument `limit_per_split` must be None or an integer >= 1. "
                         f"Received: {limit_per_split!r}.")
    mean, std = NORMALIZATION[normalize] if isinstance(normalize, str) else normalize
    looks_like_path = source is None or os.sep in str(source) or pathlib.Path(str(source)).exists()
    splits = {}
    for split in (train_split, test_split):
        if looks_like_path:
            splits[split] = _folder_split(data_folder(source), split, image_size, channels)
        else:
            splits[split] = _tfds_split(str(source), split, image_size, channels, data_dir, download)
    (train, classes, n_train, shape), (test, test_classes, n_test, _) = splits[train_split], splits[test_split]
    if test_classes != classes:
        extra = sorted(set(test_classes) ^ set(classes))
        raise ValueError(f"The {train_split} and {test_split} splits have different classes "
                         f"({len(classes)} vs {len(test_classes)}; not in both: {', '.join(extra[:5]) or 'same names, other order'}): "
                         "labels are folder positions, so they would not match.")
    if limit_per_split is not None:
        train, test = train.take(limit_per_split), test.take(limit_per_split)
        n_train, n_test = min(n_train, limit_per_split), min(n_test, limit_per_split)
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    augment_fn, crop_fn = _augment(augment, shape), _center_crop(shape, eval_crop)

    def finish(ds, training):
        if cache:
            ds = ds.cache()
        if training:
            if shuffle:
                ds = ds.shuffle(min(n_train, 50_000), seed=seed, reshuffle_each_iteration=True)
            # One seed per image, new every epoch, reproducible from `seed`.
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda xy, s: ((augment_fn(tf.cast(xy[0], tf.float32), s) - mean) / std, xy[1]),
                num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda x, y: ((crop_fn(tf.cast(x, tf.float32)) - mean) / std, y),
                        num_parallel_calls=tf.data.AUTOTUNE)
        # A batch larger than the split is the whole split: tf.data would otherwise
        # reserve memory for batch_size images (2**31 - 1 hangs the process).
        size = n_train if training else n_test
        return ds.batch(max(1, min(batch_size, size)), drop_remainder=False).prefetch(tf.data.AUTOTUNE)

    return Datasets(finish(train, True), finish(test, False), classes, shape, n_train, n_test)


def preprocessing_for(source=None, model=""):
    """The input settings (`image_datasets` keywords) that a data source and a model name
    call for: ImageNet's (random resized crop, ImageNet statistics, 0.875 center crop for
    evaluation, 224x224) when either names ImageNet ("imagenet" in the source, a
    `*_imagenet` model), CIFAR-10's (pad-4 crop + flip, CIFAR-10 statistics) otherwise."""
    if "imagenet" in str(source or "").lower() or str(model).endswith("_imagenet"):
        return {"augment": "imagenet", "normalize": "imagenet", "eval_crop": 0.875, "image_size": (224, 224)}
    return {"augment": "cifar", "normalize": "cifar10", "eval_crop": 1.0, "image_size": None}
