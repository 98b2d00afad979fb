"""pytest configuration: hypothesis profiles, the report header, and the per-backend observation record."""

from __future__ import annotations

import importlib.metadata
import os

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings

from conformance import observed
from conformance.subjects.hyperzzw import target

# Keras, the backend and the layer under test are imported where they are used, not here. Under pytest-xdist
# the controller runs no test: importing them there cost 4-8 s per session (measured: `import keras` takes
# 4.3 s with jax, 8.2 s with torch, 6.9 s with tensorflow) before the workers even start.

# Backend-independent (NumPy only): the `golden_check` session runs these once, with `pytest --noconftest`,
# instead of every backend session building the oracle data again.
collect_ignore = [
    "test_oracle.py",
    "test_fixtures.py",
    "test_report.py",
    "test_harness_report.py",
    "test_harness_pytest.py",
    "test_harness_exports.py",
    "test_harness_table.py",
    "test_harness_shards.py",
]


def pytest_ignore_collect(collection_path, config):
    """test_distributed.py and test_traced.py run only when named (`pytest conformance/test_traced.py`, as the
    `distributed-<backend>` and `traced-<backend>` nox sessions do): the first spawns a distributed run of its own
    (50-100 s), the second traces and compiles per case (26 s on torch), kept out of the default run."""
    if collection_path.name in ("test_distributed.py", "test_traced.py"):
        return not any(collection_path.stem in str(arg) for arg in config.args)
    if collection_path.name == "subjects" and collection_path.parent.name == "conformance":
        return True  # harness declarations, not tests: `nox -s harness` runs them
    return None


# Hypothesis profiles. `ci` is derandomized (the same examples every run, so CI is reproducible and a red
# run can be replayed); `dev` is random, as a developer wants; `thorough` is long and random, run by hand.
# deadline=None everywhere: the first example of every new shape compiles (JAX, TF), far past 200 ms.
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
# No "explain" phase in ci/dev: after a failure it re-runs the test hundreds of times (measured: 142 s on one
# property); the falsifying example and its reproduce blob are printed all the same.
_quick = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
settings.register_profile("ci", max_examples=25, derandomize=True, phases=_quick, **_common)
settings.register_profile("dev", max_examples=15, phases=_quick, **_common)
settings.register_profile("thorough", max_examples=500, phases=list(Phase), verbosity=Verbosity.normal, **_common)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
settings.load_profile(PROFILE)


def pytest_sessionstart(session):
    """A missing, unreadable or stale manifest makes every golden test meaningless: say so once, with the
    fix, and stop, instead of failing each of a few hundred tests with the same message."""
    from conformance.subjects.hyperzzw import golden

    path = os.environ.get(observed.ENV_VAR)
    if path and not hasattr(session.config, "workerinput"):
        observed.remove(path)  # a previous session's record must not stand in for this one
    try:
        golden.check_catalogue(golden.read_manifest())
    except golden.GoldenError as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_report_header(config):
    """Versions from the installed distributions' metadata and the layer's location from its import spec,
    neither importing anything (see above); each worker's record holds the versions it imported."""
    name = os.environ.get("KERAS_BACKEND", "tensorflow")

    def version(*distributions):
        for distribution in distributions:
            try:
                return importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                pass
        return "not installed"

    library = {
        "jax": ("jax",),
        "torch": ("torch",),
        "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu"),
    }.get(name, ())
    x64 = f", JAX_ENABLE_X64={os.environ.get('JAX_ENABLE_X64', '')!r}" if name == "jax" else ""
    return [
        f"hyperzzw conformance: backend={name} {version(*library)}, keras={version('keras', 'keras-nightly')}, "
        f"numpy={version('numpy')}{x64}",
        f"layer under test: {target.locate()}",
        f"hypothesis profile: {PROFILE} (max_examples={settings.default.max_examples}, "
        f"derandomize={settings.default.derandomize})",
    ]


# What this process records, in pytest's stash (no module globals): under pytest-xdist each worker keeps its
# own part and writes it when it ends; the controller writes the session record.
_OBSERVATIONS = pytest.StashKey[observed.Observations]()
_DESELECTED = pytest.StashKey[int]()
_WORKERS = pytest.StashKey[list]()
_RUN = pytest.StashKey[str]()

# The longest tests (measured with --durations; each compiles per example or spawns processes). Under xdist
# they start first, so that they run beside the many short ones instead of being the tail of the run.
_SLOW_FIRST = (
    "test_training.py::test_sgd_steps_match_the_oracle[jit_compile]",
    "test_properties.py::test_outputs_and_gradients_match_the_exact_oracle",
    "test_properties.py::test_symbolic_shapes_with_unknown_dims",
    "test_vendoring.py::test_vendored_copy_in_subprocess",
)


def _worker(config) -> str:
    return config.workerinput["workerid"] if hasattr(config, "workerinput") else "main"


def pytest_configure(config):
    config.addinivalue_line("markers", "observes(fn): fn(**params) gives the declared observations the test records")
    config.stash[_DESELECTED] = 0
    config.stash[_WORKERS] = []
    config.stash[_RUN] = config.workerinput["hyperzzw_run"] if hasattr(config, "workerinput") else observed.new_run_id()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist's controller, starting a worker: the worker takes the session's run id."""
    node.workerinput["hyperzzw_run"] = node.config.stash[_RUN]
    node.config.stash[_WORKERS].append(node.gateway.id)


@pytest.fixture(scope="session")
def observer(request):
    """Records what this backend observed (outputs, gradients, errors) for the cross-backend report."""
    return _observations(request.config)


def _observations(config) -> observed.Observations:
    if _OBSERVATIONS not in config.stash:
        from conformance import backend

        config.stash[_OBSERVATIONS] = observed.Observations(
            backend.NAME, backend.LIBRARY_VERSION, target.LAYER_FILE, run=config.stash[_RUN], worker=_worker(config)
        )
    return config.stash[_OBSERVATIONS]


def pytest_deselected(items):
    if items:
        items[0].config.stash[_DESELECTED] += len(items)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Collecting the whole suite (no paths given), every observation `conformance.expected` declares must have a
    test that records it (`@pytest.mark.observes`); this runs before -k/-m deselect anything."""
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        from conformance import expected

        produced = set()
        for item in items:
            for mark in item.iter_markers("observes"):
                callspec = getattr(item, "callspec", None)
                produced.update(mark.args[0](**(callspec.params if callspec else {})))
        missing = expected.check_producers(produced)
        if missing:
            raise pytest.UsageError(
                f"{len(missing)} observations declared in conformance/expected.py have no test that records them "
                f"(e.g. {', '.join(missing[:3])})"
            )
    if hasattr(config, "workerinput"):  # every worker sorts the same way, as xdist requires
        items.sort(key=lambda item: not any(slow in item.nodeid for slow in _SLOW_FIRST))


def pytest_sessionfinish(session, exitstatus):
    """Each process that ran tests writes its part; the process that ran the session (the xdist controller,
    or the only process) writes the session record: exit status, workers, and what it selected."""
    path = os.environ.get(observed.ENV_VAR)
    if not path:
        return
    config = session.config
    distributed = bool(config.stash[_WORKERS])  # this is the xdist controller: the workers ran the tests
    if not distributed:
        _observations(config).write(path, collected=session.testscollected, deselected=config.stash[_DESELECTED])
    if hasattr(config, "workerinput"):
        return
    observed.write_session(
        path,
        backend=os.environ.get("KERAS_BACKEND", "tensorflow"),
        run=config.stash[_RUN],
        workers=config.stash[_WORKERS] or [_worker(config)],
        exit_status=exitstatus,
        selection={
            "args": [str(a) for a in config.invocation_params.args],
            "keyword": config.option.keyword or "",
            "markexpr": config.option.markexpr or "",
            "deselected": config.stash[_DESELECTED],
            "collected": session.testscollected,
            "failed": session.testsfailed,
            "paths_given": config.args_source != pytest.Config.ArgsSource.TESTPATHS,
            "maxfail": config.option.maxfail,
            "stopped_early": bool(session.shouldstop),
        },
    )


@pytest.fixture(scope="session")
def golden_manifest():
    """The golden manifest (`pytest_sessionstart` has checked it is readable and matches the catalogue)."""
    from conformance.subjects.hyperzzw import golden

    return golden.read_manifest()


@pytest.fixture(scope="session", autouse=True)
def _registered_name_points_at_the_layer_under_test():
    """When the suite checks another copy (HYPERZZW_TARGET), collecting the package's doctests imports
    `hyperzzw`, whose class then holds the registered name `hyperzzw>HyperZZWOperator`; `.keras` loading must
    find the copy under test, so the name is pointed back at it."""
    import keras

    name = keras.saving.get_registered_name(target.HyperZZWOperator)
    keras.saving.get_custom_objects()[name] = target.HyperZZWOperator
