#!/usr/bin/env python3
"""Break the layer on purpose, one defect at a time, and check that the suite goes red for each.

    KERAS_BACKEND=jax python scripts/mutants.py [--only NAME] [-- pytest args]

For each mutant in conformance/subjects/hyperzzw/mutants.py: write the mutated layer file to a temporary
folder, run pytest against it (HYPERZZW_TARGET points the suite at it; -x stops at the first failure), and
record which test caught it. Exits 1 if any mutant survives. Run it per backend (`nox -t mutants`).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.subjects.hyperzzw import mutants  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args(argv)
    source = (ROOT / "hyperzzw" / "layer.py").read_text()
    names = args.only or list(mutants.MUTANTS)
    survivors, equivalent = [], []
    backend = os.environ.get("KERAS_BACKEND", "?")
    print(f"{len(names)} mutants on backend {backend}")
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "hyperzzw_mutant.py"
            path.write_text(mutants.apply(source, name))
            env = {**os.environ, "HYPERZZW_TARGET": str(path), "HYPOTHESIS_PROFILE": "ci"}
            env.pop("HYPERZZW_OBSERVED", None)
            start = time.perf_counter()
            run = subprocess.run(
                # test_traced.py by name: a plain `pytest conformance` leaves it out (see conftest.py)
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "conformance",
                    "conformance/test_traced.py",
                    "-x",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "--no-header",
                    "--ignore=conformance/test_vendoring.py",
                    *args.pytest_args,
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - start
        caught = re.search(r"^FAILED (\S+)", run.stdout, re.M) or re.search(r"^ERROR (\S+)", run.stdout, re.M)
        reason = mutants.EQUIVALENT_ON.get(name, {}).get(backend)
        if run.returncode == 0 and reason:
            equivalent.append(name)
            print(f"  equivalent {name} on {backend}: {reason}  ({seconds:.0f} s)")
        elif run.returncode == 0:
            survivors.append(name)
            print(f"  SURVIVED  {name}  ({seconds:.0f} s)")
        else:
            print(
                f"  caught    {name:<38} by {caught.group(1) if caught else run.stdout.strip().splitlines()[-1]}"
                f"  ({seconds:.0f} s)"
            )
    caught = len(names) - len(survivors) - len(equivalent)
    print(
        f"{backend}: {caught} of {len(names)} mutants caught, {len(equivalent)} equivalent on this backend "
        f"(reasons above), {len(survivors)} survived"
    )
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
