"""BiPer inside Larq's own tf_keras layers. Larq needs TF_USE_LEGACY_KERAS=1 before
TensorFlow is imported: the Larq checks run in the session's Larq process
(tests/shared_processes.py), the check without it in a process of its own."""

import os
import subprocess
import sys
import textwrap

from shared_processes import LARQ_SCRIPTS, script_output

TRAIN_AND_CONVERT = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf
    import larq as lq
    import larq_compute_engine as lce
    from biper_keras import larq_interop
    from biper_keras.convert import op_histogram
    from cifar import cifar_subset

    larq_interop.register()
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)),
        tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
        tf.keras.layers.BatchNormalization(),
        lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, use_bias=False,
                              input_quantizer="ste_sign", kernel_quantizer="biper"),
        tf.keras.layers.BatchNormalization(),
        lq.layers.QuantConv2D(32, 3, strides=2, padding="same", pad_values=1.0, use_bias=False,
                              input_quantizer="ste_sign",
                              kernel_quantizer=larq_interop.BiPer(omega=10.0)),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10),
    ])
    q = model.layers[2].kernel_quantizer
    assert isinstance(q, larq_interop.BiPer) and q.omega == 20.0, q
    w = model.layers[2].kernel
    with tf.GradientTape() as tape:
        y = q(w)
    g = tape.gradient(y, w)
    np.testing.assert_array_equal(y.numpy(), np.where(np.sin(20 * w.numpy()) >= 0, 1.0, -1.0))
    np.testing.assert_allclose(g.numpy(), 20 * np.cos(20 * w.numpy()), rtol=1e-4, atol=1e-4)

    x, labels = cifar_subset(per_class=8)
    model.compile(tf.keras.optimizers.Adam(3e-3),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, labels, verbose=0)
    model.fit(x, labels, batch_size=40, epochs=12, verbose=0, shuffle=False)
    after = model.evaluate(x, labels, verbose=0)
    assert after < 0.8 * before, (before, after)

    config = model.get_config()
    clone = tf.keras.Sequential.from_config(config)
    assert clone.layers[4].kernel_quantizer.omega == 10.0

    ops = op_histogram(lce.convert_keras_model(model))
    assert ops["LceBconv2d"] == 2, ops
    print("LARQ-PLUGIN-OK", before, after, dict(ops))
    """
)


def _run(code, legacy):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)
    env.pop("KERAS_BACKEND", None)
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)


LARQ_SCRIPTS["plugin_train_and_convert"] = TRAIN_AND_CONVERT


def test_larq_quant_conv_with_biper_trains_and_fuses(larq_results):
    assert "LARQ-PLUGIN-OK" in script_output(larq_results[1], "plugin_train_and_convert")


def test_without_legacy_keras_one_clear_error():
    code = textwrap.dedent(
        """
        import biper_keras  # never needs larq
        from biper_keras import larq_interop
        try:
            larq_interop.register()
        except ImportError as err:
            print("ERR:", err)
        """
    )
    result = _run(code, legacy=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERR: Larq cannot be used in this process" in result.stdout
    assert "TF_USE_LEGACY_KERAS=1" in result.stdout


BRIDGE = textwrap.dedent(
    """
    import numpy as np
    import keras
    import biper_keras as bk
    from biper_keras import larq_interop
    from biper_keras.models.blocks import HardTanh
    from helpers import randomize_batch_norms

    q = dict(input_quantizer="ste_sign", kernel_quantizer=bk.BiPer(omega=10.0), padding="same",
             pad_values=1.0, use_bias=False)
    x = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", name="stem")(x)
    h = keras.layers.BatchNormalization(name="bn0")(h)
    for i in range(2):  # a shortcut around every binary conv
        y = bk.BatchNormalization(name=f"bnq{i}")(bk.QuantConv2D(16, 3, name=f"q{i}", **q)(h))
        h = keras.layers.Add(name=f"add{i}")([h, y])
    h = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.MaxPooling2D(name="pool")(h))
    h = bk.QuantDense(16, input_quantizer="approx_sign", kernel_quantizer="ste_sign", name="qd")(h)
    model = keras.Model(x, keras.layers.Dense(10, name="head")(keras.layers.ReLU(name="relu")(h)))
    randomize_batch_norms(model, np.random.default_rng(0))
    xs = np.random.default_rng(1).normal(size=(8, 16, 16, 3)).astype("float32")
    expected = model.predict(xs, verbose=0)

    larq_model = larq_interop.to_larq(model)
    assert type(larq_model).__module__.startswith("tf_keras")
    assert type(larq_model.get_layer("q0").kernel_quantizer).__name__ == "BiPer"
    np.testing.assert_allclose(larq_model.predict(xs, verbose=0), expected, atol=1e-5)
    back = larq_interop.from_larq(larq_model)
    assert isinstance(back.get_layer("q1"), bk.QuantConv2D) and back.get_layer("q1").kernel_quantizer.omega == 10.0
    np.testing.assert_allclose(back.predict(xs, verbose=0), expected, atol=1e-5)

    for bad, name in [(HardTanh(name="htanh"), "htanh"),
                      (bk.QuantConv2D(4, 3, kernel_quantizer="biper", kernel_scale="channel", name="scaled"), "scaled"),
                      (bk.QuantConv2D(4, 3, padding="same", kernel_quantizer="biper", normalize_inputs=True,
                                      name="normalized"), "normalized"),
                      (bk.QuantConv2D(4, 3, padding="same", kernel_quantizer="biper", symmetric_padding=True,
                                      name="symmetric"), "symmetric")]:
        m = keras.Sequential([keras.Input((8, 8, 3)), bad])
        try:
            larq_interop.to_larq(m)
        except ValueError as err:
            assert repr(name) in str(err), err
        else:
            raise AssertionError("no error for " + name)

    # binarize() adds BiPer's alpha: to_larq folds it into the following BatchNorm.
    x = keras.Input((16, 16, 3))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(x))
    for _ in range(2):
        h = keras.layers.Add()([h, keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(h))])
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 1)(h))
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h))
    binary, _ = bk.binarize(keras.Model(x, out))
    randomize_batch_norms(binary, np.random.default_rng(3))
    expected = binary.predict(xs, verbose=0)
    larq_model = larq_interop.to_larq(binary)
    np.testing.assert_allclose(larq_model.predict(xs, verbose=0), expected, atol=1e-4)
    np.testing.assert_allclose(larq_interop.from_larq(larq_model).predict(xs, verbose=0), expected, atol=1e-4)
    print("BRIDGE-OK")
    """
)


LARQ_SCRIPTS["plugin_bridge"] = BRIDGE


def test_round_trip_keras3_larq_keras3_keeps_outputs(larq_results):
    assert "BRIDGE-OK" in script_output(larq_results[1], "plugin_bridge")


def test_importing_larq_interop_registers_biper_with_larq():
    """Larq's convention: defining (here: importing) the quantizer registers it."""
    import os
    import subprocess
    import sys

    script = (
        "import larq as lq\n"
        "import biper_keras.larq_interop\n"
        "q = lq.quantizers.get('biper')\n"
        "print(type(q).__name__, q.omega)\n"
    )
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["BiPer", "20.0"]
