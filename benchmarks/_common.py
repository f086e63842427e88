"""What every benchmark script shares: where the data is, the version record, the
timing loop and the JSON + Markdown writer. Scripts import it as `_common` (they run
from this folder: `python benchmarks/<script>.py`)."""

import json
import os
import pathlib
import statistics
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
# The full CIFAR-10 image folder: BIPER_CIFAR10_DIR, else the datasets folder beside the repo.
CIFAR_FOLDER = pathlib.Path(os.environ.get("BIPER_CIFAR10_DIR", SHARED / "cifar10-jpeg"))
CIFAR_BLOB = SHARED / "cifar10.bin"
SAMPLE = REPO / "biper_keras" / "sample_data" / "cifar10"
RESULTS = REPO / "docs" / "results"

PACKAGES = ("tensorflow", "keras", "jax", "jaxlib", "torch", "larq", "larq-compute-engine", "numpy")


def require_data(path, option="--data"):
    """Exits with one line naming the option and the variable when the CIFAR-10 data at
    `path` (an image folder with train/ and test/, or a cifar10.bin) is missing."""
    path = pathlib.Path(path)
    if not ((path / "train").is_dir() or (path.is_file() and path.suffix == ".bin")):
        raise SystemExit(f"error: no CIFAR-10 data at {path}: pass {option} PATH (an image folder "
                         "with train/ and test/) or set BIPER_CIFAR10_DIR")
    return path


def versions():
    """'name version, ...' of the packages a measurement depends on that are installed."""
    from importlib import metadata

    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def time_calls(fn, *, repeats, warmup=1, sync=None):
    """Seconds per call of `fn()` (median, min, all) over `repeats` calls after `warmup`
    untimed ones. `sync(result)` blocks until asynchronous work is done (JAX dispatches
    asynchronously: without it one would time the dispatch)."""
    sync = sync or (lambda result: None)
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "all": times}


def write_results(out, payload, markdown):
    """`out`.json (payload + date + versions) and `out`.md (the table + a provenance line)."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "versions": versions()}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, **payload}, indent=2))
    out.with_suffix(".md").write_text(markdown.rstrip("\n") + f"\n\nMeasured {meta['date']}: {meta['versions']}\n")
    return meta
