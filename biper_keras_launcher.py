"""Entry point of the `biper-keras` command, kept outside the `biper_keras` package.

`import biper_keras` imports Keras, and Keras on the TensorFlow backend imports TensorFlow,
which writes its start-up lines (oneDNN, CUDA drivers, cpu_feature_guard) straight to file
descriptor 2 before its logging is set up: `TF_CPP_MIN_LOG_LEVEL` alone does not silence
them (docs/stack-notes.md). This module sets the variable and points fd 2 at /dev/null only
while the package is imported, unless the user asked for the logs (`--verbose`, or the
variable already set). On the JAX and torch backends TensorFlow is imported later (tf.data,
LCE's interpreter), so fd 2 is also pointed at /dev/null while TensorFlow itself is
imported, wherever that happens. A Ctrl-C during that import (seconds) is the CLI's usual
one line and exit 130, not a traceback.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import sys

_QUIET = "_BIPER_KERAS_QUIET_TF"


def _options(argv):
    """`argv` before a `--` (what follows it is not the CLI's)."""
    return argv[: argv.index("--")] if "--" in argv else argv


def _wants_logs(argv):
    options = _options(argv)
    # argparse accepts an unambiguous abbreviation ("--verb"; "--ve" could be --version).
    verbose = any(len(a) > 4 and "--verbose".startswith(a) for a in options)
    # _QUIET marks a variable this module set (in a parent CLI): the user did not ask.
    return verbose or ("TF_CPP_MIN_LOG_LEVEL" in os.environ and _QUIET not in os.environ)


@contextlib.contextmanager
def _fd2_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders would, and runs its import (where the
    start-up lines are written) with fd 2 at /dev/null. It leaves `sys.meta_path` once
    TensorFlow is imported (a mere `find_spec("tensorflow")` imports nothing)."""

    _finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self._finding:
            return None
        self._finding = True  # the other finders' answer, not this one's again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module):
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            with _fd2_to_devnull():
                exec_module(module)

        spec.loader.exec_module = quiet_exec_module  # this spec's own loader object
        return spec


def quiet_import(argv):
    """Imports and returns `biper_keras.cli`, silencing TensorFlow's start-up unless
    `argv` asks for logs. The variable stays set, so the processes the CLI starts inherit
    it (and import through this module too)."""
    if _wants_logs(argv):
        import biper_keras.cli as cli

        return cli
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ[_QUIET] = "1"
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    with _fd2_to_devnull():  # an import error's traceback prints after the restore
        import biper_keras.cli as cli
    return cli


def _needs_no_backend(argv):
    """Help, the version and `qe curve` (NumPy) compute nothing on a Keras backend."""
    options = _options(argv)
    words = [a for a in options if not a.startswith("-")]
    return (not options or "--version" in options or "-h" in options or "--help" in options
            or words[:2] == ["qe", "curve"])


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if _needs_no_backend(argv) and "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("jax"):
        # `import biper_keras` imports Keras, which imports its backend: JAX loads in a
        # third of TensorFlow's time (1.5 s vs 3.9 s measured here), and the output is the same.
        os.environ["KERAS_BACKEND"] = "jax"
    try:
        cli = quiet_import(argv)
    except KeyboardInterrupt:
        print("biper-keras: error: interrupted by SIGINT", file=sys.stderr)
        return 130
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
