"""One Larq process and processes per Keras backend for the whole test session.

TensorFlow's start-up dominates these checks, so test modules register their scripts
here at import (collection) time, and the first test that needs a process runs every
registered script in it, each with fresh globals; a script's own failure is reported to
the tests that read its output, not to the others.
"""

import os
import subprocess
import sys
import textwrap

SCRIPTS_DIR = os.path.join(os.path.dirname(__file__), "scripts")
LARQ_SCRIPTS = {}  # name -> code run in the TF_USE_LEGACY_KERAS=1 process
BACKEND_SCRIPTS = {}  # name -> (code, backends): run in each of those Keras backends' process
AFTER_LARQ_SCRIPTS = {}  # the same, for scripts that read the Larq process's files

_RUNNER = textwrap.dedent(
    """
    import contextlib, io, json, sys, traceback
    sys.argv = [sys.argv[0], FOLDER]
    for name, code in json.load(open(LISTING)).items():
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, name, "exec"), {"__name__": "__main__"})
            status = "ok"
        except BaseException:
            status = traceback.format_exc()
        print("@@SCRIPT " + json.dumps({"name": name, "status": status, "stdout": out.getvalue()}), flush=True)
    """
)


def script(filename):
    """The code of tests/scripts/`filename` (files, so that ruff reads them too)."""
    with open(os.path.join(SCRIPTS_DIR, filename)) as f:
        return f.read()


def run_python(code, *args, legacy=False, backend=None):
    """`code` in a fresh Python process with the tests on its path; Larq needs
    TF_USE_LEGACY_KERAS=1, another Keras backend its own process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)
    env.pop("KERAS_BACKEND", None)
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    if backend:
        env["KERAS_BACKEND"] = backend
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def run_scripts(scripts, folder, legacy=False, backend=None):
    """Runs `scripts` ({name: code}) in one process, each seeing `folder` as
    `sys.argv[1]`; returns {name: (status, stdout)}, status "ok" or its traceback."""
    import json

    listing = os.path.join(folder, f"scripts-{backend or 'larq'}.json")
    with open(listing, "w") as f:
        json.dump(scripts, f)
    code = _RUNNER.replace("FOLDER", repr(str(folder))).replace("LISTING", repr(listing))
    out = run_python(code, legacy=legacy, backend=backend)
    results = {}
    for line in out.splitlines():
        if line.startswith("@@SCRIPT "):
            entry = json.loads(line[len("@@SCRIPT "):])
            results[entry["name"]] = (entry["status"], entry["stdout"])
    return results


def script_output(results, name):
    """The stdout of script `name`, failing the calling test with its traceback if it failed."""
    assert name in results, f"script {name!r} did not run"
    status, stdout = results[name]
    assert status == "ok", f"{name} failed:\n{status}\n{stdout[-3000:]}"
    return stdout
