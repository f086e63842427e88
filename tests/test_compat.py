"""One test per private Keras / Larq / LCE internal that biper_keras/_compat.py wraps:
a Keras, Larq or LCE upgrade that moves or changes one fails here, by name."""

import inspect
import pathlib
import re

import keras
import numpy as np

from biper_keras import _compat
from shared_processes import LARQ_SCRIPTS, script, script_output

PACKAGE = pathlib.Path(__file__).parents[1] / "biper_keras"


def _graph():
    inputs = keras.Input((6, 6, 2), name="x")
    a = keras.layers.Conv2D(3, 3, name="a")(inputs)
    b = keras.layers.ReLU(name="b")(a)
    c = keras.layers.Conv2D(3, 1, name="c")(b)
    d = keras.layers.Add(name="d")([b, c])
    return keras.Model(inputs, d, name="m")


def test_private_names_are_used_only_in_the_compat_module():
    pattern = re.compile(r"keras\.src|\._flatten_layers|_inbound_nodes|_outbound_nodes|_keras_history|"
                         r"_build_shapes_dict|AutocastScope|_BaseQuantizer|_tf_tfl_flatbuffer|"
                         r"control_flow_util|is_op_determinism_enabled")
    users = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if pattern.search(path.read_text()))
    assert users == ["_compat.py"]


def test_flatten_layers_walks_nested_models_and_sublayers():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="inner_dense")], name="inner")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(inner(inputs)), name="outer")
    names = [layer.name for layer in _compat.flatten_layers(model)]
    assert names.index("inner") < names.index("inner_dense") and "head" in names and "outer" not in names
    assert _compat.flatten_layers(model, include_self=True)[0] is model


def test_inbound_and_outbound_operations_follow_the_functional_graph():
    model = _graph()
    names = lambda layers: sorted(layer.name for layer in layers)  # noqa: E731
    assert names(_compat.inbound_operations(model.get_layer("d"))) == ["b", "c"]
    assert names(_compat.outbound_operations(model.get_layer("b"))) == ["c", "d"]
    assert names(_compat.inbound_operations(model.get_layer("a"))) == ["x"]


def test_functional_class_is_what_keras_model_returns():
    model = _graph()
    assert type(model) is _compat.functional_class()
    assert type(keras.Sequential([keras.Input((2,))])) is not _compat.functional_class()


def test_built_input_shape_of_a_layer_outside_a_graph():
    layer = keras.layers.Dense(3)
    assert _compat.built_input_shape(layer) is None
    layer.build((None, 7))
    assert tuple(_compat.built_input_shape(layer)) == (None, 7)


def test_input_signature_has_a_free_batch_size():
    (spec,) = _compat.input_signature(_graph())
    assert tuple(spec.shape) == (None, 6, 6, 2) and spec.dtype == "float32"


def test_no_autocast_reads_a_variable_in_its_own_dtype():
    class Reads(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(2,), initializer="ones")

        def call(self, x):
            autocast = self.w.value.dtype
            with _compat.no_autocast():
                own = self.w.value.dtype
            self.seen = (keras.backend.standardize_dtype(autocast), keras.backend.standardize_dtype(own))
            return x

    layer = Reads(dtype="mixed_float16")
    layer(np.ones((1, 2), "float32"))
    assert layer.seen == ("float16", "float32")


def test_stateless_or_symbolic_scope_is_seen():
    assert not _compat.in_stateless_or_symbolic_scope()
    with keras.StatelessScope():
        assert _compat.in_stateless_or_symbolic_scope()
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(_compat.in_stateless_or_symbolic_scope())
            return x

    Probe()(keras.Input((2,)))  # symbolic call
    assert seen == [True]


def test_tracing_for_xla_is_seen():
    import tensorflow as tf

    seen = []

    def probe(x):
        seen.append(_compat.tracing_for_xla())
        return x + 1

    assert not _compat.tracing_for_xla()
    tf.function(probe, jit_compile=True)(tf.constant(1.0))
    tf.function(probe)(tf.constant(1.0))
    tf.function(lambda x: tf.function(probe)(x), jit_compile=True)(tf.constant(2.0))  # nested in an XLA trace
    assert seen == [True, False, True]


def test_op_determinism_is_seen():
    import tensorflow as tf
    from tensorflow.python.framework import config  # its undo, for tests only

    was = _compat.tf_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        assert _compat.tf_op_determinism_enabled()
        config.disable_op_determinism()
        assert not _compat.tf_op_determinism_enabled()
    finally:
        (tf.config.experimental.enable_op_determinism if was else config.disable_op_determinism)()


def test_constraint_names_resolve_after_registration():
    import biper_keras as bk  # registers "weight_clip"

    assert isinstance(keras.constraints.get("weight_clip"), bk.WeightClip)
    assert isinstance(keras.layers.Dense(2, kernel_constraint="weight_clip").kernel_constraint, bk.WeightClip)


def test_lce_graphdef_converter_takes_the_arguments_we_pass():
    from larq_compute_engine.mlir._tf_tfl_flatbuffer import convert_graphdef_to_tflite_flatbuffer as convert

    # pybind11's signature line: eight positional arguments, bytes out
    assert re.search(r"\(arg0: bytes, .*arg7: object\) -> bytes", convert.__doc__)
    assert inspect.signature(_compat.convert_graphdef_to_tflite_flatbuffer).parameters["args"].kind.name == "VAR_POSITIONAL"


LARQ_SCRIPTS["compat_larq_base_quantizer"] = script("compat_larq_base_quantizer.py")


def test_larq_base_quantizer_is_what_larq_quantizers_derive_from(larq_results):
    assert "BASE-OK True" in script_output(larq_results[1], "compat_larq_base_quantizer")
