"""What one backend session observed, written for the cross-backend report.

Each backend session records, per golden case, the output and gradients it computed (with the dtype it
got), per bad-input case the `(exception type, message)` pair it raised, and how the session itself went:
its pytest exit status, the selection it ran with, the layer file under test (path and sha256) and the
versions it ran on. `HYPERZZW_OBSERVED` names the JSON file; a stale one is removed when the session
starts, and the file is written when it ends, so a crashed session leaves no file at all. The report
(`conformance.report`) reads the three files; nothing flows back.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path

import numpy as np

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


class Observations:
    def __init__(self, backend_name: str, library_version: str, layer_path: str):
        import keras  # here: the report reads these files with NumPy alone

        self.data = {
            "backend": backend_name,
            # Which version set the session installed (the noxfile names it), and which distributions provide
            # the `keras` module it imported: ["keras"], or ["keras-nightly"] for the nightly set.
            "version_set": os.environ.get(VERSION_SET_VAR, "unnamed"),
            "keras_distributions": keras_distributions(),
            "keras": keras.__version__,
            "versions": {
                "keras": keras.__version__,
                backend_name: str(library_version),  # str: torch.__version__ is a TorchVersion
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "layer": {"path": str(layer_path), "sha256": file_sha256(layer_path)},
            "session": None,  # filled in by `finish`
            "numeric": {},  # "<case>/<what>/<mode>" -> {"dtype", "shape", "values"}
            "errors": {},  # "<bad case>/<mode>" -> [type name, message]
            "upstream": {},  # "<op>/<dtype>" -> the dtype keras.ops gave (conformance.upstream)
        }

    @classmethod
    def from_record(cls, record: dict) -> Observations:
        """An empty record with `record`'s header (backend, versions, layer): how the pytest-xdist controller,
        which imports neither keras nor the backend, takes over its workers' records."""
        self = cls.__new__(cls)
        self.data = {**record, "session": None, "numeric": {}, "errors": {}, "upstream": {}}
        return self

    def numeric(self, key: str, values: np.ndarray, dtype: str) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.data["numeric"][key] = {
            "dtype": dtype,
            "shape": list(values.shape),
            "values": values.ravel().tolist(),
        }

    def upstream(self, probe_id: str, dtype: str) -> None:
        self.data["upstream"][probe_id] = dtype

    def error(self, key: str, exc: BaseException | None) -> None:
        self.data["errors"][key] = None if exc is None else [type(exc).__name__, str(exc)]

    def finish(self, exit_status: int, selection: dict) -> None:
        """How the session went: `selection` says what it ran (see `conftest.pytest_sessionfinish`)."""
        self.data["session"] = {"exit_status": int(exit_status), **selection}

    def write(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, allow_nan=True))
        tmp.replace(path)


def load(path: str | os.PathLike) -> dict:
    data = json.loads(Path(path).read_text())
    for entry in data["numeric"].values():
        entry["values"] = np.asarray(entry["values"], dtype=np.float64).reshape(entry["shape"])
    return data
