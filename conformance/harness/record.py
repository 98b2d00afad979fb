"""One backend's run of the checks over every subject of a declaration file: what it observed, as a record.

Run in a process of its own with `KERAS_BACKEND` set (`python -m conformance.harness` starts one per backend):

    python -m conformance.harness.record SUBJECTS.py --out DIR --phase record   # every check but loading
    python -m conformance.harness.record SUBJECTS.py --out DIR --phase load     # the .keras files of every backend
    python -m conformance.harness.record SUBJECTS.py --out DIR --phase fixtures # what this backend would store

Each phase writes `DIR/<phase>-<backend>.json`: the backend, the versions, the declaration file's sha256, a
run id and, per subject, every row its checks observed (`conformance.harness.checks`, each one's `observe`:
values, a dtype, a text, or the exception raised), never a verdict. The file is written once, at the end: a
process that dies leaves none, and the report says so. `conformance.harness.compare` reads the records and
judges.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from conformance.harness import checks, declaration
from conformance.harness.declaration import BACKENDS, Subject
from conformance.harness.run import Run, layer_sources, sha256_of
from conformance.harness.terms import RECORD_FORMAT as FORMAT


def record_phase(run: Run) -> None:
    """Every check's observations of the subject, in the order of `checks.CHECKS`, but for those it skips."""
    layer = run.attempt("weights", run.built_layer)
    if layer is None:  # the layer cannot be built on the declared inputs: nothing else can run
        return
    run.sources = layer_sources(layer)
    tensors = run.tensors()
    for check in checks.CHECKS:
        if check.NAME not in run.subject.skip or check.NAME in checks.ALWAYS:
            check.observe(run, layer, tensors)


def load_phase(run: Run) -> None:
    """The checks that read what every backend's record phase wrote (the `.keras` files)."""
    for check in checks.CHECKS:
        if hasattr(check, "load") and check.NAME not in run.subject.skip:
            check.load(run)


def versions() -> dict:
    import importlib.metadata

    import keras

    out = {"keras": keras.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    for name in ("jax", "torch", "tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("subjects", help="the declaration file")
    parser.add_argument("--out", required=True, help="the folder for records and saved files")
    parser.add_argument("--phase", choices=["record", "load", "check", "fixtures"], default="record")
    parser.add_argument(
        "--fixtures", type=Path, help="the folder of the subjects' stored fixtures (checks/fixtures.py)"
    )
    parser.add_argument("--only", action="append", help="only this subject (repeatable)")
    parser.add_argument(
        "--run",
        help="the run's id, the same for every backend and phase of one run (the report fails on records of "
        "several runs); default: a new one (a record alone)",
    )
    parser.add_argument("--plant", action="store_true", help="the self-test's planted subjects instead")
    parser.add_argument("--shard", type=shard_arg, help="K/N: the K-th of N shares of the subjects (one CI job each)")
    parser.add_argument(
        "--backend",
        action="append",
        dest="backends",
        choices=BACKENDS,
        help="the run's backends, when not all (repeatable): the load phase loads the files they saved",
    )
    args = parser.parse_args(argv)
    import keras

    backend_name = keras.backend.backend()
    if backend_name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 is float64: jax computes it in float32 otherwise
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    process = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"  # this process's own: no two records share it
    record = {
        "format": FORMAT,
        "backend": backend_name,
        "phase": args.phase,
        "run": args.run or process,
        "process": process,
        "selection": None,
        "declaration": {"path": str(Path(args.subjects).resolve()), "sha256": sha256_of(args.subjects)},
        "versions": versions(),
        "subjects": {},
    }
    target = out_dir / f"{args.phase}-{backend_name}.json"
    target.unlink(missing_ok=True)
    try:
        subjects, record["selection"] = load_subjects(args.subjects, args.only, args.plant, args.shard)
        if args.phase == "check":
            for subject in subjects:
                declaration.check_constructible(subject)
    except Exception as exc:  # the declaration cannot be run here: say so, in the record too
        text = str(exc) if isinstance(exc, ValueError) else "".join(traceback.format_exception(exc)).rstrip()
        print(f"harness: the declaration {args.subjects}: {text}", file=sys.stderr, flush=True)
        if args.phase != "check":
            record["error"] = f"the declaration could not be loaded: {text}"
            _write(target, record)
        return 2
    if args.phase == "check":
        print(f"harness: {args.subjects}: {len(subjects)} subjects, each constructible", flush=True)
        # what the pytest items are made of (conformance.harness.pytest_plugin): the subjects and their skips
        _write(out_dir / "subjects.json", {s.name: {"skip": dict(s.skip)} for s in subjects})
        return 0
    for subject in subjects:
        keras.utils.set_random_seed(subject.seed)
        if backend_name == "torch":
            # torch.compile keeps at most 8 compilations per code object (the checks' functions, Keras's own), then
            # runs the frame eagerly without a word: past the 8th subject, `compiled` would not be compiled
            import torch

            torch._dynamo.reset()
        if args.plant:
            from conformance.harness import selftest

            selftest.FIRED.clear()
        run = Run(subject, out_dir, args.fixtures, tuple(args.backends or BACKENDS))
        started = time.perf_counter()
        {"record": record_phase, "load": load_phase, "fixtures": checks.fixtures.record_candidate}[args.phase](run)
        record["subjects"][subject.name] = {
            "checks": run.checks,
            "meta": meta(subject),
            "sources": run.sources,
            "seconds": time.perf_counter() - started,
        }
        if args.plant:  # which planted defects took effect in this process
            record["subjects"][subject.name]["planted_fired"] = sorted(selftest.FIRED)
        print(f"{backend_name} {args.phase}: {subject.name}: {len(run.checks)} observations", flush=True)
    record["complete"] = True
    _write(target, record)
    return 0


def shard_arg(text: str) -> tuple[int, int]:
    """`K/N` (1 <= K <= N) as (K, N)."""
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, such as 2/4. Received: {text!r}")
    return int(k), int(n)


def load_subjects(
    path: str, only: list[str] | None = None, plant: bool = False, shard: tuple[int, int] | None = None
) -> tuple[list[Subject], dict | None]:
    """The declaration's subjects (`only` these names; a drawn subject's name selects all its draws; `shard`
    (K, N): every N-th from the K-th, in the declaration's order), or, with `plant`, the self-test's subjects made
    from them (`conformance.harness.selftest`); and the selection, when `only` or `shard` left some of the
    declaration's subjects out (the report never says PASS on a selection, but merges every shard's), else None."""
    every = declaration.load(path)
    subjects = every
    if only:
        subjects = [s for s in every if any(re.fullmatch(rf"{re.escape(o)}(\.\d+)?", s.name) for o in only)]
    selection = None
    if shard:
        subjects = [s for i, s in enumerate(subjects) if i % shard[1] == shard[0] - 1]
        selection = {"shard": list(shard), "ran": [s.name for s in subjects], "declared": len(every)}
    elif len(subjects) < len(every):
        selection = {"only": sorted(only), "ran": [s.name for s in subjects], "declared": len(every)}
    if plant:
        from conformance.harness import selftest

        subjects = selftest.planted(subjects)
    return subjects, selection


def _write(target: Path, record: dict) -> None:
    """The record, whole or not at all (a process that dies leaves none)."""
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(target)


def meta(subject: Subject) -> dict:
    """What the report needs of the declaration (the report's process imports neither keras nor the file)."""
    tolerance = subject.tolerance
    return {
        "has_oracle": subject.oracle is not None,
        "has_mask_oracle": subject.mask_oracle is not None,
        "has_gradient_oracle": subject.gradient_oracle is not None,
        "tolerance": None
        if tolerance is None
        else {"reduction": tolerance.reduction, "ulps": tolerance.ulps, "reason": tolerance.reason},
        "args": {k: repr(v) for k, v in sorted(subject.args.items())},
        "inputs": [{"shape": list(s.shape), "dtype": s.dtype} for s in subject.input_list()],
        "bad_inputs": {b.id: {"error": b.error.__name__, "message": b.message} for b in subject.bad_inputs},
        "divergences": [[d.check, d.backend, d.reason] for d in subject.divergences],
        "skip": dict(subject.skip),
    }


if __name__ == "__main__":
    sys.exit(main())
