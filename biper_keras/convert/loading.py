"""Loading a `.keras` file with a message that says what is wrong with it (Keras says
"File not found" for an existing file that is empty, truncated or not a zip archive)."""

import json
import os
import zipfile

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def load_model(path, **kwargs):
    """`keras.models.load_model(path, **kwargs)` with the package's layers registered.

    Raises `FileNotFoundError` when there is no such file, and `ValueError` naming the
    problem when the file exists but is not a loadable `.keras` archive: empty, not a
    zip archive (e.g. an HDF5 file under a .keras name), truncated, missing a member, or
    written by another Keras version whose config this Keras cannot read.
    """
    import keras

    import biper_keras  # noqa: F401  (registers the layers and quantizers)

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `path` must be the path of a .keras file. Received: an object of type "
                        f"{type(path).__name__}" + (" (a model is converted as it is: pass it to `convert`)"
                                                    if hasattr(path, "layers") else "") + ".")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    if not path.endswith(".keras"):
        return keras.models.load_model(path, **kwargs)  # .h5 and others: Keras's own checks
    problem = keras_archive_problem(path)
    if problem:
        raise ValueError(f"{path} {problem}")
    try:
        return keras.models.load_model(path, **kwargs)
    except Exception as err:
        written_by = _keras_version(path)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if written_by and written_by != keras.__version__:
            raise ValueError(f"{path} was written by Keras {written_by} and this Keras "
                             f"{keras.__version__} cannot load it: {first_line}") from err
        raise ValueError(f"could not load {path} as a Keras model: {first_line}") from err


def keras_archive_problem(path):
    """What makes the existing file `path` not a complete `.keras` archive, or ""."""
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes): not a .keras archive"
    with open(path, "rb") as f:
        head = f.read(8)
    if not zipfile.is_zipfile(path):
        if head.startswith(b"PK\x03\x04"):
            return (f"is truncated: it starts as a zip archive but has no end record "
                    f"({size} bytes; an interrupted copy or write?)")
        if head == _HDF5_SIGNATURE:
            return "is an HDF5 file, not a .keras zip archive (rename it to .h5 to load it)"
        return f"is not a .keras archive (a zip file); it starts with {head!r}"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"is a damaged zip archive: {err}"
    if broken is not None:
        return f"is a damaged zip archive: member {broken!r} fails its CRC check"
    missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
    if missing:
        return f"is a zip archive but not a .keras model: it has no {' or '.join(missing)}"
    return ""


def _keras_version(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("metadata.json")).get("keras_version")
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None
