#!/usr/bin/env python3
"""Print the cross-backend conformance report from the backend sessions' observations.

    python scripts/report.py [--reports reports/]

Reads each backend's record, reports/observed-<backend>.json and its parts (written by `nox -s
tests-<backend>`), prints a summary, writes reports/report.md and reports/report.json, and exits 1 unless the
verdict is PASS (see conformance/report.py). The version set is the folder's name (reports/nightly is the
nightly set; reports/ itself the pinned set) unless --version-set says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance import report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="folder of observed-*.json")
    parser.add_argument("--full", action="store_true", help="also print the full Markdown table")
    parser.add_argument("--version-set", help="the version set the records must come from (default: from the folder)")
    args = parser.parse_args(argv)
    print(f"reading {args.reports}/observed-*.json ...", flush=True)
    result = report.build(args.reports, args.version_set)
    md, js = report.write(result, args.reports)
    if args.full:
        print(report.markdown(result))
    print(report.summary(result))
    print(f"  full table: {md}  (JSON: {js})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
