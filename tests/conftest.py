import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""   # tests run on CPU, even on a machine with a GPU
# One intra-op thread (inherited by the subprocesses tests start): the models under test are
# tiny, and on a busy 2-core machine two spinning OpenMP threads per process made steps up to
# 50x slower than one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A record key no records.py declares raises in tests (a column name is a public API); users'
# runs warn once instead (pruneviz/records.py, check_key). Inherited by the workers tests start.
os.environ["PRUNEVIZ_STRICT_KEYS"] = "1"

import pytest  # noqa: E402

# The contract checks live in tests/helpers.py: let pytest explain their failing asserts too.
pytest.register_assert_rewrite("tests.helpers")

from pruneviz.config import SessionConfig  # noqa: E402
from pruneviz.store import Store  # noqa: E402

# Small budgets: a 3-epoch dense baseline (about 1 s) shared by every session test.
FAST = dict(dense_epochs=3, epochs=2, device="cpu")


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "runs")


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory):
    """One store for the whole test session, so the dense baseline trains once."""
    return Store(tmp_path_factory.mktemp("shared") / "runs")


@pytest.fixture
def fast_config():
    def make(**kw):
        return SessionConfig(**{**FAST, **kw})
    return make


@pytest.fixture(autouse=True, scope="session")
def _default_store_is_temporary(tmp_path_factory):
    """A dashboard or CLI under test that is given no store uses a temporary one, never the
    checkout's ./runs, and every worker started on it ends with the session."""
    root = tmp_path_factory.mktemp("default-store") / "runs"
    os.environ["PRUNEVIZ_STORE"] = str(root)
    yield
    from pruneviz.workers import stop_workers

    if (root / "pruneviz.sqlite").exists():
        stop_workers(Store(root))


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    """Dashboards under test start worker processes (detached, as for users): end them with the
    test. Kept to the module, each page test's worker idled on (about 750 MB each) until the
    module ended: 20 of them at once in test_live_form."""
    yield
    from pruneviz.workers import stop_spawned

    stop_spawned()


@pytest.fixture(autouse=True)
def _main_module_survives_apptest():
    """Streamlit's AppTest leaves its script module as sys.modules["__main__"]; a later test's
    spawned process re-runs __main__'s file, and AppTest.from_function's script (its `__args`
    undefined there) killed the children of test_workers' claim race in CI. Put it back."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
