"""Device-resident data: the augmentation's distribution and values, epoch handling, and
equality with the tf.data pipeline's test batches."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from biper_keras import data, device_data

SAMPLE = pathlib.Path(data.__file__).parent / "sample_data" / "cifar10"
RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # no normalization: pixel values come back as they are


def reference_crop_flip(images, offsets, flips):
    padded = np.pad(images, [(0, 0), (4, 4), (4, 4), (0, 0)])
    h, w = images.shape[1:3]
    out = np.stack([p[dy:dy + h, dx:dx + w] for p, (dy, dx) in zip(padded, offsets)])
    return np.where(flips[:, None, None, None], out[:, :, ::-1], out)


def test_crop_flip_equals_pad_crop_flip_reference():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    offsets = rng.integers(0, 9, (16, 2)).astype(np.int32)
    offsets[:4] = [[0, 0], [8, 8], [0, 8], [8, 0]]  # the corners
    flips = rng.random(16) < 0.5
    out = np.asarray(device_data.crop_flip(images, offsets, flips))
    np.testing.assert_array_equal(out, reference_crop_flip(images, offsets, flips))


def coordinate_images(n):
    """Image pixels that name their own position: channel 0 = row + 1, channel 1 = col + 1
    (0 is left for the zero padding)."""
    rows, cols = np.meshgrid(np.arange(32) + 1, np.arange(32) + 1, indexing="ij")
    one = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    return np.repeat(one[None], n, axis=0)


def recover(batch):
    """(row offset, column offset, flipped) of each augmented coordinate image."""
    x = np.asarray(batch).astype(int)
    dy = x[:, 16, 16, 0] - 1 - 16 + 4
    flipped = x[:, 16, 15, 1] > x[:, 16, 16, 1]
    source_col = x[:, 16, 16, 1] - 1
    dx = np.where(flipped, source_col - (31 - 16), source_col - 16) + 4
    return dy, dx, flipped


def test_offsets_are_uniform_over_the_9x9_positions_and_flips_are_fair():
    n, epochs = 500, 8
    ds = device_data.device_datasets(arrays=((coordinate_images(n), np.zeros(n)), (coordinate_images(2), np.zeros(2))),
                                     batch_size=250, normalize=RAW, seed=3)
    dys, dxs, flips = [], [], []
    for _ in range(epochs):
        for i in range(len(ds.train)):
            dy, dx, f = recover(ds.train[i][0])
            dys.append(dy), dxs.append(dx), flips.append(f)
        ds.train.on_epoch_end()
    dy, dx, f = np.concatenate(dys), np.concatenate(dxs), np.concatenate(flips)
    assert dy.min() == 0 and dy.max() == 8 and dx.min() == 0 and dx.max() == 8
    counts = np.bincount(dy * 9 + dx, minlength=81)
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    assert abs(f.mean() - 0.5) < 4 * np.sqrt(0.25 / len(f)), f.mean()


def test_every_image_once_per_epoch_new_order_each_epoch_reproducible_from_seed():
    n = 90
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 32, 32, 3), np.uint8)
    arrays = ((images, np.arange(n)), (images[:10], np.arange(10)))

    def epochs(seed):
        ds = device_data.device_datasets(arrays=arrays, batch_size=32, augment=None, normalize=RAW, seed=seed)
        orders = []
        for _ in range(2):
            labels = np.concatenate([np.asarray(ds.train[i][1]) for i in range(len(ds.train))])
            first_pixels = np.concatenate([np.asarray(ds.train[i][0])[:, 0, 0, 0] for i in range(len(ds.train))])
            np.testing.assert_array_equal(first_pixels, labels)  # images stay with their labels
            orders.append(labels)
            ds.train.on_epoch_end()
        return orders

    first, second = epochs(0)
    assert sorted(first) == sorted(second) == list(range(n)) and list(first) != list(second)
    again = epochs(0)
    np.testing.assert_array_equal(again[0], first)
    assert list(epochs(1)[0]) != list(first)


def test_test_batches_equal_the_tf_data_pipeline():
    ours = device_data.device_datasets(SAMPLE, batch_size=64)
    theirs = data.image_datasets(SAMPLE, batch_size=64)
    assert (ours.train_size, ours.test_size, ours.class_names) == (theirs.train_size, theirs.test_size,
                                                                   theirs.class_names)
    batches = [ours.test[i] for i in range(len(ours.test))]
    assert len(batches) == len(list(theirs.test))
    for (x, y), (tx, ty) in zip(batches, theirs.test):
        np.testing.assert_array_equal(np.asarray(x), tx.numpy())
        np.testing.assert_array_equal(np.asarray(y), ty.numpy())


def test_blob_and_folder_give_the_same_arrays(tmp_path):
    folder_x, folder_y, classes = device_data.load_arrays(SAMPLE, "test")
    # A blob of the sample's files in the shared data's format (train then test, sorted).
    files, labels, split = [], [], []
    for s, part in enumerate(("train", "test")):
        for label, name in enumerate(classes):
            for f in sorted((SAMPLE / part / name).iterdir()):
                files.append(f.read_bytes()), labels.append(label), split.append(s)
    blob = tmp_path / "cifar10.bin"
    blob.write_bytes(b"".join(files))
    offs = np.concatenate([[0], np.cumsum([len(f) for f in files])])
    np.savez(tmp_path / "cifar10_index.npz", offs=offs, labels=np.asarray(labels, np.int32),
             split=np.asarray(split), classes=np.asarray(classes))
    blob_x, blob_y, blob_classes = device_data.load_arrays(blob, "test")
    np.testing.assert_array_equal(blob_x, folder_x)
    np.testing.assert_array_equal(blob_y, folder_y)
    assert blob_classes == classes
    blob.write_bytes(b"".join(files)[:-10])
    with pytest.raises(ValueError, match="truncated"):
        device_data.load_arrays(blob, "test")


@pytest.mark.parametrize("kwargs, match", [
    ({"augment": "imagenet"}, "augment"), ({"batch_size": 0}, "batch_size"), ({"normalize": "nope"}, "normalize"),
    ({"arrays": ((np.zeros((4, 8, 8, 3)), np.zeros(4)), (np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2)))}, "uint8"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        device_data.device_datasets(**kwargs)


@pytest.mark.slow
def test_trains_on_jax_with_tensorflow_unimportable(tmp_path):
    """The device path needs no TensorFlow: a GPU machine may have only JAX or torch."""
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is blocked in this test")
sys.meta_path.insert(0, Block())
import biper_keras.training, biper_keras.models, biper_keras.data
from biper_keras import device_data, training
ds = device_data.device_datasets({str(SAMPLE)!r}, batch_size=50, limit_per_split=50)
# One stage (a sign binarizer) keeps the compile time down; the two-stage path shares the code.
recipe = training.Recipe(kernel_quantizer="ste_sign", stage2=training.Stage(1, 0.004, 0.00016, 0.0),
                         batch_size=50, warmup_epochs=0)
summary = training.train(recipe, ds, {str(tmp_path / "run")!r}, verbose=0)
assert "tensorflow" not in sys.modules
print("ACC", summary["stage2"]["test_accuracy"])
"""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ACC" in result.stdout
    assert (tmp_path / "run" / "stage2" / "model.keras").exists()
