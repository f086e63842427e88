"""The fine-tuning route (train the float model, binarize it, fine-tune): Recipe.init_from,
training.initialize_from and `biper-keras train --init-from`, on tiny models."""

import csv
import json
import pathlib

import keras
import numpy as np
import pytest

from biper_keras import _compat
from biper_keras.binarize import binarize, float_twin
from biper_keras.data import image_datasets
from biper_keras.layers import quantized_layers
from biper_keras.models import get_model
from biper_keras.training import Recipe, build_model, initialize_from, train
from helpers import assert_one_line_error, run_cli_here

SAMPLE = pathlib.Path(__file__).parents[1] / "biper_keras" / "sample_data" / "cifar10"
TINY = {
    "resnet20": {"blocks_per_stage": 1},
    "vit": {"patch_size": 8, "depth": 1, "dim": 16, "heads": 2, "mlp_dim": 32},
}
MODELS = list(TINY)


def tiny(model, kernel_quantizer=None, input_quantizer=None, name=None, **changes):
    keras.utils.set_random_seed(1)
    arguments = {"input_shape": (32, 32, 3), "num_classes": 10, **TINY[model], **changes}
    built = get_model(model, kernel_quantizer=kernel_quantizer, input_quantizer=input_quantizer, **arguments)
    return keras.Model(built.inputs, built.outputs, name=name) if name else built


def trained_looking(model):
    """Weights unlike any initializer's (BN statistics included): a copy that left one
    at its initial value would show."""
    rng = np.random.default_rng(7)
    for w in model.weights:
        value = rng.normal(0, 0.2, w.shape)
        w.assign((np.abs(value) + 0.5 if "variance" in w.path else value).astype("float32"))
    return model


def assert_has_the_weights_of(binary, flt):
    """Every variable of `flt` (layer/variable path, nested layers included) has its value
    in `binary`, the latent weights of the quantized layers included."""
    latent = {v.path: np.asarray(v) for v in binary.weights}
    for v in flt.weights:
        np.testing.assert_array_equal(latent[v.path], np.asarray(v), err_msg=v.path)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("name", MODELS)
def test_the_binary_model_starts_with_the_float_weights(name, images):
    flt = trained_looking(tiny(name))
    binary = initialize_from(tiny(name, "bnn_pp", "ste_sign"), flt)
    assert_has_the_weights_of(binary, flt)
    # Its float twin (quantizers off, alpha dropped) is the float model.
    np.testing.assert_array_equal(float_twin(binary)(images), flt(images))
    # alpha starts at the mean |w| of each output unit, the quantizers' mu where it was.
    for layer in (l for l in _compat.flatten_layers(binary) if getattr(l, "alpha", None) is not None):
        kernel = np.abs(np.asarray(layer.latent_kernel))
        alpha = np.asarray(layer.alpha)
        expected = kernel.reshape(-1, *alpha.shape).mean(axis=0)
        np.testing.assert_allclose(alpha, expected, rtol=1e-6)
        assert float(layer.kernel_quantizer.mu) == 1.0


@pytest.mark.parametrize("name, quantizer", [("resnet20", "biper"), ("vit", "bnn_pp")])
def test_initialize_from_is_binarize_for_a_registry_model(name, quantizer, images):
    # The paper's route, binarize(float model), and the registry's binary model given the
    # float weights compute the same function.
    flt = trained_looking(tiny(name))
    direct = initialize_from(tiny(name, quantizer, "approx_sign"), flt)
    binarized, _ = binarize(flt, quantizer=quantizer, input_quantizer="approx_sign")
    np.testing.assert_allclose(direct(images), binarized(images), rtol=1e-5, atol=1e-5)


def test_a_mismatch_names_both_models():
    flt = tiny("resnet20", name="float_net")
    with pytest.raises(ValueError, match=r"float model 'float_net'.*model 'deeper_net'.*s0b1c0_conv"):
        initialize_from(tiny("resnet20", "bnn", name="deeper_net", blocks_per_stage=2), flt)
    with pytest.raises(ValueError, match=r"'float_net'.*'other_net'.*: layer 'classifier' has weights of shapes "
                                         r"\[\(64, 5\), \(5,\)\] in 'other_net' and \[\(64, 10\), \(10,\)\]"):
        initialize_from(tiny("resnet20", "bnn", name="other_net", num_classes=5), flt)
    with pytest.raises(ValueError, match=r"'binary_net' is not a float model"):
        initialize_from(tiny("resnet20", "bnn"), tiny("resnet20", "bnn", name="binary_net"))


@pytest.fixture(scope="module")
def data():
    return image_datasets(SAMPLE, batch_size=50, limit_per_split=100, shuffle=False, augment=None)


@pytest.mark.parametrize("name", ["vit"])
def test_recipe_init_from_builds_the_first_stage_from_the_float_file(name, data, tmp_path, images):
    path = tmp_path / "float.keras"
    flt = trained_looking(tiny(name))
    flt.save(path)
    for quantizer, stage in (("bnn_pp", 2), ("biper", 1)):
        recipe = Recipe(model=name, kernel_quantizer=quantizer, input_quantizer=None, init_from=str(path),
                        model_options=TINY[name])
        assert_has_the_weights_of(build_model(recipe, stage, data), flt)


def test_init_from_refuses_a_missing_file_or_a_non_string(data, tmp_path):
    recipe = Recipe(kernel_quantizer="bnn_pp", init_from=str(tmp_path / "nothing.keras"))
    with pytest.raises(ValueError, match="init_from: no such file: .*nothing.keras"):
        train(recipe, data, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
    with pytest.raises(ValueError, match="init_from"):
        Recipe(init_from=pathlib.Path("x.keras")).validate()


def _losses(folder):
    with open(folder / "log.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_cli_float_run_then_fine_tune_with_init_from(capsys, tmp_path):
    common = ["--data", str(SAMPLE), "--limit", "100", "--batch-size", "25", "--no-augment", "--no-convert",
              "--model", "resnet20"]
    result = run_cli_here(capsys, "train", *common, "--quantizer", "none", "--input-quantizer", "none",
                          "--epochs", "1", "--out", str(tmp_path / "float"))
    assert result.returncode == 0, result.stderr[-2000:]
    float_file = tmp_path / "float" / "stage2" / "model.keras"
    assert not quantized_layers(keras.models.load_model(float_file))  # --quantizer none: a float run
    result = run_cli_here(capsys, "train", *common, "--quantizer", "bnn_pp", "--input-quantizer", "none",
                          "--init-from", str(float_file), "--epochs", "4", "--lr", "0.02", "--warmup-epochs", "0",
                          "--out", str(tmp_path / "tuned"))
    assert result.returncode == 0, result.stderr[-2000:]
    run = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert run["recipe"]["init_from"] == str(float_file)
    losses = _losses(tmp_path / "tuned" / "stage2")
    assert len(losses) == 4 and losses[-1] < losses[0], losses


def test_cli_init_from_errors_are_one_line(capsys, tmp_path):
    common = ["train", "--data", str(SAMPLE), "--limit", "10", "--no-convert", "--quantizer", "bnn"]
    result = run_cli_here(capsys, *common, "--init-from", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "a"))
    assert_one_line_error(result, 3, "no such file")
    small = tiny("resnet20", name="float_resnet")
    small.save(tmp_path / "small.keras")
    result = run_cli_here(capsys, *common, "--model", "resnet20", "--init-from", str(tmp_path / "small.keras"),
                          "--out", str(tmp_path / "b"))
    assert_one_line_error(result, 3, "float model 'float_resnet'")
    assert not (tmp_path / "b").exists()
