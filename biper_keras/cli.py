"""`biper-keras` command: a thin shell over the library API.

Errors print one line to stderr and exit non-zero (`--verbose` shows the traceback).
"""

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading

from biper_keras import interrupts, relaunch
from biper_keras._tables import render

__all__ = ["main"]

# Exit codes: 1 a bug (an unexpected error; its traceback goes to a file), 2 bad command
# line (argparse), 3 bad input, 4 a file could not be written or read (unwritable folder,
# full disk), 5 a binary conv did not fuse, 6 LCE and Keras disagree, 128 + signal number
# when interrupted (130 Ctrl-C, 143 SIGTERM).
EXIT_BUG = 1
EXIT_INPUT = 3
EXIT_IO = 4
EXIT_NOT_FUSED = 5
EXIT_PARITY = 6


class CommandError(Exception):
    def __init__(self, message, code=EXIT_INPUT):
        super().__init__(message)
        self.code = code


def _qe_curve(args):
    from biper_keras import analysis

    analysis.plot_qe_curve(args.b, args.output)
    x_star, qe_star = analysis.laplace_qe_max()
    print(f"wrote {args.output}; max QE {qe_star:.6f} at b*omega = {x_star:.6f}")


def _readable_file(path, what="file"):
    """Refuses a missing, empty or unreadable input with the real reason (exit 3 for a
    missing or empty file, 4 for one that cannot be read)."""
    if not os.path.exists(path):
        raise CommandError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise CommandError(f"{path} is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror or err}", EXIT_IO)
    if not head:
        raise CommandError(f"{path} is empty (0 bytes): not a {what}")
    return head


def _load_model(path):
    _readable_file(path, "Keras model")
    from biper_keras.convert import load_model

    try:
        return load_model(path)
    except ValueError as err:  # the library names what is wrong with the file
        raise CommandError(f"could not load a Keras model: {str(err).splitlines()[0]}")
    except Exception as err:  # e.g. a foreign format Keras refuses: one line
        raise CommandError(f"could not load {path} as a Keras model: {str(err).splitlines()[0]}")


def _qe_report(args):
    from biper_keras import analysis

    rows = analysis.qe_report(_load_model(args.model))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"{args.model}: no BiPer-quantized layers", file=sys.stderr)
        return
    print(render(("layer", "omega", "b", "b*omega", "QE analytic", "QE actual", "KS"),
                 [(r["layer"], f"{r['omega']:g}", f"{r['b']:.5f}", f"{r['b_omega']:.4f}", f"{r['analytic_qe']:.6f}",
                   f"{r['empirical_qe']:.6f}", f"{r['ks']:.3f}") for r in rows], right=range(1, 7)))


def _shape(text):
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (expected e.g. 1,224,224,3)")
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (sizes must be > 0)")
    return dims


def _convert(args):
    import warnings

    from biper_keras import convert

    if args.output is not None:
        _check_output(args.output, [args.model] + ([args.data] if args.data else []))
    if not 0.0 <= args.min_top1 <= 1.0:
        raise CommandError(f"--min-top1 must be a fraction between 0 and 1, got {args.min_top1!r}")
    model = _load_model(args.model)
    data = None
    if args.data:
        data = _load_array(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = convert.convert(model, target=args.target, input_shape=args.input_shape,
                                 verify=not args.no_verify, strict=not args.allow_unfused,
                                 data=data, min_top1=args.min_top1,
                                 on_mismatch="report" if args.allow_mismatch else "raise",
                                 weights=args.weights)
    for w in caught:
        if issubclass(w.category, UserWarning) and "no quantized layers" in str(w.message):
            print(f"biper-keras: warning: {w.message}", file=sys.stderr)
    if args.output is not None:
        result.save(args.output)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
        if args.output:
            print(f"wrote {args.output}")


def _check_output(output, inputs):
    """Refuses an output path that is empty, a folder, or one of the inputs (writing
    there would replace the user's model or data)."""
    if not output:
        raise CommandError("-o/--output is empty: name the .tflite file to write")
    if os.path.isdir(output):
        raise CommandError(f"-o/--output {output} is a folder: name the .tflite file to write", EXIT_IO)
    for path in inputs:
        if os.path.exists(output) and os.path.exists(path) and os.path.samefile(output, path):
            raise CommandError(f"-o/--output {output} is the input {path}: writing it would replace it")


def _load_array(path):
    import numpy as np

    _readable_file(path, ".npy array")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise CommandError(f"could not load {path} as a .npy array: {str(err).splitlines()[0]}")
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "fiub":
        raise CommandError(f"{path} must hold one numeric array, got {getattr(data, 'dtype', type(data).__name__)}")
    if data.ndim == 0 or len(data) == 0:
        raise CommandError(f"{path} holds no samples (shape {data.shape})")
    if not np.all(np.isfinite(data)):
        raise CommandError(f"{path} contains NaN or infinite values: a parity check on them means nothing")
    return data


def _ints(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"values must be >= 1, got {text!r}")
    return values


def _benchmark(args):
    from biper_keras import benchmark

    _readable_file(args.model, "model")
    if args.runs < 1 or args.warmup < 0 or not args.timeout > 0:
        raise CommandError(f"--runs must be >= 1, --warmup >= 0 and --timeout > 0; got {args.runs}, "
                           f"{args.warmup}, {args.timeout}")
    is_tflite = args.model.endswith(".tflite")
    if args.device_binary:
        if not is_tflite:
            raise CommandError("--device-binary needs a .tflite file (convert it first)")
        try:
            rows = [benchmark.run_lce_benchmark_model(args.device_binary, args.model, prefix=args.prefix,
                                                      remote_dir=args.remote_dir, threads=n, runs=args.runs,
                                                      timeout=args.timeout)
                    for n in args.threads]
        except RuntimeError as err:  # the copy or the device's command failed: the device's word
            raise CommandError(str(err).splitlines()[0], EXIT_IO)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['threads']} thread(s): inference avg {r['inference_avg_ms']:.2f} ms, "
                      f"init {r['init_ms']:.1f} ms, first {r['first_ms']:.2f} ms  ({r['command']})")
        return
    if is_tflite:
        if args.compare_float:
            raise CommandError("--compare-float needs the .keras model (the float twin is built from it)")
        with open(args.model, "rb") as f:
            flatbuffer = f.read()
        if flatbuffer[4:8] != b"TFL3":
            raise CommandError(f"{args.model} is not a TFLite flatbuffer")
        try:  # before the interpreter, which segfaults on a truncated file
            benchmark.validate_flatbuffer(flatbuffer)
        except ValueError as err:
            raise CommandError(f"{args.model}: {err}")
        rows = benchmark.time_tflite(flatbuffer, threads=args.threads, warmup=args.warmup,
                                     runs=args.runs, progress=not args.json)
        report = {"binary": [dataclasses.asdict(r) for r in rows]}
    else:
        model = _load_model(args.model)
        if args.compare_float:
            report = benchmark.compare_with_float(model, threads=args.threads, warmup=args.warmup,
                                                  runs=args.runs, progress=not args.json)
        else:
            from biper_keras.convert import convert

            rows = benchmark.time_tflite(convert(model, verify=False).flatbuffer, threads=args.threads,
                                         warmup=args.warmup, runs=args.runs, progress=not args.json)
            report = {"binary": [dataclasses.asdict(r) for r in rows]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(render(("model", "option", "threads", "min ms", "median ms", "p90 ms"),
                 [(kind, r["option"], r["threads"], f"{r['min_ms']:.2f}", f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}")
                  for kind in ("binary", "float") for r in report.get(kind, [])], right=range(2, 6)))
    for n, b in report.get("best", {}).items():
        print(f"{n} thread(s): binary {b['binary_ms']:.2f} ms ({b['binary_option']}) vs float "
              f"{b['float_ms']:.2f} ms ({b['float_option']}): binary {_times(b['speedup'], 'faster', 'slower')}")
    if "size_ratio" in report:
        print(f"file size: binary {report['binary_bytes'] / 1e6:.2f} MB, float {report['float_bytes'] / 1e6:.2f} MB "
              f"(binary file {_times(report['size_ratio'], 'smaller', 'larger')})")


def _times(ratio, more, less):
    """"1.56x faster" for ratio 1.56, "1.56x slower" for 0.64 (never "0.64x faster")."""
    return f"{ratio:.2f}x {more}" if ratio >= 1 else f"{1 / ratio:.2f}x {less}"


def _pair(text, cast, name):
    try:
        values = [cast(v) for v in str(text).split(",")]
    except ValueError:
        raise CommandError(f"--{name}: expected a value or two comma-separated values, got {text!r}")
    if len(values) not in (1, 2):
        raise CommandError(f"--{name}: expected one value or two (stage 1, stage 2), got {text!r}")
    return values if len(values) == 2 else values * 2


def _epochs(text):
    epochs = _pair(text, int, "epochs")
    if min(epochs) <= 0:
        raise CommandError(f"--epochs must be > 0, got {text!r}")
    return epochs


def _recipe(args):
    from biper_keras.training import Recipe, Stage

    defaults = Recipe()
    if not Recipe(kernel_quantizer=_none(args.quantizer)).two_stage:  # the rule: one stage, one value
        for name in ("epochs", "lr", "weight_decay", "tau"):
            text = getattr(args, name)
            if text is not None and "," in str(text):
                raise CommandError(f"--{name.replace('_', '-')} {text}: --quantizer {args.quantizer} trains one "
                                   f"stage (only biper has two): give one value")
    # `is not None`: an empty value (an unset shell variable) is an error, not the default.
    epochs = _epochs(args.epochs) if args.epochs is not None else [defaults.stage1.epochs, defaults.stage2.epochs]
    lr = _pair(args.lr, float, "lr") if args.lr is not None else [defaults.stage1.lr, defaults.stage2.lr]
    wd = (_pair(args.weight_decay, float, "weight-decay") if args.weight_decay is not None
          else [defaults.stage1.weight_decay, defaults.stage2.weight_decay])
    tau = _pair(args.tau, float, "tau") if args.tau is not None else [defaults.stage1.tau, defaults.stage2.tau]
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be >= 1 (images per split), got {args.limit}")
    recipe = Recipe(model=args.model, kernel_quantizer=_none(args.quantizer), input_quantizer=_none(args.input_quantizer),
                    omega=args.omega, stage1=Stage(epochs[0], lr[0], wd[0], tau[0]),
                    stage2=Stage(epochs[1], lr[1], wd[1], tau[1]), batch_size=args.batch_size,
                    warmup_epochs=args.warmup_epochs, seed=args.seed, weight_decay_mode=args.weight_decay_mode,
                    precision=args.precision, steps_per_execution=args.steps_per_execution,
                    jit_compile={"auto": "auto", "on": True, "off": False}[args.xla],
                    init_from=getattr(args, "init_from", None))
    return recipe.validate()


def _none(name):
    """A quantizer name from the command line; "none": no quantizer (a float layer)."""
    return None if name == "none" else name


def _datasets(args, source):
    """The data pipelines; the data's warnings (image files skipped when listing) print as
    one line each, before any training starts."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datasets = _make_datasets(args, source)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"biper-keras: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return datasets


def _make_datasets(args, source):
    from biper_keras import data

    settings = data.preprocessing_for(source, args.model)
    if args.no_augment:
        settings["augment"] = None
    if getattr(args, "cache", "memory") == "device":
        if settings["augment"] == "imagenet" or settings["image_size"]:
            raise CommandError(f"--cache device keeps CIFAR-sized images and knows the CIFAR augmentation only; "
                               f"{source or args.model} calls for ImageNet's: drop --cache device")
        if args.download:
            raise CommandError("--cache device reads an image folder or a cifar10.bin blob: drop --download")
        from biper_keras.device_data import device_datasets

        return device_datasets(source, batch_size=args.batch_size, augment=settings["augment"],
                               normalize=settings["normalize"], seed=args.seed, limit_per_split=args.limit)
    return data.image_datasets(source, batch_size=args.batch_size, download=args.download,
                               limit_per_split=args.limit, **settings)


def _after_training(out, stage_folder, do_benchmark):
    """Converts (and times) the final model; a failure here is reported, not fatal:
    the trained model is already saved."""
    import keras

    from biper_keras.convert import convert

    model = keras.models.load_model(stage_folder / "model.keras")
    try:
        result = convert(model, strict=False)
    except Exception as err:  # report and keep the trained model
        print(f"biper-keras: warning: conversion failed: {str(err).splitlines()[0]}", file=sys.stderr)
        return
    result.save(out / "model.tflite")
    (out / "conversion.json").write_text(json.dumps(result.to_dict(), indent=2))
    print(result.table())
    print(f"wrote {out / 'model.tflite'}")
    if do_benchmark:
        from biper_keras.benchmark import best, time_tflite

        rows = time_tflite(result.flatbuffer, threads=(1,), warmup=3, runs=10)
        b = best(rows, 1)
        print(f"LCE interpreter, 1 thread: {b.median_ms:.2f} ms per image ({b.option})")


def _train(args):
    import pathlib

    from biper_keras.training import train

    code = relaunch.on_backend(args.backend, args.argv)
    if code is not None:
        return code
    import keras

    recipe = _recipe(args)
    if recipe.init_from is not None:  # before the data is read
        _readable_file(recipe.init_from, "Keras model")
    if args.deterministic:
        from biper_keras.training import make_deterministic

        make_deterministic(recipe.seed)  # before the data: tf.data seeds depend on it
    data = _datasets(args, args.data)
    print(f"training {recipe.model} ({recipe.kernel_quantizer}) on {data!r}, {keras.backend.backend()} backend")
    stages = {"both": None, "1": (1,), "2": (2,)}[args.stage]
    out = pathlib.Path(args.out)
    summary = train(recipe, data, out, stages=stages, resume=args.resume, distribute=args.distribute,
                    verbose=1 if sys.stdout.isatty() else 2, callbacks=[interrupts.stop_on_signal()])
    print(json.dumps({k: v for k, v in summary.items() if k != "recipe"}, indent=2))
    last = out / ("stage2" if (stages or (2,))[-1] == 2 else "stage1")
    if not args.no_convert:
        _after_training(out, last, False)


def _quickstart(args):
    import pathlib

    from biper_keras.training import quickstart_recipe, train

    epochs = _epochs(args.epochs)
    sample = pathlib.Path(__file__).parent / "sample_data" / "cifar10"
    out = pathlib.Path(args.out)
    recipe = quickstart_recipe(epochs)
    print(f"Training a BiPer ResNet-20 on {sample} (700 CIFAR-10 images shipped with the package),\n"
          f"stage 1 (sine weights, {epochs[0]} epochs) then stage 2 (binary weights, {epochs[1]} epochs), "
          f"the paper's recipe at batch {recipe.batch_size}; output in {out}")
    from biper_keras.data import image_datasets

    data = image_datasets(sample, batch_size=recipe.batch_size)
    summary = train(recipe, data, out, resume=args.resume, verbose=2, callbacks=[interrupts.stop_on_signal()])
    for stage in ("stage1", "stage2"):
        s = summary[stage]
        speed = f"{s['images_per_second']:.0f} images/s" if s.get("images_per_second") else "resumed"
        print(f"{stage}: test accuracy {s['test_accuracy']:.3f} on {data.test_size} images ({speed})")
    _after_training(out, out / "stage2", True)
    print("Next: a short trial on your data, `biper-keras train --data PATH --epochs 12,8 --out runs/x` "
          "(PATH/{train,test}/<class>/*.jpg or a tensorflow-datasets name); without --epochs it runs "
          "the paper's 600+300-epoch schedule: train prints its plan first and an ETA after one epoch.")


def _summary(args):
    from biper_keras.summary import summary

    stats = summary(_load_model(args.model), print_fn=None if args.json else print)
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))


def _qe_sweep(args):
    from biper_keras import analysis

    try:
        omegas = [float(v) for v in args.omegas.split(",")]
    except ValueError:
        raise CommandError(f"--omegas: expected comma-separated numbers, got {args.omegas!r}")
    sweep = analysis.omega_sweep(_recipe(args), _datasets(args, args.data), args.out, omegas,
                                 callbacks=[interrupts.stop_on_signal()])
    print(sweep.table())


def _add_recipe_arguments(parser, recipe):
    s1, s2 = recipe.stage1, recipe.stage2
    parser.add_argument("--model", default=recipe.model, help="a biper_keras.models name")
    parser.add_argument("--data", default=None,
                        help="image folder (root/{train,test}/<class>/*) or a tfds name; default $BIPER_DATA_DIR")
    parser.add_argument("--epochs", help=f"stage 1,stage 2 epochs (default {s1.epochs},{s2.epochs}: the paper's; "
                                         "12,8 for a short trial that visibly learns); one value for a one-stage "
                                         "quantizer")
    parser.add_argument("--lr", help=f"stage 1,stage 2 peak learning rates (default {s1.lr:g},{s2.lr:g})")
    parser.add_argument("--weight-decay", help=f"stage 1,stage 2 (default {s1.weight_decay:g},{s2.weight_decay:g})")
    parser.add_argument("--weight-decay-mode", choices=["coupled", "decoupled"], default=recipe.weight_decay_mode,
                        help="coupled: PyTorch's SGD (wd*w added to the gradient, the authors' meaning); "
                             "decoupled: Keras's SGD(weight_decay=)")
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"], default=recipe.precision,
                        help="Keras dtype policy (mixed: float32 latent weights and binary decisions; for GPUs)")
    parser.add_argument("--tau", help=f"sin^2 regularizer weights (default {s1.tau:g},{s2.tau:g}; 0 disables)")
    parser.add_argument("--input-quantizer", default=recipe.input_quantizer,
                        help="activation binarizer (none: float activations)")
    parser.add_argument("--batch-size", type=int, default=recipe.batch_size, help="global batch")
    parser.add_argument("--steps-per-execution", type=int, default=recipe.steps_per_execution,
                        help="training steps per compiled call (fewer host round trips on a GPU/TPU)")
    parser.add_argument("--xla", choices=["auto", "on", "off"], default="auto",
                        help="XLA-compile the training step (auto: Keras's choice; on TensorFlow/CPU, "
                             "stages of 25,600 samples or more)")
    parser.add_argument("--warmup-epochs", type=int, default=recipe.warmup_epochs,
                        help="learning-rate warm-up (at most half a stage)")
    parser.add_argument("--seed", type=int, default=recipe.seed, help="weights, shuffling, augmentation")
    parser.add_argument("--limit", type=int, help="use only the first N images of each split")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--cache", choices=["memory", "device"], default="memory",
                        help="decoded images in host memory (tf.data) or uint8 on the accelerator "
                             "(biper_keras.device_data; CIFAR-sized images)")
    parser.add_argument("--download", action="store_true", help="let tensorflow-datasets download the data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from the last complete epoch in --out")


def _exit_code(err):
    from biper_keras.convert import ConversionError, ParityError

    if isinstance(err, CommandError):
        return err.code
    if isinstance(err, ParityError):
        return EXIT_PARITY
    if isinstance(err, ConversionError):
        return EXIT_NOT_FUSED
    if isinstance(err, OSError):
        return EXIT_IO
    return EXIT_INPUT


EPILOG = ("exit codes: 0 done, 1 a bug (traceback saved to a file), 2 bad command line, 3 bad input, "
          "4 a file could not be read or written, "
          "5 a binary conv did not fuse, 6 LCE and Keras disagree, 130 Ctrl-C, 143 SIGTERM")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):  # no "(default: None)" noise
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its usage block would make two or more lines)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(**kwargs)

    def error(self, message):
        self.exit(2, f"biper-keras: error: {self.prog.partition(' ')[2] or 'usage'}: {message} (see --help)\n")


def _default(function, name):
    import inspect

    return inspect.signature(function).parameters[name].default


def build_parser():
    from biper_keras import __version__
    from biper_keras.training import Recipe

    parser = _Parser(prog="biper-keras", description="Binary networks with BiPer for Keras 3.")
    parser.add_argument("--version", action="version", version=f"biper-keras {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    recipe = Recipe()  # the defaults the help shows
    _add_convert(commands)
    _add_train(commands, recipe)
    _add_quickstart(commands)
    _add_benchmark(commands)
    _add_summary(commands)
    _add_qe(commands, recipe)
    return parser


def _add_convert(commands):
    from biper_keras import convert

    conv = commands.add_parser("convert", help="convert a .keras model to an LCE .tflite, with a report")
    conv.add_argument("model")
    conv.add_argument("-o", "--output", help="where to write the .tflite")
    conv.add_argument("--target", choices=convert.TARGETS, default=_default(convert.convert, "target"),
                      help="LCE target")
    conv.add_argument("--input-shape", type=_shape, help="fix the input shape, e.g. 1,224,224,3")
    conv.add_argument("--data", help=".npy inputs for the parity check (default: random)")
    conv.add_argument("--no-verify", action="store_true", help="skip the parity check")
    conv.add_argument("--allow-unfused", action="store_true",
                      help="convert even if a quantized conv did not become LceBconv2d (exit 5 otherwise)")
    conv.add_argument("--allow-mismatch", action="store_true",
                      help="keep the result even if LCE and Keras disagree (exit 6 otherwise)")
    conv.add_argument("--min-top1", type=float, default=_default(convert.convert, "min_top1"),
                      help="parity: top-1 agreement needed")
    conv.add_argument("--weights", choices=["float", "int8"], default=_default(convert.convert, "weights"),
                      help="int8: store binary weights of float ops (W1A32) as int8, losslessly")
    conv.add_argument("--json", action="store_true", help="print the report as JSON")
    conv.set_defaults(run=_convert)


def _add_train(commands, recipe):
    tr = commands.add_parser("train", help="the two-stage BiPer recipe (or one stage with another binarizer)")
    _add_recipe_arguments(tr, recipe)
    tr.add_argument("--stage", choices=["both", "1", "2"], default="both", help="which stages to run")
    tr.add_argument("--omega", type=float, default=recipe.omega, help="BiPer's omega_0")
    tr.add_argument("--quantizer", default=recipe.kernel_quantizer,
                    help="weight binarizer: biper (two stages), any registered name (one stage), none (float)")
    tr.add_argument("--init-from", help="fine-tune: start from this trained float .keras model of the same --model "
                                        "(trained with --quantizer none --input-quantizer none)")
    tr.add_argument("--no-convert", action="store_true", help="stop at the .keras model")
    tr.add_argument("--backend", choices=["tensorflow", "jax", "torch"])
    tr.add_argument("--deterministic", action="store_true",
                    help="repeatable runs: seeded, deterministic TensorFlow kernels (slower; docs/reliability.md)")
    tr.add_argument("--distribute", choices=["mirrored", "multi-worker", "tpu", "data-parallel"],
                    help="multi-device: mirrored/multi-worker/tpu on TensorFlow, data-parallel on JAX; "
                         "--batch-size is the global batch")
    tr.set_defaults(run=_train)


def _add_quickstart(commands):
    qs = commands.add_parser("quickstart", help="train, convert and time a BiPer ResNet-20 on a shipped CIFAR-10 sample")
    qs.add_argument("--out", default="biper-quickstart")
    qs.add_argument("--epochs", default="12,8", help="stage 1,stage 2 epochs (one value: both)")
    qs.add_argument("--resume", action="store_true")
    qs.set_defaults(run=_quickstart)


def _add_benchmark(commands):
    bench = commands.add_parser("benchmark", help="latency of a .tflite/.keras model on the LCE interpreter or a device")
    bench.add_argument("model", help=".tflite, or .keras (converted first)")
    bench.add_argument("--threads", type=_ints, default=[1, 2], help="e.g. 1,2,4")
    bench.add_argument("--runs", type=int, default=30)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--compare-float", action="store_true", help="also time the float twin (.keras only)")
    bench.add_argument("--device-binary", help="path of lce_benchmark_model (on the device with --prefix)")
    bench.add_argument("--prefix", help='command prefix for a board, e.g. "ssh pi@raspberrypi" or "adb shell"')
    bench.add_argument("--remote-dir", default="/tmp", help="where the model is copied on the device")
    bench.add_argument("--timeout", type=float, default=600,
                       help="seconds the copy and each device run may take (a hung board is an error)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=_benchmark)


def _add_summary(commands):
    summ = commands.add_parser("summary", help="parameters, memory and MACs by precision (like lq.models.summary)")
    summ.add_argument("model")
    summ.add_argument("--json", action="store_true")
    summ.set_defaults(run=_summary)


def _add_qe(commands, recipe):
    qe = commands.add_parser("qe", help="quantization-error tools").add_subparsers(dest="qe_command", required=True)
    curve = qe.add_parser("curve", help="plot QE against omega for Laplace scales b (paper Fig. 3)")
    curve.add_argument("--b", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    curve.add_argument("-o", "--output", default="qe_curve.png")
    curve.set_defaults(run=_qe_curve)
    report = qe.add_parser("report", help="per-layer QE of a saved .keras model")
    report.add_argument("model")
    report.add_argument("--json", action="store_true")
    report.set_defaults(run=_qe_report)
    sweep = qe.add_parser("sweep", help="the omega ablation: train the BiPer recipe once per omega")
    _add_recipe_arguments(sweep, recipe)
    sweep.add_argument("--omegas", default="1,5,10,20,50", help="the omega_0 values to train")
    sweep.set_defaults(run=_qe_sweep, quantizer="biper", omega=recipe.omega)


# The exceptions that mean bad input or a failed read/write, and so get one line and
# their exit code. Library functions raise ValueError (ConversionError and ParityError
# are ValueErrors) for bad values; OSError is a file or a device; TensorFlow's
# InvalidArgumentError and DataLossError are data it could not decode mid-run (e.g. an
# image file). Anything else (TypeError, RuntimeError, KeyError...) is a bug in this
# package: exit 1, its traceback in a file the message names.
_INPUT_ERRORS = (CommandError, ValueError, OSError)
_TF_INPUT_ERRORS = ("InvalidArgumentError", "DataLossError")


def _is_user_facing(err):
    if isinstance(err, _INPUT_ERRORS):
        return True
    return (type(err).__module__.startswith("tensorflow.python.framework.errors")
            and type(err).__name__ in _TF_INPUT_ERRORS)


def _report_bug(err):
    """Writes the traceback of an unexpected error to a file and returns the one line
    that names it."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="biper-keras-error-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write("".join(traceback.format_exception(err)))
    return (f"biper-keras: error: unexpected {type(err).__name__}: {_message(err)} (a bug in biper-keras, "
            f"not your input; the traceback is in {path}: please attach it to a bug report)")


def _interrupted(args, signum):
    message = f"biper-keras: error: interrupted by {signal.Signals(signum).name}"
    if getattr(args, "out", None) and args.command in ("train", "qe", "quickstart"):
        message += f"; complete epochs are saved in {args.out}: rerun the command with --resume to continue"
    print(message, file=sys.stderr)
    return 128 + signum


def main(argv=None):
    """The `biper-keras` command: parses `argv` (default: the process's arguments),
    runs the subcommand and returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = interrupts.install() if in_main_thread else {}
    received = interrupts.received
    try:
        code = args.run(args)
    except KeyboardInterrupt as err:
        if args.verbose:
            raise
        return _interrupted(args, getattr(err, "signum", received[-1] if received else signal.SIGINT))
    except Exception as err:
        if received and not args.verbose:  # the interrupt surfaced as another error
            return _interrupted(args, received[-1])
        if args.verbose:
            raise
        if not _is_user_facing(err):
            print(_report_bug(err), file=sys.stderr)
            return EXIT_BUG
        print(f"biper-keras: error: {_message(err)}", file=sys.stderr)
        return _exit_code(err)
    finally:
        interrupts.restore(previous)
    if received:  # swallowed on the way (see interrupts.received): still an interrupted run
        return _interrupted(args, received[-1])
    return code or 0


def _message(err):
    """The first informative line of an error. TensorFlow's runtime errors start with
    "Graph execution error:" and a node trace; the cause is the line after them."""
    lines = [l.strip() for l in str(err).splitlines() if l.strip()]
    if not lines:
        return type(err).__name__
    if type(err).__module__.startswith("tensorflow") and len(lines) > 1:
        causes = [l for l in lines[1:] if not l.startswith(("Detected at node", "File ", "[[", "Traceback"))]
        if causes:
            return f"{lines[0]} {causes[-1]}"
    return lines[0]


if __name__ == "__main__":
    sys.exit(main())
