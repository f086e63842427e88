"""BiPer inside Larq's own tf_keras layers. Larq needs TF_USE_LEGACY_KERAS=1 before
TensorFlow is imported: the Larq checks run in the session's Larq process
(tests/shared_processes.py), the check without it in a process of its own."""

import os
import subprocess
import sys
import textwrap

from shared_processes import script, LARQ_SCRIPTS, script_output

TRAIN_AND_CONVERT = script("larq_plugin_train_and_convert.py")


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


BRIDGE = script("larq_plugin_bridge.py")


LARQ_SCRIPTS["plugin_bridge"] = BRIDGE

PACKAGE_MODELS = script("larq_plugin_package_models.py")
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
