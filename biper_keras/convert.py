"""Conversion to TFLite with Larq Compute Engine, with a per-layer fusion report and a
parity check (TensorFlow only; TensorFlow and LCE are imported inside the functions).

    from biper_keras.convert import convert
    result = convert(model)            # strict: raises if a binarized conv did not fuse
    print(result.table())              # ops, per-layer fusion, sizes, parity
    result.save("model.tflite")

Keras 3 models go through `model.export` + `larq_compute_engine.convert_saved_model`;
tf_keras (Larq) models through `larq_compute_engine.convert_keras_model`. A model that
lives on the JAX or torch backend is saved to a temporary `.keras` file and converted by
a TensorFlow-backend subprocess (`.keras` weights load across backends).
"""

import collections
import dataclasses
import json
import os
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


@dataclasses.dataclass
class Parity:
    samples: int
    max_abs_diff: float
    max_abs_output: float
    top1_agreement: float  # None when the output is not a class-score vector
    near_zero_binarizer_inputs: int  # inputs so close to 0 that rounding may flip them
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
                f"{p.near_zero_binarizer_inputs}: {'ok' if p.passed else 'FAILED'} ({p.criterion})"
            )
        return "\n".join(lines)


def _is_tf_keras(model):
    return any(c.__module__.split(".")[0] == "tf_keras" for c in type(model).__mro__)


def _keras3_backend():
    import keras

    return keras.backend.backend()


def convert_keras_model(model, *, target="arm"):
    """Converts a Keras 3 model (TF backend) to an LCE TFLite flatbuffer (bytes), with no
    report: `model.export` then `larq_compute_engine.convert_saved_model`."""
    if target not in TARGETS:
        raise ValueError(f"Argument `target` must be 'arm' or 'xcore'. Received: {target!r}.")
    if _keras3_backend() != "tensorflow":
        raise ValueError(
            "Conversion needs the TensorFlow backend (KERAS_BACKEND=tensorflow); this "
            f"process runs Keras on {_keras3_backend()!r}. Use `convert`, which converts "
            "in a TensorFlow subprocess."
        )
    import larq_compute_engine as lce

    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        return lce.convert_saved_model(saved_model_dir, target=target)


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


def _fusion_report(model, ops, target):
    from biper_keras.layers import QuantConv2D

    bconv_shapes = [shape[1:] for name, shape in ops if name == "LceBconv2d"]
    report = []
    for layer in _quantized_layers(model):
        shape = tuple(layer.output.shape[1:]) if hasattr(layer, "output") else ()
        if not isinstance(layer, QuantConv2D):
            report.append(LayerFusion(layer.name, "dense", shape, False,
                                      "LCE has no binary dense op: runs as float FULLY_CONNECTED"))
            continue
        reason = _unfusable_reason(layer, target)
        # Match binary convs in graph order by output shape (a BatchNorm folded into
        # the op keeps it); unknown Keras dimensions match any size.
        match = next((s for s in bconv_shapes if _same_shape(shape, s)), None)
        fused = match is not None
        if fused:
            bconv_shapes.remove(match)
        elif not reason:
            reason = "not matched by the converter (input binarizer not feeding the conv directly?)"
        report.append(LayerFusion(layer.name, "conv", shape, fused, "" if fused else reason))
    return report


# --- parity ---------------------------------------------------------------------------


def _near_zero_binarizer_inputs(model, x, eps=1e-5):
    """Inputs of input binarizers within eps * (their std) of 0, on the given data."""
    import keras

    layers = [l for l in _quantized_layers(model) if _binary(getattr(l, "input_quantizer", None))]
    if not layers:
        return 0
    probe = keras.Model(model.inputs, [l.input for l in layers])
    values = probe.predict(x, verbose=0)
    values = values if isinstance(values, list) else [values]
    return int(sum(np.sum(np.abs(v) <= eps * (np.std(v) + 1e-12)) for v in values))


def check_parity(flatbuffer, model, x, *, min_top1=0.98, atol=1e-3, rtol=1e-3):
    """Runs the LCE interpreter and Keras on `x` and compares.

    Class-score outputs (2D, more than one column) pass when the top-1 predictions agree
    on at least `min_top1` of the inputs (a deep BNN turns a rounding-level sign flip into
    a large logit change, so max |diff| alone is too strict); other outputs pass when
    max |diff| <= atol + rtol * max |output|. Returns a `Parity`.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or len(x) == 0 or not np.all(np.isfinite(x)):  # a check on them would mean nothing
        raise ValueError(f"Parity data must hold at least one sample, all finite. Received: shape {x.shape}, "
                         f"{int(np.sum(~np.isfinite(x)))} non-finite values.")
    expected = np.asarray(model.predict(x, verbose=0))
    got = np.asarray(Interpreter(flatbuffer).predict(x)).reshape(expected.shape)
    diff = float(np.max(np.abs(got - expected)))
    scale = float(np.max(np.abs(expected)))
    top1 = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        top1 = float(np.mean(np.argmax(got, 1) == np.argmax(expected, 1)))
        passed, criterion = top1 >= min_top1, f"top-1 agreement >= {min_top1}"
    else:
        passed = diff <= atol + rtol * scale
        criterion = f"max |diff| <= {atol} + {rtol} * max |output|"
    return Parity(len(x), diff, scale, top1, _near_zero_binarizer_inputs(model, x), bool(passed), criterion)


def _fixed_input_model(model, input_shape):
    import keras

    inputs = keras.Input(tuple(input_shape[1:]) if len(input_shape) == len(model.inputs[0].shape) else tuple(input_shape))
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
        verify: run the parity check (LCE interpreter vs Keras).
        strict: raise `ConversionError` naming every quantized conv that did not become
            `LceBconv2d`, and `ParityError` when parity fails. With False, both are only
            reported.
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
    flatbuffer = convert_keras_model(exported, target=target)
    ops = _ops_with_output_shapes(flatbuffer)
    result = ConversionResult(flatbuffer, target, dict(collections.Counter(n for n, _ in ops)),
                              _fusion_report(model, ops, target), _float32_size(model))
    if strict and result.unfused:
        raise ConversionError(
            "quantized convolutions not converted to LceBconv2d: "
            + "; ".join(f"{f.layer} ({f.reason})" for f in result.unfused)
            + ". Fix them, or pass strict=False to convert anyway."
        )
    if verify:
        if data is None:
            shape = tuple(exported.inputs[0].shape[1:])
            if None in shape:
                raise ConversionError(f"input shape {shape} has unknown sizes: pass `input_shape`")
            data = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
        result.parity = check_parity(flatbuffer, model, data, min_top1=min_top1)
        if strict and not result.parity.passed:
            p = result.parity
            raise ParityError(
                f"LCE and Keras disagree on {p.samples} inputs: max |diff| {p.max_abs_diff:.3g}, "
                f"top-1 agreement {p.top1_agreement}, needed {p.criterion}; "
                f"{p.near_zero_binarizer_inputs} binarizer inputs are ~0 and may flip sign "
                "(untrained BatchNorm statistics cause exact zeros). Pass strict=False "
                "(CLI: --allow-unfused) to keep the result anyway."
            )
    return result


def _convert_tf_keras(model, target):
    import larq_compute_engine as lce

    flatbuffer = lce.convert_keras_model(model, target=target)
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
