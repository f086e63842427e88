"""The seven differences from Larq 0.14 listed in issue 21, each checked against Larq
itself: one TF_USE_LEGACY_KERAS=1 process (where Larq's tf_keras and Keras 3 live side
by side) computes both sides and reports, per difference, what each side did."""

import json

import numpy as np
import pytest

from shared_processes import script, LARQ_SCRIPTS, script_output

BOTH_SIDES = script("larq_parity_differences_both_sides.py")


LARQ_SCRIPTS["differences"] = BOTH_SIDES


@pytest.fixture
def sides(larq_results):
    out = script_output(larq_results[1], "differences")
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_1_kernel_is_latent_outside_quantized_scope(sides):
    larq, ours = sides["1"]
    assert ours == larq
    latent, quantized, output = ours
    np.testing.assert_allclose(latent, [[0.3, -0.2, 0.7], [-0.5, 0.1, 1.5]], rtol=1e-6)
    assert quantized == [[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]]
    assert output == [[-1.0, 1.0, 3.0]]


def test_2_weight_clip_survives_the_bridge_both_ways(sides):
    larq_side, back, there = sides["2"][:2], sides["2"][2:4], sides["2"][4:]
    assert larq_side == back == there == [[True, 0.5], [True, 1.0]]
    assert "'odd'" in sides["2_refused"] and "kernel_constraint=Custom" in sides["2_refused"]
    assert max(sides["2_outputs"]) < 1e-5
    larq_clip, our_clip, by_name = sides["2_clip"]
    assert our_clip == larq_clip
    np.testing.assert_allclose(our_clip, [[-0.5, 0.3], [0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(by_name, [[-1.0, 0.3], [0.7, 1.0]], rtol=1e-6)


def test_3_float64_stays_float64(sides):
    assert sides["3"] == [["float64", "float64"]] * 3
    assert sides["3_tensor"] == "float64"


def test_4_same_layers_warn_about_starving_weights(sides):
    for name, constraint, larq_warned, we_warned in sides["4"]:
        assert we_warned == larq_warned, (name, constraint)
    assert [r[2] for r in sides["4"]] == [True, False, True, True, True, True, False, False, False, False]


def test_5_flip_ratio_metric_equals_larq_and_a_hand_count(sides):
    (larq_value, larq_hand, larq_count), (ours, hand, count) = sides["5"]
    assert larq_count == count == 1
    assert abs(larq_value - larq_hand) < 1e-6 and abs(ours - hand) < 1e-6
    assert abs(ours - larq_value) < 1e-6 and ours > 0


def test_6_nested_sequential_counts_binary_kernels(sides):
    larq, ours = sides["6"]
    assert ours == larq == [4608, 0, 4718592, 0]


def test_7_summary_of_an_empty_model_raises(sides):
    assert sides["7"] == [True, True]
