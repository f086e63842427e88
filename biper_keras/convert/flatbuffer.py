"""Reading a TFLite flatbuffer (its ops) and loading it in LCE's interpreter, with errors
that name the op, its node and the Keras layer (LCE imported inside the functions)."""

import collections
import contextlib
import os
import re
import sys
import tempfile

import numpy as np

from biper_keras import _compat
from .results import ConversionError


def _interpreter(flatbuffer):
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(flatbuffer)


def _is_tf_keras(model):
    return any(c.__module__.split(".")[0] == "tf_keras" for c in type(model).__mro__)


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


def _run_once(flatbuffer, model, target, report=None):
    """Loads `flatbuffer` in LCE's interpreter and runs one inference on random inputs;
    raises `ConversionError` naming the op, node and Keras layer if it cannot."""
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
    if report is None and model is not None and not _is_tf_keras(model):
        from .fusion import _fusion_report

        report = _fusion_report(model, _ops_with_output_shapes(flatbuffer), target)
    raise ConversionError(_not_runnable_message(flatbuffer, model, report or [], text, failure))


def _not_runnable_message(flatbuffer, model, report, log, failure):
    # TFLite's own lines: "ERROR: <file>:<line> <condition>", "ERROR: Node number N (OP)
    # failed to prepare."; anything else on fd 2 in that window is not about this file.
    lines = [l.removeprefix("ERROR: ").strip() for l in log.splitlines() if l.startswith("ERROR: ")]
    node = next(filter(None, (re.search(r"Node number (\d+) \((\w+)\) failed to (\w+)", l) for l in lines)), None)
    why = "; ".join(_short(l) for l in lines if not l.startswith("Node number")) or " ".join(str(failure).split())
    if node is None:
        return f"the converted flatbuffer does not run in LCE's interpreter: {why}"
    index, op, stage = int(node.group(1)), node.group(2), node.group(3)
    layer = next((f.layer for f in report if f.node == index), None) or _layer_of_op(flatbuffer, model, index)
    origin = f"Keras layer {layer!r}" if layer else "no Keras layer found in its tensor names"
    return (f"the converted flatbuffer does not run in LCE's interpreter: node {index} ({op}, "
            f"{origin}) failed to {stage}: {why}")


def _short(line):
    """"larq_compute_engine/tflite/kernels/bconv2d.cc:221 X != 1" -> "bconv2d.cc:221 X != 1"."""
    where, _, what = line.partition(" ")
    return f"{os.path.basename(where)} {what}" if what and re.search(r"\.\w+:\d+$", where) else line


def _layer_of_op(flatbuffer, model, index):
    """The innermost Keras layer named in the tensor names of operator `index` (TF scopes
    are layer names, possibly with a "_<n>" suffix added when traced again)."""
    from larq_compute_engine.mlir.python import tflite_schema as schema

    if model is None:
        return None
    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)
    if index >= graph.OperatorsLength():
        return None
    op = graph.Operators(index)
    names = [graph.Tensors(op.Outputs(i)).Name().decode() for i in range(op.OutputsLength())]
    names += [graph.Tensors(op.Inputs(i)).Name().decode() for i in range(op.InputsLength()) if op.Inputs(i) >= 0]
    layers = {l.name for l in _compat.flatten_layers(model)}
    for name in names:
        for scope in reversed(name.split(";")[0].split("/")[:-1]):
            for candidate in (scope, re.sub(r"_\d+$", "", scope)):
                if candidate in layers:
                    return candidate
    return None


def op_histogram(flatbuffer):
    """Counts the operators of a TFLite flatbuffer by name (`LceBconv2d`, `CONV_2D`...)."""
    return collections.Counter(name for name, _ in _ops_with_output_shapes(flatbuffer))


def _ops_with_output_shapes(flatbuffer):
    from larq_compute_engine.mlir.python import tflite_schema as schema

    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode())
        else:
            # Codes above 127 live in BuiltinCode; older files use the deprecated field.
            names.append(builtin_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            shape = ()
            if op.OutputsLength():
                shape = tuple(int(d) for d in graph.Tensors(op.Outputs(0)).ShapeAsNumpy())
            ops.append((names[op.OpcodeIndex()], shape))
    return ops
