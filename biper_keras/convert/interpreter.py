"""Step 5 of a conversion: loading the flatbuffer in LCE's interpreter and running it
once, with errors that name the op, its node and the Keras layer (LCE imported lazily)."""

import contextlib
import os
import re
import sys
import tempfile

import numpy as np

from .fusion import layer_of_op
from .results import ConversionError


def _interpreter(flatbuffer):
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(flatbuffer)


@contextlib.contextmanager
def _stderr_to(file):
    """Points file descriptor 2 at `file` (TFLite writes its prepare errors there, not to
    Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_once(flatbuffer, model, report):
    """Loads `flatbuffer` in LCE's interpreter and runs one inference on random inputs;
    raises `ConversionError` naming the op, node and Keras layer (from `report`, the
    `LayerFusion`s, or the tensor names) if it cannot."""
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            with _stderr_to(log):
                interpreter = _interpreter(flatbuffer)
                rng = np.random.default_rng(0)
                inputs = [rng.normal(size=shape).astype(dtype)
                          for shape, dtype in zip(interpreter.input_shapes, interpreter.input_types)]
                interpreter.predict(inputs[0] if len(inputs) == 1 else inputs)
            failure = None
        except (RuntimeError, ValueError) as err:
            failure = err
        log.seek(0)
        text = log.read().decode(errors="replace")
    if failure is None:
        if text:
            sys.stderr.write(text)  # nothing failed: pass on whatever it said
        return
    raise ConversionError(_not_runnable_message(flatbuffer, model, report, text, failure))


def _not_runnable_message(flatbuffer, model, report, log, failure):
    # TFLite's own lines: "ERROR: <file>:<line> <condition>", "ERROR: Node number N (OP)
    # failed to prepare."; anything else on fd 2 in that window is not about this file.
    lines = [l.removeprefix("ERROR: ").strip() for l in log.splitlines() if l.startswith("ERROR: ")]
    node = next(filter(None, (re.search(r"Node number (\d+) \((\w+)\) failed to (\w+)", l) for l in lines)), None)
    why = "; ".join(_short(l) for l in lines if not l.startswith("Node number")) or " ".join(str(failure).split())
    if node is None:
        return f"the converted flatbuffer does not run in LCE's interpreter: {why}"
    index, op, stage = int(node.group(1)), node.group(2), node.group(3)
    layer = next((f.layer for f in report if f.node == index), None)
    if layer is None and model is not None:
        found = layer_of_op(flatbuffer, model, index)
        layer = found.name if found is not None else None
    origin = f"Keras layer {layer!r}" if layer else "no Keras layer found in its tensor names"
    return (f"the converted flatbuffer does not run in LCE's interpreter: node {index} ({op}, "
            f"{origin}) failed to {stage}: {why}")


def _short(line):
    """"larq_compute_engine/tflite/kernels/bconv2d.cc:221 X != 1" -> "bconv2d.cc:221 X != 1"."""
    where, _, what = line.partition(" ")
    return f"{os.path.basename(where)} {what}" if what and re.search(r"\.\w+:\d+$", where) else line
