"""A Keras 3 model of these layers converts to one LceBconv2d per binarized conv, and the
LCE interpreter agrees with Keras."""

import keras
import numpy as np
import pytest
from larq_compute_engine.tflite.python.interpreter import Interpreter

import biper_keras as bk
from helpers import randomize_batch_norms
from shared_processes import LARQ_SCRIPTS, script, script_output
from biper_keras.convert import convert_keras_model, op_histogram


def _model(kernel_quantizer, padding="same", pad_values=1.0):
    binary = dict(input_quantizer="ste_sign", kernel_quantizer=kernel_quantizer,
                  kernel_scale="channel", use_bias=False)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(16, 3, padding=padding, pad_values=pad_values, **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(32, 3, strides=2, padding=padding, pad_values=pad_values, **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(32, 3, padding="valid", **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(10)(h))


@pytest.mark.parametrize("kernel_quantizer", ["biper", "ste_sign"])
def test_every_binarized_conv_fuses_and_outputs_match(kernel_quantizer):
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    model = _model(kernel_quantizer)
    randomize_batch_norms(model, rng)
    flatbuffer = convert_keras_model(model)
    ops = op_histogram(flatbuffer)
    assert ops["LceBconv2d"] == 3, ops
    assert ops["CONV_2D"] == 1, ops  # only the full-precision first conv

    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    got = Interpreter(flatbuffer).predict(x)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_zero_padding_on_arm_target_converts_too():
    model = _model("biper", pad_values=0.0)
    ops = op_histogram(convert_keras_model(model, target="arm"))
    assert ops["LceBconv2d"] == 3, ops


def test_conversion_refuses_other_targets():
    with pytest.raises(ValueError, match="`target` must be 'arm' or 'xcore'"):
        convert_keras_model(_model("biper"), target="riscv")


# --- convert(): report, strict mode, parity ------------------------------------------

from biper_keras.convert import ConversionError, check_parity, convert  # noqa: E402


def test_report_names_every_fused_layer():
    rng = np.random.default_rng(4)
    model = _model("biper")
    randomize_batch_norms(model, rng)
    result = convert(model)
    convs = [f for f in result.layers if f.kind == "conv"]
    assert [f.layer for f in convs] == [l.name for l in model.layers if isinstance(l, bk.QuantConv2D)]
    assert all(f.fused for f in convs) and not result.unfused
    assert result.parity.passed and result.parity.top1_agreement >= 0.98
    assert result.size < result.float32_size
    text = result.table()
    assert "LceBconv2d" in text and "parity on 8 inputs" in text


def _model_with_a_float_kernel_conv():
    binary = dict(input_quantizer="ste_sign", use_bias=False, padding="same", pad_values=1.0)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(x)
    h = bk.QuantConv2D(8, 3, kernel_quantizer="biper", name="good", **binary)(h)
    h = bk.QuantConv2D(8, 3, kernel_quantizer=bk.BiPer(binarize=False), name="stage1_conv", **binary)(h)
    h = bk.QuantConv2D(8, 3, kernel_quantizer="biper", input_quantizer=None, name="float_input",
                       padding="same", pad_values=1.0)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(4)(h))


def test_strict_mode_names_each_unfused_layer_and_why():
    model = _model_with_a_float_kernel_conv()
    with pytest.raises(ConversionError, match=r"stage1_conv \(float kernel.*float_input \(input not binarized"):
        convert(model)
    result = convert(model, strict=False)
    assert result.parity.passed  # unfused layers run as float ops, with the same results
    by_name = {f.layer: f for f in result.layers}
    assert by_name["good"].fused
    assert not by_name["stage1_conv"].fused and "float kernel" in by_name["stage1_conv"].reason
    assert not by_name["float_input"].fused and "input not binarized" in by_name["float_input"].reason
    assert result.ops["LceBconv2d"] == 1


def test_zero_padding_on_xcore_is_reported():
    model = _model("biper", pad_values=0.0)
    randomize_batch_norms(model, np.random.default_rng(6))
    result = convert(model, target="xcore", strict=False)
    reasons = [f.reason for f in result.unfused]
    assert reasons and all("zero padding is only supported for target='arm'" in r for r in reasons)
    # An xcore flatbuffer runs in LCE's x86 interpreter too: convert() loaded it, and it agrees.
    assert result.parity.passed and result.parity.max_abs_diff < 1e-3


def test_xcore_flatbuffer_with_binary_convs_runs_and_matches():
    rng = np.random.default_rng(8)
    model = _model("biper")
    randomize_batch_norms(model, rng)
    result = convert(model, target="xcore")
    assert result.ops["LceBconv2d"] == 3 and not result.unfused
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(Interpreter(result.flatbuffer).predict(x), model.predict(x, verbose=0),
                               rtol=1e-3, atol=1e-3)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.stem = keras.layers.Conv2D(8, 3, padding="same")
        self.binary = bk.QuantConv2D(16, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                                     kernel_quantizer="biper", use_bias=False, name="binary")
        self.bn = keras.layers.BatchNormalization(axis=3)
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(4)

    def call(self, x, training=None):
        return self.head(self.pool(self.bn(self.binary(self.stem(x)), training=training)))


def test_subclassed_model_fused_conv_is_reported_fused():
    model = _Subclassed()
    model(np.zeros((1, 12, 12, 3), "float32"))
    randomize_batch_norms(model, np.random.default_rng(9))
    result = convert(model)
    assert [(f.layer, f.fused, f.output_shape) for f in result.layers] == [("binary", True, (12, 12, 16))]
    assert result.ops["LceBconv2d"] == 1 and result.parity.passed


def test_parity_check_catches_a_planted_mismatch():
    rng = np.random.default_rng(5)
    model = _model("biper")
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(16, 16, 16, 3)).astype("float32")
    flatbuffer = convert(model, data=x).flatbuffer
    head = model.layers[-1]
    head.kernel.assign(-np.array(head.kernel))  # the Keras model now disagrees
    parity = check_parity(flatbuffer, model, x)
    assert not parity.passed and parity.top1_agreement < 0.5


def test_mixed_precision_and_non_finite_weights_are_refused():
    model = _model("biper")
    model.layers[1].kernel.assign(np.full(model.layers[1].kernel.shape, np.nan, "float32"))
    with pytest.raises(ValueError, match="Argument `model`: variable .* contains NaN or infinite values") as bad:
        convert(model)
    assert not isinstance(bad.value, ConversionError)  # bad input (CLI exit 3), not a failed conversion
    # A mixed-policy Sequential/functional model is rebuilt in float32 (test_mixed_precision.py);
    # a subclassed one cannot be rebuilt from its config: refused, saying what to do.

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = bk.QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                       kernel_constraint="weight_clip")

        def call(self, x):
            return self.conv(x)

    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = Net()
        half(np.zeros((1, 8, 8, 3), "float32"))
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(ConversionError, match="computes in float16: the TFLite converter needs float32 models"):
        convert(half)


def test_fixed_input_shape_for_models_with_unknown_sizes():
    x = keras.Input((None, None, 3))
    h = bk.QuantConv2D(8, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign", kernel_quantizer="biper")(x)
    model = keras.Model(x, keras.layers.GlobalAveragePooling2D()(h))
    result = convert(model, input_shape=(1, 12, 12, 3))
    assert result.ops["LceBconv2d"] == 1 and result.layers[0].fused and result.parity.passed
    # Without it LCE's converter would make the unknown sizes 1 (a file for 1x1 images).
    with pytest.raises(ConversionError, match=r"input shape \(None, None, None, 3\) has unknown sizes: pass `input_shape`"):
        convert(model)  # refused before anything is converted


def test_save_is_atomic_and_complete(tmp_path):
    model = _model("biper")
    randomize_batch_norms(model, np.random.default_rng(10))
    result = convert(model)
    path = tmp_path / "m.tflite"
    result.save(path)
    assert path.read_bytes() == result.flatbuffer
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


# --- per-channel constants after a binary conv (Keras 3 gives them shape (1, 1, 1, C)) --


def _binary_conv(name="binary_conv", **kwargs):
    kwargs = {"use_bias": False, **kwargs}
    return bk.QuantConv2D(16, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name=name, **kwargs)


class _ChannelWeight(keras.layers.Layer):
    """x * w or x + w with a weight of the given broadcast shape (a custom layer's way)."""

    def __init__(self, shape, add=False, **kwargs):
        super().__init__(**kwargs)
        self.weight_shape, self.add = tuple(shape), add

    def build(self, input_shape):
        self.w = self.add_weight(shape=self.weight_shape, initializer=keras.initializers.RandomUniform(0.5, 1.5))

    def call(self, x):
        return x + self.w if self.add else x * self.w


_C = np.random.default_rng(7).uniform(0.5, 1.5, (1, 1, 1, 16)).astype("float32")
AFTER_THE_CONV = {
    # Each of these failed to prepare in LCE's interpreter through `model.export` +
    # `convert_saved_model` (NumDimensions(post_activation_multiplier or _bias) != 1),
    # except axis=-1, the 1-D weight, the scalar Rescaling and the conv's own bias.
    "bn_axis_3": lambda h: keras.layers.BatchNormalization(axis=3)(_binary_conv()(h)),
    "bn_axis_-1": lambda h: keras.layers.BatchNormalization(axis=-1)(_binary_conv()(h)),
    "bias_then_bn_axis_3": lambda h: keras.layers.BatchNormalization(axis=3)(_binary_conv(use_bias=True)(h)),
    "alpha_then_bn_axis_3": lambda h: keras.layers.BatchNormalization(axis=3)(_binary_conv(kernel_scale="channel")(h)),
    "bias": lambda h: _binary_conv(use_bias=True, bias_initializer="random_normal")(h),
    "rescaling_per_channel": lambda h: keras.layers.Rescaling(_C, offset=_C - 1.0)(_binary_conv()(h)),
    "rescaling_scalar": lambda h: keras.layers.Rescaling(0.5, offset=0.1)(_binary_conv()(h)),
    "multiply_1x1x1xC": lambda h: _ChannelWeight((1, 1, 1, 16))(_binary_conv()(h)),
    "multiply_1x1xC": lambda h: _ChannelWeight((1, 1, 16))(_binary_conv()(h)),
    "multiply_1x1x1x1": lambda h: _ChannelWeight((1, 1, 1, 1))(_binary_conv()(h)),
    "multiply_C": lambda h: _ChannelWeight((16,))(_binary_conv()(h)),
    "add_1x1x1xC": lambda h: _ChannelWeight((1, 1, 1, 16), add=True)(_binary_conv()(h)),
    # The first conv's output feeds a binarizer: LCE turns its multiplier/bias into
    # thresholds and writes bit-packed output.
    "bn_axis_3_into_binary_conv": lambda h: keras.layers.BatchNormalization(axis=3)(
        _binary_conv("second")(keras.layers.BatchNormalization(axis=3)(_binary_conv()(h)))),
}


@pytest.mark.parametrize("pattern", sorted(AFTER_THE_CONV))
def test_per_channel_ops_after_a_binary_conv_fold_load_and_match(pattern):
    rng = np.random.default_rng(11)
    x = keras.Input((16, 16, 8))
    model = keras.Model(x, AFTER_THE_CONV[pattern](x))
    randomize_batch_norms(model, rng)
    data = rng.normal(size=(4, 16, 16, 8)).astype("float32")
    result = convert(model, data=data)
    convs = 2 if pattern.endswith("into_binary_conv") else 1
    # Folded: nothing but the input binarizer and the binary convs is left.
    assert result.ops == {"LceQuantize": 1, "LceBconv2d": convs}, result.ops
    assert all(f.fused for f in result.layers) and len(result.layers) == convs
    got = Interpreter(result.flatbuffer).predict(data)
    np.testing.assert_allclose(got, model.predict(data, verbose=0), rtol=1e-5, atol=1e-4)
    assert result.parity.passed


def test_keras3_batch_norm_takes_no_axis_list():
    # So axis=[3] reaches convert() only through from_larq (which gives axis=3; see
    # test_from_larq_model_converts_and_runs) or as a tf_keras model.
    with pytest.raises(TypeError):
        keras.layers.BatchNormalization(axis=[3])


def test_channel_constant_rewrite_keeps_values_and_leaves_other_shapes():
    import tensorflow as tf

    from biper_keras.convert import graph as lce_graph

    per_channel = np.arange(1, 4, dtype="float32").reshape(1, 1, 1, 3)
    spatial = np.arange(1, 5, dtype="float32").reshape(1, 4, 1, 1)

    @tf.function(input_signature=[tf.TensorSpec((None, 4, 4, 3))])
    def f(x):
        a = x * tf.constant(per_channel, name="w") + tf.constant(per_channel, name="b")  # rewritten
        b = tf.multiply(x, tf.constant(spatial), name="spatial")  # not channels-last: kept
        c = tf.multiply(tf.constant(per_channel), tf.constant(per_channel), name="constant")  # kept
        return tf.add(a + b, c, name="last")  # c is a (1, 1, 1, C) constant: rewritten

    graph = f.get_concrete_function().graph
    graph_def = graph.as_graph_def()
    changed = lce_graph.flatten_channel_constants(
        graph_def, lambda ref: graph.get_tensor_by_name(ref if ":" in ref else ref + ":0").shape)
    assert sorted(changed) == ["add", "last", "mul"], changed
    reshapes = [n for n in graph_def.node if n.name.endswith("/channels_1d")]
    assert len(reshapes) == 3 and all(n.op == "Reshape" for n in reshapes)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    rewritten = tf.compat.v1.wrap_function(
        lambda t: tf.graph_util.import_graph_def(graph_def, {"x:0": t}, return_elements=["Identity:0"])[0],
        [tf.TensorSpec((None, 4, 4, 3))])
    np.testing.assert_allclose(rewritten(tf.constant(x)).numpy(), f(x).numpy(), rtol=1e-6)


# --- a flatbuffer that LCE cannot prepare is never a success ----------------------------


def _unflattened(monkeypatch):
    """The conversion as it was before the channel-constant rewrite: a BatchNorm with
    axis=3 then yields an LceBconv2d that LCE's interpreter cannot prepare."""
    from biper_keras.convert import graph as lce_graph

    monkeypatch.setattr(lce_graph, "flatten_channel_constants", lambda graph_def, shape_of: [])


def _bn_axis_3_model():
    x = keras.Input((16, 16, 8))
    h = keras.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    return keras.Model(x, keras.layers.BatchNormalization(axis=3, name="bn")(_binary_conv()(h)))


UNPREPARABLE = (r"does not run in LCE's interpreter: node 2 \(LceBconv2d, Keras layer 'binary_conv'\) "
                r"failed to prepare: bconv2d\.cc:\d+ NumDimensions\(post_activation_multiplier\) != 1")


@pytest.mark.parametrize("options", [{}, {"strict": False}, {"verify": False}, {"strict": False, "verify": False},
                                     {"target": "xcore", "strict": False, "verify": False}])
def test_unpreparable_flatbuffer_is_a_conversion_error_in_every_mode(monkeypatch, options):
    _unflattened(monkeypatch)
    with pytest.raises(ConversionError, match=UNPREPARABLE):
        convert(_bn_axis_3_model(), **options)


def test_convert_keras_model_loads_the_flatbuffer_too(monkeypatch):
    _unflattened(monkeypatch)
    with pytest.raises(ConversionError, match=UNPREPARABLE):
        convert_keras_model(_bn_axis_3_model())


class _FailingInterpreter:
    """Stands in for LCE's interpreter: reports on file descriptor 2, as TFLite does, that
    node `node` failed to prepare, then raises the wrapper's RuntimeError."""

    node, op = 0, "CONV_2D"

    def __init__(self, flatbuffer):
        import os

        os.write(2, b"ERROR: some/dir/conv.cc:42 something it did not like\n")
        os.write(2, f"ERROR: Node number {self.node} ({self.op}) failed to prepare.\n".encode())
        raise RuntimeError("ERROR at interpreter_wrapper_lite.cc:57 : AllocateTensors() == kTfLiteOk")


@pytest.mark.parametrize("strict", [True, False])
def test_interpreter_that_cannot_prepare_names_op_node_and_layer(monkeypatch, strict):
    from biper_keras.convert import fusion, interpreter

    model = _bn_axis_3_model()
    ops = [name for name, _ in fusion.ops_with_output_shapes(convert_keras_model(model))]
    monkeypatch.setattr(interpreter, "_interpreter", _FailingInterpreter)
    # A float op: its layer is found from the tensor names (TF scopes are layer names).
    monkeypatch.setattr(_FailingInterpreter, "node", ops.index("CONV_2D"))
    with pytest.raises(ConversionError, match=r"node \d+ \(CONV_2D, Keras layer 'stem'\) failed to prepare: "
                                              r"conv\.cc:42 something it did not like"):
        convert(model, strict=strict)
    # A binary conv: its layer comes from the fusion report.
    monkeypatch.setattr(_FailingInterpreter, "node", ops.index("LceBconv2d"))
    monkeypatch.setattr(_FailingInterpreter, "op", "LceBconv2d")
    with pytest.raises(ConversionError, match=r"\(LceBconv2d, Keras layer 'binary_conv'\) failed to prepare"):
        convert(model, strict=strict, verify=False)  # verify=False on purpose: it loads all the same


def test_cli_prints_an_unpreparable_flatbuffer_as_one_line(monkeypatch, capsys, tmp_path):
    from helpers import assert_one_line_error, run_cli_here

    from biper_keras.cli import EXIT_NOT_FUSED

    _unflattened(monkeypatch)
    path, out = str(tmp_path / "bn3.keras"), tmp_path / "bn3.tflite"
    _bn_axis_3_model().save(path)
    for flags in ([], ["--allow-unfused", "--no-verify"]):
        result = run_cli_here(capsys, "convert", path, "-o", str(out), *flags)
        assert_one_line_error(result, EXIT_NOT_FUSED, "(LceBconv2d, Keras layer 'binary_conv') failed to prepare")
        assert not out.exists()


LARQ_SCRIPTS["lce_conversion_from_larq"] = script("lce_conversion_from_larq.py")


def test_from_larq_model_converts_and_runs(larq_results):
    """A tf_keras/Larq model's BatchNorms say axis=[3]; from_larq gives Keras 3 axis=3,
    the case that used to give an LceBconv2d LCE could not prepare. The tf_keras model
    itself honours input_shape, verify, strict and data."""
    assert "FROM-LARQ-OK" in script_output(larq_results[1], "lce_conversion_from_larq")


@pytest.mark.parametrize("name,kwargs", [("resnet20", {}), ("vgg_small", {}), ("resnet18", {}),
                                         ("resnet18_imagenet", {"input_shape": (64, 64, 3)})])
def test_package_models_with_batch_norm_axis_3_fuse_load_and_match(name, kwargs):
    """The package's models use axis=-1 (tests/test_models.py converts them as they are);
    the same networks with axis=3, as a model rebuilt from another framework states it."""
    from biper_keras.models import get_model
    from biper_keras.rebuild import rebuild

    keras.utils.set_random_seed(0)
    original = get_model(name, **kwargs)
    # The 4-D batch norms (a head BatchNorm after pooling is 2-D: its axis stays -1).
    spatial = {l.name for l in original.layers
               if isinstance(l, keras.layers.BatchNormalization) and len(l.input.shape) == 4}

    def axis_3(node):
        if node["class_name"] == "BatchNormalization" and node["config"].get("name") in spatial:
            node["config"]["axis"] = 3

    model = rebuild(original, axis_3)
    assert {l.axis for l in model.layers if l.name in spatial} == {3}
    rng = np.random.default_rng(12)
    randomize_batch_norms(model, rng)
    x = rng.normal(size=(2, *model.inputs[0].shape[1:])).astype("float32")
    result = convert(model, data=x)
    binary = [l.name for l in model.layers if isinstance(l, bk.QuantConv2D)]
    assert result.ops["LceBconv2d"] == len(binary) and [f.layer for f in result.layers if f.fused] == binary
    assert result.parity.passed and result.parity.top1_agreement == 1.0


def test_report_names_what_lce_runs_in_float_and_strict_mode_accepts_it():
    """Depthwise, separable, 1-D convs and dense layers have no binary LCE op: the report
    says what each becomes; strict mode asks only binary 2-D convs to fuse."""
    import warnings

    q = dict(input_quantizer="ste_sign")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the starving-weights warning
        x = keras.Input((16, 16, 8))
        h = bk.layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign", name="dw", **q)(x)
        h = bk.layers.QuantSeparableConv2D(8, 3, depthwise_quantizer="ste_sign", pointwise_quantizer="ste_sign",
                                           name="sep", **q)(h)
        h = bk.layers.QuantConv2D(8, 3, kernel_quantizer="ste_sign", use_bias=False, name="bconv", **q)(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        model = keras.Model(x, bk.layers.QuantDense(4, kernel_quantizer="ste_sign", name="head", **q)(h))
    result = convert(model)  # strict: raises if a binary 2-D conv did not fuse
    kinds = {f.layer: (f.kind, f.fused) for f in result.layers}
    assert kinds == {"dw": ("depthwise", False), "sep": ("separable", False), "bconv": ("conv", True),
                     "head": ("dense", False)}
    assert "DEPTHWISE_CONV_2D" in [f.reason.split()[-1] for f in result.layers if f.layer == "dw"]
    ops = op_histogram(result.flatbuffer)
    assert ops["LceBconv2d"] == 1 and ops["DEPTHWISE_CONV_2D"] == 2 and result.parity.passed


def test_symmetric_zero_padding_at_stride_2_is_reported_as_not_fusable():
    x = keras.Input((16, 16, 8))
    h = bk.QuantConv2D(8, 3, strides=2, padding="same", symmetric_padding=True, input_quantizer="ste_sign",
                       kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False, name="sym")(x)
    model = keras.Model(x, h)
    with pytest.raises(ConversionError, match="sym .*symmetric zero padding at stride > 1"):
        convert(model)
    result = convert(model, strict=False)
    (row,) = result.layers
    assert not row.fused and "pad_values=1.0" in row.reason and result.parity.passed
