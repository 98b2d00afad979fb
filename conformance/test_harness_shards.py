"""One run split across CI jobs (`--shard K/N`), merged by `python -m conformance.harness report --out DIR SHARDS...`:
judged exactly as the same records in one folder are, and never PASS with a shard missing, given twice, of another
run or of another split. Records made by hand (no backend needed: run in `golden_check`)."""

from __future__ import annotations

import copy
import json

import numpy as np

from conformance.harness import __main__ as cli
from conformance.harness import compare
from conformance.test_harness_report import REFERENCE, _numeric, _records


def _one_run() -> dict:
    """A complete run of three subjects (dense, dense2, dense3) in one folder's records."""
    records = _records()
    for made in records.values():
        dense = made["subjects"]["dense"]
        made["subjects"] = {name: copy.deepcopy(dense) for name in ("dense", "dense2", "dense3")}
    return records


def _shards(records: dict, count: int = 2) -> list[dict]:
    """`records` as `count` shards' records: the K-th holds every count-th subject from the K-th, as --shard
    selects them, each shard's processes its own."""
    names = list(next(iter(records.values()))["subjects"])
    out = []
    for k in range(1, count + 1):
        ran = [name for i, name in enumerate(names) if i % count == k - 1]
        shard = copy.deepcopy(records)
        for made in shard.values():
            made["subjects"] = {name: made["subjects"][name] for name in ran}
            made["selection"] = {"shard": [k, count], "ran": ran, "declared": len(names)}
            made["process"] += f":shard{k}"
        out.append(shard)
    return out


def _write(folder, records) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for (backend, phase), made in records.items():
        (folder / f"{phase}-{backend}.json").write_text(json.dumps(made))


def _merged(tmp_path, shards) -> tuple[int, dict]:
    folders = []
    for i, records in enumerate(shards):
        folders.append(tmp_path / f"shard{i}")
        _write(folders[-1], records)
    status = cli.main(["report", "--out", str(tmp_path / "merged"), *map(str, folders)])
    return status, json.loads((tmp_path / "merged" / "report.json").read_text())


def test_a_merge_of_shards_is_judged_exactly_as_one_run(tmp_path):
    records = _one_run()
    records[("torch", "record")]["subjects"]["dense2"]["checks"]["forward"] = _numeric(
        REFERENCE.astype(np.float32) * 1.01, "float32"
    )  # one failing cell, so the comparison covers a verdict with a FAIL in it too
    _write(tmp_path / "one", records)
    one = compare.build(tmp_path / "one")
    status, merged = _merged(tmp_path, _shards(records))
    assert status == 1 and not one["ok"] and one["failing"] == ["dense2: forward on torch"]
    for key in ("ok", "partial", "problems", "failing", "subjects"):
        assert merged[key] == json.loads(json.dumps(one[key])), key
    status, merged = _merged(tmp_path, _shards(_one_run(), count=3))
    assert status == 0 and merged["ok"], (merged["problems"], merged["failing"])


def test_a_shard_alone_is_never_a_pass(tmp_path):
    first = _shards(_one_run())[0]
    _write(tmp_path, first)
    result = compare.build(tmp_path)
    assert not result["ok"] and result["partial"] == ["2 of the declaration's 3 subjects (shard 1 of 2)"]
    assert not result["failing"] and not result["problems"]


def test_a_missing_shard_fails(tmp_path):
    status, merged = _merged(tmp_path, _shards(_one_run(), count=3)[:2])
    assert status == 1 and not merged["ok"]
    assert "record-jax: shard 3 of 3 missing" in merged["problems"]


def test_a_shard_of_another_run_fails(tmp_path):
    first, second = _shards(_one_run())
    for made in second.values():
        made["run"] = "another-run"
    status, merged = _merged(tmp_path, [first, second])
    assert status == 1 and any("shards of different runs" in p for p in merged["problems"])


def test_a_shard_given_twice_or_of_another_split_fails(tmp_path):
    first, second = _shards(_one_run())
    status, merged = _merged(tmp_path, [first, copy.deepcopy(first), second])
    assert status == 1 and any("shard 1 of 2 given 2 times" in p for p in merged["problems"])
    assert any("come from one process" in p for p in merged["problems"])
    other = _shards(_one_run(), count=3)[2]
    status, merged = _merged(tmp_path, [first, second, other])
    assert status == 1 and any("shards of different counts (2, 3)" in p for p in merged["problems"])


def test_a_run_folder_that_is_not_a_shard_is_not_merged(tmp_path):
    first, _ = _shards(_one_run())
    status, merged = _merged(tmp_path, [first, _one_run()])
    assert status == 1 and any("is not a shard's record (--shard)" in p for p in merged["problems"])
