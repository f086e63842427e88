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


def _qe_sweep(args):
    raise CommandError(
        "`qe sweep` needs the training recipe (biper_keras.training), which is not in "
        "this version yet",
        code=EXIT_UNAVAILABLE,
    )


def build_parser():
    from biper_keras import __version__

    parser = argparse.ArgumentParser(prog="biper-keras", description="Binary networks with BiPer for Keras 3.")
    parser.add_argument("--version", action="version", version=f"biper-keras {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

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
        print(f"biper-keras: error: {err}", file=sys.stderr)
        return getattr(err, "code", EXIT_INPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
