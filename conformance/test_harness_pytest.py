"""The harness's pytest items (`conformance.harness.pytest_plugin`) on records made by hand: one item per subject,
check and backend, each taking its cell's verdict, and a `report` item for the records themselves. No backend
needed: run once, in `golden_check` (the items on a real run: test_harness_backends.py, per backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from conformance.harness import compare
from conformance.test_harness_report import _numeric, _records

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(folder: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """pytest with the harness's plugin in `folder` (with its own empty configuration, not this repository's),
    and its items as JUnit reports them: {"<classname>::<name>": (outcome, message)}, outcome "passed",
    "failure" or "skipped" (JUnit's word for an xfail too)."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "-p", "conformance.harness.pytest_plugin", "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [*command, "--junitxml=junit.xml", *args], cwd=folder, env=env, capture_output=True, text=True
    )
    items = {}
    for case in ET.parse(folder / "junit.xml").getroot().iter("testcase"):
        ended = [(c.tag, c.get("message") or c.text or "") for c in case if c.tag in ("failure", "skipped")]
        items[f"{case.get('classname')}::{case.get('name')}"] = ended[0] if ended else ("passed", "")
    return done, items


def _pytest(tmp_path, records: dict, *args: str) -> dict:
    """pytest with the plugin on `records` (written to tmp_path/records): {item id: outcome and message}."""
    folder = tmp_path / "records"
    folder.mkdir(exist_ok=True)
    for (backend, phase), made in records.items():
        (folder / f"{phase}-{backend}.json").write_text(json.dumps(made))
    (tmp_path / "subjects.py").write_text("# the declaration the records were made from (not read: records given)\n")
    done, items = run_pytest(tmp_path, "--harness", "subjects.py", f"--harness-records={folder}", *args)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 0: all passed, 1: some failed; else it broke
    return items


def test_each_cell_is_an_item_and_agreeing_records_pass(tmp_path):
    items = _pytest(tmp_path, _records())
    assert items["subjects::report"] == ("passed", "")
    for backend in ("jax", "torch", "tensorflow"):
        for check in ("weights", "forward", "compiled", "policies", "errors", "saved"):
            assert items[f"subjects.dense::{check}[{backend}]"] == ("passed", ""), (check, backend, items)
        status, reason = items[f"subjects.dense::training[{backend}]"]  # recorded by no backend here: not a pass
        assert status == "skipped" and "no row of training" in reason, reason


def test_one_backend_off_fails_its_item_alone_with_the_numbers(tmp_path):
    records = _records()
    drift = np.asarray(records[("torch", "record")]["subjects"]["dense"]["checks"]["forward"]["values"]) * 1.001
    records[("torch", "record")]["subjects"]["dense"]["checks"]["forward"] = _numeric(drift.reshape(3, 4), "float32")
    items = _pytest(tmp_path, records)
    failed = {name for name, (status, _) in items.items() if status == "failure"}
    assert failed == {"subjects.dense::forward[torch]"}, items
    assert items["subjects::report"] == ("passed", "")  # the records are whole: the cell says what is wrong


def test_a_known_divergence_is_an_xfail_while_it_diverges(tmp_path):
    records = _records()
    for made in records.values():
        made["subjects"]["dense"]["meta"]["divergences"] = [["forward", "torch", "keras-team/keras#1"]]
    agreeing = _pytest(tmp_path, records)  # declared, yet torch agrees: the divergence is stale, a failure
    assert agreeing["subjects.dense::forward[torch]"][0] == "failure", agreeing
    drift = np.asarray(records[("torch", "record")]["subjects"]["dense"]["checks"]["forward"]["values"]) * 1.001
    records[("torch", "record")]["subjects"]["dense"]["checks"]["forward"] = _numeric(drift.reshape(3, 4), "float32")
    diverging = _pytest(tmp_path, records)
    status, reason = diverging["subjects.dense::forward[torch]"]
    assert status == "skipped" and "keras-team/keras#1" in reason, (status, reason)  # JUnit's word for an xfail
    assert diverging["subjects.dense::forward[jax]"] == ("passed", "")


def test_a_missing_record_fails_the_report_item(tmp_path):
    records = _records()
    del records[("tensorflow", "load")]
    items = _pytest(tmp_path, records)
    status, _ = items["subjects::report"]
    assert status == "failure", items
    text = (tmp_path / "junit.xml").read_text()
    assert "no load-tensorflow.json" in text


def test_k_selects_items(tmp_path):
    items = _pytest(tmp_path, _records(), "-k", "forward and torch")
    assert list(items) == ["subjects.dense::forward[torch]"], items


def test_a_report_of_some_backends_never_says_pass(tmp_path):
    for (backend, phase), made in _records().items():
        (tmp_path / f"{phase}-{backend}.json").write_text(json.dumps(made))
    result = compare.build(tmp_path, backends=("jax",))
    assert result["partial"] and not result["ok"] and not result["failing"]
    last = compare.render(result).splitlines()[-1]
    assert last.startswith("RESULT: jax only: no cell of those fails") and "PASS" not in last.replace("not a PASS", "")
