"""What one backend session observed, written for the cross-backend report.

A session's record is two kinds of file, named by `HYPERZZW_OBSERVED` (`reports/observed-<backend>.json`):

- **parts**, `observed-<backend>.parts/<worker>.json`, one per process that ran tests (each pytest-xdist
  worker, or the one process of `-n 0`): the versions and layer that process imported and what its tests
  observed, against the declared observations of `conformance.expected`;
- **the session record**, `observed-<backend>.json`, written by the process that ran the session (the xdist
  controller, which imports neither keras nor the backend): the backend it was asked for, the version set,
  the workers it started, its pytest exit status and its selection.

Both carry the session's run id (host, process, start time): records of two backends with the same run id
come from one session, and the report refuses them. The previous run's files are removed when a session
starts (`remove`), so a crashed session leaves no record and a crashed worker a missing part. The report
(`conformance.report`) reads them; nothing flows back.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import time
from pathlib import Path

import numpy as np

from conformance import expected

ENV_VAR = "HYPERZZW_OBSERVED"
VERSION_SET_VAR = "HYPERZZW_VERSION_SET"


def keras_distributions() -> list[str]:
    """The installed distributions that provide the `keras` module (two would overwrite each other's files)."""
    return sorted(set(importlib.metadata.packages_distributions().get("keras", [])))


def file_sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def new_run_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"


def parts_dir(session_path: str | os.PathLike) -> Path:
    path = Path(session_path)
    return path.with_name(path.stem + ".parts")


def remove(session_path: str | os.PathLike) -> None:
    """Removes a previous session's record and parts."""
    Path(session_path).unlink(missing_ok=True)
    parts = parts_dir(session_path)
    if parts.is_dir():
        for part in parts.glob("*.json"):
            part.unlink()
        parts.rmdir()


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, allow_nan=True))
    tmp.replace(path)


class Observations:
    """One process's part of a session's record."""

    def __init__(self, backend_name: str, library_version: str, layer_path: str, run: str, worker: str):
        import keras  # here: the report reads these files with NumPy alone

        self.data = {
            "kind": "part",
            "backend": backend_name,
            "version_set": os.environ.get(VERSION_SET_VAR, "unnamed"),
            "run": run,
            "worker": worker,
            # Which distributions provide the `keras` module imported: ["keras"], or ["keras-nightly"].
            "keras_distributions": keras_distributions(),
            "versions": {
                "keras": keras.__version__,
                backend_name: str(library_version),  # str: torch.__version__ is a TorchVersion
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "layer": {"path": str(layer_path), "sha256": file_sha256(layer_path)},
            "collected": 0,
            "deselected": 0,
            "numeric": {},  # expected.Numeric key -> {"dtype", "shape", "values"}
            "errors": {},  # expected.ErrorCheck key -> [type name, message] (or None: nothing raised)
            "upstream": {},  # "<op>/<dtype>" -> the dtype keras.ops gave (conformance.upstream)
            "gaps": {},  # expected.Numeric key -> why this session cannot make it (a tested known gap)
        }

    def numeric(self, observation: expected.Numeric, values: np.ndarray, dtype: str) -> None:
        if expected.NUMERIC.get(observation.key) != observation:
            raise KeyError(f"{observation} is not a declared observation (conformance/expected.py)")
        values = np.asarray(values, dtype=np.float64)
        self.data["numeric"][observation.key] = {
            "dtype": dtype,
            "shape": list(values.shape),
            "values": values.ravel().tolist(),
        }

    def error(self, check: expected.ErrorCheck, exc: BaseException | None) -> None:
        if expected.ERRORS.get(check.key) != check:
            raise KeyError(f"{check} is not a declared error check (conformance/expected.py)")
        self.data["errors"][check.key] = None if exc is None else [type(exc).__name__, str(exc)]

    def gap(self, observation: expected.Numeric, reason: str) -> None:
        """A declared observation this session cannot make, and why: a known gap its test pins (a strict xfail).
        The observation stays missing (the report still cannot say PASS); the report names the reason."""
        if expected.NUMERIC.get(observation.key) != observation:
            raise KeyError(f"{observation} is not a declared observation (conformance/expected.py)")
        self.data["gaps"][observation.key] = reason

    def upstream(self, probe_id: str, dtype: str) -> None:
        self.data["upstream"][probe_id] = dtype

    def write(self, session_path: str | os.PathLike, collected: int, deselected: int) -> None:
        self.data.update(collected=int(collected), deselected=int(deselected))
        _write_json(parts_dir(session_path) / f"{self.data['worker']}.json", self.data)


def write_session(
    session_path: str | os.PathLike, backend: str, run: str, workers: list[str], exit_status: int, selection: dict
) -> None:
    """The session record: written by the process that ran the session, once it ended."""
    _write_json(
        Path(session_path),
        {
            "kind": "session",
            "backend": backend,
            "version_set": os.environ.get(VERSION_SET_VAR, "unnamed"),
            "run": run,
            "workers": sorted(workers),
            "exit_status": int(exit_status),
            **selection,
        },
    )


def load(path: str | os.PathLike) -> dict:
    """A part or session record; numeric values as arrays."""
    data = json.loads(Path(path).read_text())
    for entry in data.get("numeric", {}).values():
        entry["values"] = np.asarray(entry["values"], dtype=np.float64).reshape(entry["shape"])
    return data
