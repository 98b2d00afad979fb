"""`python -m conformance.harness SUBJECTS.py`: every subject of a declaration file on jax, torch and TensorFlow,
each backend in a process of its own, then the cross-backend report.

    python -m conformance.harness my_subjects.py                       # all three, from this environment
    python -m conformance.harness my_subjects.py --python torch=.venv-torch/bin/python ...   # a venv per backend
    python -m conformance.harness my_subjects.py --backend jax         # one backend, against the references alone
    python -m conformance.harness report reports/harness               # the report of records already made
    python -m conformance.harness my_subjects.py --shard 2/4 --run ID --out shard2   # one CI job's share
    python -m conformance.harness report --out merged shard1 shard2 shard3 shard4      # the shards' one report
    python -m conformance.harness selftest my_subjects.py              # plant defects: does the report see them?
    python -m conformance.harness fixtures my_subjects.py              # write (or rewrite) the stored fixtures
    python -m conformance.harness table reports/harness/my_subjects --out table.md   # the table of runs' records

Exit status 0 when the report says PASS (with `--backend` or `--only`, which it never says PASS on: when no cell of
what ran fails), 1 otherwise.
The same run as pytest items: `conformance.harness.pytest_plugin`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from conformance.harness import compare
from conformance.harness.declaration import BACKENDS
from conformance.harness.record import shard_arg


def harness_path(folder: Path) -> str:
    """`folder`, holding only a link to this harness's `conformance` package, to put first on the backend
    processes' PYTHONPATH: a backend's interpreter (another venv) needs keras, the backend and numpy, not the
    harness, and every backend runs the same harness as this process."""
    package = Path(__file__).resolve().parent.parent  # conformance/
    try:
        (folder / package.name).symlink_to(package, target_is_directory=True)
        return str(folder)
    except OSError:  # no symlinks (Windows without the privilege): the package's parent folder
        return str(package.parent)


def phase_command(backend: str, phase: str, args, python: str) -> tuple[list[str], dict]:
    """The command and environment of one backend's process for `phase`."""
    path = [args.harness_path, os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "KERAS_BACKEND": backend,
        "JAX_ENABLE_X64": "1",  # float64 is float64 on jax (it computes it in float32 otherwise)
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [python, "-m", "conformance.harness.record", args.subjects, "--out", str(args.out), "--phase", phase]
    command += ["--run", args.run] + (["--plant"] if getattr(args, "plant", False) else [])
    command += ["--fixtures", str(args.fixtures)]
    for name in args.only or []:
        command += ["--only", name]
    if getattr(args, "shard", None):
        command += ["--shard", "{}/{}".format(*args.shard)]
    if tuple(backends_of(args)) != BACKENDS:
        command += [f"--backend={b}" for b in backends_of(args)]
    return command, env


def run_phase(backend: str, phase: str, args, python: str) -> int:
    """One backend's process for `phase`, its output passed through."""
    command, env = phase_command(backend, phase, args, python)
    return subprocess.run(command, env=env).returncode


def run_backends(phase: str, args, pythons: dict) -> None:
    """`phase` on every backend, at most `args.jobs` processes at once (their records do not depend on each
    other's), each one's output printed whole when it ends."""
    pending, running = list(backends_of(args)), []
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            backend = pending.pop(0)
            command, env = phase_command(backend, phase, args, pythons[backend])
            log = tempfile.TemporaryFile()
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((backend, process, log, time.perf_counter()))
        time.sleep(0.2)
        for item in [r for r in running if r[1].poll() is not None]:
            backend, process, log, started = item
            running.remove(item)
            log.seek(0)
            sys.stdout.write(log.read().decode(errors="replace"))
            log.close()
            seconds = time.perf_counter() - started
            print(f"harness: {backend} {phase} phase: exit {process.returncode}, {seconds:.0f} s", flush=True)


def interpreters(items: list[str]) -> dict[str, str]:
    """{backend: python} from `BACKEND=PATH` items (`--python`), this interpreter for the backends not given."""
    pythons = dict.fromkeys(BACKENDS, sys.executable)
    for item in items:
        backend, _, path = item.partition("=")
        if backend not in BACKENDS or not path:
            raise ValueError(f"--python takes BACKEND=PATH with BACKEND one of {BACKENDS}. Received: {item!r}")
        pythons[backend] = path
    return pythons


def backends_of(args) -> tuple[str, ...]:
    """The backends a run runs: `--backend`'s (in BACKENDS' order), else all of them."""
    chosen = getattr(args, "backends", None)
    return tuple(b for b in BACKENDS if b in chosen) if chosen else BACKENDS


def run_all(args, pythons: dict, phases=("record", "load"), check: bool = True) -> int:
    """The declaration checked once (loaded, every layer made, in the first backend's process; not with `check`
    False: the caller did), then `phases` on every backend. 2 when the declaration cannot run (nothing else
    started), else 0."""
    if not Path(args.subjects).is_file():
        print(f"harness: no declaration file at {args.subjects}", file=sys.stderr)
        return 2
    args.run = getattr(args, "run", None) or uuid.uuid4().hex
    args.out.mkdir(parents=True, exist_ok=True)
    made = [*args.out.glob("record-*.json"), *args.out.glob("load-*.json"), *args.out.glob("fixtures-*.json")]
    for stale in [*made, *args.out.glob("*/saved-*.keras")]:
        stale.unlink()  # a previous run's record must never stand in for this one's
    with tempfile.TemporaryDirectory(prefix="conformance-harness-") as folder:
        args.harness_path = harness_path(Path(folder))
        first = backends_of(args)[0]
        if check and run_phase(first, "check", args, pythons[first]) != 0:
            print("harness: the declaration cannot run (above); no backend was started", file=sys.stderr)
            return 2
        for phase in phases:  # every backend's record phase before any load phase (it loads their files)
            run_backends(phase, args, pythons)
    return 0


def report(folder: Path, backends: tuple[str, ...] = BACKENDS, shards: list[Path] | None = None) -> int:
    """The report of `folder`'s records of `backends` (or of the records of one run's `shards`, merged), printed
    and written in `folder`. 0 when it says PASS, or, for some backends or subjects only, when none of their cells
    fails."""
    if shards:
        folder.mkdir(parents=True, exist_ok=True)
        result = compare.build(folder, read_records=compare.read_shards(shards, backends), backends=backends)
    else:
        result = compare.build(folder, backends=backends)
    text = compare.render(result)
    (folder / "report.txt").write_text(text + "\n")
    (folder / "report.json").write_text(json.dumps(result, indent=1, default=str))
    print(text)
    return 0 if result["ok"] or (result["partial"] and not result["failing"] and not result["problems"]) else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return report_command(argv[1:])
    if argv[:1] == ["table"]:
        from conformance.harness import table

        return table.main(argv[1:])
    command = argv[0] if argv[:1] in (["run"], ["selftest"], ["fixtures"]) else "run"
    argv = argv[1:] if command != "run" or argv[:1] == ["run"] else argv
    parser = argparse.ArgumentParser(
        prog="python -m conformance.harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("subjects", help="the declaration file (Python, defining Subject objects)")
    parser.add_argument("--out", type=Path, default=Path("reports/harness"), help="records, saved files, the report")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="BACKEND=PATH",
        help="the interpreter to run BACKEND with (default: this one)",
    )
    parser.add_argument("--only", action="append", help="only this subject (repeatable)")
    parser.add_argument(
        "--backend",
        action="append",
        dest="backends",
        choices=BACKENDS,
        help="only this backend (repeatable; a run, not fixtures or selftest): its cells judged against the "
        "references alone, never PASS, which needs every backend",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        help="the folder of the subjects' stored fixtures, <subject>.json (default: fixtures/<file's stem>/ beside "
        "the declaration file)",
    )
    parser.add_argument(
        "--shard",
        type=shard_arg,
        metavar="K/N",
        help="run the K-th of N shares of the subjects (one CI job each; give every job the same --run), then "
        "`report --out DIR SHARD_FOLDERS...` merges them; a shard's own report is never PASS",
    )
    parser.add_argument("--run", help="the run's id (default: a new one); every shard of a run needs the same")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(len(BACKENDS), os.cpu_count() or 1),
        help="backend processes at once (default: one per core, at most one per backend)",
    )
    args = parser.parse_args(argv)
    try:
        pythons = interpreters(args.python)
    except ValueError as exc:
        parser.error(str(exc))
    if args.fixtures is None:
        args.fixtures = Path(args.subjects).parent / "fixtures" / Path(args.subjects).stem
    args.fixtures = args.fixtures.resolve()
    if command == "run":
        return run_all(args, pythons) or report(args.out, backends_of(args))
    if args.backends or args.shard or args.run:
        parser.error(f"--backend, --shard and --run are for a run; {command} runs every backend and subject")
    if command == "fixtures":
        if args.out == Path("reports/harness"):
            args.out = Path("reports/fixtures")
        return run_all(args, pythons, phases=("fixtures",)) or write_fixtures(args.out, args.fixtures)
    args.plant = True
    if args.out == Path("reports/harness"):
        args.out = Path("reports/selftest")
    return run_all(args, pythons, phases=selftest_phases()) or self_test(args.out)


def report_command(argv: list[str]) -> int:
    """`report [FOLDER]`: the report of one run's records; `report --out DIR SHARD...`: of one run's shards."""
    parser = argparse.ArgumentParser(prog="python -m conformance.harness report")
    parser.add_argument("folders", nargs="*", type=Path, help="one run's records, or each shard's (--shard)")
    parser.add_argument("--out", type=Path, help="where the merged report goes (with shards)")
    args = parser.parse_args(argv)
    folders = args.folders or [Path("reports/harness")]
    if args.out is None and len(folders) == 1:
        return report(folders[0])
    if args.out is None:
        parser.error("several folders are one run's shards: say where their merged report goes (--out DIR)")
    return report(args.out, shards=folders)


def write_fixtures(folder: Path, fixtures: Path) -> int:
    """The stored fixtures from the `fixtures` phase's records in `folder`: written where there is none, rewritten
    where the numbers moved beyond tolerance (said per subject), kept otherwise. 0 when every subject has one."""
    from conformance.harness.checks import fixtures as check

    records = {}
    for backend in BACKENDS:
        path = folder / f"fixtures-{backend}.json"
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or not record.get("complete"):
            why = record.get("error", "incomplete") if record else "no record: its process died (above)"
            print(f"harness: fixtures: {backend}: {why}; no fixture is written without every backend")
            return 1
        records[backend] = record
    lines, ok = check.write(records, fixtures)
    print(f"harness: fixtures in {fixtures}:")
    print("\n".join(lines))
    return 0 if ok else 1


def selftest_phases() -> tuple[str, ...]:
    """The self-test's phases: the record phase alone. No planted subject runs a check with a load phase (the
    defects' checks are listed in `selftest.DEFECTS`; a test holds them to it), and the load phase's processes,
    which would make every subject's Run for nothing, cost 10-36 s per backend on Keras's subjects."""
    return ("record",)


def self_test(folder: Path) -> int:
    """The self-test's verdicts from the planted subjects' records: 0 when every planted defect is caught on its
    backend and check, or not caught for a reason the declaration gives; 1 otherwise."""
    from conformance.harness import selftest

    records, problems = compare.read(folder, phases=selftest_phases())
    result = compare.build(folder, (records, problems), phases=selftest_phases())
    (folder / "report.txt").write_text(compare.render(result) + "\n")  # the planted subjects' report, for reading
    verdicts = selftest.evaluate(result, records)
    print(selftest.write(folder, verdicts))
    for problem in problems:  # records missing or of several runs: no verdict stands on them
        print(f"  problem: {problem}")
    return 0 if selftest.passed(verdicts) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
