"""Nox sessions: the conformance suite once per Keras backend, then the cross-backend report.

``nox`` runs the suite on jax, torch and tensorflow (each in its own virtualenv holding keras and that backend
only) and then prints the report; ``nox -s tests-jax`` runs one backend; ``nox -l`` lists everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["golden_check", "tests-jax", "tests-torch", "tests-tensorflow", "report"]
# nox probes for uv on every call and logs "uv binary not found." when it is absent. This project installs with
# venv + pip on purpose (pip finds the CPU torch wheel pinned in constraints.txt; uv does not read pip's
# configuration), so the line is noise nobody can act on.
logging.getLogger("nox").addFilter(lambda record: record.getMessage() != "uv binary not found.")

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = str(ROOT / "requirements" / "constraints.txt")
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
REPORTS = ROOT / "reports"

# Backend name -> the pyproject extra that installs it. tensorflow-cpu: this project's CI has no GPU.
EXTRAS = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow-cpu"}


def backend_env(session: nox.Session, backend: str) -> dict[str, str]:
    """The environment every backend session runs with: the backend chosen, the user's keras.json ignored."""
    return {
        "KERAS_BACKEND": backend,
        # A private KERAS_HOME: the user's ~/.keras/keras.json (floatx, backend, ...) never leaks in.
        "KERAS_HOME": session.create_tmp(),
        # float64 is float64 on every backend: JAX otherwise computes it silently in float32.
        "JAX_ENABLE_X64": "1",
        # JAX compiles every new shape; keep its executables between runs (measured: test_golden.py 47 s cold,
        # 10 s warm). Entries are keyed by the computation, so a changed layer compiles afresh.
        "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".nox" / ".jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # The derandomized `ci` profile unless the user asked for another (`HYPOTHESIS_PROFILE=thorough nox ...`).
        "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
    }


def _install_once(session: nox.Session, *args: str, python: Path | None = None) -> None:
    """`pip install *args` into the session's virtualenv (or into `python`'s), skipped when that virtualenv
    already got exactly this install since pyproject.toml and the constraints last changed (a reused venv
    otherwise spends ~7 s per session asking pip). Sessions sharing a venv each add their own install to it."""
    venv = python.parent.parent if python else Path(session.virtualenv.location)
    stamp_file = venv / ".hyperzzw-installed"
    constraint_files = [Path(args[i + 1]).read_bytes() for i, arg in enumerate(args) if arg == "-c"]
    files = hashlib.sha256(b"\0".join([(ROOT / "pyproject.toml").read_bytes(), *constraint_files])).hexdigest()
    done = stamp_file.read_text().splitlines() if stamp_file.is_file() else []
    if done[:1] != [files]:
        done = [files]
    if "-U" not in args and "\0".join(args) in done[1:]:  # -U (the latest set): ask pip every time
        session.log(f"{' '.join(args)}: installed in {venv.name} since the last change, not reinstalling")
        return
    if python:
        session.run(str(python), "-m", "pip", "install", *args, external=True)
    else:
        session.install(*args)
    stamp_file.write_text("\n".join([*done, "\0".join(args)]) + "\n")


@contextlib.contextmanager
def venv_discarded_at_the_end(session: nox.Session):
    """With HYPERZZW_DISCARD_VENVS=1 (`.ci/run` sets it), the session's virtualenv is removed when the session
    ends, however it ends. For the sessions whose venv no later session uses (the oldest, latest and custom sets,
    the export runtimes): `nox -t tests` then holds the three tests-<backend> venvs and one other at a time, not
    all of them at once (measured in benchmarks/README.md), on a CI machine with little disk."""
    try:
        yield
    finally:
        if os.environ.get("HYPERZZW_DISCARD_VENVS") == "1":
            session.log(f"HYPERZZW_DISCARD_VENVS=1: removing {session.virtualenv.location}")
            shutil.rmtree(session.virtualenv.location, ignore_errors=True)


def install(
    session: nox.Session,
    *extras: str,
    python: Path | None = None,
    constraints: str = CONSTRAINTS,
    upgrade: bool = False,
) -> None:
    # --upgrade-strategy eager: a reused venv moves every dependency to its newest release, not only hyperzzw.
    upgrading = ["-U", "--upgrade-strategy", "eager"] if upgrade else []
    _install_once(session, *upgrading, "-c", constraints, "-e", f".[{','.join(extras)}]", python=python)


def venv_python(session_name: str) -> Path:
    """The python of the virtualenv nox keeps for the session `session_name`."""
    return ROOT / ".nox" / session_name / ("Scripts" if os.name == "nt" else "bin") / "python"


def backend_python(session: nox.Session, backend: str, *extras: str) -> Path:
    """The python of `tests-<backend>`'s virtualenv, for the sessions that need the same packages (plus
    `extras`): they run in it instead of building a 0.7-1.6 GB copy each. Created as nox creates it (`python
    -m venv`, nox's own interpreter) when `tests-<backend>` has not run yet."""
    venv = ROOT / ".nox" / f"tests-{backend}"
    python = venv_python(venv.name)
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
    install(session, "test", *extras, EXTRAS[backend], python=python)
    return python


def in_venv(env: dict[str, str], python: Path) -> dict[str, str]:
    """`env` plus what activating `python`'s virtualenv sets, for the sessions that run in a shared venv."""
    return {
        **env,
        "VIRTUAL_ENV": str(python.parent.parent),
        "PATH": os.pathsep.join([str(python.parent), os.environ.get("PATH", "")]),
    }


def per_backend(name: str, suffix: str = "", **kwargs):
    """Registers `func(session, backend)` as one session per backend, named `<name>-<backend>` (plus
    `-<suffix>`) and tagged `<name>` (or `tags`), so `nox -s tests-jax` runs one backend and `nox -t tests`
    all three."""

    def register(func):
        for backend in EXTRAS:

            def session_func(session: nox.Session, _backend: str = backend) -> None:
                func(session, _backend)

            session_func.__doc__ = f"{func.__doc__.rstrip('.')} ({backend})."
            session_func.__name__ = f"{name}_{backend}"
            tags = kwargs.get("tags", [name])
            options = {k: v for k, v in kwargs.items() if k != "tags"}
            full = f"{name}-{backend}" + (f"-{suffix}" if suffix else "")
            nox.session(name=full, tags=tags, **options)(session_func)
        return func

    return register


# Version sets: the constraints each `tests-<backend>[-<set>]` session installs from, and where it writes its
# observations (`nox -s report -- --reports reports/oldest` reports on one set).
#   pinned  requirements/constraints.txt: what `nox` and CI run (`tests-<backend>`)
#   oldest  requirements/oldest.txt: the oldest releases the suite passes on, pyproject.toml's floors (CI too)
#   latest  requirements/latest.txt: the newest releases the registry serves, unconstrained but for the
#           torch CPU build (`nox -t latest`, for a scheduled job that catches a breaking release early)
#   custom  yours: HYPERZZW_CONSTRAINTS=path/to/constraints.txt nox -s tests-jax-custom
#   nightly requirements/nightly.txt: Keras's and TensorFlow's nightly builds (`nox -t nightly`, weekly)
VERSION_SETS = {
    "oldest": ROOT / "requirements" / "oldest.txt",
    "latest": ROOT / "requirements" / "latest.txt",
    "nightly": ROOT / "requirements" / "nightly.txt",
}


def run_suite(
    session: nox.Session,
    backend: str,
    constraints: str,
    reports: Path,
    upgrade: bool = False,
    version_set: str = "pinned",
) -> None:
    if version_set == "nightly":
        install_nightly(session, backend)
    else:
        install(session, "test", EXTRAS[backend], constraints=constraints, upgrade=upgrade)
    reports.mkdir(parents=True, exist_ok=True)
    env = backend_env(session, backend)
    # The record says which set it belongs to; the report refuses to compare records of different sets.
    env["HYPERZZW_VERSION_SET"] = version_set
    observed = reports / f"observed-{backend}.json"
    # A previous run's record must never stand in for this one (the suite removes it too, at its start).
    observed.unlink(missing_ok=True)
    env["HYPERZZW_OBSERVED"] = str(observed)
    # Two pytest-xdist workers (the CI machine has 2 cores); `-- -n 0` after it runs in one process.
    session.run("pytest", "-n", "2", *session.posargs, env=env)


# The nightly builds' packages, per backend: keras-nightly for `keras`, tf-nightly for tensorflow-cpu.
NIGHTLY = {"jax": ["jax", "jaxlib"], "torch": ["torch"], "tensorflow": ["tf-nightly"]}


def install_nightly(session: nox.Session, backend: str) -> None:
    """Keras's nightly build and the backend's, never beside the `keras` release (both ship the `keras` module;
    whichever pip installed last would win). hyperzzw itself goes in with --no-deps: its one dependency is
    `keras`, which keras-nightly provides under another name."""
    test_tools = PYPROJECT["project"]["optional-dependencies"]["test"]
    nightly = ["keras-nightly", *NIGHTLY[backend]]
    if os.environ.get("HYPERZZW_NIGHTLY") == "newest":  # the newest builds the registry serves
        session.install("--pre", "-U", "-c", CONSTRAINTS_TORCH_ONLY, *nightly, *test_tools)
    else:
        session.install("-c", str(VERSION_SETS["nightly"]), *nightly, *test_tools)
    session.install("--no-deps", "-e", ".")
    # A backend's own nightly may depend on the `keras` release (tensorflow-cpu does): then two distributions
    # write one `keras` folder. Remove the release and reinstall the nightly's files over what it left.
    releases = session.run_install("python", "-c", KERAS_DISTRIBUTIONS, silent=True).split()
    if "keras" in releases:
        session.log("the `keras` release came in beside keras-nightly: removing it, reinstalling keras-nightly")
        session.run_install("python", "-m", "pip", "uninstall", "-y", "keras")
        version = session.run_install(
            "python", "-c", "import importlib.metadata as m; print(m.version('keras-nightly'))", silent=True
        ).strip()
        session.install("--no-deps", "--force-reinstall", f"keras-nightly=={version}")
    releases = session.run_install("python", "-c", KERAS_DISTRIBUTIONS, silent=True).split()
    if releases != ["keras-nightly"]:
        session.error(f"the `keras` module must come from keras-nightly alone; it comes from {releases}")


# Which installed distributions provide the `keras` module (the suite checks the same, and records it).
KERAS_DISTRIBUTIONS = (
    "import importlib.metadata as m; print(' '.join(sorted(set(m.packages_distributions().get('keras', [])))))"
)
CONSTRAINTS_TORCH_ONLY = str(VERSION_SETS["latest"])


@per_backend("tests")
def tests(session: nox.Session, backend: str) -> None:
    """Run the conformance suite on one Keras backend and record what it observed."""
    run_suite(session, backend, CONSTRAINTS, REPORTS)


@per_backend("tests", suffix="oldest", tags=["tests", "oldest"], default=False)
def tests_oldest(session: nox.Session, backend: str) -> None:
    """The suite on the oldest supported releases (requirements/oldest.txt)."""
    with venv_discarded_at_the_end(session):
        run_suite(session, backend, str(VERSION_SETS["oldest"]), REPORTS / "oldest", version_set="oldest")


@per_backend("tests", suffix="latest", tags=["latest"], default=False)
def tests_latest(session: nox.Session, backend: str) -> None:
    """The suite on the newest releases the registry serves (only torch's CPU build pinned)."""
    with venv_discarded_at_the_end(session):
        run_suite(session, backend, str(VERSION_SETS["latest"]), REPORTS / "latest", upgrade=True, version_set="latest")


@per_backend("tests", suffix="nightly", tags=["nightly"], default=False)
def tests_nightly(session: nox.Session, backend: str) -> None:
    """The suite on Keras's nightly build (and TensorFlow's), requirements/nightly.txt."""
    run_suite(session, backend, str(VERSION_SETS["nightly"]), REPORTS / "nightly", version_set="nightly")


@per_backend("tests", suffix="custom", tags=[], default=False)
def tests_custom(session: nox.Session, backend: str) -> None:
    """The suite on your versions: HYPERZZW_CONSTRAINTS=path/to/constraints.txt."""
    path = os.environ.get("HYPERZZW_CONSTRAINTS")
    if not path or not Path(path).is_file():
        session.error(
            f"tests-{backend}-custom installs from your constraints file (pip -c): set "
            f"HYPERZZW_CONSTRAINTS=path/to/constraints.txt (got {path!r})"
        )
    with venv_discarded_at_the_end(session):
        run_suite(session, backend, str(Path(path).resolve()), REPORTS / "custom", version_set="custom")


def run_recorded_test(session: nox.Session, backend: str, kind: str, env: dict[str, str] | None = None) -> None:
    """`pytest conformance/test_<kind>.py` in tests-<backend>'s virtualenv, leaving its session record
    (`reports/session-<kind>-<backend>.json`): the report's scope says whether it ran, and how it ended."""
    REPORTS.mkdir(exist_ok=True)
    record = {"HYPERZZW_OBSERVED": str(REPORTS / f"session-{kind}-{backend}.json")}
    test_file = f"conformance/test_{kind}.py"
    pytest = ("-m", "pytest", "-p", "no:cacheprovider", "-rxXs", test_file)
    run_in_backend_venv(session, backend, *pytest, env={**record, **(env or {})})


# Runs in tests-<backend>'s virtualenv (the same packages).
@per_backend("distributed", tags=["distributed", "tests"], default=False, python=False)
def distributed(session: nox.Session, backend: str) -> None:
    """The layer under the backend's distributed engine on fake CPU devices, against the oracle."""
    summary = {"HYPERZZW_DISTRIBUTED_SUMMARY": str(REPORTS / f"distributed-{backend}.json")}
    run_recorded_test(session, backend, "distributed", env=summary)


# Runs in tests-<backend>'s virtualenv (the same packages); not in the default `nox`: it compiles per case.
@per_backend("traced", tags=["traced", "tests"], default=False, python=False)
def traced(session: nox.Session, backend: str) -> None:
    """The layer traced with unknown sizes (jax.export, tf.function, torch.export, torch.compile) vs the oracle."""
    run_recorded_test(session, backend, "traced")


SUBJECTS = ROOT / "conformance" / "subjects"


@nox.session(tags=["tests", "harness"], default=False)
def harness(session: nox.Session) -> None:
    """The harness on every subject file in conformance/subjects/ (or the files given), a venv per backend."""
    _install_once(session, "-c", CONSTRAINTS, "numpy")
    # each backend runs in its tests-<backend> venv (keras, that backend, this project), in a process of its own
    pythons = [f"--python={backend}={backend_python(session, backend)}" for backend in EXTRAS]
    # kerasfactory_layers.py needs KerasFactory on the path (`nox -s harness_kerasfactory`); keras_zoo.py is
    # `nox -s zoo`, not in CI: .ci/run is over its 30 minutes already (benchmarks/README.md)
    files = session.posargs or [path for path in subject_files() if _stem(path) not in ("kerasfactory_layers", ZOO)]
    run_harness(session, files, REPORTS / "harness", pythons)


ZOO = "keras_zoo"


@nox.session(tags=["zoo"], default=False)
def zoo(session: nox.Session) -> None:
    """More of Keras's layers (conformance/subjects/keras_zoo.py) through the harness, in the tests-<backend> venvs."""
    _install_once(session, "-c", CONSTRAINTS, "numpy")
    pythons = [f"--python={backend}={backend_python(session, backend)}" for backend in EXTRAS]
    files = session.posargs or [str(SUBJECTS / f"{ZOO}.py")]
    run_harness(session, files, REPORTS / "harness", pythons, selftest=False)


# Each subject file's stored fixtures (conformance/harness/checks/fixtures.py): golden/harness/<stem>/<subject>.json.
GOLDEN_HARNESS = ROOT / "golden" / "harness"


def subject_files() -> list[str]:
    """The declaration files in conformance/subjects/: each folder's subjects.py, then each file there."""
    declared = [*sorted(SUBJECTS.glob("*/subjects.py")), *sorted(SUBJECTS.glob("*.py"))]
    return [str(path) for path in declared if not path.name.startswith("_")]


def _stem(path: str) -> str:
    """A subject file's name in reports/ and golden/: its folder's for `<folder>/subjects.py`, else its stem."""
    return Path(path).parent.name if Path(path).stem == "subjects" else Path(path).stem


def run_harness(
    session: nox.Session,
    files: list[str],
    reports: Path,
    pythons: list[str] = (),
    env: dict[str, str] | None = None,
    selftest: bool = True,
) -> None:
    """`python -m conformance.harness FILE` for each declaration file, its records and report in `reports/<stem>`,
    then (with `selftest`) its self-test (`python -m conformance.harness selftest FILE`: defects planted on one
    backend each, which the report must name there), in `reports/selftest/<stem>`."""
    for path in files:
        # a private KERAS_HOME, as in the test sessions: the user's keras.json never leaks in; a subject's folder
        # (conformance/subjects/hyperzzw/subjects.py) names its report by the folder
        stem = _stem(path)
        runs = [((), reports / stem)]
        if selftest:
            runs.append((("selftest",), reports.parent / "selftest" / reports.name / stem))
        for command, out in runs:
            session.run(
                "python",
                "-m",
                "conformance.harness",
                *command,
                path,
                "--out",
                str(out),
                f"--fixtures={GOLDEN_HARNESS / stem}",
                *pythons,
                env={"KERAS_HOME": session.create_tmp(), **(env or {})},
            )


@nox.session(tags=["nightly"], default=False)
def harness_nightly(session: nox.Session) -> None:
    """The harness on Keras's layers with Keras's nightly build, in the tests-<backend>-nightly venvs."""
    _install_once(session, "-c", CONSTRAINTS, "numpy")
    pythons = []
    for backend in EXTRAS:
        python = venv_python(f"tests-{backend}-nightly")
        if not python.exists():  # `nox -t nightly` builds them first (its sessions run in this file's order)
            session.error(f"{python} does not exist: run `nox -s tests-{backend}-nightly` (or `nox -t nightly`) first")
        pythons.append(f"--python={backend}={python}")
    run_harness(session, session.posargs or [str(SUBJECTS / "keras_layers.py")], REPORTS / "harness-nightly", pythons)


# KerasFactory's runtime imports: kerasfactory 0.1.1 (--no-deps: its metadata pins pytest<9 and pandas<3, which
# the pinned set excludes; it gets pandas 2 here, and its layers never import pytest), what its package imports
# (loguru, pandas and pandas's dependencies) and what its layers import without declaring it (plotly, narwhals).
# They go in a folder of their own, put on PYTHONPATH beside the tests-<backend> venvs: keras, the backends and
# numpy stay the pinned set's (measured: 163 MB, against 3.1 GB for a venv of its own with all three backends).
KERASFACTORY_PACKAGES = (
    "kerasfactory", "loguru", "pandas", "python-dateutil", "pytz", "tzdata", "six", "plotly", "narwhals",
)  # fmt: skip


def kerasfactory_path(session: nox.Session) -> str:
    """KerasFactory's runtime imports in a folder of the session's venv, for the backend processes' PYTHONPATH."""
    target = Path(session.virtualenv.location) / "kerasfactory"
    kerasfactory = str(ROOT / "requirements" / "kerasfactory.txt")
    _install_once(
        session, "--no-deps", "--upgrade", "--target", str(target), "-c", kerasfactory, *KERASFACTORY_PACKAGES
    )
    return str(target)


@nox.session(tags=["tests", "harness"], default=False)
def harness_kerasfactory(session: nox.Session) -> None:
    """The harness on KerasFactory's layers, each backend in its tests-<backend> venv, KerasFactory beside them."""
    _install_once(session, "-c", CONSTRAINTS, "numpy")
    pythons = [f"--python={backend}={backend_python(session, backend)}" for backend in EXTRAS]
    files = session.posargs or [str(SUBJECTS / "kerasfactory_layers.py")]
    run_harness(session, files, REPORTS / "harness", pythons, env={"PYTHONPATH": kerasfactory_path(session)})


# The exports check (conformance/harness/checks/exports.py) runs where the export runtimes are installed: one venv
# holding the three backends and the `export` extras (3.5 GB; removed at the end under HYPERZZW_DISCARD_VENVS=1),
# every backend's process in it. In the tests-<backend> venvs, which hold no export runtime, that check is one SKIP.
# hyperzzw's report (`nox -s report`) reads its records of hyperzzw's subjects: its scope's `harness-export`.
@nox.session(tags=["tests", "harness", "export"], default=False)
def harness_export(session: nox.Session) -> None:
    """The harness, exports included, on hyperzzw's subjects (or the files given), every backend in one venv with
    the export runtimes; each report in reports/harness-export/<file>."""
    with venv_discarded_at_the_end(session):
        install(session, "test", "export", "export-jax", *EXTRAS.values())
        files = session.posargs or [str(SUBJECTS / "hyperzzw" / "subjects.py")]
        env = {"PYTHONPATH": kerasfactory_path(session)} if any("kerasfactory" in f for f in files) else {}
        run_harness(session, files, REPORTS / "harness-export", env=env, selftest=False)  # every backend here


# The table of every subject (docs/table.md), from the records the harness sessions left.
TABLE = ROOT / "docs" / "table.md"


@nox.session(tags=["table"], default=False)
def table(session: nox.Session) -> None:
    """Write docs/table.md (a row per subject, a column group per backend) from each subject file's records: those
    of `nox -s harness_export -- <file>` (exports checked) where there are, else of `nox -s harness` / `zoo`."""
    _install_once(session, "-c", CONSTRAINTS, "numpy")
    folders = []
    for path in session.posargs or subject_files():
        runs = [REPORTS / "harness-export" / _stem(path), REPORTS / "harness" / _stem(path)]
        found = [folder for folder in runs if (folder / "record-jax.json").is_file()]
        if not found:
            session.error(f"no records of {path} in {' or '.join(map(str, runs))}: run the harness on it first")
        folders.append(found[0])
    session.run("python", "-m", "conformance.harness", "table", *map(str, folders), "--out", str(TABLE))


@nox.session(tags=["golden"], default=False)
def harness_fixtures(session: nox.Session) -> None:
    """Write the harness's stored fixtures (golden/harness/<file>/<subject>.json) for every subject file here, or
    the files given; each says new, unchanged, or what changed (rewritten). When numbers change on purpose."""
    _install_once(session, "-c", CONSTRAINTS, "numpy")
    pythons = [f"--python={backend}={backend_python(session, backend)}" for backend in EXTRAS]
    files = session.posargs or subject_files()
    env = {"PYTHONPATH": kerasfactory_path(session), "KERAS_HOME": session.create_tmp()}
    for path in files:
        out = REPORTS / "fixtures" / _stem(path)
        fixtures = f"--fixtures={GOLDEN_HARNESS / _stem(path)}"
        session.run(
            "python", "-m", "conformance.harness", "fixtures", path, "--out", str(out), fixtures, *pythons, env=env
        )


@nox.session
def report(session: nox.Session) -> None:
    """Compare what the three backends observed and print the cross-backend agreement table."""
    _install_once(session, "-c", CONSTRAINTS, "numpy")
    session.run("python", "scripts/report.py", "--reports", str(REPORTS), *session.posargs)


@nox.session(tags=["tests", "lint"])
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff (configured in pyproject.toml)."""
    _install_once(session, "-c", CONSTRAINTS, *nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(tags=["tests"])
def golden_check(session: nox.Session) -> None:
    """Check golden/ is intact and current, and the oracle exact and machine-independent (no backend needed)."""
    _install_once(session, "-c", CONSTRAINTS, *nox.project.dependency_groups(PYPROJECT, "oracle"))
    # No posargs: `nox -t tests -- -k golden` passes pytest options meant for the test sessions.
    session.run("python", "scripts/regenerate_golden.py", "--check")
    # The backend-independent tests, once (the backend sessions' conftest leaves them out); --noconftest:
    # that conftest imports keras, which this session does not have.
    session.run(
        "pytest",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "conformance/test_oracle.py",
        "conformance/test_fixtures.py",
        "conformance/test_report.py",
        "conformance/test_harness_report.py",
        "conformance/test_harness_pytest.py",
        "conformance/test_harness_exports.py",
        "conformance/test_harness_table.py",
        "conformance/test_harness_shards.py",
    )


def run_in_backend_venv(
    session: nox.Session, backend: str, *args: str, extras: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> None:
    """`python *args` in tests-<backend>'s virtualenv, with the backend's environment (plus `env`)."""
    python = backend_python(session, backend, *extras)
    session.run(
        str(python),
        *args,
        *session.posargs,
        env={**in_venv(backend_env(session, backend), python), **(env or {})},
        external=True,
    )


# The sessions below run in tests-<backend>'s virtualenv too: one environment per backend, not one per session.
@per_backend("golden", default=False, python=False)
def golden(session: nox.Session, backend: str) -> None:
    """Regenerate golden/ from the oracle and save this backend's .keras file."""
    run_in_backend_venv(session, backend, "scripts/regenerate_golden.py")


# Its own venv: pandas, seaborn, matplotlib and tabulate stay out of `tests-<backend>` (keras and the backend).
@per_backend("benchmark", default=False)
def benchmark(session: nox.Session, backend: str) -> None:
    """Time the layer against a bare two-input layer, the raw expression and keras Dense (benchmarks/results/)."""
    install(session, "test", "bench", EXTRAS[backend])
    session.run("python", "-m", "benchmarks.benchmark", *session.posargs, env=backend_env(session, backend))


@per_backend("sensor", default=False, python=False)
def sensor(session: nox.Session, backend: str) -> None:
    """Reproduce the sensor-anomaly experiment: concat baseline vs HyperZZWOperator, 30 epochs."""
    run_in_backend_venv(session, backend, "-m", "experiments.sensor")


@per_backend("mutants", default=False, python=False)
def mutants(session: nox.Session, backend: str) -> None:
    """Break the layer on purpose, one defect at a time, and check the suite catches every one."""
    run_in_backend_venv(session, backend, "scripts/mutants.py")


@nox.session(default=False, python=False)
def vendor(session: nox.Session) -> None:
    """Copy the layer file into your project (with a provenance header), or --check an existing copy."""
    session.run("python", "scripts/vendor.py", *session.posargs)
