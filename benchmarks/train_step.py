"""Training-step time of ResNet-20 (CIFAR, 32x32) with BiPer layers vs its float twin,
per Keras backend, variants interleaved in one process per backend. Larq's
QuantConv2D(ste_sign) ResNet-20 (tf_keras) is interleaved in the TensorFlow process
(tf_keras and Keras 3 share it under TF_USE_LEGACY_KERAS=1); a plain PyTorch ResNet-20
with the authors' stage-2 BiPer layer (written here from the paper) runs in its own.
Our models are compiled as `training.train()` compiles a full run (XLA on TensorFlow/CPU
and JAX, `Recipe.jit_compile="auto"`); on TensorFlow the same two models without XLA
(what a plain `model.compile()` gives on a CPU) and Larq's step compiled by XLA are timed
too. Larq's own row is op by op, as tf_keras runs it by default.

    python benchmarks/train_step.py                      # TF, JAX, torch, Larq, PyTorch ref.
    python benchmarks/train_step.py --quick              # a smoke run
    python benchmarks/train_step.py --backends tensorflow --rounds 5 --out results.json

Prints a Markdown table of median ms/step and the ratios; `--out` also writes the raw
numbers as JSON and a Markdown table next to it. Timings on shared machines are noisy:
compare ratios measured in one process rather than absolute times.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def ablation_variants(get_model):
    """The step with one part of the binary conv taken away at a time: what each costs."""
    return {
        "no_input_binarizer": get_model("resnet20", input_quantizer=None),
        "no_kernel_binarizer": get_model("resnet20", kernel_quantizer=None),
        "zero_padding": get_model("resnet20", pad_values=0.0),
        "no_kernel_scale": get_model("resnet20", kernel_scale=None),
        # The authors' per-sample activation normalization (on by default) taken away.
        "no_input_normalization": get_model("resnet20", normalize_inputs=False),
    }


# One binary conv built up a part at a time (`--parts`): each row adds one part to the
# row before it; the last is the default binary conv of get_model("resnet20").
PARTS = [
    ("float Conv2D", None),
    ("QuantConv2D, no quantizer", dict(padding="same", use_bias=False)),
    ("+ pad with +1", dict(pad_values=1.0)),
    ("+ input binarizer (approx_sign)", dict(input_quantizer="approx_sign")),
    ("+ per-sample normalization", dict(normalize_inputs=True)),
    ("+ kernel binarizer (BiPer)", dict(kernel_quantizer="biper")),
    ("+ kernel scale alpha", dict(kernel_scale="channel")),
]


def _as_train_compiles():
    """The `jit_compile` train() uses for stage 2 of the paper's recipe on CIFAR-10's
    50,000 images (TensorFlow/CPU: XLA; JAX: Keras's auto, XLA; torch: none)."""
    from biper_keras.training import Recipe, resolve_jit_compile

    return resolve_jit_compile(Recipe().jit_compile, samples=50_000 * Recipe().stage2.epochs)


def parts_worker(backend, batch, rounds, steps, warmup, shapes=((32, 16), (16, 32), (8, 64))):
    """ms per training step of one 3x3 conv at each ResNet-20 stage's shape (batch norm
    before it, so that the conv's input gradient is computed as in the network), built
    up part by part (PARTS), compiled as train() compiles a full run; interleaved."""
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    from biper_keras.layers import QuantConv2D
    jit = _as_train_compiles()
    rng = np.random.default_rng(0)
    variants = {}
    for size, channels in shapes:
        x = rng.normal(size=(batch, size, size, channels)).astype("float32")
        y = np.zeros((batch, size, size, channels), "float32")
        config = {}
        for name, part in PARTS:
            if part is None:
                conv = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)
            else:
                config.update(part)
                conv = QuantConv2D(channels, 3, **config)
            model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.BatchNormalization(), conv])
            model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse", jit_compile=jit)
            variants[f"{size}x{size}x{channels}: {name}"] = (lambda m, x, y: lambda: m.train_on_batch(x, y))(model, x, y)
    return _timed(variants, rounds, steps, warmup)


def _timed(variants, rounds, steps, warmup):
    """Median ms per call of each variant, the variants interleaved round by round."""
    import numpy as np

    for step in variants.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                result = step()
            np.asarray(result)  # wait for the last step
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(t) for name, t in times.items()} | {"raw_ms": times}


def parts_ratios(results):
    """Per backend: the default binary conv's time over the float conv's, summed over
    the shapes, rounded as the report shows it."""
    found = {}
    for backend, r in results.items():
        shapes = {k.split(":")[0] for k in r if k != "raw_ms"}
        full = sum(r[f"{s}: {PARTS[-1][0]}"] for s in shapes) / sum(r[f"{s}: {PARTS[0][0]}"] for s in shapes)
        found[backend] = {"binary_conv/float_conv": round(full, 2)}
    return found


def parts_report(results, args):
    lines = [f"One 3x3 conv (after a batch norm), batch {args.batch}, median of {args.rounds} rounds x "
             f"{args.steps} training steps; each row adds one part to the row above", ""]
    for backend, r in results.items():
        names = [k for k in r if k != "raw_ms"]
        shapes = sorted({k.split(":")[0] for k in names}, key=lambda s: -int(s.split("x")[0]))
        lines += [f"{backend}:", "", "| part | " + " | ".join(f"{s} ms (added)" for s in shapes) + " |",
                  "|---|" + "---|" * len(shapes)]
        for i, (part, _) in enumerate(PARTS):
            cells = []
            for shape in shapes:
                now = r[f"{shape}: {part}"]
                added = "" if i == 0 else f" ({now - r[f'{shape}: {PARTS[i - 1][0]}']:+.1f})"
                cells.append(f"{now:.1f}{added}")
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
        full = parts_ratios({backend: r})[backend]["binary_conv/float_conv"]
        lines += ["", f"Binary conv / float conv, summed over the shapes: {full:.2f}", ""]
    return "\n".join(lines) + "\n"


def worker(backend, batch, rounds, steps, warmup, deterministic=False, ablate=False, larq=False, quick=False):
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    from biper_keras.models import get_model
    from biper_keras.training import make_deterministic

    assert keras.backend.backend() == backend
    if deterministic:
        make_deterministic(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch)
    jit = _as_train_compiles()
    models = {
        "biper": (get_model("resnet20"), jit),
        "float": (get_model("resnet20", kernel_quantizer=None, input_quantizer=None), jit),
    }
    if backend == "tensorflow" and jit is True and not quick:
        # What a plain `model.compile()` gives on TensorFlow/CPU: no XLA.
        models["biper_no_xla"] = (get_model("resnet20"), False)
        models["float_no_xla"] = (get_model("resnet20", kernel_quantizer=None, input_quantizer=None), False)
    if ablate:
        models.update({name: (model, jit) for name, model in ablation_variants(get_model).items()})
    variants = {}
    for name, (model, jit_compile) in models.items():
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        variants[name] = (lambda m: lambda: m.train_on_batch(x, y))(model)
    if larq:
        variants["larq_ste_sign"] = larq_step(x, y)
        if not quick:
            variants["larq_ste_sign_xla"] = larq_step(x, y, jit_compile=True)
    return _timed(variants, rounds, steps, warmup)


def larq_step(images, labels, jit_compile=False):
    """A train step of Larq's QuantConv2D(ste_sign) ResNet-20 on tf_keras, the same
    topology as ours, as a tf.function (tf_keras train_on_batch stalls on a fresh
    iterator every call): op by op as tf_keras runs it (its `compile` has no XLA by
    default), or with `jit_compile=True` compiled by XLA. Needs TF_USE_LEGACY_KERAS=1 set before TensorFlow is
    imported; Keras 3 models live in the same process."""
    import larq as lq
    import tensorflow as tf

    k = tf.keras
    binary = dict(padding="same", pad_values=1.0, use_bias=False, input_quantizer="ste_sign",
                  kernel_quantizer="ste_sign", kernel_constraint="weight_clip")

    def hard_tanh(x):
        return k.layers.Lambda(lambda v: tf.clip_by_value(v, -1.0, 1.0))(x)

    inputs = k.Input((32, 32, 3))
    x = k.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = hard_tanh(k.layers.BatchNormalization(momentum=0.9)(x))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            for conv in range(2):
                strides = 2 if stage > 0 and block == 0 and conv == 0 else 1
                y = k.layers.BatchNormalization(momentum=0.9)(lq.layers.QuantConv2D(filters, 3, strides=strides, **binary)(x))
                shortcut = x
                if strides == 2:
                    pad = (filters - x.shape[-1]) // 2
                    shortcut = k.layers.AveragePooling2D(2)(x)
                    shortcut = k.layers.Lambda(lambda v, p=pad: tf.pad(v, [[0, 0], [0, 0], [0, 0], [p, p]]))(shortcut)
                x = hard_tanh(k.layers.Add()([y, shortcut]))
    outputs = k.layers.Dense(10)(k.layers.GlobalAveragePooling2D()(x))
    model = k.Model(inputs, outputs)
    optimizer = k.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = k.losses.SparseCategoricalCrossentropy(from_logits=True)
    x_batch, y_batch = tf.constant(images), tf.constant(labels)

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y_batch, model(x_batch, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        return loss

    return step


def pytorch_reference_worker(batch, rounds, steps, warmup):
    """The authors' stage-2 BiPer ResNet-20 in plain PyTorch (NCHW, no Keras), from the
    paper's description: weights sign(sin(omega*w)) with the gradient taken through the
    sine (straight through the sign), a per-output-channel scale alpha on the conv
    output, approx-sign activations, zero padding; with and without their per-sample
    activation normalization (divide by sqrt(unbiased var over C, H, W + 1e-5) in
    training). A float
    PyTorch ResNet-20 of the same shape is timed in the same process."""
    import numpy as np
    import torch
    from torch import nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    omega = 20.0

    def approx_sign(x):
        # Forward sign; backward max(0, 2 - 2|x|) (Bi-Real), by the detach trick.
        poly = torch.where(x.abs() < 1, 2 * x - x * x.abs(), torch.sign(x))
        return torch.sign(x).detach() - poly.detach() + poly

    class BiPerConv(nn.Conv2d):
        def __init__(self, cin, cout, stride, normalize):
            super().__init__(cin, cout, 3, stride, 1, bias=False)
            self.alpha = nn.Parameter(torch.rand(cout, 1, 1))
            self.normalize = normalize

        def forward(self, x):
            if self.normalize and self.training:
                x = x / torch.sqrt(x.var(dim=(1, 2, 3), keepdim=True) + 1e-5)
            s = torch.sin(omega * self.weight)
            w = s + (torch.sign(s) - s).detach()
            return F.conv2d(approx_sign(x), w, None, self.stride, self.padding) * self.alpha

    class Shortcut(nn.Module):
        def __init__(self, pad):
            super().__init__()
            self.pad = pad

        def forward(self, x):
            return F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, self.pad, self.pad))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, conv):
            super().__init__()
            self.conv, self.bn = conv(cin, cout, stride), nn.BatchNorm2d(cout, momentum=0.1)
            self.shortcut = Shortcut((cout - cin) // 2) if stride == 2 else nn.Identity()

        def forward(self, x):
            return F.hardtanh(self.bn(self.conv(x)) + self.shortcut(x))

    def resnet20(conv):
        layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.Hardtanh()], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(6):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(Block(cin, cout, stride, conv))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
        return nn.Sequential(*layers)

    variants = {
        "pytorch_biper": resnet20(lambda i, o, s: BiPerConv(i, o, s, normalize=False)),
        "pytorch_biper_normalized": resnet20(lambda i, o, s: BiPerConv(i, o, s, normalize=True)),
        "pytorch_float": resnet20(lambda i, o, s: nn.Conv2d(i, o, 3, s, 1, bias=False)),
    }
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(batch, 3, 32, 32)).astype("float32"))
    y = torch.from_numpy(rng.integers(0, 10, size=batch))
    optimizers = {n: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for n, m in variants.items()}

    def step(name):
        model, opt = variants[name], optimizers[name]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for name, model in variants.items():
        model.train()
        for _ in range(warmup):
            step(name)
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name in variants:
            start = time.perf_counter()
            for _ in range(steps):
                step(name)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(t) for name, t in times.items()} | {"raw_ms": times}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--no-larq", action="store_true", help="skip Larq's tf_keras ResNet-20")
    parser.add_argument("--no-pytorch", action="store_true", help="skip the plain PyTorch reference")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="batch 16, 1 round of 2 steps; without the no-XLA and Larq-with-XLA rows")
    parser.add_argument("--ablate", action="store_true",
                        help="also time the BiPer step without each of its parts (a profile by subtraction)")
    parser.add_argument("--parts", action="store_true",
                        help="instead: one binary conv per ResNet-20 stage, built up a part at a time (a profile by addition)")
    parser.add_argument("--deterministic", action="store_true",
                        help="time our variants with training.make_deterministic (its cost)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--replot", help="only redraw the .png of a JSON written by --out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(open(args.replot).read())["results"], os.path.splitext(args.replot)[0] + ".png")
        return
    if args.quick:
        args.batch, args.rounds, args.steps, args.warmup = 16, 1, 2, 1
    if args.worker == "pytorch":
        print(json.dumps(pytorch_reference_worker(args.batch, args.rounds, args.steps, args.warmup)))
        return
    if args.worker and args.parts:
        print(json.dumps(parts_worker(args.worker, args.batch, args.rounds, args.steps, args.warmup)))
        return
    if args.worker:
        larq = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
        print(json.dumps(worker(args.worker, args.batch, args.rounds, args.steps, args.warmup,
                                args.deterministic, args.ablate, larq, args.quick)))
        return

    results = {}
    load_at_start = round(os.getloadavg()[0], 1)
    workers = args.backends.split(",")
    if args.parts:
        args.no_larq = args.no_pytorch = True
    if not args.no_pytorch:
        workers.append("pytorch")
    for backend in workers:
        cmd = [sys.executable, __file__, "--worker", backend, "--batch", str(args.batch),
               *(["--deterministic"] if args.deterministic else []), *(["--ablate"] if args.ablate else []),
               *(["--quick"] if args.quick else []), *(["--parts"] if args.parts else []),
               "--rounds", str(args.rounds), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_USE_LEGACY_KERAS", None)
        if backend == "tensorflow" and not args.no_larq:
            env["TF_USE_LEGACY_KERAS"] = "1"  # Larq's model joins the TF process, interleaved
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: the {backend} run failed:\n{done.stderr[-2000:]}")
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{backend}: done", file=sys.stderr)

    table = (parts_report if args.parts else report)(results, args)
    print(table)
    if args.out:
        meta = {"batch": args.batch, "rounds": args.rounds, "steps": args.steps, "deterministic": args.deterministic,
                "ablate": args.ablate, "parts": args.parts, "command": " ".join(["python", "benchmarks/train_step.py", *sys.argv[1:]]),
                "load_average_1min_at_start": load_at_start, "load_average_1min_at_end": round(os.getloadavg()[0], 1),
                "date": time.strftime("%Y-%m-%d"), "versions": versions()}
        with open(args.out, "w") as f:
            derived = ({"ratios": parts_ratios(results)} if args.parts else
                       {"ratios": ratios(results), "reference_ratios": reference_ratios(results),
                        "targets": targets(results)})
            json.dump({"meta": meta, "results": results, **derived},
                      f, indent=2)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
            f.write(table + f"\nMeasured {meta['date']}: {meta['versions']}\n")
        if not args.parts:
            plot(results, os.path.splitext(args.out)[0] + ".png")


def plot(results, path):
    """ms/step of every variant, grouped by process (backend), with the float step as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(name, {k: v for k, v in r.items() if k != "raw_ms"}) for name, r in results.items()]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups) + 1, 3.8), sharey=True, squeeze=False)
    for ax, (name, times) in zip(axes[0], groups):
        ax.bar(range(len(times)), list(times.values()), color="tab:blue")
        ax.set_xticks(range(len(times)), [k.replace("_", " ") for k in times], rotation=40, ha="right", fontsize=8)
        if "float" in times:
            ax.axhline(times["float"] * 1.10, color="tab:red", ls=":", label="1.10x float")
            ax.legend(fontsize=8)
        ax.set_title(name)
    axes[0][0].set_ylabel("ms per training step (median)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def paired_ratio(r, num, den):
    """The median over rounds of `num`'s time over `den`'s in the same round. The variants
    of a round run back to back, so a round's ratio cancels how fast the machine was then;
    on this shared 2-core machine a variant's time drifts by up to ~40 % between rounds,
    more than the differences measured (2026-12-03: one BiPer step 563 to 781 ms)."""
    return statistics.median(a / b for a, b in zip(r["raw_ms"][num], r["raw_ms"][den]))


def ratios(results):
    """Each backend's step times over its float twin's, and on TensorFlow over Larq's
    (`paired_ratio`), rounded as the tables show them."""
    found = {}
    for backend, r in results.items():
        if "float" not in r:
            continue
        found[backend] = {f"{k}/float": round(paired_ratio(r, k, "float"), 2)
                          for k in r if k not in ("float", "raw_ms") and not k.endswith("_no_xla")
                          and not k.startswith("larq")}
        if "biper_no_xla" in r:
            found[backend]["biper_no_xla/float_no_xla"] = round(paired_ratio(r, "biper_no_xla", "float_no_xla"), 2)
        for larq in ("larq_ste_sign", "larq_ste_sign_xla"):
            if larq in r:
                found[backend][f"biper/{larq}"] = round(paired_ratio(r, "biper", larq), 2)
    return found


def reference_ratios(results):
    """Our fastest backend's BiPer step over the plain PyTorch reference's (without and
    with the authors' normalization), rounded as the report shows them."""
    ours = {b: r["biper"] for b, r in results.items() if b != "pytorch" and "biper" in r}
    if "pytorch" not in results or not ours:
        return {}
    best, ref = min(ours, key=ours.get), results["pytorch"]
    return {f"{best} biper/pytorch_biper": round(ours[best] / ref["pytorch_biper"], 2),
            f"{best} biper/pytorch_biper_normalized": round(ours[best] / ref["pytorch_biper_normalized"], 2)}


# The targets for the default BiPer ResNet-20 step: (ratio, limit).
TARGETS = {"tensorflow": [("biper/larq_ste_sign", 0.90), ("biper/float", 1.10)],
           "jax": [("biper/float", 1.10)], "torch": [("biper/float", 1.10)]}


def targets(results):
    table = ratios(results)
    return [{"backend": b, "ratio": name, "measured": table[b][name], "limit": limit,
             "met": table[b][name] <= limit}
            for b, wanted in TARGETS.items() if b in table for name, limit in wanted if name in table[b]]


_NOT_ABLATIONS = ("biper", "float", "raw_ms", "biper_no_xla", "float_no_xla", "larq_ste_sign", "larq_ste_sign_xla")


def report(results, args):
    lines = [f"ResNet-20, batch {args.batch}, median of {args.rounds} rounds x {args.steps} steps; "
             "each ratio is the median of the rounds' ratios (the variants of a round run back to back)", "",
             "| backend | BiPer ms/step | float ms/step | BiPer / float |", "|---|---|---|---|"]
    ours = {b: r["biper"] for b, r in results.items() if b != "pytorch"}
    for backend in ours:
        r = results[backend]
        lines.append(f"| {backend} | {r['biper']:.0f} | {r['float']:.0f} | {paired_ratio(r, 'biper', 'float'):.2f} |")
        if "biper_no_xla" in r:
            lines.append(f"| {backend}, no XLA | {r['biper_no_xla']:.0f} | {r['float_no_xla']:.0f} | "
                         f"{paired_ratio(r, 'biper_no_xla', 'float_no_xla'):.2f} |")
    lines.append("")
    for backend in ours:
        extra = [k for k in results[backend] if k not in _NOT_ABLATIONS]
        if extra:
            lines += [f"Where the {backend} BiPer step goes (each part taken away in turn):", "",
                      "| variant | ms/step | / float | saves vs BiPer |", "|---|---|---|---|"]
            r = results[backend]
            for k in extra:
                lines.append(f"| {k} | {r[k]:.0f} | {paired_ratio(r, k, 'float'):.2f} | {r['biper'] - r[k]:+.0f} ms |")
            lines.append("")
    tf_results = results.get("tensorflow", {})
    if "larq_ste_sign" in tf_results:
        larq = tf_results["larq_ste_sign"]
        lines.append(f"Larq QuantConv2D(ste_sign) ResNet-20 on tf_keras, interleaved in the TensorFlow process: "
                     f"{larq:.0f} ms/step; our BiPer on TensorFlow / Larq = "
                     f"{paired_ratio(tf_results, 'biper', 'larq_ste_sign'):.2f}")
        if "larq_ste_sign_xla" in tf_results:
            larq_xla = tf_results["larq_ste_sign_xla"]
            lines.append(f"Larq's step compiled by XLA (not tf_keras's default): {larq_xla:.0f} ms/step; "
                         f"our BiPer / Larq with XLA = {paired_ratio(tf_results, 'biper', 'larq_ste_sign_xla'):.2f}")
    met = targets(results)
    if met:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t['backend']} {t['ratio']} <= {t['limit']:.2f} | {t['measured']:.2f} | "
                  f"{'yes' if t['met'] else 'no'} |" for t in met]
        lines.append("")
    reference = reference_ratios(results)
    if reference:
        ref = results["pytorch"]
        best = min(ours, key=ours.get)
        lines.append(f"PyTorch reference (authors' stage-2 layer): {ref['pytorch_biper']:.0f} ms/step, "
                     f"{ref['pytorch_biper_normalized']:.0f} with per-sample activation normalization, "
                     f"float {ref['pytorch_float']:.0f}; our best ({best}) / PyTorch reference = "
                     f"{reference[f'{best} biper/pytorch_biper']:.2f} "
                     f"({reference[f'{best} biper/pytorch_biper_normalized']:.2f} against the normalized one)")
    return "\n".join(lines) + "\n"


def versions():
    from importlib import metadata

    found = []
    for name in ("tensorflow", "keras", "jax", "torch", "larq", "larq-compute-engine"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


if __name__ == "__main__":
    main()
