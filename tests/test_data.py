"""Data pipelines from an image folder and from tensorflow-datasets."""

import numpy as np
import pytest
from cifar import SAMPLE_DIR

from biper_keras.data import image_datasets, load_image_folder


def test_folder_pipeline_shapes_labels_and_normalization():
    d = image_datasets(SAMPLE_DIR, batch_size=32, limit_per_split=160, augment=None)
    assert d.num_classes == 10 and d.class_names[0] == "airplane" and d.class_names[-1] == "truck"
    assert d.image_shape == (32, 32, 3) and (d.train_size, d.test_size) == (160, 160)
    x, y = next(iter(d.test))
    assert x.shape == (32, 32, 32, 3) and x.dtype == "float32"
    assert len(set(y.numpy())) > 5  # a mix of classes, not the first class only
    # Independent check of one image: decode by PIL, normalize with the CIFAR constants.
    raw, labels, _ = load_image_folder(SAMPLE_DIR, "test")
    xs = np.concatenate([b[0].numpy() for b in d.test])
    ys = np.concatenate([b[1].numpy() for b in d.test])
    mean, std = np.array((125.3, 123.0, 113.9)), np.array((63.0, 62.1, 66.7))
    expected = (raw.astype("float64") - mean) / std
    # TF's and PIL's JPEG decoders may differ by a grey level here and there.
    distance = np.abs(expected - xs[0]).mean(axis=(1, 2, 3))
    nearest = int(np.argmin(distance))
    assert distance[nearest] < 0.02 and labels[nearest] == ys[0]
    assert np.sort(distance)[1] > 0.1  # and no other test image is close


@pytest.mark.slow
def test_cifar_augmentation_keeps_shape_and_changes_images():
    d = image_datasets(SAMPLE_DIR, batch_size=16, limit_per_split=16, augment="cifar", shuffle=False, seed=1)
    plain = image_datasets(SAMPLE_DIR, batch_size=16, limit_per_split=16, augment=None, shuffle=False)
    a, _ = next(iter(d.train))
    b, _ = next(iter(plain.train))
    assert a.shape == b.shape and not np.allclose(a.numpy(), b.numpy())


def test_grayscale_and_other_sizes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8), "L").save(folder / f"{i}.png")
            (folder / "notes.txt").write_text("not an image")  # ignored
    d = image_datasets(tmp_path, batch_size=4, channels=1, normalize="unit")
    assert d.image_shape == (20, 24, 1) and d.train_size == 6
    x, _ = next(iter(d.train))
    assert x.shape == (4, 20, 24, 1) and float(np.abs(x.numpy()).max()) <= 1.0
    rgb = image_datasets(tmp_path, batch_size=4, image_size=(16, 16))
    assert next(iter(rgb.test))[0].shape == (4, 16, 16, 3)


def test_tfds_names_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        d = image_datasets("mnist", batch_size=8, channels=1, normalize="unit", augment=None)
        x, y = next(iter(d.train))
    assert d.num_classes == 10 and d.image_shape == (28, 28, 1)
    assert x.shape == (8, 28, 28, 1) and y.shape == (8,)


def test_tfds_download_resolves_its_urls_offline(tmp_path):
    # `--download` starts in builder.url_infos, which imports the importlib_resources
    # backport that tensorflow-datasets 4.9 declares for Python < 3.9 only: without it
    # (setup.cfg installs it) the download died with ModuleNotFoundError before any network.
    import tensorflow_datasets as tfds

    urls = tfds.builder("cifar10", data_dir=str(tmp_path)).url_infos
    assert list(urls) == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]


def test_tfds_set_without_its_manual_files_is_a_one_line_value_error(tmp_path):
    # imagenet2012 is never downloaded: tfds asserts that the manual dir holds the tars.
    with pytest.raises(ValueError, match=r"cannot prepare 'imagenet2012': Manual directory .* ILSVRC2012_img_train.tar") as err:
        image_datasets("imagenet2012", data_dir=str(tmp_path), download=True)
    assert "\n" not in str(err.value)


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="Data folder not found"):
        image_datasets(tmp_path / "missing" / "x")
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        image_datasets(tmp_path)
    with pytest.raises(ValueError, match="`augment` must be"):
        image_datasets(tmp_path, augment="mixup")
    with pytest.raises(ValueError, match="is not prepared"):
        image_datasets("cifar10", data_dir=str(tmp_path / "tfds"))


def _folder(root, layout, images=2):
    """root/<split>/<class>/ with `images` copies of one sample image each."""
    import pathlib
    import shutil

    sample = next((pathlib.Path(__file__).parents[1] / "biper_keras" / "sample_data" / "cifar10" / "train" / "cat").iterdir())
    for split, classes in layout.items():
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(images):
                shutil.copy(sample, root / split / cls / f"{i}.jpg")
    return root


def test_train_and_test_must_have_the_same_classes(tmp_path):
    _folder(tmp_path, {"train": ["cat", "dog"], "test": ["cat", "dog", "emu"]})
    with pytest.raises(ValueError, match=r"different classes \(2 vs 3; not in both: emu\)"):
        image_datasets(tmp_path)


def test_hidden_folders_are_not_classes_and_one_class_is_refused(tmp_path):
    _folder(tmp_path, {"train": ["cat", "dog", ".ipynb_checkpoints"], "test": ["cat", "dog"]})
    d = image_datasets(tmp_path, augment=None)
    assert d.class_names == ["cat", "dog"] and d.train_size == 4
    single = _folder(tmp_path / "one", {"train": ["cat"], "test": ["cat"]})
    with pytest.raises(ValueError, match="Only one class folder"):
        image_datasets(single)


def test_truncated_and_oversized_images_are_skipped_when_listing(tmp_path):
    import struct
    import zlib

    _folder(tmp_path, {"train": ["cat", "dog"], "test": ["cat", "dog"]}, images=3)
    jpeg = tmp_path / "train" / "cat" / "0.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # a valid header, no end marker
    # A PNG whose header declares 100000 x 100000 pixels (a decompression bomb).
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    (tmp_path / "train" / "dog" / "bomb.png").write_bytes(bomb)
    with pytest.warns(UserWarning, match=r"skipped 2 image file\(s\) that would not decode \(first: .*0\.jpg: truncated JPEG"):
        d = image_datasets(tmp_path, augment=None)
    assert d.train_size == 5  # 6 images + the bomb, less the two skipped
    assert sum(len(y) for _, y in d.train) == 5  # and the pipeline decodes the rest


def test_limit_per_split_must_be_positive(tmp_path):
    for limit in (0, -1, 2.5):
        with pytest.raises(ValueError, match="`limit_per_split` must be None or an integer >= 1"):
            image_datasets(SAMPLE_DIR, limit_per_split=limit)
