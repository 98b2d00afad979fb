"""Vendor the HyperZZWOperator layer into your project, or check a vendored copy.

    python scripts/vendor.py mypkg/_vendor/hyperzzw.py           # write (or refresh) the copy
    python scripts/vendor.py --check mypkg/_vendor/hyperzzw.py   # exit 0 if unmodified and current, else 1

Also available as `nox -s vendor -- [--check] PATH`. Needs only the standard library (no keras). The copy is
this checkout's hyperzzw/layer.py, unchanged, below a provenance header (version, source, sha256); `--check`
says whether it was edited since (modified) or hyperzzw has changed since (stale). The logic lives in
conformance/vendoring.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402

from conformance import vendoring  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/vendor.py",
        description="Copy hyperzzw/layer.py into your project with a provenance header, or --check a copy.",
    )
    parser.add_argument("path", type=Path, help="the vendored file, e.g. mypkg/_vendor/hyperzzw.py")
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify PATH instead of writing it: provenance header well-formed, body unmodified, and "
        "equal to this checkout's hyperzzw/layer.py (exit 1 if not)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help=f"the layer file to vendor or compare with (default: {vendoring.SOURCE.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite PATH even if it exists and is not a vendored copy"
    )
    args = parser.parse_args(argv)

    try:
        if args.check:
            provenance = vendoring.check(args.path, source=args.source)
            print(f"OK: {args.path} is an unmodified, current copy of hyperzzw {provenance.version} "
                  f"(sha256 {provenance.sha256[:12]}).")
        else:
            provenance = vendoring.vendor(args.path, source=args.source, force=args.force)
            print(f"Wrote {args.path}: hyperzzw {provenance.version} from {provenance.source} "
                  f"(sha256 {provenance.sha256[:12]}). Check it later with: "
                  f"python scripts/vendor.py --check {args.path}")
    except vendoring.VendoringError as error:
        label = "/".join(error.kinds).upper()
        print(f"FAILED ({label}): {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
