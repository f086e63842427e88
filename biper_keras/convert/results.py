"""What `convert` returns and raises (no TensorFlow here: a result crosses the process
boundary of `biper_keras.convert._worker` as the JSON of `to_dict`)."""

import collections
import dataclasses

from biper_keras._tables import render


_W1A32 = "binary weights, float inputs"


class ConversionError(ValueError):
    """A quantized layer did not become a binary LCE op (strict mode), or the model
    cannot be converted."""


class ParityError(ValueError):
    """The converted model's outputs disagree with the Keras model's."""


@dataclasses.dataclass
class LayerFusion:
    """How one quantized layer of the Keras model came out in the flatbuffer: its kind,
    whether LCE fused it into an `LceBconv2d` (and at which operator), what it runs as,
    and, when it did not fuse, why."""

    layer: str
    # "conv" (a binary conv LCE can fuse), "projection" (a token-wise dense/einsum projection,
    # run as a 1x1 conv LCE can fuse), else what LCE runs in float: "dense", "conv1d",
    # "depthwise", "separable", "other"
    kind: str
    output_shape: tuple
    fused: bool
    reason: str = ""
    node: int = None  # index of its LceBconv2d among the flatbuffer's operators
    runs: str = ""  # what it runs as: "LceBconv2d" (binary), "int8" (float op, int8 weights) or "float"

    def __post_init__(self):
        if not self.runs:
            self.runs = "LceBconv2d" if self.fused else "float"


@dataclasses.dataclass
class Parity:
    """The converted model's outputs against the Keras model's on `samples` inputs: the
    largest absolute difference (and output), the top-1 agreement, the inputs whose
    binarizer inputs are within rounding of 0, and the verdict on `criterion`."""

    samples: int
    max_abs_diff: float
    max_abs_output: float
    top1_agreement: float  # None when the output is not a class-score vector
    near_zero_binarizer_inputs: int  # inputs so close to 0 that rounding may flip them (None: not probed)
    passed: bool
    criterion: str


@dataclasses.dataclass
class ConversionResult:
    """What `convert` returns: the flatbuffer (bytes) for `target`, its op counts, one
    `LayerFusion` per quantized layer, the float32 size of the parameters and, when
    verified, the `Parity` check."""

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
        """Binary convs and token-wise projections that did not become `LceBconv2d`
        (a projection with float inputs is not one LCE could fuse: it is not listed)."""
        return [f for f in self.layers if not f.fused and (f.kind == "conv" or (f.kind == "projection" and not
                                                                                   f.reason.startswith(_W1A32)))]

    @property
    def fused_projections(self):
        """Names of the token-wise projections that run as `LceBconv2d`."""
        return [f.layer for f in self.layers if f.kind == "projection" and f.fused]

    def __repr__(self):
        # The dataclass repr would print every byte of the flatbuffer.
        convs = [f for f in self.layers if f.kind == "conv"]
        parts = [f"target={self.target!r}", f"size={self.size / 1024:.1f} KiB",
                 f"LceBconv2d={self.ops.get('LceBconv2d', 0)}",
                 f"fused convs={sum(f.fused for f in convs)}/{len(convs)}"]
        projections = [f for f in self.layers if f.kind == "projection"]
        if projections:
            parts.append(f"fused projections={len(self.fused_projections)}/{len(projections)}")
        if self.parity is None:
            parts.append("parity=not checked")
        else:
            parts.append(f"parity={'ok' if self.parity.passed else 'FAILED'}")
        return f"ConversionResult({', '.join(parts)})"

    def save(self, path):
        """Writes the flatbuffer atomically (temporary file + rename)."""
        from biper_keras._files import atomic_write

        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(self.flatbuffer)

        atomic_write(path, write)
        return path

    def to_dict(self):
        """Everything but the flatbuffer, JSON-serializable (`from_dict` reads it back)."""
        return {
            "target": self.target,
            "size_bytes": self.size,
            "float32_size_bytes": self.float32_size,
            "compression": self.float32_size / self.size if self.size else None,
            "ops": dict(self.ops),
            "layers": [dataclasses.asdict(f) for f in self.layers],
            "parity": None if self.parity is None else dataclasses.asdict(self.parity),
        }

    @classmethod
    def from_dict(cls, report, flatbuffer):
        """The result that `to_dict` (or its JSON) described, with its `flatbuffer`."""
        if "size_bytes" in report and len(flatbuffer) != report["size_bytes"]:
            raise ValueError(f"the flatbuffer has {len(flatbuffer)} bytes, the report says "
                             f"{report['size_bytes']}")
        layers = [LayerFusion(**{**f, "output_shape": tuple(f["output_shape"])}) for f in report["layers"]]
        parity = None if report["parity"] is None else Parity(**report["parity"])
        return cls(bytes(flatbuffer), report["target"], dict(report["ops"]), layers,
                   report["float32_size_bytes"], parity)

    def table(self):
        lines = [f"target {self.target}: {self.size / 1024:.1f} KiB "
                 f"(float32 parameters: {self.float32_size / 1024:.1f} KiB; the file is "
                 f"{self.float32_size / max(self.size, 1):.1f}x smaller than them)"]
        lines.append("ops: " + ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1])))
        if self.layers:
            lines.append(render(("layer", "kind", "output", "runs as", "why"),
                                [(f.layer, f.kind, f.output_shape, f.runs, f.reason) for f in self.layers]))
            counts = collections.Counter(f.runs for f in self.layers)
            lines.append("quantized layers: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
        if self.fused_projections:
            lines.append(f"token-wise projections as LceBconv2d ({len(self.fused_projections)}): "
                         + ", ".join(self.fused_projections))
        if self.parity is not None:
            p = self.parity
            agreement = "" if p.top1_agreement is None else f", top-1 agreement {p.top1_agreement:.4f}"
            lines.append(
                f"parity on {p.samples} inputs: max |diff| {p.max_abs_diff:.3g} (outputs up to "
                f"{p.max_abs_output:.3g}){agreement}, near-zero binarizer inputs "
                f"{count_text(p.near_zero_binarizer_inputs)}: {'ok' if p.passed else 'FAILED'} ({p.criterion})"
            )
        return "\n".join(lines)


def count_text(near_zero):
    return "(not counted: layers without a symbolic input, in a subclassed model or inside another layer)" \
        if near_zero is None else near_zero
