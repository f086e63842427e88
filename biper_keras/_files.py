"""Atomic file writes that look like ordinary ones."""

import os
import tempfile


def atomic_write(path, write):
    """Calls `write(tmp_path)` and renames the result onto `path`: a reader (or a resume
    after a kill) sees the old file or the new one, never half of one. The file gets the
    mode an ordinary `open()` would give it (0666 less the umask): `mkstemp` makes it 0600,
    which would keep a model or a report from being shared or served."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base, suffix = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask():
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask
