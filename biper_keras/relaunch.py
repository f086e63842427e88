"""The `--backend` option: the CLI again, in a child process on another Keras backend."""

__all__ = []  # internal (the CLI's and train()'s machinery): no public API

import os
import signal
import subprocess
import sys

from biper_keras import interrupts


def on_backend(backend, argv):
    """Runs the CLI with `argv` less `--backend` in a child on `backend` when that is not
    this process's Keras backend (the backend is fixed at `import keras`); returns its exit
    code, or None when this process is already on `backend`."""
    import keras

    if backend and backend != keras.backend.backend():
        argv = without_option(argv, "--backend")
        env = {**os.environ, "KERAS_BACKEND": backend}
        # Through the launcher (installed beside the package): the child quiets its
        # TensorFlow import too.
        child = subprocess.Popen([sys.executable, "-m", "biper_keras_launcher", *argv], env=env)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt as err:
                # Ctrl-C reaches the whole process group, SIGTERM only this process: pass
                # it on, and let the child stop at its own pace and report.
                signum = getattr(err, "signum", signal.SIGINT)
                del interrupts.received[:]
                if signum != signal.SIGINT:
                    child.send_signal(signum)
    return None


def without_option(argv, option):
    """`argv` without `option VALUE` / `option=VALUE` (or an abbreviation argparse accepted)."""
    kept, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--":
            return kept + argv[i:]
        key = a.split("=", 1)[0]
        if len(key) > 2 and option.startswith(key):
            skip = "=" not in a
            continue
        kept.append(a)
    return kept
