"""Step 3 of a conversion: a `FrozenGraph` to a TFLite flatbuffer with LCE's graph
converter, run in a child process.

LCE's converter is native code: on some models it dies (SIGSEGV, or an abort from an
uncaught C++ exception such as "cannot create std::vector larger than max_size()"), and
in-process that would take the user's Python process with it. `biper_keras.convert.
_tflite_child` runs it instead; the child starts on the first conversion (`start()`
starts it early, so its TensorFlow import overlaps the tracing) and serves every later
one. If it dies, the conversion is a `ConversionError` naming the model, the signal and
the converter's last words, with advice where the failure is a known one; the next
conversion starts a new child.
"""

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

from .results import ConversionError

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tflite_child.py")

# (what the converter said, what the user can do about it)
KNOWN_FAILURES = (
    (r"larger than max_size|exceed\w* (the )?2 ?GB|2 ?GB limit|flatbuffer\w* (is )?too large",
     "the model is too large for a TFLite flatbuffer (2 GB at most) or for the converter's buffers: convert "
     "it at a smaller input_shape, or a smaller model (LCE's own convert_keras_model fails on it too)"),
    (r"std::bad_alloc|out of memory|Cannot allocate memory|MemoryError",
     "the converter ran out of memory: free memory, or convert at a smaller input_shape"),
    (r"failed to legalize operation '([\w.]+)'|'([\w.]+)' op is neither a custom op nor a flex op",
     "unsupported op: TFLite has no builtin for TensorFlow op {op}; replace the layer that uses it"),
)


class Converter:
    """One converter child process, started on demand, serving requests one at a time."""

    def __init__(self, command=None):
        self.command = command or [sys.executable, CHILD]
        self._process = None
        self._startup_log = None
        self._lock = threading.Lock()
        self._owner = os.getpid()

    def start(self):
        with self._lock:
            self._started()

    def _started(self):
        if self._owner != os.getpid():  # a forked copy of this object: the pipes are the parent's
            self._process, self._owner = None, os.getpid()
        if self._process is None or self._process.poll() is not None:
            self._startup_log = tempfile.TemporaryFile()
            env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ}
            self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=self._startup_log, env=env, text=True)
        return self._process

    def stop(self):
        with self._lock:
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                process.stdin.close()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def convert(self, frozen, target):
        with self._lock, tempfile.TemporaryDirectory() as tmp:
            paths = {k: os.path.join(tmp, k) for k in ("graph", "output", "log")}
            with open(paths["graph"], "wb") as f:
                f.write(frozen.graph_def)
            request = {**paths, "inputs": frozen.input_names, "types": frozen.input_types,
                       "shapes": frozen.input_shapes, "outputs": frozen.output_names, "target": target}
            process = self._started()
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                line = process.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            log = _read(paths["log"])
            if not line:
                code = process.wait()
                self._process = None
                raise ConversionError(_crash_message(frozen.name, code, log or self._startup_text()))
            answer = json.loads(line)
            if "error" in answer:
                raise ConversionError(_failure_message(frozen.name, answer, log))
            with open(paths["output"], "rb") as f:
                return f.read()

    def _startup_text(self):
        self._startup_log.seek(0)
        return self._startup_log.read().decode(errors="replace")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def last_words(log, lines=2):
    """The converter's last meaningful lines, before LLVM's crash banner ("PLEASE submit
    a bug report", the stack dump: addresses, not the problem)."""
    kept = []
    for line in log.splitlines():
        line = line.strip()
        if line.startswith(("PLEASE submit", "Stack dump")):
            break
        if line:
            kept.append(line)
    return " / ".join(kept[-lines:])


def advice(text):
    """What the user can do about a known converter failure described by `text`, or ""."""
    for pattern, what in KNOWN_FAILURES:
        match = re.search(pattern, text)
        if match:
            op = next((g for g in match.groups() if g), "") if match.groups() else ""
            return what.format(op=op)
    return ""


def _crash_message(name, code, log):
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() \
        else f"exited with code {code}"
    words = last_words(log) or "it said nothing"
    hint = advice(log)
    return (f"LCE's converter crashed on model {name!r} (the converter process {how}; your process is fine): "
            f"{words}" + _sentence(hint))


def _failure_message(name, answer, log):
    message = " ".join(answer["message"].split()) or answer["error"]
    hint = advice(f"{answer['message']}\n{log}")
    return (f"LCE's converter failed on model {name!r}: {answer['error']}: {message}"
            + _sentence(hint))


def _sentence(hint):
    return f". {hint[0].upper()}{hint[1:]}" if hint else ""


_converter = Converter()
atexit.register(lambda: _converter.stop())


def start():
    """Starts the converter process now (a conversion would start it anyway)."""
    _converter.start()


def to_flatbuffer(frozen, target):
    """The flatbuffer (bytes) LCE's converter makes of `frozen` for `target`."""
    return _converter.convert(frozen, target)
