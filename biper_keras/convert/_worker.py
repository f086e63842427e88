"""Converts a model that lives on the JAX or torch backend in a TensorFlow-backend child
process (`.keras` files load across backends).

The parent writes the model to a temporary `.keras` file and a JSON request beside it,
and runs `python -m biper_keras.convert._worker REQUEST`; the child writes the flatbuffer
and a JSON response: the result's `to_dict()`, or the error's type and message, and in
both cases the warnings raised on the way. The parent raises the same error type and
re-issues the warnings, so `except ParityError` works the same on every backend.
"""

import builtins
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np


def convert_in_subprocess(model, **options):
    """`convert(model, **options)` in a TensorFlow-backend child; returns a `ConversionResult`."""
    with tempfile.TemporaryDirectory() as tmp:
        request = {
            "model": os.path.join(tmp, "model.keras"),
            "output": os.path.join(tmp, "model.tflite"),
            "response": os.path.join(tmp, "response.json"),
            "data": None,
            "options": {k: v for k, v in options.items() if k != "data"},
        }
        model.save(request["model"])
        if options.get("data") is not None:
            request["data"] = os.path.join(tmp, "data.npy")
            np.save(request["data"], np.asarray(options["data"], dtype=np.float32))
        request_path = os.path.join(tmp, "request.json")
        with open(request_path, "w") as f:
            json.dump(request, f)
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        # The child must import this very package, wherever it was imported from.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        done = subprocess.run([sys.executable, "-m", "biper_keras.convert._worker", request_path], env=env,
                              capture_output=True, text=True)
        return _result_of(done, request)


def _result_of(done, request):
    from .results import ConversionError, ConversionResult

    try:
        with open(request["response"]) as f:
            response = json.load(f)
    except (OSError, ValueError):
        # The child died before it could answer (a crash in TensorFlow, a missing package).
        tail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        raise ConversionError(f"the TensorFlow conversion process exited with code "
                              f"{done.returncode} without a result: {tail}") from None
    for w in response["warnings"]:
        warnings.warn(w["message"], _warning_class(w["category"]), stacklevel=4)
    if "error" in response:
        raise _error(response["error"]["type"], response["error"]["message"])
    with open(request["output"], "rb") as f:
        return ConversionResult.from_dict(response["result"], f.read())


def _error(type_name, message):
    """The exception the child raised, as the same type where this side knows it."""
    from . import results

    known = getattr(results, type_name, None) or getattr(builtins, type_name, None)
    if isinstance(known, type) and issubclass(known, Exception):
        try:
            return known(message)
        except TypeError:  # e.g. UnicodeDecodeError takes five arguments
            pass
    return results.ConversionError(f"{type_name}: {message}")


def _warning_class(name):
    known = getattr(builtins, name, None)
    return known if isinstance(known, type) and issubclass(known, Warning) else UserWarning


def _respond(request):
    from biper_keras.convert import convert
    from biper_keras.convert.loading import load_model

    response = {"warnings": []}
    try:
        options = dict(request["options"])
        if request["data"] is not None:
            options["data"] = np.load(request["data"])
        # Warnings of the save/load round trip are not the caller's: only convert()'s go back.
        model = load_model(request["model"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = convert(model, **options)
            finally:
                response["warnings"] = [{"category": w.category.__name__, "message": str(w.message)}
                                        for w in caught]
        with open(request["output"], "wb") as f:
            f.write(result.flatbuffer)
        response["result"] = result.to_dict()
    except Exception as err:
        response["error"] = {"type": type(err).__name__, "message": str(err)}
    return response


def main(argv=None):
    (request_path,) = sys.argv[1:] if argv is None else argv
    with open(request_path) as f:
        request = json.load(f)
    response = _respond(request)
    with open(request["response"], "w") as f:
        json.dump(response, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
