"""Nox sessions that run the harness in your repository: a virtualenv per backend and version set, each holding
keras, that backend, numpy and your package, never the harness (it reaches the backend processes through their
PYTHONPATH), then the report.

    # noxfile.py, in your repository (nox and the harness installed where you run nox)
    from conformance.harness.sessions import harness_sessions

    harness_sessions(
        "my_subjects.py",
        install=["."],                                   # your package, into each backend's venv
        version_sets={"pinned": "constraints.txt", "oldest": "oldest.txt", "latest": None},
    )

`nox -s harness-pinned` runs one set, `nox -t harness` all of them. A set is a pip constraints file (`-c`), or
None for the newest releases the index serves (`-U`). Keras's nightly build is another distribution
(`keras-nightly`, the same `keras` module): register it with a call of its own,

    harness_sessions("my_subjects.py", install=["."], version_sets={"nightly": None}, keras="keras-nightly",
                     packages={"jax": ("jax",), "torch": ("torch",), "tensorflow": ("tf-nightly",)}, pip=["--pre"])
 The venvs are `.nox/harness-<set>-<backend>`, reused
from run to run; the records and the report go to `reports/harness/<set>/<subjects file's stem>`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# What each backend's venv installs besides keras and numpy. tensorflow-cpu: no GPU build; give your own
# `packages` for others (a CUDA jax, torch's CPU wheel from its own index through your constraints file).
BACKEND_PACKAGES = {"jax": ("jax",), "torch": ("torch",), "tensorflow": ("tensorflow-cpu",)}


def harness_sessions(
    subjects: str | Path,
    *,
    install: Sequence[str] = (),
    version_sets: Mapping[str, str | Path | None] | None = None,
    packages: Mapping[str, Sequence[str]] = BACKEND_PACKAGES,
    keras: str = "keras",
    pip: Sequence[str] = (),
    name: str = "harness",
    reports: str | Path = "reports/harness",
    tags: Sequence[str] = ("harness",),
) -> list[str]:
    """Registers one nox session per version set, `<name>-<set>`, and returns their names.

    Args:
        subjects: the declaration file.
        install: pip arguments for what your subjects import (`"."`, `"-e", "."`, `"mypackage==1.2"`).
        version_sets: set name -> constraints file (or None: the newest releases). Default: `{"pinned": None}`.
        packages: backend -> the pip requirements of that backend.
        keras: the distribution that provides the `keras` module (`"keras-nightly"` for the nightly builds).
        pip: more `pip install` options (`"--pre"`, `"--index-url", URL`).
        name: the sessions' name prefix; reports: where each set's records and report go; tags: nox tags.
    """
    import nox

    names = []
    for set_name, constraints in (version_sets or {"pinned": None}).items():

        def session_func(session: nox.Session, _set: str = set_name, _constraints=constraints) -> None:
            pythons = []
            for backend, requirements in packages.items():
                venv = Path(".nox") / f"{name}-{_set}-{backend}"
                python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
                if not python.exists():
                    session.run(sys.executable, "-m", "venv", str(venv), external=True)
                pins = ["-c", str(_constraints)] if _constraints else ["-U"]
                session.run(
                    str(python), "-m", "pip", "install", *pip, *pins, keras, "numpy", *requirements, *install,
                    external=True,
                )  # fmt: skip
                if keras != "keras" and "keras" in _distributions(session, python):
                    # a backend's own build may bring the `keras` release in beside the nightly (tf-nightly does):
                    # both write the `keras` module; remove the release and put the nightly's files back
                    session.run(str(python), "-m", "pip", "uninstall", "-y", "keras", external=True)
                    session.run(
                        str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", *pip, *pins, keras,
                        external=True,
                    )  # fmt: skip
                pythons.append(f"--python={backend}={python}")
            out = Path(reports) / _set / Path(subjects).stem
            session.run(
                sys.executable, "-m", "conformance.harness", str(subjects), "--out", str(out), *pythons, external=True
            )

        session_func.__doc__ = f"The harness on {subjects}, version set {set_name!r}, a venv per backend."
        full = f"{name}-{set_name}"
        nox.session(name=full, python=False, tags=list(tags))(session_func)
        names.append(full)
    return names


def _distributions(session, python: Path) -> set[str]:
    """The names of the distributions installed in `python`'s environment, lowercased."""
    code = "import importlib.metadata as m; print(' '.join(d.metadata['Name'].lower() for d in m.distributions()))"
    return set(session.run(str(python), "-c", code, silent=True, external=True).split())
