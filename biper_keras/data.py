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
# The first bytes of the formats read here (tf.io.decode_image and PIL both read them).
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP", b"GIF87a": "GIF", b"GIF89a": "GIF"}
# Image formats users keep in folders that are not read here: named when met, so that a
# folder of them is not reported as empty.
_OTHER_IMAGE_SUFFIXES = (".webp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".ppm", ".pgm",
                         ".pbm", ".pnm", ".ico", ".svg", ".dng", ".cr2", ".nef", ".arw")
_SUPPORTED = "JPEG, PNG, BMP, GIF (" + " ".join(IMAGE_SUFFIXES) + ")"


def data_folder(root=None):
    """`root`, else $BIPER_DATA_DIR; raises ValueError naming both when neither is set
    or the folder does not exist."""
    chosen = root or os.environ.get("BIPER_DATA_DIR")
    if not chosen:
        raise ValueError("No data folder given: pass `root` or set BIPER_DATA_DIR.")
    path = pathlib.Path(chosen).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"Data folder {path} is a file, not a folder: give the folder that holds "
                         "train/<class>/* and test/<class>/* (an archive must be unpacked first).")
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


def _warn(message):
    """A UserWarning attributed to the first caller outside this package (Python 3.11
    has no `skip_file_prefixes`), so that it does not show a line of the package."""
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _class_files(folder):
    """[(class name, sorted image files)] of an image folder, classes alphabetical.

    Files with other suffixes are ignored; files with an image suffix that would not
    decode (wrong first bytes, truncated, a decompression bomb: see `_image_problem`)
    are skipped and counted in one warning naming the first and its problem, as are
    files in an image format not read here (.webp, .tiff, ...). A class folder left
    with no image is a ValueError naming what it holds."""
    if not folder.is_dir():
        raise ValueError(f"Split folder not found: {folder} (expected root/{{train,test}}/<class>/*)")
    # Hidden folders (.ipynb_checkpoints, .git) are not classes.
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"No class folders in {folder}")
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS  # read now: a user may have raised it (or set None)
    result, skipped, foreign = [], [], []
    # Reading the first bytes of every file is I/O-bound: threads overlap the waits
    # (ImageNet-sized folders, network file systems). One pool for the whole split.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for name in classes:
            listed = sorted(f for f in (folder / name).iterdir() if not f.name.startswith("."))
            files = [f for f in listed if f.suffix.lower() in IMAGE_SUFFIXES]
            others = [f for f in listed if f.suffix.lower() in _OTHER_IMAGE_SUFFIXES]
            images, bad = [], []
            for f, problem in zip(files, pool.map(lambda f: _image_problem(f, limit), files)):
                if problem is None:
                    images.append(f)
                else:
                    bad.append((f, problem))
            if not images:
                raise ValueError(f"Class folder {folder / name} has no images to read: {_holds(bad, others)}")
            result.append((name, images))
            skipped += bad
            foreign += others
    if len(classes) == 1:
        raise ValueError(f"Only one class folder in {folder} ({classes[0]}): a classifier needs at least two")
    if skipped or foreign:
        parts = []
        if skipped:
            first, problem = skipped[0]
            parts.append(f"skipped {len(skipped)} image file(s) that would not decode (first: {first}: {problem})")
        if foreign:
            parts.append(f"ignored {len(foreign)} file(s) in a format not read here "
                         f"({_suffix_counts(foreign)}; read: {_SUPPORTED})")
        _warn(f"{folder}: " + "; ".join(parts) + ".")
    return result


def _suffix_counts(files):
    counts = {}
    for f in files:
        counts[f.suffix.lower()] = counts.get(f.suffix.lower(), 0) + 1
    return ", ".join(f"{n} {suffix}" for suffix, n in sorted(counts.items()))


def _holds(bad, others):
    """What an image-less class folder holds, in a few words."""
    if others:
        return (f"it holds {_suffix_counts(others)} file(s), a format not read here; convert them to one of "
                f"{_SUPPORTED}")
    if bad:
        return f"{len(bad)} file(s) would not decode (first: {bad[0][0]}: {bad[0][1]})"
    return f"no {_SUPPORTED} file in it"


def _image_problem(path, max_pixels):
    """None if `path` looks like a complete JPEG/PNG/BMP/GIF of at most `max_pixels`
    pixels (None: no limit), else the problem in a few words.

    Checked when listing, not when decoding: a file that fails to decode inside tf.data
    stops training mid-epoch, and tf.data's ignore_errors() makes the dataset size
    unknown (then Keras 3.15 counts one extra optimizer step per epoch). Cheap checks
    only, never a decode: the first bytes (format), the header's image size (a
    decompression bomb is a small file declaring billions of pixels: PIL refuses twice
    Image.MAX_IMAGE_PIXELS, TensorFlow would allocate them), and the end (a truncated
    JPEG has no end marker, a truncated PNG no IEND chunk, a truncated BMP is shorter
    than its header says)."""
    with open(path, "rb", buffering=0) as f:
        head = f.read(_HEAD)  # a small image whole, in one read
        kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
        if kind is None:
            return f"not JPEG/PNG/BMP/GIF data (first bytes {head[:8]!r})"
        size = _jpeg_size(head, f) if kind == "JPEG" else _header_size(kind, head)
        end = os.fstat(f.fileno()).st_size
        if end > len(head):
            f.seek(end - 64)
            tail = f.read()
        else:
            tail = head[-64:]
    if kind == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == "PNG" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    if kind == "BMP" and int.from_bytes(head[2:6], "little") > end:
        return f"truncated BMP ({end} of the {int.from_bytes(head[2:6], 'little')} bytes its header declares)"
    if size is None:
        return f"corrupt {kind} header (no image size in it)"
    width, height = size
    if width <= 0 or height <= 0:
        return f"corrupt {kind} header (image size {width}x{height})"
    if max_pixels and width * height > max_pixels:
        return (f"{width}x{height} pixels, over the decompression-bomb limit of {max_pixels} pixels "
                "(Pillow's Image.MAX_IMAGE_PIXELS)")
    return None


def _header_size(kind, head):
    """(width, height) from the fixed header of a PNG, GIF or BMP."""
    if kind == "PNG":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if kind == "GIF":
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if int.from_bytes(head[14:18], "little") == 12:  # BMP: the old OS/2 header, 16-bit sizes
        return int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
    return (int.from_bytes(head[18:22], "little", signed=True),
            abs(int.from_bytes(head[22:26], "little", signed=True)))  # negative: top-down rows


_HEAD = 4096  # bytes read first: most of a CIFAR-sized image, every header that matters

# JPEG's start-of-frame markers (baseline, progressive, ...): the ones that carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(head, f):
    """(width, height) from a JPEG's start-of-frame segment, walking the segments from
    the start: in `head` (the file's first bytes), then in the file `f` when the frame
    header lies further (a large EXIF block); None if there is none before the image data."""
    base, position = 0, 2  # head[0] is byte `base` of the file
    for _ in range(1024):
        if position + 9 > len(head):  # past what was read: read on from the file
            base += position
            f.seek(base)
            head, position = f.read(_HEAD), 0
            if len(head) < 9:
                return None
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # a fill byte
            position += 1
            continue
        if marker == 0xDA:  # the scan starts: no frame header before it
            return None
        if marker in _SOF:
            frame = head[position + 4:position + 9]
            return int.from_bytes(frame[3:5], "big"), int.from_bytes(frame[1:3], "big")
        position += 2 + int.from_bytes(head[position + 2:position + 4], "big")
    return None


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

    def __init__(self, train, test, class_names, image_shape, train_size, test_size, size_from=None):
        self.train, self.test = train, test
        # The image whose size `image_shape` was taken from (None: the size was given).
        self.size_from = size_from
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
    size_from = None
    if image_size is None:
        with _open_image(paths[0]) as first:
            image_size = (first.height, first.width)
        size_from = paths[0]

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
    return ds, classes, len(paths), (*image_size, channels), size_from


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
    return ds, classes, count, (*size, channels), None


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
    (train, classes, n_train, shape, size_from), (test, test_classes, n_test, *_) = splits[train_split], splits[test_split]
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

    return Datasets(finish(train, True), finish(test, False), classes, shape, n_train, n_test, size_from)


def preprocessing_for(source=None, model=""):
    """The input settings (`image_datasets` keywords) that a data source and a model name
    call for: ImageNet's (random resized crop, ImageNet statistics, 0.875 center crop for
    evaluation, 224x224) when either names ImageNet ("imagenet" in the source, a
    `*_imagenet` model), CIFAR-10's (pad-4 crop + flip, CIFAR-10 statistics) otherwise."""
    if "imagenet" in str(source or "").lower() or str(model).endswith("_imagenet"):
        return {"augment": "imagenet", "normalize": "imagenet", "eval_crop": 0.875, "image_size": (224, 224)}
    return {"augment": "cifar", "normalize": "cifar10", "eval_crop": 1.0, "image_size": None}
