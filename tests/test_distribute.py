"""Data-parallel training on two logical CPU devices, on TensorFlow and on JAX. The check is
the distribution, not the model: the runs train tests/tiny_model.py's small BiPer CNN."""

import os
import pathlib
import subprocess
import sys
import textwrap
import pytest

SAMPLE = pathlib.Path(__file__).parents[1] / "biper_keras" / "sample_data" / "cifar10"
TESTS = pathlib.Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import sys
    import keras
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from biper_keras.data import image_datasets
    from biper_keras.training import Recipe, Stage, train

    sys.path.insert(0, sys.argv[4])  # the tests folder
    import tiny_model

    seen = {}

    class Replicas(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if backend == "tensorflow":
                seen["replicas"] = self.model.distribute_strategy.num_replicas_in_sync
            else:
                import jax
                seen["replicas"] = len(keras.distribution.distribution().device_mesh.devices.ravel())

    data = image_datasets(sys.argv[1], batch_size=20, limit_per_split=40)
    recipe = Recipe(model=tiny_model.NAME, kernel_quantizer="ste_sign", stage2=Stage(1, 0.02, 1e-5, 0.0),
                    batch_size=20, warmup_epochs=1)
    summary = train(recipe, data, sys.argv[2], verbose=0, callbacks=[Replicas()], distribute=sys.argv[3])
    assert seen["replicas"] == 2, seen
    print("DIST-OK", summary["stage2"]["test_accuracy"])
    """
)


def _run(backend, distribute, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(SAMPLE), str(tmp_path / "run"), distribute, str(TESTS)],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tensorflow_mirrored_on_two_cpu_devices(tmp_path):
    result = _run("tensorflow", "mirrored", tmp_path)
    assert result.returncode == 0 and "DIST-OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.slow
def test_jax_data_parallel_on_two_cpu_devices(tmp_path):
    result = _run("jax", "data-parallel", tmp_path)
    assert result.returncode == 0 and "DIST-OK" in result.stdout, result.stderr[-3000:]


def test_unavailable_distribution_is_refused(tmp_path):
    result = _run("jax", "mirrored", tmp_path)
    assert result.returncode != 0 and "not available on the jax backend" in result.stderr
