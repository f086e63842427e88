"""Larq Zoo (larq-zoo 2.4.0) models move to Keras 3 with `from_larq`, convert as LCE
converts the originals, and come back with `to_larq`; what cannot move is refused by
name. QuickNetSmall and the small bridge checks run in the session's Larq process; the
other models, ~20 s each, in one process of their own that only the slow tier starts (one
per family; the rest with `-m exhaustive`)."""

import json
import textwrap

import pytest

from shared_processes import LARQ_SCRIPTS, run_scripts, script_output

MODEL = textwrap.dedent(
    """
    import json
    from larq_zoo_cases import check_model
    print("@@ZOO " + json.dumps(check_model(NAME)))
    """
)

# One model per family and quantizer in the full suite (~20 s each); the rest repeat a
# family already covered and run with `-m exhaustive` (deselected by default: setup.cfg).
SLOW_MODELS = ("BinaryDenseNet37Dilated", "BiRealNet", "XNORNet", "DoReFaNet")
EXHAUSTIVE_MODELS = ("BinaryResNetE18", "BinaryDenseNet28", "BinaryDenseNet37", "BinaryDenseNet45", "QuickNet",
                     "QuickNetLarge", "BinaryAlexNet")
# Models that do not move, and what the refusal must name (layer class, function).
REFUSED = {
    "RealToBinaryNet": ("'r2b_bnn_block_2_out' (Lambda)", "'<lambda>'"),
    "MeliusNet22": ("'stem_s1_groupconv_split' (Lambda)", "'<lambda>'"),
}

LARQ_SCRIPTS["zoo_QuickNetSmall"] = MODEL.replace("NAME", repr("QuickNetSmall"))
LARQ_SCRIPTS["zoo_refusals"] = textwrap.dedent(
    f"""
    import json
    from larq_zoo_cases import refusal
    print("@@ZOO " + json.dumps({{name: refusal(name) for name in {sorted(REFUSED)!r}}}))
    """
)

FUNCTIONS = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    import larq_zoo  # registers its functions
    from biper_keras import larq_interop
    from biper_keras.larq_interop import zoo

    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.8, size=(3, 3, 4, 5)).astype("float32")
    x[0, 0, 0, :3] = [1.0, -1.0, 0.0]  # the clip bounds and sign(0)
    upstream = rng.normal(size=x.shape).astype("float32")
    out = {}
    pairs = [(tf.keras.utils.get_custom_objects()[name], cls()) for name, cls in larq_interop.FUNCTION_QUANTIZERS.items()]
    pairs += [(tf.keras.utils.get_custom_objects()[name], fn) for name, (_, fn) in zoo.FUNCTION_ACTIVATIONS.items()]
    for original, ours in pairs:
        values = {}
        for side, f in (("larq_zoo", original), ("ours", ours)):
            v = tf.Variable(x)
            with tf.GradientTape() as tape:
                y = f(v)
            values[side] = (y.numpy(), tape.gradient(y, v, output_gradients=tf.constant(upstream)).numpy())
        out[original.__name__] = {
            "y": float(np.abs(values["larq_zoo"][0] - values["ours"][0]).max()),
            "g": float(np.abs(values["larq_zoo"][1] - values["ours"][1]).max()),
            "g_scale": float(np.abs(values["larq_zoo"][1]).max()),
            "y_scale": float(np.abs(values["larq_zoo"][0]).max()),
        }
    print("@@ZOO " + json.dumps(out))
    """
)
LARQ_SCRIPTS["zoo_functions"] = FUNCTIONS


@pytest.mark.parametrize("name", ["xnor_weight_scale", "magnitude_aware_sign_unclipped", "clip_by_value_activation"])
def test_zoo_function_has_a_keras3_twin(larq_results, name):
    r = _parsed(script_output(larq_results[1], "zoo_functions"))[name]
    assert r["y"] <= 1e-6 * r["y_scale"] and r["y_scale"] > 0, r
    assert r["g"] <= 1e-6 * r["g_scale"] and r["g_scale"] > 0, r


BRIDGE_DETAILS = textwrap.dedent(
    """
    import json, warnings
    import numpy as np
    import tensorflow as tf
    import keras
    import larq as lq
    from biper_keras import larq_interop

    out = {}
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")

    def refusal(model):
        try:
            larq_interop.from_larq(model)
        except ValueError as err:
            return str(err)

    # A grouped conv, a frozen layer, weight_clip, LeakyReLU (alpha -> negative_slope),
    # and the TF ops tf_keras records for x + y, x * y, x - y.
    i = tf.keras.Input((8, 8, 4), name="image")
    a = tf.keras.layers.Conv2D(8, 3, padding="same", groups=2, name="grouped")(i)
    b = lq.layers.QuantConv2D(8, 1, kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                              kernel_constraint="weight_clip", trainable=False, name="frozen")(i)
    h = tf.keras.layers.LeakyReLU(0.2, name="leaky")((a + b) * a - b)
    h = tf.keras.layers.Concatenate(name="cat")([h, tf.keras.layers.Reshape((8, 8, 4), name="re")(
        tf.keras.layers.Flatten(name="flat")(i))])
    model = tf.keras.Model(i, tf.keras.layers.PReLU(name="prelu")(h))
    model.get_layer("prelu").set_weights([np.random.default_rng(1).normal(size=(8, 8, 12))])
    moved = larq_interop.from_larq(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = np.asarray(moved(x))
    out["warnings"] = [str(w.message) for w in caught]
    out["diff"] = float(np.abs(y - model(x).numpy()).max())
    out["scale"] = float(np.abs(y).max())
    out["groups"] = moved.get_layer("grouped").groups
    out["trainable"] = moved.get_layer("frozen").trainable
    out["frozen_weights"] = len(moved.get_layer("frozen").trainable_weights)
    out["clip"] = moved.get_layer("frozen").kernel_constraint.clip_value
    out["slope"] = moved.get_layer("leaky").negative_slope
    out["merges"] = sorted(type(l).__name__ for l in moved.layers if type(l).__name__ in ("Add", "Multiply", "Subtract"))
    back = larq_interop.to_larq(moved)
    out["back_diff"] = float(np.abs(back(x).numpy() - model(x).numpy()).max())
    out["back_groups"] = back.get_layer("grouped").groups
    out["back_trainable"] = back.get_layer("frozen").trainable
    out["back_slope"] = float(back.get_layer("leaky").alpha)

    # What cannot move: a TF op without a mapping, a Python Lambda, a function quantizer.
    i = tf.keras.Input((8, 8, 4))
    out["tf_op"] = refusal(tf.keras.Model(i, tf.pad(i, [[0, 0], [1, 1], [1, 1], [0, 0]])))
    def halve(t):
        return t / 2
    out["lambda"] = refusal(tf.keras.Model(i, tf.keras.layers.Lambda(halve, name="half")(i)))
    def my_sign(t):
        return lq.quantizers.ste_sign(t)
    out["function_quantizer"] = refusal(tf.keras.Sequential(
        [i, lq.layers.QuantConv2D(4, 3, kernel_quantizer=my_sign, name="fq")]))
    out["grouped_quant"] = refusal(tf.keras.Sequential(
        [i, lq.layers.QuantConv2D(4, 3, groups=2, kernel_quantizer="ste_sign", name="gq")]))
    out["slicing"] = refusal(tf.keras.Model(i, i[:, 1:]))
    mixed = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, dtype="mixed_bfloat16", name="mixed")])
    moved_mixed = larq_interop.from_larq(mixed)
    out["policy"] = moved_mixed.get_layer("mixed").dtype_policy.name
    out["back_policy"] = larq_interop.to_larq(moved_mixed).get_layer("mixed").dtype_policy.name
    print("@@ZOO " + json.dumps(out))
    """
)
LARQ_SCRIPTS["zoo_bridge_details"] = BRIDGE_DETAILS


def _parsed(stdout):
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("@@ZOO "))[6:])


def check_moved(r):
    """Every property the issue asks of a model that moves over."""
    # One line per model for the README's table (`pytest -s tests/test_larq_zoo.py`).
    print(f"\nZOO {r['name']}: LceBconv2d {r.get('bconv_ours')} (LCE's conversion of the "
          f"original: {r.get('bconv_lce')}), unfused {r.get('unfused')}, logits max|diff| "
          f"{r['logit_diff']:.2g} of {r['logit_scale']:.3g}, flatbuffers max|diff| {r.get('tflite_vs_lce')}")
    assert r["single_input"], r
    assert r["logit_diff"] <= 1e-5 * r["logit_scale"] and r["logit_scale"] > 0, r
    assert r["keras_vs_original"] <= 1e-5, r
    assert r["back_diff"] == 0.0 and r["back_logit_diff"] == 0.0, r
    original, moved, back = r["frozen"]
    assert original == moved == back, r["frozen"]
    original, moved, back = r["clips"]
    assert original == moved == back, r["clips"]
    assert r["bconv_ours"] >= r["bconv_lce"], r
    if r["name"] != "DoReFaNet":  # its 2-bit activations leave LCE nothing to fuse
        assert r["bconv_lce"] > 0, r
    # Our flatbuffer computes what LCE's conversion of the Larq original computes.
    assert r["tflite_vs_lce"] <= 1e-5 and r["argmax_same"], r


def test_quicknet_small_moves_over(larq_results):
    r = _parsed(script_output(larq_results[1], "zoo_QuickNetSmall"))
    check_moved(r)
    # Its blur pools are frozen DepthwiseConv2Ds; every binary conv has weight_clip(1.25).
    assert len(r["frozen"][0]) == 3 and len(r["clips"][0]) == 16 and not r["unfused"], r
    assert {value for _, value in r["clips"][1]} == {1.25}, r["clips"]


def _zoo_process(names, tmp_path_factory):
    scripts = {name: MODEL.replace("NAME", repr(name)) for name in names}
    return run_scripts(scripts, tmp_path_factory.mktemp("zoo"), legacy=True)


@pytest.fixture(scope="module")
def slow_zoo(tmp_path_factory):
    return _zoo_process(SLOW_MODELS, tmp_path_factory)


@pytest.fixture(scope="module")
def exhaustive_zoo(tmp_path_factory):
    return _zoo_process(EXHAUSTIVE_MODELS, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_MODELS)
def test_zoo_model_moves_over(slow_zoo, name):
    check_moved(_parsed(script_output(slow_zoo, name)))


@pytest.mark.slow
@pytest.mark.exhaustive
@pytest.mark.parametrize("name", EXHAUSTIVE_MODELS)
def test_zoo_model_of_a_covered_family_moves_over(exhaustive_zoo, name):
    check_moved(_parsed(script_output(exhaustive_zoo, name)))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_zoo_model_that_cannot_move_is_refused_by_name(larq_results, name):
    message = _parsed(script_output(larq_results[1], "zoo_refusals"))[name]
    assert message is not None, f"{name} moved: update the README table and test it as moved"
    for part in REFUSED[name]:
        assert part in message, message


def test_bridge_carries_groups_trainable_constraint_dtype_policy_and_tf_ops(larq_results):
    r = _parsed(script_output(larq_results[1], "zoo_bridge_details"))
    assert not [w for w in r["warnings"] if "structure" in w], r["warnings"]
    assert r["diff"] <= 1e-5 * r["scale"] and r["scale"] > 0, r
    assert r["groups"] == r["back_groups"] == 2, r
    assert r["trainable"] is False and r["back_trainable"] is False and r["frozen_weights"] == 0, r
    assert r["clip"] == 1.0, r
    assert r["slope"] == pytest.approx(0.2) and r["back_slope"] == pytest.approx(0.2), r
    assert r["merges"] == ["Add", "Multiply", "Subtract"], r
    assert r["back_diff"] <= 1e-5 * r["scale"], r
    assert "(TFOpLambda)" in r["tf_op"] and "pad" in r["tf_op"], r["tf_op"]
    assert "'half' (Lambda)" in r["lambda"] and "'halve'" in r["lambda"], r["lambda"]
    assert "'fq' (QuantConv2D)" in r["function_quantizer"] and "my_sign" in r["function_quantizer"], r
    assert "'gq' (QuantConv2D)" in r["grouped_quant"] and "groups=2" in r["grouped_quant"], r
    assert "(SlicingOpLambda)" in r["slicing"] and "slicing" in r["slicing"], r["slicing"]
    assert r["policy"] == r["back_policy"] == "mixed_bfloat16", r
