"""Conversion to TFLite with Larq Compute Engine, with a per-layer fusion report and a
parity check (TensorFlow only; TensorFlow and LCE are imported inside the functions).

    from biper_keras.convert import convert
    result = convert(model)            # strict: raises if a binarized conv did not fuse
    print(result.table())              # ops, per-layer fusion, sizes, parity
    result.save("model.tflite")

Keras 3 models are traced (`model(x, training=False)`), frozen, given 1-D per-channel
constants (see `biper_keras.lce_graph`) and converted by LCE's graph converter; tf_keras
(Larq) models go through `larq_compute_engine.convert_keras_model`. A model that lives on
the JAX or torch backend is saved to a temporary `.keras` file and converted by a
TensorFlow-backend subprocess (`.keras` weights load across backends).

Every flatbuffer, whatever the target ("arm" and "xcore" files both run in LCE's x86
interpreter), is loaded in LCE's interpreter and run once before it is returned: one that
does not prepare is a `ConversionError` naming the op, its node and the Keras layer.
"""

import collections
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np

__all__ = [
    "convert",
    "convert_keras_model",
    "op_histogram",
    "ConversionResult",
    "ConversionError",
    "ParityError",
    "LayerFusion",
    "Parity",
    "check_parity",
]

TARGETS = ("arm", "xcore")


class ConversionError(ValueError):
    """A quantized layer did not become a binary LCE op (strict mode), or the model
    cannot be converted."""


class ParityError(ValueError):
    """The converted model's outputs disagree with the Keras model's."""


@dataclasses.dataclass
class LayerFusion:
    layer: str
    kind: str  # "conv" or "dense"
    output_shape: tuple
    fused: bool
    reason: str = ""
    node: int = None  # index of its LceBconv2d among the flatbuffer's operators


@dataclasses.dataclass
class Parity:
    samples: int
    max_abs_diff: float
    max_abs_output: float
    top1_agreement: float  # None when the output is not a class-score vector
    near_zero_binarizer_inputs: int  # inputs so close to 0 that rounding may flip them (None: not probed)
    passed: bool
    criterion: str


@dataclasses.dataclass
class ConversionResult:
    flatbuffer: bytes
    target: str
    ops: dict
    layers: list
    float32_size: int  # bytes the parameters take as float32
    parity: Parity = None

    @property
    def size(self):
        return len(self.flatbuffer)

    @property
    def unfused(self):
        return [f for f in self.layers if f.kind == "conv" and not f.fused]

    def save(self, path):
        """Writes the flatbuffer atomically (temporary file + rename)."""
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".tflite")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.flatbuffer)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def to_dict(self):
        return {
            "target": self.target,
            "size_bytes": self.size,
            "float32_size_bytes": self.float32_size,
            "compression": self.float32_size / self.size if self.size else None,
            "ops": dict(self.ops),
            "layers": [dataclasses.asdict(f) for f in self.layers],
            "parity": None if self.parity is None else dataclasses.asdict(self.parity),
        }

    def table(self):
        lines = [f"target {self.target}: {self.size / 1024:.1f} KiB "
                 f"(float32 parameters: {self.float32_size / 1024:.1f} KiB, "
                 f"{self.float32_size / max(self.size, 1):.1f}x)"]
        lines.append("ops: " + ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1])))
        if self.layers:
            width = max(len(f.layer) for f in self.layers)
            lines.append(f"{'layer':<{width}}  {'kind':<5} {'output':<16} binary op")
            for f in self.layers:
                status = "LceBconv2d" if f.fused else f"no: {f.reason}"
                lines.append(f"{f.layer:<{width}}  {f.kind:<5} {str(f.output_shape):<16} {status}")
        if self.parity is not None:
            p = self.parity
            agreement = "" if p.top1_agreement is None else f", top-1 agreement {p.top1_agreement:.4f}"
            lines.append(
                f"parity on {p.samples} inputs: max |diff| {p.max_abs_diff:.3g} (outputs up to "
                f"{p.max_abs_output:.3g}){agreement}, near-zero binarizer inputs "
                f"{_count(p.near_zero_binarizer_inputs)}: {'ok' if p.passed else 'FAILED'} ({p.criterion})"
            )
        return "\n".join(lines)


def _count(near_zero):
    return "(not counted: subclassed model)" if near_zero is None else near_zero


def _is_tf_keras(model):
    return any(c.__module__.split(".")[0] == "tf_keras" for c in type(model).__mro__)


def _keras3_backend():
    import keras

    return keras.backend.backend()


def convert_keras_model(model, *, target="arm"):
    """Converts a Keras 3 model (TF backend) to an LCE TFLite flatbuffer (bytes), with no
    report; the flatbuffer has been loaded and run once in LCE's interpreter (a
    `ConversionError` names the op and layer that would not prepare)."""
    flatbuffer = _flatbuffer(model, target)
    _run_once(flatbuffer, model, target)
    return flatbuffer


def _flatbuffer(model, target):
    if target not in TARGETS:
        raise ValueError(f"Argument `target` must be 'arm' or 'xcore'. Received: {target!r}.")
    if _keras3_backend() != "tensorflow":
        raise ValueError(
            "Conversion needs the TensorFlow backend (KERAS_BACKEND=tensorflow); this "
            f"process runs Keras on {_keras3_backend()!r}. Use `convert`, which converts "
            "in a TensorFlow subprocess."
        )
    import tensorflow as tf

    from biper_keras import lce_graph

    for spec in tf.nest.flatten(lce_graph.input_signature(model)):
        if None in spec.shape.as_list()[1:]:
            # LCE's converter would make them 1: a file that runs on 1x1 images only.
            raise ConversionError(f"input shape {tuple(spec.shape.as_list())} has unknown sizes: "
                                  "pass `input_shape` (CLI: --input-shape)")
    return lce_graph.to_flatbuffer(model, target)


# --- loading the flatbuffer -------------------------------------------------------------


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
    layers = {l.name for l in model._flatten_layers(include_self=False)}
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


def _float32_size(model):
    return int(sum(int(np.prod(w.shape)) for w in model.weights)) * 4


# --- which layers should fuse, and why not -------------------------------------------


def _binary(quantizer):
    return quantizer is not None and getattr(quantizer, "precision", 32) == 1


def _unfusable_reason(layer, target):
    """Why LCE cannot make a binary conv of `layer`, or "" if it should."""
    if layer.data_format != "channels_last":
        return "channels_first data format (LCE needs NHWC)"
    if not _binary(layer.kernel_quantizer):
        what = "no kernel quantizer" if layer.kernel_quantizer is None else "its output is not 1-bit"
        return f"float kernel ({what}, e.g. BiPer stage 1 or soft BNN++: harden it)"
    if not _binary(layer.input_quantizer):
        return "input not binarized (no 1-bit input_quantizer)"
    if layer.padding == "same" and layer.pad_values == 0.0 and target != "arm":
        return f"zero padding is only supported for target='arm' (use pad_values=1.0 on {target})"
    if layer.groups != 1:
        return f"grouped convolution (groups={layer.groups})"
    return ""


def _quantized_layers(model):
    from biper_keras.layers import QuantConv2D, QuantDense

    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, (QuantConv2D, QuantDense))
        and (layer.kernel_quantizer is not None or layer.input_quantizer is not None)
    ]


def _same_shape(keras_shape, tflite_shape):
    # A binary conv that feeds another binarizer writes bit-packed output: its channels
    # are then ceil(C / 32) int32 words.
    if len(keras_shape) != len(tflite_shape):
        return False
    *spatial, channels = keras_shape
    *t_spatial, t_channels = tflite_shape
    return all(k is None or k == t for k, t in zip(spatial, t_spatial)) and (
        channels is None or t_channels in (channels, -(-channels // 32))
    )


def _output_shape(layer):
    """Without the batch size. A subclassed model's layers have no symbolic output: their
    shape follows from the input shape they were built with."""
    try:
        return tuple(layer.output.shape[1:])
    except (AttributeError, ValueError):
        built = list(getattr(layer, "_build_shapes_dict", None) or {})
        if len(built) != 1:
            return ()
        return tuple(layer.compute_output_shape(layer._build_shapes_dict[built[0]])[1:])


def _fusion_report(model, ops, target):
    from biper_keras.layers import QuantConv2D

    bconvs = [(i, shape[1:]) for i, (name, shape) in enumerate(ops) if name == "LceBconv2d"]
    report = []
    for layer in _quantized_layers(model):
        shape = _output_shape(layer)
        if not isinstance(layer, QuantConv2D):
            report.append(LayerFusion(layer.name, "dense", shape, False,
                                      "LCE has no binary dense op: runs as float FULLY_CONNECTED"))
            continue
        reason = _unfusable_reason(layer, target)
        # Match binary convs in graph order by output shape (a BatchNorm folded into
        # the op keeps it); unknown Keras dimensions match any size.
        match = next((b for b in bconvs if _same_shape(shape, b[1])), None)
        fused = match is not None
        if fused:
            bconvs.remove(match)
        elif not reason:
            reason = "not matched by the converter (input binarizer not feeding the conv directly?)"
        report.append(LayerFusion(layer.name, "conv", shape, fused, "" if fused else reason,
                                  match[0] if fused else None))
    return report


# --- parity ---------------------------------------------------------------------------


def _keras_outputs(model, x, eps=1e-5, batch_size=64):
    """Keras's output on `x` (inference mode) and the number of input-binarizer inputs
    within eps * (their std) of 0, from one probe model called eagerly in batches (a
    `predict` would first trace the whole model again: 10 s on a ResNet50). Subclassed
    models have no symbolic graph to probe: their count is None."""
    import keras

    layers = [l for l in _quantized_layers(model) if _binary(getattr(l, "input_quantizer", None))]
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        probe = keras.Model(inputs, [model.outputs[0], *[l.input for l in layers]])
    except (AttributeError, TypeError, ValueError):
        probe, layers = None, []
    parts = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        values = probe(chunk, training=False) if probe is not None else model(chunk, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]  # one output comes unlisted
        parts.append([np.asarray(v) for v in values])
    columns = [np.concatenate(c) for c in zip(*parts)]
    if probe is None and _quantized_layers(model):
        return columns[0], None
    near_zero = sum(int(np.sum(np.abs(v) <= eps * (np.std(v) + 1e-12))) for v in columns[1:])
    return columns[0], near_zero


def check_parity(flatbuffer, model, x, *, min_top1=0.98, atol=1e-3, rtol=1e-3):
    """Runs the LCE interpreter and Keras on `x` and compares.

    Class-score outputs (2D, more than one column) pass when the top-1 predictions agree
    on at least `min_top1` of the inputs (a deep BNN turns a rounding-level sign flip into
    a large logit change, so max |diff| alone is too strict); other outputs pass when
    max |diff| <= atol + rtol * max |output|. Returns a `Parity`.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or len(x) == 0 or not np.all(np.isfinite(x)):  # a check on them would mean nothing
        raise ValueError(f"Parity data must hold at least one sample, all finite. Received: shape {x.shape}, "
                         f"{int(np.sum(~np.isfinite(x)))} non-finite values.")
    expected, near_zero = _keras_outputs(model, x)
    got = np.asarray(_interpreter(flatbuffer).predict(x)).reshape(expected.shape)
    diff = float(np.max(np.abs(got - expected)))
    scale = float(np.max(np.abs(expected)))
    top1 = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        top1 = float(np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
        passed, criterion = top1 >= min_top1, f"top-1 agreement >= {min_top1}"
    else:
        passed = diff <= atol + rtol * scale
        criterion = f"max |diff| <= {atol} + {rtol} * max |output|"
    return Parity(len(x), diff, scale, top1, near_zero, bool(passed), criterion)


def _input_shape(model):
    """The first input's shape, batch size None (also for subclassed models)."""
    import tensorflow as tf

    from biper_keras import lce_graph

    return tuple(tf.nest.flatten(lce_graph.input_signature(model))[0].shape.as_list())


def _fixed_input_model(model, input_shape):
    import keras

    rank = len(_input_shape(model))
    inputs = keras.Input(tuple(input_shape[1:]) if len(input_shape) == rank else tuple(input_shape))
    return keras.Model(inputs, model(inputs), name=model.name)


def _check_convertible(model):
    for layer in model._flatten_layers(include_self=True):
        compute = getattr(layer.dtype_policy, "compute_dtype", "float32")
        if compute != "float32":
            raise ConversionError(
                f"layer {layer.name!r} computes in {compute}: the TFLite converter needs "
                "float32 models; rebuild it under keras.config.set_dtype_policy('float32') "
                "and load the weights."
            )
    weights = model.weights
    for w in weights:
        if w.dtype not in ("float32", "int32", "int64", "bool"):
            raise ConversionError(
                f"variable {w.path!r} is {w.dtype}: the TFLite converter needs float32 "
                "models; cast it (e.g. keras.config.set_dtype_policy('float32') and rebuild)."
            )
        if "float" in str(w.dtype) and not np.all(np.isfinite(np.asarray(w))):
            raise ConversionError(f"variable {w.path!r} contains NaN or infinite values")


def convert(
    model,
    *,
    target="arm",
    input_shape=None,
    verify=True,
    strict=True,
    data=None,
    min_top1=0.98,
):
    """Converts `model` to an LCE flatbuffer and reports on every quantized layer.

    Args:
        model: a Keras 3 model (any backend) or a tf_keras/Larq model.
        target: "arm" (Raspberry Pi, Android) or "xcore".
        input_shape: fix the input shape (e.g. `(1, 224, 224, 3)`) when the model's
            spatial dimensions are None.
        verify: run the parity check (LCE interpreter vs Keras). Without it the
            flatbuffer is still loaded and run once in LCE's interpreter.
        strict: raise `ConversionError` naming every quantized conv that did not become
            `LceBconv2d`, and `ParityError` when parity fails. With False, both are only
            reported. A flatbuffer that LCE's interpreter cannot prepare or run is a
            `ConversionError` in both modes.
        data: inputs for the parity check (default: 8 standard-normal samples).

    Returns:
        a `ConversionResult`.
    """
    if target not in TARGETS:
        raise ValueError(f"Argument `target` must be 'arm' or 'xcore'. Received: {target!r}.")
    if _is_tf_keras(model):
        return _convert_tf_keras(model, target)
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras model. Received: {type(model).__name__}.")
    if _keras3_backend() != "tensorflow":
        return _convert_in_tensorflow_subprocess(model, target, input_shape, verify, strict, data, min_top1)
    _check_convertible(model)
    if not _quantized_layers(model):
        warnings.warn(f"Model {model.name!r} has no quantized layers: it converts to a float model.")
    exported = model if input_shape is None else _fixed_input_model(model, input_shape)
    flatbuffer = _flatbuffer(exported, target)
    ops = _ops_with_output_shapes(flatbuffer)
    result = ConversionResult(flatbuffer, target, dict(collections.Counter(n for n, _ in ops)),
                              _fusion_report(model, ops, target), _float32_size(model))
    _run_once(flatbuffer, model, target, result.layers)
    if strict and result.unfused:
        raise ConversionError(
            "quantized convolutions not converted to LceBconv2d: "
            + "; ".join(f"{f.layer} ({f.reason})" for f in result.unfused)
            + ". Fix them, or pass strict=False to convert anyway."
        )
    if verify:
        if data is None:
            shape = _input_shape(exported)[1:]
            if None in shape:
                raise ConversionError(f"input shape {shape} has unknown sizes: pass `input_shape`")
            data = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
        result.parity = check_parity(flatbuffer, model, data, min_top1=min_top1)
        if strict and not result.parity.passed:
            p = result.parity
            raise ParityError(
                f"LCE and Keras disagree on {p.samples} inputs: max |diff| {p.max_abs_diff:.3g}, "
                f"top-1 agreement {p.top1_agreement}, needed {p.criterion}; "
                f"{_count(p.near_zero_binarizer_inputs)} binarizer inputs are ~0 and may flip sign "
                "(untrained BatchNorm statistics cause exact zeros). Pass strict=False "
                "(CLI: --allow-unfused) to keep the result anyway."
            )
    return result


def _convert_tf_keras(model, target):
    import larq_compute_engine as lce

    flatbuffer = lce.convert_keras_model(model, target=target)
    _run_once(flatbuffer, model, target)
    return ConversionResult(flatbuffer, target, dict(op_histogram(flatbuffer)), [], _float32_size(model))


def _convert_in_tensorflow_subprocess(model, target, input_shape, verify, strict, data, min_top1):
    with tempfile.TemporaryDirectory() as tmp:
        model_path, out = os.path.join(tmp, "model.keras"), os.path.join(tmp, "model.tflite")
        model.save(model_path)
        args = [sys.executable, "-m", "biper_keras.cli", "convert", model_path, "-o", out,
                "--target", target, "--json", "--min-top1", str(min_top1)]
        if input_shape is not None:
            args += ["--input-shape", ",".join(str(d) for d in input_shape)]
        if not verify:
            args.append("--no-verify")
        if not strict:
            args.append("--allow-unfused")
        if data is not None:
            np.save(os.path.join(tmp, "data.npy"), np.asarray(data, dtype=np.float32))
            args += ["--data", os.path.join(tmp, "data.npy")]
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        # The child must import this very package, wherever it was imported from.
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "conversion failed"
            raise ConversionError(message.removeprefix("biper-keras: error: "))
        report = json.loads(done.stdout)
        with open(out, "rb") as f:
            flatbuffer = f.read()
    parity = report["parity"] and Parity(**report["parity"])
    return ConversionResult(flatbuffer, target, report["ops"],
                            [LayerFusion(**{**f, "output_shape": tuple(f["output_shape"])}) for f in report["layers"]],
                            report["float32_size_bytes"], parity)
