"""Test helpers shared by the in-process tests and the per-backend suite."""

import keras


def randomize_batch_norms(model, rng):
    """Random BN statistics. With the defaults (gamma 1, beta 0, mean 0, var 1) a binary
    conv's integer-valued output gives exact zeros at the next binarizer, whose sign then
    depends on float rounding, so Keras and LCE may legitimately disagree."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0.0, 0.3, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def run_cli_here(capsys, *args):
    """The `biper-keras` CLI in this process (no TensorFlow start-up), as a
    CompletedProcess; argparse usage errors become exit code 2."""
    import subprocess

    from biper_keras.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_error(result, code, text):
    """Exit `code`, exactly one `biper-keras` line on stderr containing `text`, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = [l for l in result.stderr.splitlines() if l.startswith("biper-keras")]
    assert len(lines) == 1 and text in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
