"""`biper-keras` command: a thin shell over the library API.

Errors print one line to stderr and exit non-zero (`--verbose` shows the traceback).
"""

import argparse
import json
import os
import sys

EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_UNAVAILABLE = 4
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


def _load_model(path):
    if not os.path.isfile(path):
        raise CommandError(f"no such file: {path}")
    import keras

    import biper_keras  # noqa: F401  (registers the layers and quantizers)

    try:
        return keras.models.load_model(path)
    except Exception as err:  # a corrupt or foreign file: say which, in one line
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
    print(f"{'layer':<24} {'omega':>7} {'b':>9} {'b*omega':>8} {'QE analytic':>11} {'QE actual':>10} {'KS':>6}")
    for r in rows:
        print(f"{r['layer']:<24} {r['omega']:>7g} {r['b']:>9.5f} {r['b_omega']:>8.4f} "
              f"{r['analytic_qe']:>11.6f} {r['empirical_qe']:>10.6f} {r['ks']:>6.3f}")


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

    import numpy as np

    from biper_keras import convert

    model = _load_model(args.model)
    data = None
    if args.data:
        if not os.path.isfile(args.data):
            raise CommandError(f"no such file: {args.data}")
        data = np.load(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = convert.convert(model, target=args.target, input_shape=args.input_shape,
                                 verify=not args.no_verify, strict=not args.allow_unfused,
                                 data=data, min_top1=args.min_top1)
    for w in caught:
        if issubclass(w.category, UserWarning) and "no quantized layers" in str(w.message):
            print(f"biper-keras: warning: {w.message}", file=sys.stderr)
    if args.output:
        result.save(args.output)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
        if args.output:
            print(f"wrote {args.output}")


def _qe_sweep(args):
    raise CommandError(
        "`qe sweep` needs the training recipe (biper_keras.training), which is not in "
        "this version yet",
        code=EXIT_UNAVAILABLE,
    )


def _exit_code(err):
    from biper_keras.convert import ConversionError, ParityError

    if isinstance(err, CommandError):
        return err.code
    if isinstance(err, ParityError):
        return EXIT_PARITY
    if isinstance(err, ConversionError):
        return EXIT_NOT_FUSED
    return EXIT_INPUT


def build_parser():
    from biper_keras import __version__

    parser = argparse.ArgumentParser(prog="biper-keras", description="Binary networks with BiPer for Keras 3.")
    parser.add_argument("--version", action="version", version=f"biper-keras {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    conv = commands.add_parser("convert", help="convert a .keras model to an LCE .tflite, with a report")
    conv.add_argument("model")
    conv.add_argument("-o", "--output", help="where to write the .tflite")
    conv.add_argument("--target", choices=["arm", "xcore"], default="arm")
    conv.add_argument("--input-shape", type=_shape, help="fix the input shape, e.g. 1,224,224,3")
    conv.add_argument("--data", help=".npy inputs for the parity check (default: random)")
    conv.add_argument("--no-verify", action="store_true", help="skip the parity check")
    conv.add_argument("--allow-unfused", action="store_true",
                      help="convert even if a quantized conv did not become LceBconv2d")
    conv.add_argument("--min-top1", type=float, default=0.98, help="parity: top-1 agreement needed")
    conv.add_argument("--json", action="store_true")
    conv.set_defaults(run=_convert)

    qe = commands.add_parser("qe", help="quantization-error tools").add_subparsers(dest="qe_command", required=True)
    curve = qe.add_parser("curve", help="plot QE against omega for Laplace scales b (paper Fig. 3)")
    curve.add_argument("--b", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    curve.add_argument("-o", "--output", default="qe_curve.png")
    curve.set_defaults(run=_qe_curve)
    report = qe.add_parser("report", help="per-layer QE of a saved .keras model")
    report.add_argument("model")
    report.add_argument("--json", action="store_true")
    report.set_defaults(run=_qe_report)
    sweep = qe.add_parser("sweep", help="train at several omega values (needs the training recipe)")
    sweep.set_defaults(run=_qe_sweep)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CommandError, ValueError, TypeError, OSError) as err:
        if args.verbose:
            raise
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"biper-keras: error: {first_line}", file=sys.stderr)
        return _exit_code(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
