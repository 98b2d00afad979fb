#!/usr/bin/env python3
"""Regenerate the golden fixtures in golden/hyperzzw/ from the float64 oracle, or --check that they are current.

    python scripts/regenerate_golden.py           # rewrite golden/hyperzzw/, print what changed
    python scripts/regenerate_golden.py --check   # regenerate in memory; exit 1 if golden/hyperzzw/ differs

Run through nox (`nox -t golden`) it runs once per backend; each run also saves that backend's `.keras`
file (golden/hyperzzw/keras/saved-<backend>.keras). The oracle data are identical whichever backend runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.subjects.hyperzzw import golden  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the stored fixtures are not current")
    parser.add_argument("--no-keras", action="store_true", help="do not (re)save this backend's .keras file")
    args = parser.parse_args(argv)

    files, manifest = golden.build()
    size = sum(len(data) for data in files.values())
    if args.check:
        return check(files, manifest, size)

    changes = golden.differences(files, manifest)
    golden.write(files, manifest)
    print(*(changes or ["no changes to the oracle data"]), sep="\n")
    print(f"wrote {len(files)} files ({size / 1024:.0f} KiB) for {len(manifest['cases'])} cases")
    if not args.no_keras and "KERAS_BACKEND" in os.environ:
        from conformance import backend
        from conformance.subjects.hyperzzw import target

        path = golden.keras_path(backend.NAME)
        if golden.record_keras_file(path, golden.keras_model_bytes(target.HyperZZWOperator)):
            print(
                f"wrote {path} (saved by keras {backend.keras.__version__} on {backend.NAME} {backend.LIBRARY_VERSION})"
            )
        else:
            print(f"kept {path}: the model it holds (config and weights) is unchanged")
    return 0


def check(files: dict[str, bytes], manifest: dict, size: int) -> int:
    """Prints where golden/ stands (`golden.status`: damaged, stale or current) and the fix; 1 unless current."""
    state, problems = golden.status(files, manifest)
    if state == "damaged":
        print("golden/hyperzzw/ is damaged (its files are not the committed ones):", *problems, sep="\n  ")
        print(f"Restore it with: {golden.RESTORE}")
        return 1
    if state == "stale":
        print(
            "golden/hyperzzw/ is stale (intact, but not what the oracle and the case catalogue give today):",
            *problems,
            sep="\n  ",
        )
        print(
            f"If you changed the oracle or the catalogue on purpose, regenerate with: {golden.REGENERATE},"
            " review the drift above and commit golden/hyperzzw/. Otherwise restore it with: " + golden.RESTORE
        )
        return 1
    print(f"golden/hyperzzw/ is current: {len(manifest['cases'])} cases, {size / 1024:.0f} KiB of oracle data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
