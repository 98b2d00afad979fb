"""The conformance table: one row per subject, one column group per backend (a cell per check), generated from the
harness's records, never written by hand.

    python -m conformance.harness table reports/harness/my_subjects [more folders] --out docs/table.md

Each folder is one run's records (`python -m conformance.harness FILE --out FOLDER`), judged afresh by the report
(`compare.build`): the table shows exactly what the report says, and a folder whose report does not say PASS is
FAIL at the top of the page. A cell is the check's rows on that backend: `✓` all passed; `K<n>` a declared
divergence, finding `<n>` below (one cause, one entry, every cell it explains); `S<n>` not checked, reason `<n>`;
`✗<n>` failing, with the report's numbers; `?` missing; `–` no row of that check on that backend. The page names
the date, the machine and the versions. Exit status 0 when every folder's report says PASS, 1 otherwise (the page
is written either way).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
from pathlib import Path

from conformance.harness import checks, compare
from conformance.harness.judge import FAIL, KNOWN, MISSING, PASS, SKIP

# the status of a cell, worst last: a cell shows every status its rows have, in this order
ORDER = (PASS, SKIP, KNOWN, FAIL, MISSING)
LINK = re.compile(r"(docs/)?findings\.md#[\w-]+")


def machine() -> str:
    """The CPU model, the number of cores and the OS this page was generated on (what the numbers ran on)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


class _Notes:
    """Footnotes of one kind (findings, reasons not checked, failures), numbered in order of first use. A note is
    keyed by the findings section its text links (`findings.md#<anchor>`: one cause, one entry, whatever words
    each subject's declaration gives it), else by its text; each keeps its texts and the cells it explains."""

    def __init__(self, prefix: str):
        self.prefix, self.numbers, self.texts, self.cells = prefix, {}, {}, {}

    def ref(self, text: str, where: tuple[str, str]) -> str:
        link = LINK.search(text)
        key = link.group(0).split("#", 1)[1] if link else text
        number = self.numbers.setdefault(key, len(self.numbers) + 1)
        texts = self.texts.setdefault(number, [])
        if text not in texts:
            texts.append(text)
        subjects = self.cells.setdefault(number, {})
        if where[1] not in subjects.setdefault(where[0], []):
            subjects[where[0]].append(where[1])
        return f"{self.prefix}{number}"

    def section(self, title: str, intro: str) -> list[str]:
        if not self.numbers:
            return []
        lines = ["", f"## {title}", "", intro, ""]
        for number in self.numbers.values():
            lines.append(f"{self.prefix}{number}. " + "<br>".join(_linked(t) for t in self.texts[number]) + "  ")
            cells = "; ".join(f"{subject} ({', '.join(rows)})" for subject, rows in self.cells[number].items())
            lines.append(f"    cells: {cells}")
            lines.append("")
        return lines


def _linked(text: str) -> str:
    """`text` with its references to findings.md as Markdown links (the page sits beside findings.md)."""
    text = text.replace("\n", " ")
    return LINK.sub(lambda m: f"[{m.group(0)}](findings.md#{m.group(0).split('#', 1)[1]})", text)


def build(folders: list[Path]) -> dict:
    """Every folder's report (`compare.build`), in the order given."""
    return {Path(folder): compare.build(folder) for folder in folders}


def render(results: dict, date: str, where: str) -> str:
    backends = list(dict.fromkeys(b for result in results.values() for b in result["backends"]))
    found, skipped, failed = _Notes("K"), _Notes("S"), _Notes("✗")
    heads = sorted(
        {checks.head(c) for result in results.values() for s in result["subjects"].values() for c in s["cells"]},
        key=checks.order,
    )
    versions = {}
    for result in results.values():
        for backend, v in result["versions"].items():
            for key, value in (v or {}).items():
                if key in ("keras", "numpy", "python", backend, "tensorflow-cpu", "tf-nightly"):
                    versions.setdefault(key, set()).add(value)
    lines = [
        "# Cross-backend conformance table",
        "",
        f"Generated from the harness's records by `python -m conformance.harness table`, never by hand: {date}, "
        f"{where}. Versions: " + "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in sorted(versions.items())) + ".",
        "",
        "| declaration (records) | subjects | report |",
        "|---|---|---|",
    ]
    for folder, result in results.items():
        verdict = "PASS" if result["ok"] else "**FAIL**: " + compare.why_not(result)
        lines.append(f"| `{folder.parent.name}/{folder.name}` | {len(result['subjects'])} | {verdict} |")
    lines += [
        "",
        "A cell is one check's rows on one backend: ✓ every row passed; K*n* a declared divergence (finding *n*); "
        "S*n* not checked (reason *n*); ✗*n* fails (*n*: the report's numbers); ? missing; – the check has no row "
        "there. Each column group is a backend, each column in it a check.",
        "",
        "| subject | " + " | ".join(f"{b}<br>{h}" for b in backends for h in heads) + " |",
        "|---|" + "---|" * (len(backends) * len(heads)),
    ]
    for folder, result in results.items():
        for name, subject in result["subjects"].items():
            row = []
            for backend in backends:
                for head in heads:
                    tokens = []
                    for check, cells in sorted(subject["cells"].items()):
                        if checks.head(check) != head or backend not in cells:
                            continue  # a row judged on some backends only (said once, where it applies)
                        status, notes = cells[backend]
                        where = (f"{folder.name}: {name}", f"{check} on {backend}")
                        if status == KNOWN:
                            tokens.append((ORDER.index(status), found.ref(notes[0].removeprefix("known: "), where)))
                        elif status == SKIP:
                            tokens.append((ORDER.index(status), skipped.ref("; ".join(notes), where)))
                        elif status == FAIL:
                            text = f"{where[0]}, {where[1]}: {'; '.join(notes)}"
                            tokens.append((ORDER.index(status), failed.ref(text, where)))
                        else:
                            tokens.append((ORDER.index(status), "✓" if status == PASS else "?"))
                    row.append(" ".join(dict.fromkeys(t for _, t in sorted(tokens))) or "–")
            lines.append(f"| {folder.name}: {name} | " + " | ".join(row) + " |")
    lines += found.section(
        "Findings",
        "Each a declared `Divergence` of the subjects: one cause, the cells it explains.",
    )
    lines += skipped.section("Not checked", "Why a cell was not checked, and where.")
    lines += failed.section("Failing", "Cells the report fails, with its numbers.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.harness table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folders", nargs="+", type=Path, help="one run's records each (`--out` of a run)")
    parser.add_argument("--out", type=Path, required=True, help="the Markdown page to write")
    parser.add_argument("--date", default=datetime.datetime.now(datetime.timezone.utc).date().isoformat())
    parser.add_argument("--machine", default=None, help="what the records ran on (default: this machine)")
    args = parser.parse_args(argv)
    results = build(args.folders)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, args.date, args.machine or machine()))
    bad = [folder.name for folder, result in results.items() if not result["ok"]]
    print(
        f"{args.out}: {sum(len(r['subjects']) for r in results.values())} subjects from {len(results)} runs; "
        + (f"FAIL: {', '.join(bad)}" if bad else "every report PASS")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
