"""The two-stage recipe: stage 2 starts from stage 1, atomic checkpoints, resume."""

import json
import pathlib
import warnings

import keras
import numpy as np
import pytest

import biper_keras as bk

from biper_keras.data import image_datasets
from helpers import accuracy_of
from tiny_model import NAME as TINY
from biper_keras.training import EpochCheckpoint, Recipe, Stage, WarmupCosine, build_model, read_state, train

SAMPLE = pathlib.Path(__file__).parents[1] / "biper_keras" / "sample_data" / "cifar10"


@pytest.fixture(scope="module")
def data():
    return image_datasets(SAMPLE, batch_size=50, limit_per_split=100, shuffle=False, augment=None)


def tiny_recipe(e1=1, e2=1, **kw):
    return Recipe(stage1=Stage(e1, 0.05, 1e-4, 0.037), stage2=Stage(e2, 0.02, 1e-5, 0.0468),
                  batch_size=50, warmup_epochs=1, **kw)


# The tests of a run's mechanics (stages, resume, saving, annealing) train
# tests/tiny_model.py's small BiPer CNN (two binary convs): ~5 s a run where ResNet-20
# takes ~30 s on 2 cores. The tests of ResNet-20's own layers build ResNet-20.
def tiny_cnn_recipe(e1=1, e2=1, **kw):
    return tiny_recipe(e1, e2, model=TINY, **kw)


@pytest.mark.slow
def test_two_stages_stage2_starts_from_stage1(data, tmp_path):
    seen = {}

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            kernels = [l for l in self.model.layers if hasattr(l, "kernel_quantizer")]
            seen.setdefault("first", []).append(
                (kernels[0].kernel_quantizer.binarize, [np.array(w) for w in self.model.get_weights()]))

    summary = train(tiny_cnn_recipe(), data, tmp_path / "run", verbose=0, callbacks=[Capture()])
    (b1, _), (b2, start2) = seen["first"]
    assert (b1, b2) == (False, True)  # stage 1 sine weights, stage 2 binary
    stage1 = keras.models.load_model(tmp_path / "run" / "stage1" / "model.keras")
    for a, b in zip(stage1.get_weights(), start2):
        np.testing.assert_array_equal(a, b)
    assert set(summary) >= {"stage1", "stage2", "recipe"}
    stage2 = keras.models.load_model(tmp_path / "run" / "stage2" / "model.keras")
    assert summary["stage2"]["test_accuracy"] == pytest.approx(accuracy_of(stage2, data.test), abs=1e-6)
    assert summary["stage2"]["images_per_second"] > 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stage2"] == summary["stage2"]
    log = (tmp_path / "run" / "stage2" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch") and len(log) == 2


@pytest.mark.slow
def test_resume_continues_at_the_next_epoch_with_the_optimizer_state(data, tmp_path):
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt  # like a Ctrl-C after the first checkpoint

    recipe = tiny_cnn_recipe(e2=3, kernel_quantizer="ste_sign")  # one stage: stage 2 settings
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _train_with_stop(recipe, data, out, StopAfterFirstEpoch())
    assert read_state(out / "stage2") == {"stage": 2, "epochs_done": 1, "checkpoint": "checkpoint-0001.keras"}
    saved = keras.models.load_model(out / "stage2" / "checkpoint-0001.keras")
    saved_opt = [np.array(v) for v in saved.optimizer.variables]

    starts = {}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            starts["iterations"] = int(np.array(self.model.optimizer.iterations))
            starts["opt"] = [np.array(v) for v in self.model.optimizer.variables]

        def on_epoch_begin(self, epoch, logs=None):
            starts.setdefault("epochs", []).append(epoch)

    with pytest.raises(ValueError, match="is not empty: pass resume=True"):
        train(recipe, data, out, verbose=0)
    summary = train(recipe, data, out, resume=True, verbose=0, callbacks=[Probe()])
    assert starts["epochs"] == [1, 2]
    assert starts["iterations"] == 2  # one epoch of 100 images at batch 50
    for a, b in zip(saved_opt, starts["opt"]):
        np.testing.assert_array_equal(a, b)
    assert read_state(out / "stage2") == {"stage": 2, "epochs_done": 3, "checkpoint": "checkpoint-0003.keras"}
    assert [p.name for p in (out / "stage2").glob("checkpoint-*.keras")] == ["checkpoint-0003.keras"]
    assert summary["stage2"]["epochs"] == 3


def _train_with_stop(recipe, data, out, stopper):
    # train() puts user callbacks first; wrap EpochCheckpoint so the stop comes after it.
    original = EpochCheckpoint.on_epoch_end

    def checkpoint_then_stop(self, epoch, logs=None):
        original(self, epoch, logs)
        stopper.on_epoch_end(epoch, logs)

    EpochCheckpoint.on_epoch_end = checkpoint_then_stop
    try:
        train(recipe, data, out, verbose=0)
    finally:
        EpochCheckpoint.on_epoch_end = original


def test_a_checkpoint_write_interrupted_halfway_leaves_the_old_file_and_no_temporary(tmp_path):
    from biper_keras._files import atomic_write

    path = tmp_path / "model.keras"
    path.write_bytes(b"the committed checkpoint")

    def half_then_interrupted(tmp):
        pathlib.Path(tmp).write_bytes(b"half of a new")
        raise KeyboardInterrupt  # a Ctrl-C in the middle of model.save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_interrupted)
    assert path.read_bytes() == b"the committed checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_warmup_cosine_schedule():
    s = WarmupCosine(0.1, warmup_steps=10, total_steps=110)
    values = [float(s(i)) for i in (0, 4, 9, 10, 60, 110, 200)]
    assert values[0] == pytest.approx(0.01) and values[2] == pytest.approx(0.1)
    assert values[3] == pytest.approx(0.1) and values[4] == pytest.approx(0.05)
    assert values[5] == pytest.approx(0.0, abs=1e-9) and values[6] == pytest.approx(0.0, abs=1e-9)


def test_biper_recipe_adds_the_sin_squared_term(data):
    model = build_model(tiny_recipe(), 1, data)
    assert len(model.losses) == 18  # one per binary conv
    assert build_model(tiny_recipe(kernel_quantizer="bnn"), 2, data).losses == []


@pytest.mark.parametrize(
    "recipe,match",
    [
        (Recipe(model="resnet21"), "Unknown model 'resnet21'"),
        (Recipe(kernel_quantizer="sine"), "Unknown quantizer 'sine'"),
        (Recipe(stage1=Stage(0, 0.1, 0, 0)), "stage1 epochs must be an integer > 0"),
        (Recipe(stage2=Stage(3, -0.1, 0, 0)), "stage2 lr"),
    ],
)
def test_bad_recipes(recipe, match):
    with pytest.raises(ValueError, match=match):
        recipe.validate()


@pytest.mark.slow
def test_bnn_pp_recipe_anneals_mu_and_ends_hard(data, tmp_path):
    recipe = tiny_cnn_recipe(e2=2, kernel_quantizer="bnn_pp")
    summary = train(recipe, data, tmp_path / "run", verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        final = keras.models.load_model(tmp_path / "run" / "stage2" / "model.keras")
    # The hardened model is saved with the trained optimizer's state (2 epochs x 2 steps),
    # not a fresh one that Keras warns about on loading.
    assert not [w for w in caught if "optimizer" in str(w.message)], [str(w.message) for w in caught]
    assert int(final.optimizer.iterations) == 4
    quantizers = [l.kernel_quantizer for l in final.layers if hasattr(l, "kernel_quantizer")]
    assert len(quantizers) == 2 and all(q.hard for q in quantizers)  # tiny_cnn's two binary convs
    assert all(float(np.array(q.mu)) == pytest.approx(16.0) for q in quantizers)
    log = (tmp_path / "run" / "stage2" / "log.csv").read_text().splitlines()
    mu_column = log[0].split(",").index("mu")
    assert [float(line.split(",")[mu_column]) for line in log[1:]] == pytest.approx([1.0, 16.0])
    # Evaluated hardened: the saved model's accuracy.
    assert summary["stage2"]["test_accuracy"] == pytest.approx(accuracy_of(final, data.test), abs=1e-6)


# --- the optimizer: PyTorch's SGD semantics by default --------------------------------

from biper_keras.optimizers import CoupledSGD  # noqa: E402
from biper_keras.training import make_optimizer  # noqa: E402


def test_make_optimizer_is_coupled_by_default_and_decoupled_on_request():
    recipe = tiny_recipe()
    coupled = make_optimizer(recipe, 1, 10)
    assert isinstance(coupled, CoupledSGD) and coupled.weight_decay is None  # no Keras decay on top
    assert (coupled.coupled_weight_decay, coupled.momentum) == (1e-4, 0.9)
    decoupled = make_optimizer(Recipe(**{**recipe.__dict__, "weight_decay_mode": "decoupled"}), 2, 10)
    assert type(decoupled) is keras.optimizers.SGD and decoupled.weight_decay == 1e-5
    # The warm-up + cosine schedule over the stage's steps (1 epoch of 10 here).
    lr = [float(keras.ops.convert_to_numpy(coupled.learning_rate))]
    assert abs(lr[0] - 0.05 / 5) < 1e-9  # warm-up of min(10, 10 // 2) steps, first step


def test_make_optimizer_refuses_bad_values():
    with pytest.raises(ValueError, match=r"`stage1 weight_decay` must be a finite number >= 0. Received: stage1 weight_decay=-0.001"):
        make_optimizer(Recipe(stage1=Stage(1, 0.1, -0.001, 0.0)), 1, 10)
    with pytest.raises(ValueError, match=r"`weight_decay_mode` must be one of coupled, decoupled. Received: weight_decay_mode='l2'"):
        make_optimizer(Recipe(weight_decay_mode="l2"), 1, 10)
    with pytest.raises(ValueError, match=r"`stage` must be 1 or 2. Received: stage=3"):
        make_optimizer(Recipe(), 3, 10)
    with pytest.raises(ValueError, match=r"`steps_per_epoch` must be an integer > 0. Received: steps_per_epoch=0"):
        make_optimizer(Recipe(), 1, 0)


def test_a_compiled_recipe_model_saves_and_loads_its_coupled_optimizer(data, tmp_path):
    from biper_keras.training import compile_stage

    recipe = tiny_cnn_recipe()
    model = build_model(recipe, 1, data)
    compile_stage(model, recipe, 1, 2)
    x, y = next(iter(data.train))
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, CoupledSGD) and loaded.optimizer.coupled_weight_decay == 1e-4
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_xla_is_on_for_long_runs_on_tensorflow_cpu_and_as_asked_otherwise(data):
    import tensorflow as tf
    from tensorflow.python.framework import config  # the undo of op determinism, for tests only

    from biper_keras.training import XLA_MIN_SAMPLES, compile_stage, resolve_jit_compile

    assert not tf.config.list_logical_devices("GPU")  # this suite runs on CPU
    assert resolve_jit_compile("auto", XLA_MIN_SAMPLES) is True
    assert resolve_jit_compile("auto", XLA_MIN_SAMPLES - 1) is False
    assert resolve_jit_compile("auto") is False  # unknown length
    assert resolve_jit_compile(True, 1) is True and resolve_jit_compile(False, 10**9) is False
    with pytest.raises(ValueError, match=r"`jit_compile` must be True, False or 'auto'. Received: jit_compile='yes'"):
        resolve_jit_compile("yes", 10)
    with pytest.raises(ValueError, match=r"`jit_compile` must be True, False or 'auto'. Received: jit_compile=1"):
        Recipe(jit_compile=1).validate()
    was = config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:  # Keras's rule: no XLA with deterministic kernels
        assert resolve_jit_compile("auto", 10**9) is False
    finally:
        (tf.config.experimental.enable_op_determinism if was else config.disable_op_determinism)()
    # compile_stage counts the stage's samples: epochs x steps x batch.
    model = build_model(tiny_recipe(), 1, data)
    for epochs, steps, batch, expected in ((1, 2, 16, False), (2, 100, 128, True), (1, 199, 128, False)):
        compile_stage(model, Recipe(batch_size=batch, stage1=Stage(epochs, 0.01, 0.0, 0.0)), 1, steps)
        assert model.jit_compile is expected
    compile_stage(model, Recipe(jit_compile=True), 1, 2)
    assert model.jit_compile is True


@pytest.mark.parametrize("taus", [(0.037, 0.0468), (0.037, 0.0), (0.0, 0.0468)])
def test_to_binary_stage_is_the_recipes_stage_2_with_stage_1s_weights(taus):
    from biper_keras.data import Datasets
    from biper_keras.training import Recipe, Stage, build_model, to_binary_stage

    recipe = Recipe(stage1=Stage(1, 0.02, 0.0016, taus[0]), stage2=Stage(1, 0.004, 0.00016, taus[1]))
    data = Datasets(None, None, [str(i) for i in range(10)], (32, 32, 3), 1, 1)
    stage1 = build_model(recipe, 1, data)
    rng = np.random.default_rng(0)
    stage1.set_weights([w + rng.normal(scale=0.01, size=w.shape).astype(w.dtype) for w in stage1.get_weights()])
    ours = to_binary_stage(stage1, tau=taus[1])
    reference = build_model(recipe, 2, data)
    reference.set_weights(stage1.get_weights())
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), np.asarray(reference(x, training=False)),
                               rtol=1e-5, atol=1e-5)
    # One sin^2 term a BiPer layer when stage 2's tau is set, none otherwise.
    biper_layers = [layer for layer in bk.layers.quantized_layers(reference)
                    if isinstance(layer.kernel_quantizer, bk.BiPer)]
    assert biper_layers and len(ours.losses) == len(reference.losses) == (0 if taus[1] == 0 else len(biper_layers))
    np.testing.assert_allclose(sum(float(v) for v in ours.losses), sum(float(v) for v in reference.losses), rtol=1e-6)
    assert all(layer.kernel_quantizer.binarize for layer in bk.layers.quantized_layers(ours)
               if isinstance(layer.kernel_quantizer, bk.BiPer))


def test_annealing_callbacks_only_for_annealed_quantizers():
    from biper_keras.models import get_model
    from biper_keras.training import MuSchedule, annealing_callbacks

    (schedule,) = annealing_callbacks(get_model("resnet20", kernel_quantizer="bnn_pp"), 10, 1.0, 16.0)
    assert isinstance(schedule, MuSchedule) and schedule.value(9) == pytest.approx(16.0)
    assert annealing_callbacks(get_model("resnet20"), 10) == []


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_fit_callbacks_keep_keras_asynchronous_dispatch(tmp_path, monkeypatch, backend):
    """No callback `train()` adds has a batch-end hook (Keras's TensorBoard on TF aside,
    where dispatch is synchronous anyway): one would make Keras sync every step's logs
    to the host on JAX/torch (keras.callbacks.CallbackList's async dispatch)."""
    from keras.src.utils.python_utils import is_default

    from biper_keras import interrupts, progress
    from biper_keras.training import EpochCheckpoint, _log_callbacks

    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    callbacks = [interrupts.stop_on_signal(), *_log_callbacks(tmp_path), EpochCheckpoint(tmp_path, 1),
                 progress.Eta(1, 2, 0)]
    assert any(isinstance(c, keras.callbacks.TensorBoard) for c in callbacks)
    hooks = ("on_batch_end", "on_train_batch_end", "on_test_batch_end")
    syncing = [(type(c).__name__, h) for c in callbacks for h in hooks if not is_default(getattr(c, h))]
    assert syncing == ([("TensorBoard", "on_train_batch_end")] if backend == "tensorflow" else [])


def test_steps_per_execution_runs_the_same_steps(tmp_path):
    """Recipe.steps_per_execution only groups steps into one compiled call: the same
    weights after the same batches."""
    from biper_keras.training import compile_stage

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 10, 64)

    def fitted(per_call):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8, 8, 3)), bk.QuantConv2D(8, 3, kernel_quantizer="biper",
                                  input_quantizer="ste_sign", use_bias=False), keras.layers.Flatten(),
                                  keras.layers.Dense(10)])
        recipe = Recipe(kernel_quantizer="ste_sign", stage2=Stage(2, 0.05, 1e-4, 0.0), batch_size=16,
                        warmup_epochs=0, steps_per_execution=per_call)
        compile_stage(model, recipe, 2, steps_per_epoch=4)
        assert model.steps_per_execution == per_call
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    for a, b in zip(fitted(1), fitted(4)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="steps_per_execution"):
        Recipe(steps_per_execution=0).validate()
