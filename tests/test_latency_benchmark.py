"""biper_keras.benchmark (the library module): LCE interpreter timing, the float twin, and the
lce_benchmark_model driver/parser. The scripts in benchmarks/ are tested in test_benchmark_scripts.py."""

import json
import pathlib
import stat
import sys

import keras
import numpy as np
import pytest

import biper_keras as bk
from biper_keras import benchmark
from biper_keras.binarize import float_twin
from biper_keras.convert import convert

DATA = pathlib.Path(__file__).parent / "data"


def test_parser_plain_output():
    r = benchmark.parse_benchmark_model_output((DATA / "benchmark_model_plain.txt").read_text())
    assert r["init_ms"] == pytest.approx(41.702)
    assert r["first_ms"] == pytest.approx(98.211)
    assert r["warmup_avg_ms"] == pytest.approx(88.4205)
    assert r["inference_avg_ms"] == pytest.approx(86.1042)
    assert (r["runs"], r["min_ms"], r["max_ms"], r["std_ms"]) == (50, 84.977, 90.112, 1.133)
    assert "median_ms" not in r


def test_parser_output_with_percentiles_and_exponents():
    r = benchmark.parse_benchmark_model_output((DATA / "benchmark_model_percentiles.txt").read_text())
    assert r["inference_avg_ms"] == pytest.approx(1310.04)
    assert r["warmup_avg_ms"] == pytest.approx(1530.0)
    assert r["runs"] == 50 and r["median_ms"] == pytest.approx(1305.5)


def test_parser_says_when_there_is_no_summary():
    with pytest.raises(ValueError, match="no 'Inference timings' line.*Benchmarking failed"):
        benchmark.parse_benchmark_model_output((DATA / "benchmark_model_failed.txt").read_text())


def _fake_binary(tmp_path, sample):
    script = tmp_path / "lce_benchmark_model"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(tmp_path / 'args.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"sys.stderr.write(open({str(sample)!r}).read())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_driver_runs_a_local_binary_and_parses_it(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"fake")
    binary = _fake_binary(tmp_path, DATA / "benchmark_model_plain.txt")
    r = benchmark.run_lce_benchmark_model(str(binary), str(model), threads=2, runs=50)
    assert r["inference_avg_ms"] == pytest.approx(86.1042) and r["threads"] == 2
    args = json.loads((tmp_path / "args.json").read_text())
    assert args == [f"--graph={model}", "--num_threads=2", "--num_runs=50"]


def test_driver_reports_a_failing_binary(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"fake")
    binary = _fake_binary(tmp_path, DATA / "benchmark_model_failed.txt")
    with pytest.raises(ValueError, match="no 'Inference timings' line"):
        benchmark.run_lce_benchmark_model(str(binary), str(model))
    with pytest.raises(ValueError, match="no such model file"):
        benchmark.run_lce_benchmark_model(str(binary), str(tmp_path / "none.tflite"))


def test_push_commands_for_ssh_and_adb():
    assert benchmark._push_command(["ssh", "-p", "2222", "pi@board"], "m.tflite", "/tmp/m.tflite") == \
        ["scp", "-p", "2222", "m.tflite", "pi@board:/tmp/m.tflite"]
    assert benchmark._push_command(["adb", "shell"], "m.tflite", "/data/local/tmp/m.tflite") == \
        ["adb", "push", "m.tflite", "/data/local/tmp/m.tflite"]
    with pytest.raises(ValueError, match="Don't know how to copy"):
        benchmark._push_command(["docker", "exec", "x"], "m.tflite", "/tmp/m.tflite")


def _tiny_bnn():
    binary = dict(padding="same", pad_values=1.0, input_quantizer="ste_sign", kernel_quantizer="biper",
                  kernel_scale="channel", use_bias=False)
    x = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(32, 3, padding="same")(x)
    h = keras.layers.BatchNormalization()(h)
    h = bk.QuantConv2D(64, 3, name="b1", **binary)(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, bk.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer="biper", name="head")(h))


def test_float_twin_swaps_layers_and_keeps_latent_weights():
    model = _tiny_bnn()
    twin = float_twin(model)
    assert type(twin.get_layer("b1")) is keras.layers.Conv2D
    assert type(twin.get_layer("head")) is keras.layers.Dense
    np.testing.assert_array_equal(np.array(twin.get_layer("b1").kernel), np.array(model.get_layer("b1")._kernel))
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    h = keras.Model(twin.inputs, twin.get_layer("b1").output)(x)
    pre = keras.Model(model.inputs, model.layers[2].output)(x)  # BN output feeding b1
    expected = keras.ops.conv(pre, model.get_layer("b1")._kernel, padding="same")
    np.testing.assert_allclose(np.array(h), np.array(expected), rtol=1e-4, atol=1e-4)


def test_time_tflite_and_compare_with_float():
    model = _tiny_bnn()
    rows = benchmark.time_tflite(convert(model).flatbuffer, threads=(1, 2), warmup=1, runs=3)
    assert {(r.option, r.threads) for r in rows} == {(o, t) for o in benchmark.LCE_OPTIONS for t in (1, 2)}
    assert all(0 < r.min_ms <= r.median_ms <= r.p90_ms for r in rows)
    report = benchmark.compare_with_float(model, threads=(1,), warmup=1, runs=3)
    best = report["best"][1]
    assert best["speedup"] == pytest.approx(best["float_ms"] / best["binary_ms"])
    assert report["size_ratio"] == pytest.approx(report["float_bytes"] / report["binary_bytes"])
    assert report["size_ratio"] > 3  # 1-bit conv weights vs float32
