"""The golden fixtures are current, intact and small, and a damaged or stale golden/ is reported as such,
with the fix that applies (no Keras backend needed: the `golden_check` session runs this file).
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conformance.subjects.hyperzzw import cases, golden

_spec = importlib.util.spec_from_file_location(
    "regenerate_golden", Path(__file__).resolve().parents[1] / "scripts" / "regenerate_golden.py"
)
regenerate_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regenerate_golden)


@pytest.fixture(scope="module")
def golden_manifest():
    return golden.read_manifest()


def test_fixtures_are_intact_and_current(golden_manifest):
    state, problems = golden.status(*golden.build())
    assert (state, problems) == ("current", []), (
        f"golden/ is {state}; {golden.RESTORE if state == 'damaged' else golden.REGENERATE}"
    )


def test_every_case_and_keras_file_has_a_checksum(golden_manifest):
    assert set(golden_manifest["cases"]) == {case.id for case in cases.CASES}
    assert {golden.keras_path(b) for b in golden.KERAS_BACKENDS} <= set(golden_manifest["sha256"])


def test_fixtures_are_small():
    size = sum(p.stat().st_size for p in golden.ROOT.rglob("*") if p.is_file())
    assert size < 5 * 2**20, f"golden/ holds {size / 2**20:.1f} MiB; keep it well under 5 MB"


def test_provenance_is_recorded(golden_manifest):
    for key in ("generator", "oracle", "inputs", "seed", "catalogue_sha256"):
        assert golden_manifest[key], key
    for entry in golden_manifest["cases"].values():
        assert entry["tolerance"]["max_atol"]["output"] >= 0 and entry["tolerance"]["n"]["output"] >= 1


@pytest.fixture
def golden_copy(tmp_path, monkeypatch):
    """A private copy of golden/ that a test may damage."""
    root = tmp_path / "golden"
    shutil.copytree(golden.ROOT, root)
    monkeypatch.setattr(golden, "ROOT", root)
    monkeypatch.setattr(golden, "MANIFEST", root / "manifest.json")
    return root


def test_a_corrupted_file_is_named_with_the_fix(golden_copy):
    path = golden_copy / "cases" / "rank2-float32.npz"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(
        golden.GoldenError, match=r"rank2-float32\.npz is damaged: checksum mismatch.*git checkout -- golden/hyperzzw/"
    ):
        golden.load_case(cases.by_id("rank2-float32"))


def test_a_missing_file_is_named_with_the_fix(golden_copy):
    (golden_copy / "errors.json").unlink()
    with pytest.raises(golden.GoldenError, match=r"errors\.json is damaged: missing.*git checkout -- golden/hyperzzw/"):
        golden.load_errors()


def test_a_changed_catalogue_is_detected(golden_copy, monkeypatch):
    monkeypatch.setattr(cases, "catalogue_hash", lambda: "0" * 64)
    with pytest.raises(
        golden.GoldenError, match=r"is stale: the case catalogue .* changed.*Regenerate with: nox -t golden"
    ):
        golden.check_catalogue()


def test_regeneration_reports_numeric_drift(golden_copy):
    """What `regenerate_golden.py` prints: per changed case, which arrays and the largest difference."""
    files, manifest = golden.build()
    case = cases.by_id("rank2-float64")
    arrays = golden.compute_case(case)
    arrays["output"] = arrays["output"] + np.where(
        np.arange(arrays["output"].size).reshape(arrays["output"].shape) == 3, 1e-3, 0
    )
    (golden_copy / "cases" / f"{case.id}.npz").write_bytes(golden.npz_bytes(golden.carriers(case, arrays)))
    lines = golden.differences(files, manifest)
    assert len(lines) == 1 and lines[0].startswith("changed  cases/rank2-float64.npz: output: 1 values differ")
    assert "largest |diff| 0.001" in lines[0]


def test_every_regenerated_manifest_field_is_compared(golden_copy):
    """A tolerance summary (or any other field) edited in the stored manifest is stale data: the check sees it."""
    files, manifest = golden.build()
    stored = json.loads((golden_copy / "manifest.json").read_text())
    stored["cases"]["rank2-float32"]["tolerance"]["max_atol"]["output"] *= 2
    stored["seed"] += 1
    (golden_copy / "manifest.json").write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    assert golden.differences(files, manifest) == [
        "changed  manifest.json: cases/rank2-float32: tolerance",
        "changed  manifest.json: seed",
    ]


def _check_output(capsys) -> tuple[int, str]:
    files, manifest = golden.build()
    status = regenerate_golden.check(files, manifest, 0)
    return status, capsys.readouterr().out


def test_the_check_tells_damaged_from_stale(golden_copy, capsys):
    assert _check_output(capsys) == (0, "golden/hyperzzw/ is current: 40 cases, 0 KiB of oracle data\n")
    # stale: the data changed but the manifest's checksum was updated with it (an intact, outdated file)
    case = cases.by_id("rank2-float32")
    arrays = golden.compute_case(case)
    arrays["output"] = arrays["output"] * 2
    data = golden.npz_bytes(golden.carriers(case, arrays))
    (golden_copy / "cases" / f"{case.id}.npz").write_bytes(data)
    stored = json.loads((golden_copy / "manifest.json").read_text())
    stored["sha256"][f"cases/{case.id}.npz"] = golden.sha256(data)
    (golden_copy / "manifest.json").write_text(json.dumps(stored))
    status, out = _check_output(capsys)
    assert status == 1 and out.startswith("golden/hyperzzw/ is stale") and "regenerate with: nox -t golden" in out
    assert "changed  cases/rank2-float32.npz: output: 512 values differ" in out and "damaged" not in out
    # damaged: bytes that do not match the manifest
    (golden_copy / "errors.json").write_text("{}")
    status, out = _check_output(capsys)
    assert (
        status == 1
        and out.startswith("golden/hyperzzw/ is damaged")
        and out.rstrip().endswith("git checkout -- golden/hyperzzw/")
    )
    assert "errors.json is damaged: checksum mismatch" in out and "stale" not in out


@pytest.mark.parametrize("text", ["{not json", "[]", ""])
def test_an_unreadable_manifest_is_damaged(golden_copy, text):
    (golden_copy / "manifest.json").write_text(text)
    with pytest.raises(golden.GoldenError, match=r"manifest\.json is damaged: .*git checkout -- golden/hyperzzw/"):
        golden.read_manifest()


def _rezipped(data: bytes, edit) -> bytes:
    """The same `.keras` file zipped again with new timestamps, after `edit(name, bytes) -> bytes`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            new.writestr(
                zipfile.ZipInfo(info.filename, date_time=(2030, 6, 1, 12, 0, 0)), edit(info.filename, old.read(info))
            )
    return out.getvalue()


def test_resaving_an_unchanged_keras_file_changes_no_byte(golden_copy):
    """Keras writes `date_saved` and zip timestamps on every save; the regenerated file is kept only when
    what it holds (config, metadata apart from the date, weights) changed."""
    path = golden.keras_path("jax")
    stored = (golden_copy / path).read_bytes()

    def later(name, blob):
        if name == "metadata.json":
            metadata = json.loads(blob)
            metadata["date_saved"] = "2030-06-01@12:00:00"
            return json.dumps(metadata).encode()
        return blob

    assert golden.record_keras_file(path, _rezipped(stored, later)) is False
    assert (golden_copy / path).read_bytes() == stored

    def other_config(name, blob):
        return blob.replace(b'"zzw"', b'"zzx"') if name == "config.json" else blob

    changed = _rezipped(stored, other_config)
    assert golden.record_keras_file(path, changed) is True
    assert (golden_copy / path).read_bytes() == changed
    assert golden.read_manifest()["sha256"][path] == golden.sha256(changed)
