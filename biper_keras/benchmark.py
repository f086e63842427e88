"""Latency of converted models: on the LCE interpreter here (x86, macOS), and on ARM
boards through LCE's `lce_benchmark_model` binary (TensorFlow only).

    from biper_keras.benchmark import time_tflite, compare_with_float
    rows = time_tflite(open("model.tflite", "rb").read(), threads=(1, 2))
    report = compare_with_float(model, threads=(1, 2))   # binary vs its float twin

LCE's kernel options change x86 latency several-fold (docs/results.md, section 2), so
every option is timed and the fastest reported.
"""

import dataclasses
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

__all__ = [
    "Timing",
    "LCE_OPTIONS",
    "FLOAT_OPTIONS",
    "time_tflite",
    "validate_flatbuffer",
    "best",
    "convert_float",
    "compare_with_float",
    "parse_benchmark_model_output",
    "run_lce_benchmark_model",
]

LCE_OPTIONS = {
    "default": {},
    "indirect_bgemm": {"use_indirect_bgemm": True},
    "indirect_bgemm+xnnpack": {"use_indirect_bgemm": True, "use_xnnpack": True},
}
FLOAT_OPTIONS = {"default": {}, "xnnpack": {"use_xnnpack": True}}


@dataclasses.dataclass
class Timing:
    """One latency measurement of a flatbuffer on the LCE interpreter: the interpreter
    `option` (e.g. "default", "xnnpack"), the thread count, the number of timed runs and
    their minimum, median and 90th-percentile milliseconds."""

    option: str
    threads: int
    runs: int
    min_ms: float
    median_ms: float
    p90_ms: float


def _progress(message, enabled):
    if enabled:
        print(message, file=sys.stderr, flush=True)


_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 11: 16, 16: 2}  # TensorType -> bytes


def validate_flatbuffer(flatbuffer):
    """Raises ValueError unless `flatbuffer` is a complete, self-consistent TFLite model.

    The interpreter trusts the file: a truncated or garbage body makes it read out of
    bounds (a segmentation fault, not an exception). Here every table is unpacked in
    Python, where a read past the end raises, then every index (tensors, buffers,
    operator codes) and every constant's byte count is checked against what it refers to.
    """
    from larq_compute_engine.mlir.python import tflite_schema as schema

    buf = bytes(flatbuffer)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no 'TFL3' identifier at byte 4)")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as err:  # struct.error, IndexError, ValueError... from reading past the end
        raise ValueError(f"truncated or corrupt TFLite flatbuffer ({len(buf)} bytes: "
                         f"{type(err).__name__}: {err})") from None

    def bad(what):
        raise ValueError(f"corrupt TFLite flatbuffer ({len(buf)} bytes): {what}")

    buffers, codes = model.buffers or [], model.operatorCodes or []
    for i, b in enumerate(buffers):
        if b.offset > 1 and b.offset + b.size > len(buf):  # constants stored after the flatbuffer
            bad(f"buffer {i} ends at byte {b.offset + b.size}")
    if not model.subgraphs:
        bad("no subgraph")
    for g in model.subgraphs:
        tensors = g.tensors or []
        for t in tensors:
            if not 0 <= t.buffer < max(len(buffers), 1):
                bad(f"tensor {t.name!r} refers to buffer {t.buffer} of {len(buffers)}")
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            if any(d < 0 for d in shape):
                bad(f"tensor {t.name!r} has shape {shape}")
            data = buffers[t.buffer].data if buffers else None
            if data is not None and len(data) and t.type in _TYPE_BYTES and t.sparsity is None:
                if len(data) != int(np.prod(shape)) * _TYPE_BYTES[t.type]:
                    bad(f"constant {t.name!r} has {len(data)} bytes for shape {shape}")
        ops = g.operators or []
        indices = [*(g.inputs if g.inputs is not None else []), *(g.outputs if g.outputs is not None else [])]
        for op in ops:
            if not 0 <= op.opcodeIndex < len(codes):
                bad(f"an operator uses code {op.opcodeIndex} of {len(codes)}")
            indices += [*(op.inputs if op.inputs is not None else []), *(op.outputs if op.outputs is not None else [])]
        if any(not -1 <= int(i) < len(tensors) for i in indices):
            bad(f"a tensor index is outside the {len(tensors)} tensors")


# TFLite's C++ runtime writes this to file descriptor 2 whenever it applies XNNPACK: a
# notice, not a problem, that would otherwise land in the middle of a report.
_XNNPACK_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def _without_delegate_notice(create):
    """`create()`, with TFLite's XNNPACK notice dropped from what it writes to fd 2 (any
    other line is passed on)."""
    from biper_keras.convert.interpreter import _stderr_to

    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            with _stderr_to(log):
                return create()
        finally:
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines()
            rest = [line for line in lines if line.strip() != _XNNPACK_NOTICE]
            if rest:
                sys.stderr.write("\n".join(rest) + "\n")


def time_tflite(flatbuffer, *, threads=(1, 2), options=None, warmup=5, runs=30, progress=False):
    """Times `flatbuffer` on the LCE interpreter for every option and thread count.

    Returns a list of `Timing` (one per option x threads), in milliseconds per
    single-image inference.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    options = LCE_OPTIONS if options is None else options
    if runs < 1 or warmup < 0:
        raise ValueError(f"`runs` must be >= 1 and `warmup` >= 0. Received: runs={runs}, warmup={warmup}.")
    validate_flatbuffer(flatbuffer)
    rows = []
    combos = [(name, n) for name in options for n in threads]
    for i, (name, n) in enumerate(combos, 1):
        _progress(f"[{i}/{len(combos)}] {name}, {n} thread(s)", progress)
        interpreter = _without_delegate_notice(lambda: Interpreter(flatbuffer, num_threads=n, **options[name]))
        x = np.random.default_rng(0).normal(size=interpreter.input_shapes[0]).astype(np.float32)
        for _ in range(warmup):
            interpreter.predict(x)
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            interpreter.predict(x)
            samples.append((time.perf_counter() - start) * 1e3)
        rows.append(Timing(name, n, runs, min(samples), statistics.median(samples),
                           float(np.percentile(samples, 90))))
    return rows


def best(rows, threads):
    """The fastest (lowest median) timing at `threads`."""
    return min((r for r in rows if r.threads == threads), key=lambda r: r.median_ms)


def convert_float(model):
    """A float TFLite flatbuffer of a Keras 3 model (standard TFLite converter)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_model_dir:
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir).convert()


def compare_with_float(model, *, threads=(1, 2), warmup=5, runs=30, progress=False, binary=None):
    """Binary model vs its float twin, timed in the same run with every option.

    Returns a dict: sizes, all timings, and per thread count the best binary and float
    medians and the speed-up (float / binary).
    """
    from biper_keras.convert import convert

    if binary is None:
        binary = convert(model, verify=False).flatbuffer
    from biper_keras.binarize import float_twin

    flt = convert_float(float_twin(model))
    binary_rows = time_tflite(binary, threads=threads, warmup=warmup, runs=runs, progress=progress)
    float_rows = time_tflite(flt, threads=threads, options=FLOAT_OPTIONS, warmup=warmup, runs=runs,
                             progress=progress)
    summary = {}
    for n in threads:
        b, f = best(binary_rows, n), best(float_rows, n)
        summary[n] = {"binary_option": b.option, "binary_ms": b.median_ms, "float_option": f.option,
                      "float_ms": f.median_ms, "speedup": f.median_ms / b.median_ms}
    return {
        "binary_bytes": len(binary),
        "float_bytes": len(flt),
        "size_ratio": len(flt) / len(binary),
        "binary": [dataclasses.asdict(r) for r in binary_rows],
        "float": [dataclasses.asdict(r) for r in float_rows],
        "best": summary,
    }


# --- ARM boards: LCE's lce_benchmark_model --------------------------------------------

_TIMINGS = re.compile(
    r"Inference timings in us: Init: (?P<init>[\d.e+]+), First inference: (?P<first>[\d.e+]+), "
    r"Warmup \(avg\): (?P<warmup>[\d.e+]+), Inference \(avg\): (?P<avg>[\d.e+]+)"
)
_COUNT = re.compile(
    r"count=(?P<count>\d+) first=(?P<first>[\d.e+]+) curr=[\d.e+]+ min=(?P<min>[\d.e+]+) "
    r"max=(?P<max>[\d.e+]+) avg=(?P<avg>[\d.e+]+) std=(?P<std>[\d.e+]+)"
)


def parse_benchmark_model_output(text):
    """Parses TFLite/LCE `benchmark_model` output into milliseconds.

    Returns a dict with init_ms, first_ms, warmup_avg_ms, inference_avg_ms, and, from
    the last `count=` line (the timed runs), runs, min_ms, max_ms, std_ms. Raises
    ValueError when the output has no timing summary (e.g. the binary failed).
    """
    match = None
    for match in _TIMINGS.finditer(text):
        pass
    if match is None:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise ValueError(f"no 'Inference timings' line in benchmark output (last lines: {tail!r})")
    result = {
        "init_ms": float(match["init"]) / 1e3,
        "first_ms": float(match["first"]) / 1e3,
        "warmup_avg_ms": float(match["warmup"]) / 1e3,
        "inference_avg_ms": float(match["avg"]) / 1e3,
    }
    counts = list(_COUNT.finditer(text))
    if counts:
        last = counts[-1]
        result.update(runs=int(last["count"]), min_ms=float(last["min"]) / 1e3,
                      max_ms=float(last["max"]) / 1e3, std_ms=float(last["std"]) / 1e3)
        median = re.search(r"median=([\d.e+]+)", text[last.start():].splitlines()[0])
        if median:  # newer benchmark_model versions add p5/median/p95
            result["median_ms"] = float(median.group(1)) / 1e3
    return result


def _push_command(prefix, local, remote):
    """How to copy `local` to the device that `prefix` runs commands on."""
    if prefix[0] == "ssh":
        return ["scp", *prefix[1:-1], local, f"{prefix[-1]}:{remote}"]
    if prefix[:2] == ["adb", "shell"]:
        return ["adb", "push", local, remote]
    raise ValueError(
        f"Don't know how to copy the model for prefix {shlex.join(prefix)!r}: use 'ssh [opts] "
        "user@host' or 'adb shell', or copy it yourself and pass remote_model."
    )


def _run(command, timeout, what):
    """Runs `command` (capturing its output) in its own process group, so that a hung
    device command and whatever it started (a shell, ssh) are killed at `timeout`, which
    becomes a one-line `TimeoutError` instead of a traceback."""
    import signal

    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException as err:  # the timeout, or Ctrl-C (which the new session does not get)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(err, subprocess.TimeoutExpired):
            raise TimeoutError(f"{what} did not finish within {timeout:g} s ({shlex.join(command)}): "
                               "is the device reachable and responding?") from None
        raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def run_lce_benchmark_model(binary, model_path, *, prefix=None, remote_dir="/tmp", remote_model=None,
                            threads=1, runs=50, extra_args=(), timeout=600):
    """Runs LCE's `lce_benchmark_model` here or on a board, and parses its output.

    Args:
        binary: path of `lce_benchmark_model` (on the device when `prefix` is given).
        model_path: local `.tflite` file.
        prefix: command prefix that runs a command on the device, e.g. "ssh pi@raspberrypi"
            or "adb shell" (a string or a list); None runs locally.
        remote_dir: where the model is pushed on the device.
        remote_model: skip the push and use this path on the device.
        timeout: seconds each step (copy, run) may take; past it, `TimeoutError`.
    """
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"Argument `timeout` must be a number of seconds > 0. Received: timeout={timeout!r}.")
    if not os.path.isfile(model_path):
        raise ValueError(f"no such model file: {model_path}")
    prefix = shlex.split(prefix) if isinstance(prefix, str) else list(prefix or [])
    graph = model_path
    if prefix:
        graph = remote_model or f"{remote_dir.rstrip('/')}/{os.path.basename(model_path)}"
        if remote_model is None:
            pushed = _run(_push_command(prefix, model_path, graph), timeout, "copying the model to the device")
            if pushed.returncode != 0:
                raise RuntimeError(f"copying the model to the device failed: {pushed.stderr.strip()[-500:]}")
    command = [*prefix, binary, f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={runs}", *extra_args]
    done = _run(command, timeout, "lce_benchmark_model")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited with {done.returncode}: {output.strip()[-500:]}")
    return {"command": shlex.join(command), "threads": threads, **parse_benchmark_model_output(output)}
