"""The harness's checks as pytest items: one per subject, check and backend, in the pytest run you already have.

    pytest -p conformance.harness.pytest_plugin --harness my_subjects.py               # three backends, one env
    pytest -p conformance.harness.pytest_plugin --harness my_subjects.py --harness-python torch=.venv-torch/bin/python
    pytest -p conformance.harness.pytest_plugin --harness my_subjects.py --harness-backend jax   # one backend alone
    pytest -p conformance.harness.pytest_plugin --harness my_subjects.py --harness-records reports/harness

(or `pytest_plugins = ["conformance.harness.pytest_plugin"]` in your top conftest.py). Each declaration file
gives the items `my_subjects.py::<subject>::<check>[<backend>]`, a cell of the report's matrix each (every row of
that check: `policies/float16`, `errors/<id>`, ...), and `my_subjects.py::report`, the records themselves (every
backend's, complete, of one run and one declaration). `-k gated`, `-k "forward and torch"` select items, and only
the selected subjects run; `-x`, `--junitxml` and `-rs` work as for any test.

When the first item of a file runs, the harness runs as `python -m conformance.harness` does (the record and load
phases on every backend, each in a process of its own, its output captured into that item's report; the
declaration was checked, in the first backend's process, when the items were collected) and writes its report to
`--harness-out`/<file's stem> (`reports/harness/<stem>`). Each item then takes its cell's verdict: FAIL or
MISSING fails with the report's lines, SKIP skips with its reason, a known divergence still diverging is an xfail,
PASS passes. `--harness-backend` runs some backends only (a CI job per backend): their cells are judged against
the references alone (the oracle, the backend's own float64 run, the stored fixture), nothing is compared across
backends, and `report` is SKIP. `--harness-records DIR` runs nothing: it judges the records a run left in DIR.
Under pytest-xdist every worker that gets items of a file runs the harness for them, in a folder of its own
(`<out>/gw0`, ...): correct, and repeated; the harness already runs the backends in parallel, so pass `-n 0`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from conformance.harness import __main__ as cli
from conformance.harness import checks, compare
from conformance.harness.terms import BACKENDS

FAILING = ("FAIL", "MISSING")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("harness", "the cross-backend harness (conformance.harness)")
    group.addoption("--harness", action="append", default=[], metavar="FILE", help="a declaration file's subjects")
    group.addoption(
        "--harness-python",
        action="append",
        default=[],
        metavar="BACKEND=PATH",
        help="the interpreter to run BACKEND with (default: this one)",
    )
    group.addoption(
        "--harness-backend",
        action="append",
        default=[],
        choices=BACKENDS,
        help="run this backend only (repeatable): its cells against the references alone",
    )
    group.addoption("--harness-out", metavar="DIR", help="records and reports, DIR/<file's stem> (reports/harness)")
    group.addoption("--harness-fixtures", metavar="DIR", help="the stored fixtures, DIR/<file's stem>")
    group.addoption(
        "--harness-records",
        metavar="DIR",
        help="judge the records already in DIR (of one declaration file) instead of running the harness",
    )


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "harness: an item of the cross-backend harness (conformance.harness)")


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: they select among these items too
def pytest_collection_modifyitems(session, config, items) -> None:
    for path in config.getoption("harness"):
        declaration = HarnessFile.from_parent(session, path=Path(path).resolve())
        collected = session.genitems(declaration)
        items.extend(collected)


class HarnessFile(pytest.File):
    """A declaration file: its `report` item, then a collector per subject."""

    def collect(self):
        self.run = HarnessRun(self.config, self.path)
        yield ReportItem.from_parent(self, name="report")
        for name, skip in self.run.subjects().items():
            yield SubjectCollector.from_parent(self, name=name, skip=skip)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CellFailed):  # the declaration cannot run: its one sentence, not our frames
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class SubjectCollector(pytest.Collector):
    def __init__(self, *, skip: dict, **kwargs):
        super().__init__(**kwargs)
        self.skip = skip

    def collect(self):
        for check in checks.NAMES:
            for backend in self.parent.run.backends:
                yield CellItem.from_parent(self, name=f"{check}[{backend}]", check=check, backend=backend)


class HarnessItem(pytest.Item):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_marker("harness")

    def harness(self) -> HarnessRun:
        node = self.parent
        while not isinstance(node, HarnessFile):
            node = node.parent
        return node.run

    def reportinfo(self):
        return self.path, 0, self.nodeid

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CellFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class CellFailed(Exception):
    """A report's cell that is FAIL or MISSING, or a declaration that cannot run: its lines are the failure."""


class ReportItem(HarnessItem):
    """The records themselves: every backend's, complete, of one run and one declaration (`compare.read`)."""

    def runtest(self):
        result = self.harness().result(self.session)
        unowned = [  # a row no check declares has no item of its own: it fails here
            f"{status} {name}: {row} on {backend}: " + "; ".join(notes)
            for name, subject in result["subjects"].items()
            for row, cells in subject["cells"].items()
            for backend, (status, notes) in cells.items()
            if status in FAILING and checks.owner(row) is None
        ]
        if result["problems"] or unowned:
            raise CellFailed("\n".join([*(f"problem: {p}" for p in result["problems"]), *unowned]))
        if result["partial"]:
            _skip(
                f"not a PASS: {'; '.join(result['partial'])}; the verdict needs every subject on every backend, in "
                "one run (--harness-python BACKEND=PATH for each backend kept in a venv of its own)"
            )


class CellItem(HarnessItem):
    """A subject's check on one backend: every row of the check (`policies/float16`, `errors/<id>`, ...)."""

    def __init__(self, *, check: str, backend: str, **kwargs):
        super().__init__(**kwargs)
        self.check, self.backend = check, backend

    def runtest(self):
        result = self.harness().result(self.session)
        subject = result["subjects"].get(self.parent.name)
        if subject is None:
            raise CellFailed(f"{self.parent.name}: not in the report (see the report item's problems)")
        rows = {
            row: cells[self.backend]
            for row, cells in subject["cells"].items()
            if self.backend in cells and getattr(checks.owner(row), "NAME", None) == self.check
        }
        statuses = {status for status, _ in rows.values()}
        lines = [f"{status} {row}: " + "; ".join(notes) for row, (status, notes) in rows.items() if status != "PASS"]
        if statuses & set(FAILING):
            raise CellFailed("\n".join(line for line in lines if line.split()[0] in FAILING))
        if "KNOWN" in statuses:
            pytest.xfail("\n".join(line for line in lines if line.startswith("KNOWN")))
        if not rows:
            reason = self.parent.skip.get(self.check)
            _skip(reason or f"the report has no row of {self.check} for {self.parent.name}")
        if statuses == {"SKIP"}:
            _skip("\n".join(lines))


def _skip(reason: str):
    """SKIP with its reason, reported at the item (the declaration file), not at this line."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


class HarnessRun:
    """One declaration file's run (or records): made once, when the file's first item runs."""

    def __init__(self, config, path: Path):
        self.config, self.path = config, path
        stem = path.parent.name if path.stem == "subjects" else path.stem
        self.records = config.getoption("harness_records")
        out = Path(self.records or config.getoption("harness_out") or "reports/harness")
        worker = getattr(config, "workerinput", {}).get("workerid")  # an xdist worker's own folder, never shared
        self.out = out if self.records else out / stem / (worker or "")
        self.backends = cli.backends_of(argparse.Namespace(backends=config.getoption("harness_backend")))
        fixtures = config.getoption("harness_fixtures")
        self.fixtures = (Path(fixtures) / stem if fixtures else path.parent / "fixtures" / path.stem).resolve()
        try:
            self.pythons = cli.interpreters(config.getoption("harness_python"))
        except ValueError as exc:
            raise pytest.UsageError(str(exc).replace("--python", "--harness-python")) from None
        self._read = self._result = None  # the records (read once, with --harness-records), the report

    def args(self, only=None) -> argparse.Namespace:
        return argparse.Namespace(
            subjects=str(self.path),
            out=self.out,
            only=only,
            fixtures=self.fixtures,
            backends=self.backends,
            jobs=min(len(self.backends), os.cpu_count() or 1),
            run=uuid.uuid4().hex,
            plant=False,
        )

    def subjects(self) -> dict:
        """{subject: its skips}: from the records, or from the declaration checked in the first backend's process
        (the harness's `check` phase, which also makes every layer once)."""
        if self.records:
            self._read = compare.read(self.out, self.backends)
            subjects = {}
            for phases in self._read[0].values():
                for record in phases.values():
                    for name, subject in record["subjects"].items():
                        subjects.setdefault(name, subject["meta"].get("skip", {}))
            return dict(sorted(subjects.items()))
        args = self.args()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "subjects.json").unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="conformance-harness-") as folder:
            args.harness_path = cli.harness_path(Path(folder))
            first = self.backends[0]
            command, env = cli.phase_command(first, "check", args, self.pythons[first])
            done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise CellFailed(f"the declaration cannot run:\n{done.stdout}{done.stderr}".rstrip())
        return json.loads((args.out / "subjects.json").read_text())

    def result(self, session) -> dict:
        if self._result is None:
            if self.records:
                self._result = compare.build(self.out, self._read, backends=self.backends)
            else:
                self._result = self._run(session)
        return self._result

    def _run(self, session) -> dict:
        selected = sorted({i.parent.name for i in session.items if isinstance(i, CellItem) and i.path == self.path})
        args = self.args(only=selected)
        print(f"harness: {self.path}: {', '.join(selected)} on {', '.join(self.backends)}, in {self.out}")
        if cli.run_all(args, self.pythons, check=False) != 0:  # the declaration was checked when collected
            return {"problems": ["the harness could not run (its output is above)"], "partial": False, "subjects": {}}
        cli.report(self.out, self.backends)
        return json.loads((self.out / "report.json").read_text())
