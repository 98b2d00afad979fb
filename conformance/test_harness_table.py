"""The conformance table (`python -m conformance.harness table`) on records made by hand: a cell per subject, backend
and check that shows what the report judged there, a declared divergence as a finding listed once with every cell
it explains, and never a page that says PASS over a report that does not. No backend needed: run in
`golden_check`."""

from __future__ import annotations

import copy
import json

import numpy as np

from conformance.harness import table
from conformance.harness.declaration import BACKENDS
from conformance.test_harness_report import REFERENCE, _numeric, _records

FINDING = "keras.ops.matmul on torch computes float64 in float32: docs/findings.md#float64-matmul-on-torch"


def _write(folder, records) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for (backend, phase), made in records.items():
        (folder / f"{phase}-{backend}.json").write_text(json.dumps(made))


def _page(tmp_path, *runs) -> tuple[int, str]:
    folders = []
    for i, records in enumerate(runs):
        folders.append(tmp_path / f"run{i}")
        _write(folders[-1], records)
    out = tmp_path / "table.md"
    status = table.main([*map(str, folders), "--out", str(out), "--date", "2026-12-08", "--machine", "a test"])
    return status, out.read_text()


def _row(page: str, subject: str) -> dict:
    """{(backend, check): cell} of the table's row for `subject`."""
    header = next(line for line in page.splitlines() if line.startswith("| subject |"))
    columns = [tuple(c.strip().split("<br>")) for c in header.strip("|").split("|")[1:]]
    line = next(line for line in page.splitlines() if line.startswith(f"| run0: {subject} |"))
    return dict(zip(columns, [c.strip() for c in line.strip("|").split("|")[1:]]))


def _diverging(records, backends=("torch",)) -> dict:
    """`records` with torch's float64 policy off by a float32 rounding, declared as a divergence on `backends`."""
    records = copy.deepcopy(records)
    for made in records.values():
        made["subjects"]["dense"]["meta"]["divergences"] = [["policies/float64", b, FINDING] for b in backends]
    records[("torch", "record")]["subjects"]["dense"]["checks"]["policies/float64"] = _numeric(
        (REFERENCE * (1 + 1e-9)).astype(np.float32), "float64"
    )
    return records


def test_an_agreeing_run_is_every_cell_passed_and_says_its_date_machine_and_versions(tmp_path):
    status, page = _page(tmp_path, _records())
    assert status == 0
    assert "2026-12-08, a test. Versions: keras 3.15.1; numpy 2.4.6." in page
    assert f"| `{tmp_path.name}/run0` | 1 | PASS |" in page
    row = _row(page, "dense")
    assert set(row) >= {(b, "forward") for b in BACKENDS} and row[("jax", "forward")] == "✓"
    assert row[("torch", "errors")] == "✓" and "## Findings" not in page and "## Failing" not in page


def test_a_declared_divergence_is_a_finding_on_its_cell_alone_listed_once_with_its_cells(tmp_path):
    records = _diverging(_records())
    second = copy.deepcopy(records)
    for made in second.values():
        made["subjects"]["dense2"] = made["subjects"].pop("dense")
    status, page = _page(tmp_path, records)
    assert status == 0
    row = _row(page, "dense")
    assert row[("torch", "policies")] == "✓ K1" and row[("jax", "policies")] == row[("tensorflow", "policies")] == "✓"
    assert page.count("K1. ") == 1 and "[docs/findings.md#float64-matmul-on-torch](findings.md#float64-matmul" in page
    assert "cells: run0: dense (policies/float64 on torch)" in page
    # one cause in two subjects, in other words but pointing at one findings section: one finding, both cells
    other_words = "float64 matmul is float32 on torch: docs/findings.md#float64-matmul-on-torch"
    merged = copy.deepcopy(records)
    for key, made in second.items():
        made["subjects"]["dense2"]["meta"]["divergences"] = [["policies/float64", "torch", other_words]]
        merged[key]["subjects"].update(made["subjects"])
    status, page = _page(tmp_path, merged)
    assert status == 0 and "K2" not in page and "float64 matmul is float32 on torch" in page
    assert "cells: run0: dense (policies/float64 on torch); run0: dense2 (policies/float64 on torch)" in page


def test_a_failing_cell_fails_the_page_on_that_backend_alone_with_the_numbers(tmp_path):
    records = _records()
    records[("tensorflow", "record")]["subjects"]["dense"]["checks"]["forward"] = _numeric(
        REFERENCE.astype(np.float32) * 1.01, "float32"
    )
    status, page = _page(tmp_path, records)
    assert status == 1 and f"| `{tmp_path.name}/run0` | 1 | **FAIL**: dense: forward on tensorflow" in page
    row = _row(page, "dense")
    assert row[("tensorflow", "forward")] == "✗1" and row[("jax", "forward")] == row[("torch", "forward")] == "✓"
    assert "## Failing" in page and "max |tensorflow - " in page


def test_a_divergence_declared_where_it_does_not_diverge_fails(tmp_path):
    """Declared on jax too, where it agrees: the report fails that cell, and so does the page (a finding that no
    longer holds is not shown as one)."""
    status, page = _page(tmp_path, _diverging(_records(), backends=("torch", "jax")))
    assert status == 1 and _row(page, "dense")[("jax", "policies")] == "✓ ✗1"
    assert "agrees now" in page


def test_a_missing_record_is_never_a_passing_page(tmp_path):
    records = _records()
    del records[("torch", "load")]
    status, page = _page(tmp_path, records)
    assert status == 1 and "**FAIL**: torch: no load-torch.json" in page
    assert f"| `{tmp_path.name}/run0` | 1 | PASS |" not in page
