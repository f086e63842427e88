import os
import sys
import pathlib

# The in-process tests run on TensorFlow (conversion needs it); the other backends are
# exercised by tests/test_backends.py in subprocesses.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).parent))


import pytest  # noqa: E402

# The suite runs on two processes (pytest-xdist, `-n auto --dist loadgroup` in setup.cfg).
# Tests go to a process a module at a time, so a module's fixtures are built once; the
# tests that read the session's Larq and per-backend processes all go to one, so those
# processes run once; each per-backend suite of test_backends.py goes where there is room.
SHARED_PROCESS_FIXTURES = {"larq_results", "backend_results"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SHARED_PROCESS_FIXTURES & set(item.fixturenames):
            group = "shared-processes"
        elif item.path.name == "test_backends.py":
            group = item.nodeid
        else:
            group = item.path.name
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def larq_results(tmp_path_factory):
    """(folder, {script: (status, stdout)}) of every script registered in
    shared_processes.LARQ_SCRIPTS, run in one TF_USE_LEGACY_KERAS=1 process."""
    from shared_processes import LARQ_SCRIPTS, run_scripts

    folder = tmp_path_factory.mktemp("larq")
    return folder, run_scripts(LARQ_SCRIPTS, folder, legacy=True)


@pytest.fixture(scope="session")
def backend_results(larq_results):
    """backend -> {script: (status, stdout)}: the scripts registered in
    shared_processes.BACKEND_SCRIPTS for that backend, in one process per backend
    (they find the Larq process's files in sys.argv[1])."""
    from shared_processes import BACKEND_SCRIPTS, run_scripts

    cache = {}

    def results(backend):
        if backend not in cache:
            scripts = {name: code for name, (code, backends) in BACKEND_SCRIPTS.items() if backend in backends}
            cache[backend] = run_scripts(scripts, larq_results[0], backend=backend)
        return cache[backend]

    return results
