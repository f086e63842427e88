"""Larq Zoo (larq-zoo 2.4.0) models move to Keras 3 with `from_larq`, convert as LCE
converts the originals, and come back with `to_larq`; what cannot move is refused by
name. The small bridge checks run in the session's Larq process; QuickNetSmall and the
other models, ~20-30 s each, in one process of their own that only the slow tier starts (one
per family; the rest with `-m exhaustive`)."""

import json
import textwrap

import pytest

from shared_processes import script, LARQ_SCRIPTS, run_scripts, script_output

MODEL = textwrap.dedent(
    """
    import json
    from larq_zoo_cases import check_model
    print("@@ZOO " + json.dumps(check_model(NAME)))
    """
)

# One model per family and quantizer in the full suite (~20-30 s each); the rest repeat a
# family already covered and run with `-m exhaustive` (deselected by default: setup.cfg).
# XNOR-Net's family runs as XNORNetNarrow (tests/larq_zoo_cases.py: XNORNet layer for
# layer, same quantizers, constraint and 6x6 head, 1/16 of the widths; ~10 s), XNORNet
# itself, ~80 s for its 54 M-parameter head, with `-m exhaustive`.
SLOW_MODELS = ("BinaryDenseNet37Dilated", "BiRealNet", "XNORNetNarrow", "DoReFaNet")
EXHAUSTIVE_MODELS = ("BinaryResNetE18", "BinaryDenseNet28", "BinaryDenseNet37", "BinaryDenseNet45", "QuickNet",
                     "QuickNetLarge", "BinaryAlexNet", "XNORNet")
# Models that do not move, and what the refusal must name (layer class, function).
REFUSED = {
    "RealToBinaryNet": ("'r2b_bnn_block_2_out' (Lambda)", "'<lambda>'"),
    "MeliusNet22": ("'stem_s1_groupconv_split' (Lambda)", "'<lambda>'"),
}

LARQ_SCRIPTS["zoo_refusals"] = textwrap.dedent(
    f"""
    import json
    from larq_zoo_cases import refusal
    print("@@ZOO " + json.dumps({{name: refusal(name) for name in {sorted(REFUSED)!r}}}))
    """
)

FUNCTIONS = script("larq_zoo_functions.py")
LARQ_SCRIPTS["zoo_functions"] = FUNCTIONS


@pytest.mark.parametrize("name", ["xnor_weight_scale", "magnitude_aware_sign_unclipped", "clip_by_value_activation"])
def test_zoo_function_has_a_keras3_twin(larq_results, name):
    r = _parsed(script_output(larq_results[1], "zoo_functions"))[name]
    assert r["y"] <= 1e-6 * r["y_scale"] and r["y_scale"] > 0, r
    assert r["g"] <= 1e-6 * r["g_scale"] and r["g_scale"] > 0, r


BRIDGE_DETAILS = script("larq_zoo_bridge_details.py")
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


@pytest.mark.slow  # ~25 s: in the slow tier's Zoo process (the fast tier's Larq process stays short)
def test_quicknet_small_moves_over(slow_zoo):
    r = _parsed(script_output(slow_zoo, "QuickNetSmall"))
    check_moved(r)
    # Its blur pools are frozen DepthwiseConv2Ds; every binary conv has weight_clip(1.25).
    assert len(r["frozen"][0]) == 3 and len(r["clips"][0]) == 16 and not r["unfused"], r
    assert {value for _, value in r["clips"][1]} == {1.25}, r["clips"]


def _zoo_process(names, tmp_path_factory):
    scripts = {name: MODEL.replace("NAME", repr(name)) for name in names}
    return run_scripts(scripts, tmp_path_factory.mktemp("zoo"), legacy=True)


@pytest.fixture(scope="module")
def slow_zoo(tmp_path_factory):
    return _zoo_process(("QuickNetSmall", *SLOW_MODELS), tmp_path_factory)


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
