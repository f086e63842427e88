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

    for bad, name in [(bk.QuantConv2D(4, 3, kernel_quantizer="biper", kernel_scale="channel", name="scaled"), "scaled"),
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

PACKAGE_MODELS = textwrap.dedent(
    """
    import numpy as np
    import keras
    import tensorflow as tf
    import biper_keras as bk
    from biper_keras import larq_interop
    from biper_keras.models import blocks, get_model
    from helpers import randomize_batch_norms

    # The package's own ResNet-20 (hard tanh, option-A shortcuts, the authors' per-sample
    # activation normalization, BiPer with alpha) goes to Larq and back.
    model = get_model("resnet20", input_shape=(32, 32, 3), num_classes=10)
    randomize_batch_norms(model, np.random.default_rng(0))
    xs = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    expected = model.predict(xs, verbose=0)
    larq_model = larq_interop.to_larq(model)
    kinds = {type(l) for l in larq_model.layers}
    assert {larq_interop.OptionAShortcut, larq_interop.NormalizedQuantConv2D} <= kinds, kinds
    import larq as lq
    assert larq_model.get_layer("stem_act").activation is lq.activations.hard_tanh
    np.testing.assert_allclose(larq_model.predict(xs, verbose=0), expected, atol=1e-4)

    # The Larq model saves and loads (the twins are registered with tf_keras).
    import pathlib, tempfile
    path = pathlib.Path(tempfile.mkdtemp()) / "r20.keras"
    larq_model.save(path)
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), expected, atol=1e-4)

    back = larq_interop.from_larq(loaded)
    assert isinstance(back.get_layer("s1b0c0_down"), blocks.OptionAShortcut), [l.name for l in back.layers][:40]
    assert back.get_layer("s0b0c0_conv").normalize_inputs is True
    assert isinstance(back.get_layer("stem_act"), blocks.HardTanh)
    np.testing.assert_allclose(back.predict(xs, verbose=0), expected, atol=1e-4)

    # NormalizedQuantConv2D computes what QuantConv2D(normalize_inputs=True) computes, in
    # training (value and the gradient through the per-sample std) and at inference.
    args = dict(padding="same", pad_values=1.0, use_bias=False, input_quantizer="approx_sign",
                kernel_quantizer="biper")
    ours = keras.Sequential([keras.Input((8, 8, 4)), bk.QuantConv2D(6, 3, normalize_inputs=True, name="c", **args)])
    theirs = larq_interop.to_larq(ours)
    x = tf.constant(np.random.default_rng(2).normal(scale=0.3, size=(3, 8, 8, 4)).astype("float32"))
    for training in (True, False):
        grads = []
        for m in (ours, theirs):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = m(x, training=training)
                loss = tf.reduce_sum(y * tf.range(1.0, 7.0))
            grads.append((y.numpy(), tape.gradient(loss, x).numpy()))
        np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-5)
        np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-5)
        if training:
            training_gradient = grads[0][1]
    # The normalization acts: without it the training gradient differs.
    plain = larq_interop.to_larq(keras.Sequential([keras.Input((8, 8, 4)), bk.QuantConv2D(6, 3, name="c", **args)]))
    plain.set_weights(theirs.get_weights())
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(plain(x, training=True) * tf.range(1.0, 7.0))
    assert not np.allclose(tape.gradient(loss, x).numpy(), training_gradient, atol=1e-3)
    print("PACKAGE-MODELS-OK")
    """
)
LARQ_SCRIPTS["plugin_package_models"] = PACKAGE_MODELS


def test_the_packages_resnet20_goes_to_larq_and_back(larq_results):
    assert "PACKAGE-MODELS-OK" in script_output(larq_results[1], "plugin_package_models")


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
