"""The process that runs LCE's TensorFlow-to-TFLite converter for
`biper_keras.convert.flatbuffer` (run as a script: it imports LCE, not this package).

A native crash of the converter (SIGSEGV, an abort from an uncaught C++ exception)
ends this process, never the user's. It converts one request per line on stdin and
answers each with one JSON line on the original stdout:

    request:  {"graph": PATH, "inputs": [...], "types": [...], "shapes": [...],
               "outputs": [...], "target": "arm", "output": PATH, "log": PATH}
    answer:   {"ok": true}  or  {"error": TYPE, "message": TEXT}

While it converts, file descriptors 1 and 2 point at the request's "log" file, so what
the converter says (its last words, if it dies) is there for the parent to read.
"""

import json
import os
import sys


def load_converter():
    """LCE's GraphDef converter, through the package's compatibility module (loaded by
    path: importing the package would import Keras, which this process does not need)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_compat.py")
    spec = importlib.util.spec_from_file_location("biper_keras_compat", path)
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    return compat.convert_graphdef_to_tflite_flatbuffer


def _convert(converter, request):
    with open(request["graph"], "rb") as f:
        graph_def = f.read()
    flatbuffer = converter(graph_def, request["inputs"], request["types"], request["shapes"], request["outputs"],
                           False, request["target"], None)  # False, None: no int8 quantization of activations
    with open(request["output"], "wb") as f:
        f.write(flatbuffer)


def _redirected(path, fds=(1, 2)):
    """Points `fds` at `path`; returns the saved descriptors for `_restore`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for fd in fds:
        os.dup2(target, fd)
    os.close(target)
    return list(zip(fds, saved))


def _restore(saved):
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, copy in saved:
        os.dup2(copy, fd)
        os.close(copy)


def main():
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # nothing but answers on the answer channel
    try:
        converter = load_converter()
    except Exception as err:  # e.g. LCE not installed: every request gets the reason
        converter, failure = None, {"error": type(err).__name__, "message": str(err)}
    for line in sys.stdin:
        request = json.loads(line)
        if converter is None:
            answer = failure
        else:
            saved = _redirected(request["log"])
            try:
                _convert(converter, request)
                answer = {"ok": True}
            except Exception as err:
                answer = {"error": type(err).__name__, "message": str(err)}
            finally:
                _restore(saved)
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
