"""Vendor the HyperZZWOperator layer into your project, or check a vendored copy.

    python scripts/vendor.py mypkg/_vendor/hyperzzw.py           # write (or refresh) the copy
    python scripts/vendor.py --check mypkg/_vendor/hyperzzw.py   # exit 0 if unmodified and current, else 1

Also available as `nox -s vendor -- [--check] PATH`. Standard library only (no keras, no backend); the tests
(`conformance/test_vendoring.py`) import this file by its path.

A vendored copy is a block of comment lines (the header) followed by the original file, byte for byte::

    # --- hyperzzw vendored copy: begin provenance header ---
    # version: 0.1.0
    # source: hyperzzw/layer.py
    # sha256: <sha256 of the original file, i.e. of everything after the header>
    # do not edit; regenerate with `python scripts/vendor.py PATH` in a hyperzzw checkout; verify: --check
    # --- hyperzzw vendored copy: end provenance header ---
    # Copyright 2026 The hyperzzw Authors.      <- the original file, licence header first, unchanged
    ...

Comments before the licence header change nothing for Python (the module docstring is still the module's
docstring) and leave the licence text intact; stripping the header gives back the original file exactly.

`vendor` writes a copy, `check` verifies one: the header is present and well-formed, the body is unmodified
(its sha256 is the recorded one) and current (it equals this checkout's ``hyperzzw/layer.py``). Both take an
optional ``source`` (another layer file) so the checks can be tested.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the hyperzzw checkout this script is in
SOURCE = ROOT / "hyperzzw" / "layer.py"

BEGIN = "# --- hyperzzw vendored copy: begin provenance header ---"
END = "# --- hyperzzw vendored copy: end provenance header ---"
REGENERATE = "do not edit; regenerate with `python scripts/vendor.py PATH` in a hyperzzw checkout; verify: --check"
# The keys of the header, in order; the last line (REGENERATE) is fixed text, not a key.
KEYS = ("version", "source", "sha256")
# Top-level modules a vendorable layer file may import besides the standard library.
ALLOWED_IMPORTS = frozenset({"keras"})
# How many lines of unified diff a failure message shows at most.
DIFF_LINES = 24


class VendoringError(Exception):
    """A vendored copy could not be written or did not pass `check`.

    `kinds` says what is wrong, for programs: a tuple of ``"missing"``, ``"malformed"``, ``"modified"``,
    ``"stale"``, ``"not-vendored"`` (`vendor` refusing to overwrite a file it did not write) or
    ``"not-vendorable"`` (a source importing more than keras and the standard library).
    """

    def __init__(self, message: str, kinds: tuple[str, ...]):
        super().__init__(message)
        self.kinds = kinds


@dataclass(frozen=True)
class Provenance:
    """What a vendored copy's header records."""

    version: str
    source: str
    sha256: str


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_version(code: bytes) -> str:
    """The ``__version__ = "..."`` string assigned at the top level of a module's source, not importing it.

    >>> read_version(b'import keras\\n__version__ = "1.2.3"\\n')
    '1.2.3'
    >>> read_version(b"x = 1\\n")
    'unknown'
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "unknown"
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return "unknown"


def foreign_imports(code: bytes) -> list[str]:
    """The imports in `code` that are neither keras nor the standard library (relative imports included).

    >>> foreign_imports(b"import os, keras.ops\\nfrom keras import ops\\nimport numpy\\nfrom . import x\\n")
    ['numpy', '.']
    """
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")] if node.level else [node.module]
        else:
            continue
        for name in names:
            top = name if name.startswith(".") else name.split(".")[0]
            if top not in ALLOWED_IMPORTS and top not in sys.stdlib_module_names and top not in found:
                found.append(top)
    return found


def _display_path(path: Path) -> str:
    """`path` relative to the repository root when it is inside it, else as given (POSIX separators)."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return resolved.as_posix()


def header(provenance: Provenance) -> bytes:
    lines = [BEGIN, *(f"# {key}: {getattr(provenance, key)}" for key in KEYS), f"# {REGENERATE}", END]
    return ("\n".join(lines) + "\n").encode("ascii")


def split(data: bytes) -> tuple[Provenance, bytes]:
    """Splits a vendored copy into its recorded provenance and its body (the original file's bytes).

    Raises `VendoringError` (``"malformed"``) if the header is missing or not as `header` writes it.
    """
    if not data.startswith(BEGIN.encode("ascii")):
        first = data.split(b"\n", 1)[0][:80].decode("utf-8", "replace")
        raise VendoringError(
            f"no provenance header: the first line should be {BEGIN!r}, found {first!r} "
            "(not written by scripts/vendor.py, or the header was removed)",
            ("malformed",),
        )
    lines = data.split(b"\n", len(KEYS) + 3)
    expected_length = len(KEYS) + 4
    if len(lines) < expected_length:
        raise VendoringError("malformed provenance header: the file ends inside the header", ("malformed",))
    head = [line.decode("utf-8", "replace").rstrip("\r") for line in lines[: expected_length - 1]]
    problems = []
    values = {}
    for number, (key, line) in enumerate(zip(KEYS, head[1:]), start=2):
        prefix = f"# {key}: "
        if not line.startswith(prefix) or not line[len(prefix) :].strip():
            problems.append(f"line {number} should be '{prefix}<value>', found {line!r}")
        else:
            values[key] = line[len(prefix) :].strip()
    recorded = values.get("sha256")
    if recorded is not None and (len(recorded) != 64 or any(c not in "0123456789abcdef" for c in recorded)):
        problems.append(f"the recorded sha256 is not 64 lowercase hex digits: {recorded!r}")
    if head[-2] != f"# {REGENERATE}":
        problems.append(f"line {len(KEYS) + 2} should be '# {REGENERATE}', found {head[-2]!r}")
    if head[-1] != END:
        problems.append(f"line {len(KEYS) + 3} should be {END!r}, found {head[-1]!r}")
    if problems:
        raise VendoringError("malformed provenance header: " + "; ".join(problems), ("malformed",))
    return Provenance(**values), lines[-1]


def _diff(old: bytes, new: bytes, old_name: str, new_name: str) -> str:
    old_lines = old.decode("utf-8", "replace").splitlines(keepends=True)
    new_lines = new.decode("utf-8", "replace").splitlines(keepends=True)
    lines = list(difflib.unified_diff(old_lines, new_lines, old_name, new_name, n=2))
    shown = [line if line.endswith("\n") else line + "\n" for line in lines[:DIFF_LINES]]
    if len(lines) > DIFF_LINES:
        shown.append(f"... ({len(lines) - DIFF_LINES} more diff lines)\n")
    return "".join("    " + line for line in shown).rstrip("\n")


def _short(digest: str) -> str:
    return digest[:12]


def vendor(target_path: str | os.PathLike, source: str | os.PathLike | None = None, force: bool = False) -> Provenance:
    """Writes a vendored copy of `source` (default: this checkout's ``hyperzzw/layer.py``) to `target_path`.

    Creates missing parent directories (but no ``__init__.py``: the package is yours). Refuses to overwrite an
    existing file that is not a vendored copy unless `force`. Returns the provenance written.
    """
    source_path = Path(SOURCE if source is None else source)
    target = Path(target_path)
    code = source_path.read_bytes()
    foreign = foreign_imports(code)
    if foreign:
        raise VendoringError(
            f"{source_path} is not vendorable: it imports {', '.join(foreign)} "
            "(a vendored layer file may import only keras and the standard library)",
            ("not-vendorable",),
        )
    if target.exists() and not force and not target.read_bytes().startswith(BEGIN.encode("ascii")):
        raise VendoringError(
            f"{target} exists and is not a vendored copy of hyperzzw (no provenance header); "
            "refusing to overwrite it (pass force=True / --force to overwrite)",
            ("not-vendored",),
        )
    provenance = Provenance(read_version(code), _display_path(source_path), sha256(code))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_bytes(header(provenance) + code)
    os.replace(temporary, target)
    return provenance


def check(target_path: str | os.PathLike, source: str | os.PathLike | None = None) -> Provenance:
    """Verifies a vendored copy; returns its provenance, or raises `VendoringError` saying what differs.

    The copy must have a well-formed header, be unmodified (its body's sha256 is the recorded one) and be
    current (its body equals `source`, by default this checkout's ``hyperzzw/layer.py``).
    """
    target = Path(target_path)
    source_path = Path(SOURCE if source is None else source)
    if not target.is_file():
        raise VendoringError(f"{target}: no such file", ("missing",))
    try:
        provenance, body = split(target.read_bytes())
    except VendoringError as error:
        raise VendoringError(f"{target}: {error}", error.kinds) from None
    current = source_path.read_bytes()
    body_sha, current_sha = sha256(body), sha256(current)
    current_version = read_version(current)
    modified = body_sha != provenance.sha256
    stale = provenance.sha256 != current_sha
    if not modified and not stale:
        return provenance

    kinds = tuple(kind for kind, bad in (("modified", modified), ("stale", stale)) if bad)
    shown_source = _display_path(source_path)
    paragraphs = []
    if modified:
        paragraphs.append(
            f"{target} is modified: it was edited after vendoring. Its body's sha256 is {_short(body_sha)}, "
            f"but the header records {_short(provenance.sha256)} (hyperzzw {provenance.version}). A vendored "
            "copy must stay unmodified: change hyperzzw itself, then re-vendor."
        )
    if stale:
        same = ""
        if provenance.version == current_version:
            same = " (the same __version__, but the source changed since)"
        paragraphs.append(
            f"{target} is stale: it was vendored from hyperzzw {provenance.version} (sha256 "
            f"{_short(provenance.sha256)}), but {shown_source} is now hyperzzw {current_version} (sha256 "
            f"{_short(current_sha)}){same}. Regenerate it with `python scripts/vendor.py {target}`, "
            "or check it against the hyperzzw release it came from. What changed between the two versions: "
            "CHANGELOG.md in the hyperzzw repository."
        )
    if body_sha == current_sha:
        paragraphs.append(f"The body equals the current {shown_source}: only the recorded sha256 is wrong.")
    elif body.replace(b"\r\n", b"\n") == current.replace(b"\r\n", b"\n"):
        paragraphs.append(
            f"The body differs from the current {shown_source} only in line endings (CRLF vs LF): keep the "
            "file's bytes as written, e.g. with a `.gitattributes` line `<path> -text`."
        )
    else:
        paragraphs.append(
            f"First differences, vendored body vs current {shown_source}:\n"
            + _diff(body, current, f"{target} (vendored body)", shown_source)
        )
    raise VendoringError("\n".join(paragraphs), kinds)


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
        help=f"the layer file to vendor or compare with (default: {SOURCE.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite PATH even if it exists and is not a vendored copy"
    )
    args = parser.parse_args(argv)

    try:
        if args.check:
            provenance = check(args.path, source=args.source)
            print(
                f"OK: {args.path} is an unmodified, current copy of hyperzzw {provenance.version} "
                f"(sha256 {provenance.sha256[:12]})."
            )
        else:
            provenance = vendor(args.path, source=args.source, force=args.force)
            print(
                f"Wrote {args.path}: hyperzzw {provenance.version} from {provenance.source} "
                f"(sha256 {provenance.sha256[:12]}). Check it later with: "
                f"python scripts/vendor.py --check {args.path}"
            )
    except VendoringError as error:
        label = "/".join(error.kinds).upper()
        print(f"FAILED ({label}): {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
