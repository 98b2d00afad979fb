"""The cross-backend report: reads the records the backends wrote, has each subject judged (`judge.Judge`, each row by
the check that recorded it, `conformance.harness.checks`), and prints a check x backend matrix per subject, then
the verdict.

NumPy only: this process imports neither keras nor a backend nor the declaration file; what it needs of the
declaration (tolerances and their reasons, bad inputs, known divergences, skipped checks) is in the records.

PASS means: a complete record of both phases from each of the three backends, each its own process's, made in
one run (one `--run` id) from the same declaration file and layer sources with the same keras and numpy, of every
subject the declaration holds, and every cell of every subject passes: each value within its stated tolerance
of its reference and of every other backend, each dtype the policy's, each text the same on every backend, each
declared error raised with its type and text, each known divergence still diverging. A missing record, phase,
subject or observation is a FAIL, never a pass.
"""

from __future__ import annotations

import json
from pathlib import Path

from conformance.harness import checks
from conformance.harness.judge import FAIL, KNOWN, MISSING, PASS, SKIP, Judge
from conformance.harness.terms import BACKENDS, RECORD_FORMAT

PHASES = ("record", "load")


def read(
    folder: str | Path, backends: tuple[str, ...] = BACKENDS, phases: tuple[str, ...] = PHASES
) -> tuple[dict, list[str]]:
    """{backend: {phase: record}} of `backends` and `phases` (the self-test has no load phase), and the problems
    with the records themselves."""
    records, problems = _read_folder(folder, backends, phases)
    return records, problems + _inconsistencies(records)


def read_shards(
    folders: list[str | Path], backends: tuple[str, ...] = BACKENDS, phases: tuple[str, ...] = PHASES
) -> tuple[dict, list[str]]:
    """The records of one run split across folders by `--shard K/N` (one CI job per shard), merged into what one
    run's `read` gives: per backend and phase, every shard's subjects in one record. Each of the N shards must be
    there exactly once for every backend and phase, all of one run (one `--run` id) and one declaration; a shard
    missing, given twice, of another run or of another N is a problem, so a merge says PASS only where one run
    would."""
    problems, found = [], {}  # (backend, phase) -> [(shard, folder, record)]
    for folder in folders:
        records, folder_problems = _read_folder(folder, backends, phases)
        problems += [f"{Path(folder).name}: {p}" for p in folder_problems]
        for backend, made in records.items():
            for phase, record in made.items():
                shard = tuple((record.get("selection") or {}).get("shard") or ())
                if len(shard) != 2:
                    problems.append(f"{Path(folder).name}: {phase}-{backend}.json is not a shard's record (--shard)")
                    continue
                found.setdefault((backend, phase), []).append((shard, Path(folder).name, record))
    merged = {}
    for (backend, phase), items in sorted(found.items()):
        items = sorted(items, key=lambda item: item[0])  # by shard
        counts = sorted({n for (_, n), _, _ in items})
        if len(counts) != 1:
            problems.append(f"{phase}-{backend}: shards of different counts ({', '.join(map(str, counts))})")
            continue
        given = [k for (k, _), _, _ in items]
        for k in range(1, counts[0] + 1):
            if given.count(k) != 1:
                where = ", ".join(name for (i, _), name, _ in items if i == k)
                problems.append(
                    f"{phase}-{backend}: shard {k} of {counts[0]} "
                    + (f"given {given.count(k)} times ({where})" if given.count(k) else "missing")
                )
        record = dict(items[0][2])
        record["subjects"] = {}
        for _, _, shard_record in items:
            for subject in shard_record["subjects"]:
                if subject in record["subjects"]:
                    problems.append(f"{phase}-{backend}: the subject {subject!r} is in more than one shard")
            record["subjects"].update(shard_record["subjects"])
        declared = items[0][2]["selection"].get("declared")
        if len(record["subjects"]) != declared:  # a shard missing, or shards run with --only
            problems.append(
                f"{phase}-{backend}: the shards ran {len(record['subjects'])} of the declaration's {declared} subjects"
            )
        record["process"] = "+".join(r.get("process") or "?" for _, _, r in items)
        record["run"] = items[0][2].get("run")
        record["selection"] = None
        merged.setdefault(backend, {})[phase] = record
        runs = sorted({str(r.get("run")) for _, _, r in items})
        if len(runs) > 1:
            problems.append(f"{phase}-{backend}: shards of different runs ({', '.join(runs)})")
        declarations = {json.dumps(r.get("declaration", {}).get("sha256")) for _, _, r in items}
        if len(declarations) > 1:
            problems.append(f"{phase}-{backend}: shards of different declaration files")
    processes = [p for made in found.values() for _, _, r in made for p in [r.get("process")]]
    if len(processes) != len(set(processes)):
        problems.append("two shards' records come from one process: copied or relabelled")
    for backend in backends:
        for phase in phases:
            if (backend, phase) not in found:
                problems.append(f"{backend}: no {phase}-{backend}.json in any shard")
    return merged, problems + _inconsistencies(merged)


def _read_folder(folder: str | Path, backends: tuple[str, ...], phases: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Each record of `folder` that is what its name says (else a problem), unchecked against the others."""
    folder, records, problems = Path(folder), {}, []
    for backend in backends:
        for phase in phases:
            path = folder / f"{phase}-{backend}.json"
            if not path.is_file():
                problems.append(
                    f"{backend}: no {path.name}: its {phase} phase did not run or died before writing it "
                    "(its output is above)"
                )
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"{backend}: {path.name} is unreadable ({exc})")
                continue
            if record.get("error"):
                problems.append(f"{backend}: {phase} phase: {record['error']}")
                continue
            if record.get("format") != RECORD_FORMAT:
                problems.append(
                    f"{backend}: {path.name} is a record of format {record.get('format')!r}; this report reads "
                    f"{RECORD_FORMAT!r} (made by another version of the harness?)"
                )
                continue
            if record.get("backend") != backend or record.get("phase") != phase or not record.get("complete"):
                problems.append(f"{backend}: {path.name} is not a complete {phase} record of {backend}")
                continue
            records.setdefault(backend, {})[phase] = record
    return records, problems


def _inconsistencies(records: dict) -> list[str]:
    """What makes the records not one run's: copies, several runs, declarations or keras and numpy versions."""
    problems = []
    present = [r for made in records.values() for r in made.values()]
    processes = {}
    for r in present:  # every phase of every backend is a process of its own
        processes.setdefault(r.get("process"), []).append(f"{r['phase']}-{r['backend']}.json")
    for process, names in processes.items():
        if process is None:
            problems.append(f"{', '.join(names)}: no process id (not written by conformance.harness.record)")
        elif len(names) > 1:  # one record copied under another name, its backend or phase edited to match
            problems.append(f"the records {', '.join(names)} come from one process ({process}): copied or relabelled")
    runs = {f"{r['phase']}-{r['backend']}.json": r.get("run") for r in present}
    if len(set(runs.values())) > 1:  # merged artifacts of several runs: the layer may have changed in between
        problems.append(
            "the records come from different runs (one run gives every backend and phase the same --run id): "
            + ", ".join(f"{name}: {run}" for name, run in sorted(runs.items()))
        )
    for field in ("declaration", "versions"):
        keys = {json.dumps(r[field]["sha256"] if field == "declaration" else _versions_key(r[field])) for r in present}
        if len(keys) > 1:
            what = "different declaration files" if field == "declaration" else "different keras or numpy versions"
            problems.append(f"the records come from {what}: " + ", ".join(sorted(keys)))
    return problems


def _versions_key(versions: dict) -> list:
    return [versions.get("keras"), versions.get("numpy")]


def build(
    folder: str | Path,
    read_records: tuple[dict, list[str]] | None = None,
    backends: tuple[str, ...] = BACKENDS,
    phases: tuple[str, ...] = PHASES,
) -> dict:
    """The report of the records in `folder` (`read_records`: what `read(folder)` returned, if already read).
    With some `backends` only, each of their cells is judged against its references alone (no other backend to
    compare with), and the report is partial: it never says PASS."""
    records, problems = read_records or read(folder, backends, phases)
    problems = list(problems)
    subjects = {}
    names = sorted({n for made in records.values() for r in made.values() for n in r["subjects"]})
    for name in names:
        observations, meta, metas, sources = {}, None, {}, {}
        for backend, made in records.items():
            merged = {}
            for phase in phases:
                subject = made.get(phase, {}).get("subjects", {}).get(name)
                if subject is None:
                    if phase in made:
                        problems.append(f"{backend}: the {phase} record has no subject {name!r}")
                    continue
                merged.update(subject["checks"])
                if subject.get("sources"):
                    sources[f"{backend} {phase}"] = subject["sources"]
                meta = meta or subject["meta"]
                metas[f"{backend} {phase}"] = subject["meta"]
            observations[backend] = merged
        differing = sorted({k for m in metas.values() for k in m if m.get(k) != meta.get(k)})
        if differing:  # drawn arguments (another hypothesis version), a declaration that reads the backend
            problems.append(
                f"{name}: the processes declared it differently ({', '.join(differing)}): "
                + "; ".join(f"{where}: {m.get(differing[0])}" for where, m in metas.items())
            )
        if len({json.dumps(v, sort_keys=True) for v in sources.values()}) > 1:  # edited between the processes
            problems.append(
                f"{name}: the layer's source differs between the processes: "
                + "; ".join(f"{where}: {v}" for where, v in sources.items())
            )
        judge = Judge(name, observations, meta)
        judge.run()
        subjects[name] = {"cells": judge.cells, "tolerances": judge.tolerances, "notes": judge.notes, "meta": meta}
    failing = [
        f"{name}: {check} on {backend}"
        for name, s in subjects.items()
        for check, cells in s["cells"].items()
        for backend, (status, _) in cells.items()
        if status in (FAIL, MISSING)
    ]
    if not names:
        problems.append("no subject was recorded")
    partial = [] if tuple(backends) == BACKENDS else [f"{', '.join(backends)} only"]
    selections = {json.dumps(r["selection"]) for p in records.values() for r in p.values() if r.get("selection")}
    for selection in map(json.loads, sorted(selections)):  # --only (pytest -k) or --shard: some subjects left out
        how = (
            f"--only {' '.join(selection['only'])}"
            if selection.get("only")
            else "shard {} of {}".format(*selection.get("shard", ("?", "?")))
        )
        partial.append(f"{len(selection['ran'])} of the declaration's {selection['declared']} subjects ({how})")
    complete = all(len(records.get(b, {})) == len(phases) for b in BACKENDS)
    ok = not partial and not problems and not failing and complete
    versions = {b: made.get("record", {}).get("versions") for b, made in records.items()}
    return {
        "ok": ok,
        "partial": partial,
        "backends": list(backends),
        "problems": problems,
        "failing": failing,
        "subjects": subjects,
        "versions": versions,
    }


def why_not(result: dict, most: int = 3) -> str:
    """Why `result` (a `build`) is not a PASS, in one line: its first `most` reasons (what ran only, the problems
    with the records, the failing cells), and "..." when there are more."""
    reasons = [*result["partial"], *result["problems"], *result["failing"]]
    return "; ".join(reasons[:most]) + ("; ..." if len(reasons) > most else "")


def render(result: dict) -> str:
    """The report as text: per subject a matrix of check families x backends, then every non-passing cell
    with its numbers, the tolerances and their derivation, and the verdict last."""
    lines = []
    for backend, v in result["versions"].items():
        if v:
            lines.append(
                f"{backend:<11} "
                + ", ".join(
                    f"{k} {v[k]}" for k in v if k in ("keras", backend, "numpy", "tensorflow-cpu", "tf-nightly")
                )
            )
    for name, subject in result["subjects"].items():
        lines.append("")
        lines.append(f"## {name}")
        if subject["meta"].get("args"):
            lines.append("  arguments: " + ", ".join(f"{k}={v}" for k, v in subject["meta"]["args"].items()))
        families: dict[str, dict[str, str]] = {}
        counts: dict[tuple, list] = {}  # (family, backend) -> [failing or missing, all]
        order = {"PASS": 0, "SKIP": 1, "KNOWN": 2, "MISSING": 3, "FAIL": 4}
        for check, cells in subject["cells"].items():
            row = families.setdefault(checks.family(check), {})
            for backend, (status, _) in cells.items():
                if order[status] >= order.get(row.get(backend, "PASS"), 0):
                    row[backend] = status
                count = counts.setdefault((checks.family(check), backend), [0, 0])
                count[0] += status in (FAIL, MISSING)
                count[1] += 1

        def cell(family, backend):
            status = families[family].get(backend, MISSING)
            bad, total = counts.get((family, backend), (0, 0))
            return f"{status} {bad}/{total}" if status in (FAIL, MISSING) and total > 1 else status

        shown = result.get("backends", BACKENDS)
        lines.append(f"  {'check':<26}" + "".join(f"{b:<12}" for b in shown))
        for family in sorted(families, key=checks.order):
            lines.append(f"  {family:<26}" + "".join(f"{cell(family, b):<12}" for b in shown))
        lines += _details(subject["cells"], shown)
        wrapped = subject.get("notes", {}).get("errors")
        if wrapped:  # Keras's words around errors raised in call(): shown, never judged
            lines.append(
                f"  note: {len(wrapped['checks'])} bad inputs raised inside call(), where Keras adds its own words "
                f"around the layer's message (its name, the call's arguments as the backend prints them; e.g. "
                f"{wrapped['example']!r}): the layer's own message is what is judged"
            )
        for reason in sorted(set(subject["tolerances"].values())):
            lines.append(f"  tolerance: {reason}")
    lines.append("")
    for problem in result["problems"]:
        lines.append(f"  problem: {problem}")
    if result["failing"]:
        lines.append(f"  {len(result['failing'])} cells fail or are missing, e.g. " + "; ".join(result["failing"][:5]))
    if result.get("partial") and not result["failing"] and not result["problems"]:
        lines.append(
            f"RESULT: {'; '.join(result['partial'])}: no cell of those fails; not a PASS, which needs every "
            "subject on every backend"
        )
    else:
        lines.append(f"RESULT: {'PASS' if result['ok'] else 'FAIL'}")
    return "\n".join(lines)


def _details(cells: dict, backends: tuple[str, ...] = BACKENDS) -> list[str]:
    """A line per cell that does not pass, in the order the checks run (a cause before what it knocked on), each
    exception printed whole the first time a backend raised it and named after that ("the same error as ...")."""
    lines, first = [], {}  # (backend, exception text) -> the check that raised it first
    for check, row in sorted(cells.items(), key=lambda item: (checks.order(checks.family(item[0])), item[0])):
        shared = {(status, tuple(notes)) for status, notes in row.values()}
        if len(shared) == 1 and len(row) == len(backends) and row[backends[0]][0] in (SKIP, KNOWN):
            status, notes = row[backends[0]]  # the same reason on every backend: once
            lines.append(f"  {status} {check} on every backend: " + "; ".join(notes))
            continue
        for backend, (status, notes) in row.items():
            if status == PASS or not notes:
                continue
            shown = []
            for note in notes:
                if note.startswith("raised ") and (backend, note) in first:
                    note = f"the same error as {first[backend, note]} on {backend} (above)"
                elif note.startswith("raised "):
                    first[backend, note] = check
                shown.append(note)
            text = f"  {status} {check} on {backend}: " + "; ".join(shown)
            lines.append(text.replace("\n", "\n      "))
    return lines
