"""`python -m conformance.harness SUBJECTS.py`: every subject of a declaration file on jax, torch and TensorFlow,
each backend in a process of its own, then the cross-backend report.

    python -m conformance.harness my_subjects.py                       # all three, from this environment
    python -m conformance.harness my_subjects.py --python torch=.venv-torch/bin/python ...   # a venv per backend
    python -m conformance.harness report reports/harness               # the report of records already made

Exit status 0 when the report says PASS, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance.harness import compare
from conformance.harness.declaration import BACKENDS


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


def run_phase(backend: str, phase: str, args, python: str) -> int:
    path = [args.harness_path, os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "KERAS_BACKEND": backend,
        "JAX_ENABLE_X64": "1",  # float64 is float64 on jax (it computes it in float32 otherwise)
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [python, "-m", "conformance.harness.record", args.subjects, "--out", str(args.out), "--phase", phase]
    for name in args.only or []:
        command += ["--only", name]
    started = time.perf_counter()
    status = subprocess.run(command, env=env).returncode
    print(f"harness: {backend} {phase} phase: exit {status}, {time.perf_counter() - started:.0f} s", flush=True)
    return status


def report(folder: Path) -> int:
    result = compare.build(folder)
    text = compare.render(result)
    (folder / "report.txt").write_text(text + "\n")
    (folder / "report.json").write_text(json.dumps(result, indent=1, default=str))
    print(text)
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return report(Path(argv[1] if len(argv) > 1 else "reports/harness"))
    if argv[:1] == ["run"]:
        argv = argv[1:]
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
    args = parser.parse_args(argv)
    pythons = dict.fromkeys(BACKENDS, sys.executable)
    for item in args.python:
        backend, _, path = item.partition("=")
        if backend not in BACKENDS or not path:
            parser.error(f"--python takes BACKEND=PATH with BACKEND one of {BACKENDS}. Received: {item!r}")
        pythons[backend] = path
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in [*args.out.glob("record-*.json"), *args.out.glob("load-*.json"), *args.out.glob("*/saved-*.keras")]:
        stale.unlink()  # a previous run's record must never stand in for this one's
    with tempfile.TemporaryDirectory(prefix="conformance-harness-") as folder:
        args.harness_path = harness_path(Path(folder))
        for phase in ("record", "load"):
            for backend in BACKENDS:
                run_phase(backend, phase, args, pythons[backend])
    return report(args.out)


if __name__ == "__main__":
    sys.exit(main())
