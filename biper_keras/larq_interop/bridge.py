"""The bridge: a model's architecture and weights on the other side, Keras 3 <-> Larq
(tf_keras), from the model's config; what has no counterpart is refused by name."""

from biper_keras import _compat

from .plugin import import_larq, register
from .zoo import (activation_from_larq, activation_to_larq, function_quantizer_from_larq,
                  function_quantizer_to_larq)

__all__ = ["to_larq", "from_larq"]

_DIRECTIONS = {
    "to_larq": ("Keras 3 -> Larq/tf_keras", "a Keras 3 (biper_keras) model", "keras.models.load_model", "from_larq"),
    "from_larq": ("Larq/tf_keras -> Keras 3", "a Larq/tf_keras model", "tf.keras.models.load_model", "to_larq"),
}


def _check_model(model, function):
    """Raises TypeError/ValueError at once, naming the direction `function` goes, unless
    `model` is a model object of its source side, functional or Sequential, with inputs."""
    import keras

    direction, wanted, loader, other = _DIRECTIONS[function]
    head = f"`{function}` ({direction}) takes {wanted}"
    tf_keras = any(c.__module__.split(".")[0] == "tf_keras" for c in type(model).__mro__)
    keras3 = isinstance(model, keras.Model)
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        raise TypeError(f"{head} object, not a file name. Received: model={model!r}. Load it first: {loader}(path).")
    if (function == "to_larq" and tf_keras) or (function == "from_larq" and keras3):
        side = "tf_keras (Larq's side)" if tf_keras else "Keras 3"
        raise TypeError(f"{head}. Received: a {side} model, {type(model).__name__} {model.name!r}: `{other}` "
                        "converts in that direction.")
    if not (tf_keras or keras3) or not hasattr(model, "layers"):
        raise TypeError(f"{head}. Received: model of type {type(model).__module__}.{type(model).__name__}.")
    if keras3:
        graph = isinstance(model, (keras.Sequential, _compat.functional_class()))
    else:  # tf_keras: a Sequential (built or not), or a functional model
        graph = any(c.__name__ == "Sequential" for c in type(model).__mro__) or getattr(model, "_is_graph_network", False)
    if not graph:
        raise ValueError(f"{head}, functional or Sequential (rebuilt from its config). Received: "
                         f"{type(model).__name__} {model.name!r}, a subclassed model, which has no layer graph to read.")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # Keras 3's unbuilt Sequential raises
        inputs = None
    if not inputs:
        raise ValueError(f"{head} with known inputs. Received: {type(model).__name__} {model.name!r}, not built yet "
                         "(no input shape): start it with an Input(shape) layer, or call model.build((None, *shape)).")

def _graph(model, tensor_inputs):
    """(edges [(layer name, [input layer names])] in order, inputs [(name, shape)],
    output names) of a functional or Sequential model of either Keras, from its config.
    `tensor_inputs(node)` lists the layer names a config node reads."""
    config = model.get_config()
    layers = config["layers"]
    if "input_layers" not in config:  # Sequential: a chain, its input first if listed
        shape = tuple(model.inputs[0].shape[1:])
        names = [entry["config"]["name"] for entry in layers if entry["class_name"] != "InputLayer"]
        edges, previous = [], "input"
        for name in names:
            edges.append((name, [previous]))
            previous = name
        return edges, [("input", shape)], [previous]
    edges, inputs = [], []
    by_name = {layer.name: layer for layer in model.layers}
    for entry in layers:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            inputs.append((name, tuple(by_name[name].output.shape[1:])))
            continue
        edges.append((name, [i for node in entry["inbound_nodes"] for i in tensor_inputs(node)]))

    def names(spec):
        spec = spec if spec and isinstance(spec[0], list) else [spec]
        return [s[0] for s in spec]

    order = names(config["input_layers"])
    return edges, sorted(inputs, key=lambda i: order.index(i[0])), names(config["output_layers"])


def _keras3_inputs(node):
    found = []

    def collect(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            found.append(value["config"]["keras_history"][0])
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    collect(node["args"])
    return found


def _tf_keras_tensor(value):
    return (isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) for v in value[1:]))


def _tf_keras_inputs(node):
    """Layer names a tf_keras node reads: `[[name, node, tensor, kwargs], ...]`, or for a
    TF-op layer one flat `[name, node, tensor, kwargs]` whose kwargs may hold tensors
    (`x + y` is saved as x with `{"y": [name, 0, 0]}`)."""
    entries = [node] if node and isinstance(node[0], str) else node
    found = []
    for entry in entries:
        found.append(entry[0])
        kwargs = entry[3] if len(entry) > 3 and isinstance(entry[3], dict) else {}
        found += [v[0] for v in kwargs.values() if _tf_keras_tensor(v)]
    return found


def _rebuild_graph(model, graph, make_input, make_layer, model_cls):
    edges, inputs, outputs = graph
    tensors = {name: make_input(shape, name) for name, shape in inputs}
    for name, sources in edges:
        layer = model.get_layer(name)
        new = make_layer(layer)
        args = [tensors[i] for i in sources]
        tensors[name] = new(args if len(args) > 1 else args[0])
        new.set_weights(layer.get_weights())
    outs = [tensors[n] for n in outputs]
    ins = [tensors[n] for n, _ in inputs]
    return model_cls(ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0], name=model.name)


def _common_args(layer, kind):
    """Constructor arguments of the layers that need more than their config (weights with
    initializers), which Keras 3 and tf_keras name alike (activations serialize to the
    same names, e.g. "linear", "relu")."""
    c = layer.get_config()
    if kind == "prelu":
        return {"shared_axes": c["shared_axes"]}
    if kind == "bn":
        args = {k: c[k] for k in ("axis", "momentum", "epsilon", "center", "scale")}
        if isinstance(args["axis"], (list, tuple)):
            args["axis"] = args["axis"][0] if len(args["axis"]) == 1 else list(args["axis"])
        return args
    args = {"activation": c["activation"], "use_bias": c["use_bias"]}
    if kind in ("dense", "qdense"):
        args.update(units=c["units"])
        return args
    args.update(kernel_size=tuple(c["kernel_size"]), strides=tuple(c["strides"]),
                padding=c["padding"], data_format=c["data_format"],
                dilation_rate=tuple(c["dilation_rate"]))
    if kind in ("qdepthwise", "qseparable", "depthwise"):
        args["depth_multiplier"] = c["depth_multiplier"]
    if kind not in ("qdepthwise", "depthwise"):
        args["filters"] = c["filters"]
    if c.get("groups", 1) != 1:
        if kind != "conv":
            raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}): groups={c['groups']} "
                             "is only carried for a float Conv2D.")
        args["groups"] = c["groups"]
    return args


# The quantized layer kinds and their quantizer arguments (named alike on both sides).
_QUANTIZER_ARGS = {
    "qdepthwise": ("input_quantizer", "depthwise_quantizer"),
    "qseparable": ("input_quantizer", "depthwise_quantizer", "pointwise_quantizer"),
    "qconv1d": ("input_quantizer", "kernel_quantizer"),
    "qconv": ("input_quantizer", "kernel_quantizer"),
    "qdense": ("input_quantizer", "kernel_quantizer"),
}
_QUANTIZED_CLASSES = {"qdepthwise": "QuantDepthwiseConv2D", "qseparable": "QuantSeparableConv2D",
                      "qconv1d": "QuantConv1D", "qconv": "QuantConv2D", "qdense": "QuantDense"}

# Layers without initialized weights whose config means the same in Keras 3 and tf_keras:
# rebuilt from the config (renamed keys: Keras 3 name -> tf_keras name).
_SAME_CONFIG = ("Activation", "ReLU", "Softmax", "ELU", "LeakyReLU", "Flatten", "Reshape",
                "Permute", "RepeatVector", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
                "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
                "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
                "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
                "GlobalMaxPooling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D",
                "Cropping2D", "UpSampling1D", "UpSampling2D")
_RENAMED_KEYS = {"LeakyReLU": {"negative_slope": "alpha"}}

# tf_keras's records of TF ops on two tensors (`x + y`, tf.multiply(x, y), ...): the
# Keras 3 merge layer that computes the same.
_TF_OPS = {"__operators__.add": "Add", "math.add": "Add", "math.multiply": "Multiply",
           "math.subtract": "Subtract", "math.maximum": "Maximum", "math.minimum": "Minimum"}


def _layer_kinds(layers_module, quantized_module, batch_norm=None):
    """The bridge's layer kinds -> classes of one side. Quantized layers come first:
    they subclass the float ones on both sides (tf_keras's DepthwiseConv2D is a Conv2D)."""
    m = layers_module
    return {
        **{kind: getattr(quantized_module, name) for kind, name in _QUANTIZED_CLASSES.items()},
        "depthwise": m.DepthwiseConv2D, "conv": m.Conv2D, "dense": m.Dense,
        "bn": batch_norm or m.BatchNormalization, "prelu": m.PReLU,
    }


# Layer arguments the rebuilt layer must keep (the weights are copied, but these act
# in further training): a constraint or regularizer a user set may not vanish.
_CARRIED = ("kernel_initializer", "bias_initializer", "kernel_constraint", "bias_constraint",
            "kernel_regularizer", "bias_regularizer", "activity_regularizer",
            "depthwise_initializer", "pointwise_initializer", "depthwise_constraint",
            "pointwise_constraint", "depthwise_regularizer", "pointwise_regularizer",
            "beta_initializer", "gamma_initializer", "moving_mean_initializer",
            "moving_variance_initializer", "beta_regularizer", "gamma_regularizer",
            "beta_constraint", "gamma_constraint", "alpha_initializer", "alpha_regularizer",
            "alpha_constraint")

# Larq quantizers that exist under the same class name and arguments on both sides.
_SHARED_QUANTIZERS = ("SteSign", "ApproxSign", "SwishSign", "MagnitudeAwareSign", "SteHeaviside",
                      "SteTern", "DoReFa", "NoOp")
_LAYER_KEYS = ("name", "trainable", "dtype")


def _quantizer_name(q):
    # A plain-function quantizer (Larq Zoo's xnor_weight_scale) by its own name.
    return getattr(q, "__name__", None) or f"{type(q).__name__}"


def _quantizer_args(q):
    return {k: v for k, v in q.get_config().items() if k not in _LAYER_KEYS}


def _carry(obj, layer, arg, side, target_get, clip_class):
    """`obj` (an initializer, constraint or regularizer of `layer`) on the other side:
    WeightClip by its clip value, Keras built-ins by class name and config."""
    if obj is None:
        return None
    name = type(obj).__name__
    if name in ("WeightClip", "weight_clip"):
        return clip_class(obj.clip_value)
    module = type(obj).__module__
    if callable(obj) and name == "function" and arg.endswith("_initializer"):
        # A plain-function initializer (Larq Zoo's fixed blur kernels) only made the
        # weights, which are copied; the rebuilt layer keeps its default initializer.
        return None
    if module.startswith(("keras", "tf_keras")):
        config = obj.get_config()
        # Keras 3 added arguments tf_keras lacks (e.g. GlorotUniform's `input_axes`);
        # left at None they mean the default, and the other side's default is the same.
        set_only = {k: v for k, v in config.items() if v is not None}
        for attempt in (config, set_only):
            try:
                return target_get({"class_name": name, "config": attempt})
            except (ValueError, TypeError) as err:
                reason = str(err)
    else:
        reason = f"a custom {type(obj).__module__}.{name}"
    raise ValueError(f"Layer {layer.name!r}: {arg}={name} has no {side} counterpart ({reason}).")


def _no_counterpart(layer, side, why):
    return ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has no {side} counterpart: {why}.")


def _generic_layer(layer, source_module, target_module, side, renamed):
    """(class, arguments) of a layer of `_SAME_CONFIG` or a tf_keras TF-op layer on two
    tensors, from its config; None for any other layer."""
    name = type(layer).__name__
    if name == "TFOpLambda":
        function = layer.get_config()["function"]
        if function not in _TF_OPS:
            raise _no_counterpart(layer, side, f"the TF op tf.{function} is not mapped (mapped: "
                                  + ", ".join(f"tf.{f}" for f in _TF_OPS) + ")")
        return getattr(target_module, _TF_OPS[function]), {}
    if name == "SlicingOpLambda":
        raise _no_counterpart(layer, side, "tensor slicing (x[...]) is not mapped; use a Keras "
                              "layer (e.g. Cropping2D) in the Larq model")
    if name == "Lambda":
        function = getattr(getattr(layer, "function", None), "__name__", "?")
        raise _no_counterpart(layer, side, f"it runs the Python function {function!r}, which "
                              "cannot be translated; rewrite it as Keras layers")
    if name not in _SAME_CONFIG or type(layer) is not getattr(source_module, name, None):
        return None
    config = {k: v for k, v in layer.get_config().items() if k not in _LAYER_KEYS}
    for old, new in renamed.get(name, {}).items():
        if old in config:
            config[new] = config.pop(old)
    return getattr(target_module, name), config


class _Direction:
    """One direction of the bridge (`_ToLarq`, `_FromLarq`): the layer classes on each
    side, and how quantizers, initializers/constraints/regularizers, activations and
    the package's parameter-free layers cross over.

    Attributes set by each direction: `source` / `target` ({kind: class} of the layers
    each side classifies), `modules` (the two sides' Keras layer modules, for the
    generic layers), `side` (the target's name, in messages), `inputs` (how a graph
    node's input tensors are read on the source side), `make_input(shape, name)`,
    `model_cls`, `renamed` (config keys renamed across), `activation(name)`, `twins`
    ({class: make(layer, common kwargs)} for the package's parameter-free layers, by
    exact class; a maker may return None: not a twin)."""

    def quantizer(self, q, layer):
        """The target side's quantizer for `q` (None stays None)."""
        raise NotImplementedError

    def carry(self, obj, layer, arg):
        """The target side's initializer, constraint or regularizer for `obj`."""
        raise NotImplementedError

    def translate(self, model):
        """`model` rebuilt with the target side's classes."""
        return _rebuild_graph(model, _graph(model, self.inputs), self.make_input, self.make_layer, self.model_cls)

    def make_layer(self, layer):
        keep = {"name": layer.name, "trainable": layer.trainable, "dtype": layer.dtype_policy.name}
        twin = self.twins[type(layer)](layer, keep) if type(layer) in self.twins else None
        if twin is not None:
            return twin
        generic = _generic_layer(layer, *self.modules, self.side, self.renamed)
        kind = next((kind for kind, cls in self.source.items() if isinstance(layer, cls)), None)
        if generic is None and kind is None:
            raise _no_counterpart(
                layer, self.side, "the bridge maps Conv2D, DepthwiseConv2D, Dense, PReLU, "
                "BatchNormalization, Larq's quantized layers (QuantConv1D, QuantConv2D, "
                "QuantDepthwiseConv2D, QuantSeparableConv2D, QuantDense), the package's HardTanh "
                "and OptionAShortcut, tf_keras's two-tensor "
                "TF ops (" + ", ".join(sorted(set(_TF_OPS.values()))) + ") and "
                + ", ".join(_SAME_CONFIG)
            )
        if generic is not None:
            return _construct(layer, self.side, generic[0], {**generic[1], **keep}, self.activation)
        args = _common_args(layer, kind)
        if kind in _QUANTIZER_ARGS:
            if getattr(layer, "alpha", None) is not None:
                raise ValueError(f"Layer {layer.name!r}: kernel_scale='channel' has no Larq counterpart.")
            if getattr(layer, "symmetric_padding", False):  # the authors' option
                raise ValueError(f"Layer {layer.name!r}: symmetric_padding=True has no Larq counterpart.")
            if getattr(layer, "normalize_inputs", False):  # the authors' option, QuantConv2D's
                args["normalize_inputs"] = True
            args.update({arg: self.quantizer(getattr(layer, arg), layer) for arg in _QUANTIZER_ARGS[kind]})
            if kind != "qdense":
                args["pad_values"] = layer.pad_values
        config = layer.get_config()
        for arg in _CARRIED:
            # Only what the layer's own config lists; tf_keras's depthwise/separable
            # convs also list `kernel_*` arguments that no weight uses.
            unused = kind in ("qdepthwise", "qseparable", "depthwise") and arg.startswith("kernel_")
            if arg in config and not unused and getattr(layer, arg, None) is not None:
                args[arg] = self.carry(getattr(layer, arg), layer, arg)
        cls = self.target["normalized_qconv"] if args.get("normalize_inputs") else self.target[kind]
        return _construct(layer, self.side, cls, {**args, **keep}, self.activation)


def _construct(layer, side, cls, kwargs, activation):
    name = kwargs.get("activation")
    if isinstance(name, dict) and name.get("class_name") == "function":
        name = name["config"]  # Keras 3's form of a registered function
    if isinstance(name, str):
        kwargs["activation"] = activation(name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        # e.g. an activation function registered only on one side.
        raise _no_counterpart(layer, side, str(err)) from err


def fold_kernel_scale(model):
    """A copy of `model` whose per-channel kernel scales alpha are folded into the
    BatchNormalization each scaled conv/dense feeds (Larq has no alpha). Exact at
    inference: BN(alpha * z) = gamma * alpha * (z - mean / alpha) / sqrt(var + eps) + beta,
    so gamma becomes gamma * alpha and the moving mean mean / alpha (a channel with
    alpha = 0 outputs beta, as before). In training mode (batch statistics) the two
    differ. A scaled layer whose output is not used by exactly one channels-last
    BatchNormalization is refused by name."""
    import keras
    import numpy as np

    from biper_keras.rebuild import rebuild

    folds = {}  # BatchNormalization name -> (alpha, bias of the scaled layer or 0)
    from biper_keras.layers import quantized_layers

    scaled = [layer for layer in quantized_layers(model) if getattr(layer, "alpha", None) is not None]
    if not scaled:
        return model
    for layer in scaled:
        users = _compat.outbound_operations(layer)
        bn = users[0] if len(users) == 1 else None
        if not isinstance(bn, keras.layers.BatchNormalization) or bn.axis not in (-1, len(bn.input.shape) - 1):
            raise ValueError(f"Layer {layer.name!r}: kernel_scale='channel' has no Larq counterpart, and it "
                             "folds only into a channels-last BatchNormalization that alone uses its output; "
                             f"it feeds {[u.name for u in users]}.")
        alpha = np.asarray(layer.alpha, np.float64)
        bias = np.asarray(layer.bias, np.float64) if layer.use_bias else np.zeros_like(alpha)
        folds[bn.name] = (alpha, bias)
    by_layer = {layer.name: folds[_compat.outbound_operations(layer)[0].name] for layer in scaled}
    dead = {name: alpha == 0 for name, (alpha, _) in folds.items()}

    def edit(node):
        name = node["config"].get("name")
        if name in by_layer:
            node["config"]["kernel_scale"] = None
        if name in folds:
            node["config"].update(scale=True, center=True)

    def weights_of(layer):
        if layer.name in by_layer:  # the conv/dense: its output becomes (alpha z + b) / alpha
            alpha, bias = by_layer[layer.name]
            values = [np.asarray(w) for w in layer.weights if w is not layer.alpha]
            if layer.use_bias:
                values[-1] = np.where(alpha == 0, 0.0, bias / np.where(alpha == 0, 1.0, alpha))
            return [np.asarray(v, np.float32) for v in values]
        if layer.name in folds:  # BN(alpha * z') with z' = that output: gamma * alpha, mean / alpha
            alpha, bias = folds[layer.name]
            gamma = np.asarray(layer.gamma, np.float64) if layer.scale else np.ones_like(alpha)
            beta = np.asarray(layer.beta, np.float64) if layer.center else np.zeros_like(alpha)
            mean, var = np.asarray(layer.moving_mean, np.float64), np.asarray(layer.moving_variance, np.float64)
            off = dead[layer.name]  # alpha = 0: the channel was the constant bias; keep its BN output
            safe = np.where(off, 1.0, alpha)
            constant = beta + gamma * (bias - mean) / np.sqrt(var + layer.epsilon)
            values = [np.where(off, 0.0, gamma * alpha), np.where(off, constant, beta),
                      np.where(off, 0.0, mean / safe), var]
            return [np.asarray(v, np.float32) for v in values]
        return layer.get_weights()

    return rebuild(model, edit, weights_of)


def to_larq(model):
    """Rebuilds a Keras 3 functional/Sequential model with Larq's tf_keras layers and
    copies its weights; outputs agree on the same inputs. Needs TF_USE_LEGACY_KERAS=1.

    BiPer becomes `larq_interop.BiPer`; Larq's quantizers (SteSign, ApproxSign, SwishSign,
    MagnitudeAwareSign, SteHeaviside, SteTern, DoReFa, NoOp) and `WeightClip` become
    Larq's own, with the same arguments; initializers, constraints and regularizers are
    carried (Keras built-ins by name). A per-channel `kernel_scale` alpha (BiPer's, which
    `binarize()` adds) is folded into the BatchNormalization that follows it (exact at
    inference: see `fold_kernel_scale`). The package's CIFAR models go too: `HardTanh`
    becomes an `Activation(larq.activations.hard_tanh)`, and the option-A shortcut and
    QuantConv2D's `normalize_inputs` (the authors' training-time normalization) become
    `larq_interop.OptionAShortcut` / `NormalizedQuantConv2D`, tf_keras layers registered
    when the plugin registers (a Larq model holding them saves and loads where
    `biper_keras.larq_interop` is imported). What has no Larq counterpart (an alpha with
    no BatchNormalization after it, `symmetric_padding`, the ProxConnect++ quantizers, a
    custom constraint, an unknown layer type) is refused with a ValueError naming the
    layer, never dropped.
    """
    _check_model(model, "to_larq")  # the argument first (no Larq needed to tell), then Larq
    direction = _ToLarq()  # Larq next: without it, say so before translating
    return direction.translate(fold_kernel_scale(model))


class _ToLarq(_Direction):
    """Keras 3 -> Larq/tf_keras."""

    side = "Larq/tf_keras"

    def __init__(self):
        import keras
        import tensorflow as tf

        from biper_keras import layers as bl
        from biper_keras import quantizers
        from biper_keras.models import blocks

        self.lq, self.classes, self.tf, self.quantizers = import_larq(), register(), tf, quantizers
        lq, classes = self.lq, self.classes
        self.source = _layer_kinds(keras.layers, bl)
        self.target = {**_layer_kinds(tf.keras.layers, lq.layers), "normalized_qconv": classes["NormalizedQuantConv2D"]}
        self.modules = (keras.layers, tf.keras.layers)
        self.inputs, self.model_cls, self.renamed = _keras3_inputs, tf.keras.Model, _RENAMED_KEYS
        self.make_input = lambda shape, name: tf.keras.Input(shape, name=name)
        self.activation = activation_to_larq
        self.twins = {
            # Larq's own hard tanh (clip to [-1, 1]), as Larq models write it.
            blocks.HardTanh: lambda layer, keep: tf.keras.layers.Activation(lq.activations.hard_tanh, **keep),
            blocks.OptionAShortcut: lambda layer, keep: classes["OptionAShortcut"](layer.filters, **keep),
        }

    def quantizer(self, q, layer):
        if q is None:
            return None
        if isinstance(q, self.quantizers.BiPer):
            return self.classes["BiPer"](omega=q.omega, binarize=q.binarize)
        if type(q).__name__ in _SHARED_QUANTIZERS and type(q) is getattr(self.quantizers, type(q).__name__):
            return getattr(self.lq.quantizers, type(q).__name__)(**_quantizer_args(q))
        function = function_quantizer_to_larq(q)
        if function is not None:
            return function
        raise ValueError(f"Layer {layer.name!r}: quantizer {_quantizer_name(q)} has no Larq counterpart.")

    def carry(self, obj, layer, arg):
        keras2 = self.tf.keras
        get = {"initializer": keras2.initializers.get, "constraint": keras2.constraints.get,
               "regularizer": keras2.regularizers.get}[arg.rsplit("_", 1)[1]]
        return _carry(obj, layer, arg, self.side, get, self.lq.constraints.WeightClip)


def from_larq(model):
    """Rebuilds a tf_keras/Larq functional or Sequential model with this package's
    Keras 3 layers and copies its weights; outputs agree on the same inputs. The
    counterpart of `to_larq`: quantizers, `weight_clip`, Keras built-in
    initializers/constraints/regularizers, `trainable`, `groups` and the dtype policy are
    carried; Larq Zoo's function quantizers and activations by their registered names
    (`FUNCTION_QUANTIZERS`); tf_keras's TF-op layers for `x + y`, `x * y`, `x - y`,
    maximum/minimum become merge layers. Anything else (a Python `Lambda`, another TF op,
    an unregistered function) is a ValueError naming the layer, its class and the function.
    A model with one input gets one input tensor, not a one-element list. `to_larq`'s
    `OptionAShortcut` and `NormalizedQuantConv2D`, and an `Activation` of Larq's
    `hard_tanh`, come back as the package's own layers."""
    _check_model(model, "from_larq")
    return _FromLarq().translate(model)


class _FromLarq(_Direction):
    """Larq/tf_keras -> Keras 3."""

    side = "biper_keras/Keras 3"

    def __init__(self):
        import keras
        import tensorflow as tf

        from biper_keras import constraints
        from biper_keras import layers as bl
        from biper_keras import quantizers
        from biper_keras.models import blocks

        self.lq, self.classes, self.quantizers, self.constraints = import_larq(), register(), quantizers, constraints
        lq, classes = self.lq, self.classes
        self.source = _layer_kinds(tf.keras.layers, lq.layers)
        self.target = {**_layer_kinds(keras.layers, bl, bl.BatchNormalization), "normalized_qconv": bl.QuantConv2D}
        self.modules = (tf.keras.layers, keras.layers)
        self.inputs, self.model_cls = _tf_keras_inputs, keras.Model
        self.renamed = {k: {v: o for o, v in r.items()} for k, r in _RENAMED_KEYS.items()}
        self.make_input = lambda shape, name: keras.Input(shape, name=name)
        self.activation = activation_from_larq
        self.twins = {
            classes["OptionAShortcut"]: lambda layer, keep: blocks.OptionAShortcut(layer.filters, **keep),
            # Larq's hard tanh: the package's layer (in training it is written for XLA's speed).
            tf.keras.layers.Activation: lambda layer, keep: (blocks.HardTanh(**keep)
                                                             if layer.activation is lq.activations.hard_tanh else None),
        }

    def quantizer(self, q, layer):
        if q is None:
            return None
        if isinstance(q, self.classes["BiPer"]):
            return self.quantizers.BiPer(omega=q.omega, binarize=q.binarize)
        if type(q).__name__ in _SHARED_QUANTIZERS and type(q) is getattr(self.lq.quantizers, type(q).__name__):
            return getattr(self.quantizers, type(q).__name__)(**_quantizer_args(q))
        mapped = function_quantizer_from_larq(q)
        if mapped is not None:
            return mapped
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}): quantizer "
                         f"{_quantizer_name(q)} has no biper_keras counterpart.")

    def carry(self, obj, layer, arg):
        import keras

        get = {"initializer": keras.initializers.get, "constraint": keras.constraints.get,
               "regularizer": keras.regularizers.get}[arg.rsplit("_", 1)[1]]
        return _carry(obj, layer, arg, self.side, get, self.constraints.WeightClip)
