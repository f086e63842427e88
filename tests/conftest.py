import os
import sys
import pathlib

# The in-process tests run on TensorFlow (conversion needs it); the other backends are
# exercised by tests/test_backends.py in subprocesses.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).parent))


import pytest  # noqa: E402

# The suite runs on two processes (pytest-xdist: `-n auto` in setup.cfg). Tests go to a
# process a module at a time, so a module's fixtures are built once; the tests that read
# the session's Larq process (and the backend processes that read its files) all go to one
# process, the tests that read the other per-backend processes (the fixtures below) to one,
# so that each of those processes runs once; each per-backend suite of test_backends.py
# goes where there is room. (xdist's own `--dist loadgroup` cannot do this with pytest 9:
# it renames node ids through an attribute pytest 9 no longer has.)
TESTS = pathlib.Path(__file__).parent
# scope name -> the session fixtures whose readers share it
SHARED_PROCESS_FIXTURES = {"larq-processes": ("larq_results", "after_larq_results"),
                           "backend-processes": ("backend_results",)}


def _reading(path, fixtures):
    """Names of the functions (tests and fixtures) in test module `path` that take one of
    `fixtures`, directly or through another function of the module."""
    import ast

    functions = {node.name: {a.arg for a in node.args.args}
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
    found, grew = set(fixtures), True
    while grew:
        before = len(found)
        found |= {name for name, args in functions.items() if args & found}
        grew = len(found) > before
    return found - set(fixtures)


SHARED_PROCESS_TESTS = {scope: {path.name: _reading(path, fixtures) for path in TESTS.glob("test_*.py")}
                        for scope, fixtures in SHARED_PROCESS_FIXTURES.items()}


def _scope(nodeid):
    path, _, rest = nodeid.partition("::")
    name = path.rsplit("/", 1)[-1]
    function = rest.split("::")[-1].split("[")[0]
    for scope, tests in SHARED_PROCESS_TESTS.items():  # the Larq scope first: it wins
        if function in tests.get(name, ()):
            return scope
    return nodeid if name == "test_backends.py" else path


# The groups that take longest (measured 2026-12-03, full suite), first: the two processes
# take groups in collection order, and a long group taken last leaves the other idle.
LONG_FIRST = ("test_cli.py", "test_benchmark_scripts.py", "larq-processes", "backend-processes", "test_backends.py",
              "test_reliability.py", "test_larq_zoo.py", "test_distribute.py", "test_docs.py", "test_binarize.py",
              "test_training.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        scope = _scope(item.nodeid)
        key = scope if scope in SHARED_PROCESS_FIXTURES else item.nodeid.split("::")[0].rsplit("/", 1)[-1]
        return LONG_FIRST.index(key) if key in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: a module's tests keep their order


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None  # a --dist the user chose
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return _scope(nodeid)

    return ByModule(config, log)


@pytest.fixture(scope="session")
def larq_results(tmp_path_factory):
    """(folder, {script: (status, stdout)}) of every script registered in
    shared_processes.LARQ_SCRIPTS, run in one TF_USE_LEGACY_KERAS=1 process."""
    from shared_processes import LARQ_SCRIPTS, run_scripts

    folder = tmp_path_factory.mktemp("larq")
    return folder, run_scripts(LARQ_SCRIPTS, folder, legacy=True)


def _per_backend(registry, folder):
    """backend -> {script: (status, stdout)}, the scripts of `registry` ({name: (code,
    backends)}) registered for that backend, in one process per backend, on first use."""
    from shared_processes import run_scripts

    cache = {}

    def results(backend):
        if backend not in cache:
            scripts = {name: code for name, (code, backends) in registry.items() if backend in backends}
            cache[backend] = run_scripts(scripts, folder, backend=backend)
        return cache[backend]

    return results


@pytest.fixture(scope="session")
def after_larq_results(larq_results):
    """The scripts of shared_processes.AFTER_LARQ_SCRIPTS, per backend (`_per_backend`):
    they find the Larq process's files in sys.argv[1]."""
    from shared_processes import AFTER_LARQ_SCRIPTS

    return _per_backend(AFTER_LARQ_SCRIPTS, larq_results[0])


@pytest.fixture(scope="session")
def backend_results(tmp_path_factory):
    """The scripts of shared_processes.BACKEND_SCRIPTS, per backend (`_per_backend`)."""
    from shared_processes import BACKEND_SCRIPTS

    return _per_backend(BACKEND_SCRIPTS, tmp_path_factory.mktemp("backends"))
