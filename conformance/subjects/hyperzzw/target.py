"""Which `HyperZZWOperator` the suite checks.

By default the installed `hyperzzw` package. Set `HYPERZZW_TARGET` to check another copy instead, for example
one vendored into your project: either a module name (`mypkg._vendor.hyperzzw`) or the path of a `.py` file.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

ENV_VAR = "HYPERZZW_TARGET"


def _load(spec: str):
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{ENV_VAR}={spec!r}: no such file")
        name = "_hyperzzw_target"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


SPEC = os.environ.get(ENV_VAR, "hyperzzw")


def locate(spec: str = SPEC) -> str:
    """Where `spec` loads from, found without importing it (so without keras): a file's resolved path, or the
    module's origin."""
    if spec.endswith(".py"):
        return str(Path(spec).resolve())
    found = importlib.util.find_spec(spec)
    return found.origin if found else f"{spec} (not found)"


def __getattr__(name: str):
    """Loads the target on the first use of `module`, `HyperZZWOperator`, `ORIGIN` or `LAYER_FILE` (PEP 562):
    importing this module for `SPEC` and `locate` (pytest-xdist's controller, which runs no test) imports
    neither the layer nor keras."""
    if name not in ("module", "HyperZZWOperator", "ORIGIN", "LAYER_FILE"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _load(SPEC)
    globals().update(
        module=module,
        HyperZZWOperator=module.HyperZZWOperator,
        # Where the checked layer came from, for the report header and the observation records.
        ORIGIN=getattr(module, "__file__", SPEC),
        # The file that defines the class (for the package, hyperzzw/layer.py): what the report hashes.
        LAYER_FILE=inspect.getsourcefile(module.HyperZZWOperator),
    )
    return globals()[name]
