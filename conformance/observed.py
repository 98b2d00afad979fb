"""What one backend session observed, written for the cross-backend report.

Each backend session records, per golden case, the output and gradients it computed, and per bad-input case
the `(exception type, message)` pair it raised; `HYPERZZW_OBSERVED` names the JSON file it writes at the end.
The report (`conformance.report`) reads the three files; nothing flows back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ENV_VAR = "HYPERZZW_OBSERVED"


class Observations:
    def __init__(self, backend_name: str):
        import keras  # here: the report reads these files with NumPy alone

        self.data = {
            "backend": backend_name,
            "keras": keras.__version__,
            "numeric": {},  # "<case>/<what>/<mode>" -> {"dtype", "shape", "values"}
            "errors": {},  # "<bad case>/<mode>" -> [type name, message]
        }

    def numeric(self, key: str, values: np.ndarray, dtype: str) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.data["numeric"][key] = {
            "dtype": dtype,
            "shape": list(values.shape),
            "values": values.ravel().tolist(),
        }

    def error(self, key: str, exc: BaseException | None) -> None:
        self.data["errors"][key] = None if exc is None else [type(exc).__name__, str(exc)]

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
