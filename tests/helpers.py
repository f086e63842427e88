"""Test helpers shared by the in-process tests and the per-backend suite."""

from biper_keras.convert import randomize_batch_norms  # noqa: F401  (the tests import it from here)


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


def accuracy_of(model, batches):
    """Top-1 accuracy of `model` (logits or probabilities) over `batches` of (x, labels),
    computed here rather than by Keras's metrics: the independent check of a reported one."""
    import keras
    import numpy as np

    if hasattr(batches, "__getitem__") and hasattr(batches, "__len__"):  # a PyDataset
        batches = [batches[i] for i in range(len(batches))]
    hits = total = 0
    for x, y in batches:
        predicted = np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=-1)
        labels = keras.ops.convert_to_numpy(y).reshape(-1)
        hits += int(np.sum(predicted == labels))
        total += len(labels)
    return hits / total
