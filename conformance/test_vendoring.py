"""Vendoring: the layer file works as a copy inside another project, and `scripts/vendor.py` writes and checks
such copies.

The copies are imported in subprocesses where the installed ``hyperzzw`` package is blocked (it is installed
editable, so a plain subprocess could still import it), with the same backend environment as this run. Two
subprocesses in all, run concurrently: one for the copy inside a package (``mypkg/_vendor/hyperzzw.py``),
which also points `conformance.subjects.hyperzzw.target` at it through ``HYPERZZW_TARGET``; one for the copy
imported alone as a top-level module. Everything else (the header, `check`, the CLI) needs no keras and runs quickly.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The vendoring tool is one standard-library script (a user tool, not part of the suite): imported by its path.
_SPEC = importlib.util.spec_from_file_location(
    "vendoring", Path(__file__).resolve().parent.parent / "scripts" / "vendor.py"
)
vendoring = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = vendoring  # dataclasses look their module up in sys.modules
_SPEC.loader.exec_module(vendoring)

ROOT = vendoring.ROOT
SOURCE = vendoring.SOURCE
VERSION = vendoring.read_version(SOURCE.read_bytes())
SUBPROCESS_TIMEOUT = 600

# Run in each subprocess: `python child.py CONFIG.json`. Writes {check: {"ok": bool, "detail": str}} to
# config["out"]; a check that cannot run because an earlier one failed is reported as failed, saying why.
CHILD = r"""
import sys

sys.modules["hyperzzw"] = None  # the installed package must not be importable: only the vendored copy is

import importlib
import json
import os
import traceback
from pathlib import Path

config = json.loads(Path(sys.argv[1]).read_text())
sys.path[:0] = config["path_entries"]
results = {}
state = {}


def run(name, function, needs=()):
    missing = [need for need in needs if not results.get(need, {}).get("ok")]
    if missing:
        results[name] = {"ok": False, "detail": f"not run: {', '.join(missing)} failed"}
        return
    try:
        results[name] = {"ok": True, "detail": str(function())}
    except BaseException:
        detail = traceback.format_exc()
        results[name] = {"ok": False, "detail": detail if len(detail) < 4000 else "...\n" + detail[-4000:]}


def hyperzzw_blocked():
    try:
        import hyperzzw
    except ImportError as error:
        return f"import hyperzzw raised {type(error).__name__}: {error}"
    raise AssertionError(f"import hyperzzw succeeded ({hyperzzw!r}): the test does not isolate the copy")


run("hyperzzw_blocked", hyperzzw_blocked)

import keras
import numpy as np


def import_copy():
    module = importlib.import_module(config["module"])
    assert Path(module.__file__).resolve() == Path(config["file"]).resolve(), module.__file__
    assert module.HyperZZWOperator.__module__ == config["module"], module.HyperZZWOperator.__module__
    assert module.__version__ == config["version"], module.__version__
    state["cls"] = module.HyperZZWOperator
    return f"{module.__name__} {module.__version__} from {module.__file__} on {keras.backend.backend()}"


def smoke():
    cls = state["cls"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)).astype("float32")
    context = rng.standard_normal((4, 3)).astype("float32")
    x_in, context_in = keras.Input((5,), name="x"), keras.Input((3,), name="context")
    layer = cls(input_dim=5, name="zzw")
    model = keras.Model([x_in, context_in], layer([x_in, context_in]))
    y = np.asarray(model.predict([x, context], verbose=0))
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.hyper_kernel), dtype=np.float64)
    assert kernel.shape == (3, 5), kernel.shape
    expected = x.astype(np.float64) * (context.astype(np.float64) @ kernel)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    state.update(model=model, inputs=[x, context], y=y)
    return f"predict matches x * (context @ K), max |error| {np.max(np.abs(y - expected)):.2e}"


def registered():
    name = keras.saving.get_registered_name(state["cls"])
    assert name == "hyperzzw>HyperZZWOperator", (
        f"the class is registered with Keras as {name!r}, expected 'hyperzzw>HyperZZWOperator' "
        "(@keras.saving.register_keras_serializable(package='hyperzzw') on the class): without it .keras "
        "files need custom_objects and do not load across the package and vendored copies"
    )
    return name


def roundtrip():
    path = Path(config["workdir"]) / "model.keras"
    state["model"].save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: the registration must suffice
    assert type(loaded.get_layer("zzw")) is state["cls"], type(loaded.get_layer("zzw"))
    np.testing.assert_array_equal(np.asarray(loaded.predict(state["inputs"], verbose=0)), state["y"])
    return f"{path.name} saved and loaded, identical outputs"


def target():
    assert os.environ.get("HYPERZZW_TARGET") == config["file"], os.environ.get("HYPERZZW_TARGET")
    sys.path.insert(0, config["repo"])
    from conformance.subjects.hyperzzw import target

    assert Path(target.ORIGIN).resolve() == Path(config["file"]).resolve(), target.ORIGIN
    assert target.HyperZZWOperator.__module__ == "_hyperzzw_target", target.HyperZZWOperator.__module__
    assert sys.modules["hyperzzw"] is None, "conformance.subjects.hyperzzw.target imported the installed package"
    layer = target.HyperZZWOperator(input_dim=3, kernel_initializer="ones")
    y = keras.ops.convert_to_numpy(layer([keras.ops.ones((2, 3)), keras.ops.ones((2, 4))]))
    np.testing.assert_array_equal(y, np.full((2, 3), 4.0))
    return f"conformance.subjects.hyperzzw.target.ORIGIN = {target.ORIGIN}"


run("import", import_copy)
run("smoke", smoke, needs=["import"])
run("registered", registered, needs=["import"])
run("roundtrip", roundtrip, needs=["smoke"])
if config["check_target"]:
    run("target", target)
Path(config["out"]).write_text(json.dumps(results))
"""

SCENARIOS = {
    # The copy inside a package, as a downstream project vendors it; also the suite's target pointed at it.
    "package": ["hyperzzw_blocked", "import", "smoke", "registered", "roundtrip", "target"],
    # The copy on its own, imported as a top-level module from a directory holding nothing else.
    "alone": ["hyperzzw_blocked", "import", "smoke", "registered", "roundtrip"],
}


def _vendor_package(root: Path) -> Path:
    """Vendors the layer into root/mypkg/_vendor/hyperzzw.py, with the package's __init__.py files."""
    target = root / "mypkg" / "_vendor" / "hyperzzw.py"
    vendoring.vendor(target)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "_vendor" / "__init__.py").write_text("")
    return target


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """Runs the two subprocesses concurrently; returns {scenario: {check: {"ok", "detail"}}}."""
    base = tmp_path_factory.mktemp("vendoring")
    script_dir = base / "child"
    script_dir.mkdir()
    script = script_dir / "child.py"
    script.write_text(CHILD)
    package_root = base / "project"
    package_file = _vendor_package(package_root)
    alone_dir = base / "alone"
    alone_dir.mkdir()
    alone_file = alone_dir / "zzw_alone.py"
    vendoring.vendor(alone_file)

    setups = {
        "package": (package_root, "mypkg._vendor.hyperzzw", package_file, True),
        "alone": (alone_dir, "zzw_alone", alone_file, False),
    }
    processes = {}
    for scenario, (path_entry, module, file, check_target) in setups.items():
        workdir = base / f"work-{scenario}"
        workdir.mkdir()
        config = {
            "out": str(workdir / "results.json"),
            "path_entries": [str(path_entry)],
            "module": module,
            "file": str(file),
            "version": VERSION,
            "workdir": str(workdir),
            "repo": str(ROOT),
            "check_target": check_target,
        }
        (workdir / "config.json").write_text(json.dumps(config))
        # The same environment (KERAS_BACKEND, JAX_ENABLE_X64, KERAS_HOME, ...) as this run.
        env = {key: value for key, value in os.environ.items() if key != "HYPERZZW_TARGET"}
        if check_target:
            env["HYPERZZW_TARGET"] = str(file)
        with open(workdir / "output.txt", "wb") as output:
            processes[scenario] = (
                subprocess.Popen(
                    [sys.executable, str(script), str(workdir / "config.json")],
                    cwd=workdir,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                ),
                workdir,
            )

    results = {}
    for scenario, (process, workdir) in processes.items():
        try:
            returncode = process.wait(timeout=SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            returncode = "timeout"
        out = workdir / "results.json"
        if out.is_file():
            results[scenario] = json.loads(out.read_text())
        else:
            tail = (workdir / "output.txt").read_text(errors="replace")[-3000:]
            results[scenario] = {"crashed": f"subprocess exit {returncode}, no results; output:\n{tail}"}
    return results


@pytest.mark.parametrize(
    "scenario, check", [(s, c) for s, checks in SCENARIOS.items() for c in checks], ids=lambda v: v
)
def test_vendored_copy_in_subprocess(children, scenario, check):
    results = children[scenario]
    assert "crashed" not in results, results.get("crashed")
    assert check in results, f"{check} did not run: {sorted(results)}"
    assert results[check]["ok"], f"{scenario}/{check}:\n{results[check]['detail']}"


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_vendored_file_imports_only_keras_and_stdlib(tmp_path):
    target = _vendor_package(tmp_path)
    tree = ast.parse(target.read_bytes())
    imports = _imports(tree)
    assert "keras" in [name.split(".")[0] for name in imports]
    tops = [name if name.startswith(".") else name.split(".")[0] for name in imports]
    bad = [top for top in tops if top != "keras" and top not in sys.stdlib_module_names]
    assert not bad, f"the vendored file imports more than keras and the standard library: {bad}"
    # The header is comments only: the module docstring is still the original's.
    assert ast.get_docstring(tree) == ast.get_docstring(ast.parse(SOURCE.read_bytes()))


def test_vendor_writes_header_then_the_original_bytes(tmp_path):
    target = tmp_path / "a" / "b" / "hyperzzw.py"
    provenance = vendoring.vendor(target)
    data, original = target.read_bytes(), SOURCE.read_bytes()
    header, body = data.split(vendoring.END.encode() + b"\n", 1)
    assert body == original
    lines = header.decode().splitlines()
    assert lines == [
        vendoring.BEGIN,
        f"# version: {VERSION}",
        "# source: hyperzzw/layer.py",
        f"# sha256: {vendoring.sha256(original)}",
        f"# {vendoring.REGENERATE}",
    ]
    assert "do not edit; regenerate with" in lines[-1]
    assert provenance == vendoring.Provenance(VERSION, "hyperzzw/layer.py", vendoring.sha256(original))
    assert vendoring.split(data) == (provenance, original)
    # The licence header comes right after the provenance header, intact.
    assert body.startswith(b"# Copyright ")
    assert b"Licensed under the Apache License, Version 2.0" in body[:400]
    assert VERSION != "unknown"
    # Writing again over a vendored copy is allowed, and gives the same bytes.
    vendoring.vendor(target)
    assert target.read_bytes() == data


def test_check_passes_on_a_fresh_copy(tmp_path):
    target = tmp_path / "hyperzzw.py"
    written = vendoring.vendor(target)
    assert vendoring.check(target) == written


def test_check_reports_a_modified_copy(tmp_path):
    target = tmp_path / "hyperzzw.py"
    vendoring.vendor(target)
    line = f'__version__ = "{VERSION}"'
    target.write_bytes(target.read_bytes().replace(line.encode(), f"{line}  # local edit".encode(), 1))
    with pytest.raises(vendoring.VendoringError) as raised:
        vendoring.check(target)
    message = str(raised.value)
    assert raised.value.kinds == ("modified",)
    assert "is modified" in message and "stale" not in message
    assert f"-{line}  # local edit\n" in message and f"+{line}\n" in message


def test_check_reports_a_crlf_copy_as_modified_with_the_reason(tmp_path):
    target = tmp_path / "hyperzzw.py"
    vendoring.vendor(target)
    target.write_bytes(target.read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(vendoring.VendoringError, match="only in line endings") as raised:
        vendoring.check(target)
    assert raised.value.kinds == ("modified",)


def _old_source(tmp_path: Path) -> Path:
    """A stand-in for an older hyperzzw release: another __version__ and one more line."""
    line = f'__version__ = "{VERSION}"'.encode()
    code = SOURCE.read_bytes()
    assert line in code
    old = tmp_path / "old_layer.py"
    old.write_bytes(code.replace(line, b'__version__ = "0.0.1-old"\n_OLD_RELEASE = True', 1))
    return old


def test_check_reports_a_stale_copy(tmp_path):
    old = _old_source(tmp_path)
    target = tmp_path / "hyperzzw.py"
    vendoring.vendor(target, source=old)
    assert vendoring.check(target, source=old).version == "0.0.1-old"  # current with respect to its source
    with pytest.raises(vendoring.VendoringError) as raised:
        vendoring.check(target)
    message = str(raised.value)
    assert raised.value.kinds == ("stale",)
    assert "is stale" in message and "modified" not in message
    assert "CHANGELOG.md" in message  # what the newer layer changed
    current = VERSION
    assert f"vendored from hyperzzw 0.0.1-old (sha256 {vendoring.sha256(old.read_bytes())[:12]})" in message
    assert f"now hyperzzw {current} (sha256 {vendoring.sha256(SOURCE.read_bytes())[:12]})" in message
    assert '-__version__ = "0.0.1-old"' in message and f'+__version__ = "{current}"' in message


def test_check_reports_modified_and_stale_together(tmp_path):
    old = _old_source(tmp_path)
    target = tmp_path / "hyperzzw.py"
    vendoring.vendor(target, source=old)
    target.write_bytes(target.read_bytes() + b"# local edit\n")
    with pytest.raises(vendoring.VendoringError) as raised:
        vendoring.check(target)
    assert raised.value.kinds == ("modified", "stale")
    assert "is modified" in str(raised.value) and "is stale" in str(raised.value)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda data: data.split(b"\n", 6)[-1], "no provenance header"),
        (lambda data: data.replace(b"# sha256: ", b"# sha: "), "line 4 should be '# sha256: <value>'"),
        (lambda data: data.replace(b"# sha256: ", b"# sha256: zz"), "not 64 lowercase hex digits"),
        (lambda data: data.replace(vendoring.END.encode(), b"# end"), "line 6 should be"),
        (lambda data: data.replace(b"do not edit; ", b""), "line 5 should be"),
        (lambda data: b"\n".join(data.split(b"\n")[:3]), "ends inside the header"),
    ],
    ids=["no-header", "bad-key", "bad-sha", "no-end", "no-do-not-edit", "truncated"],
)
def test_check_reports_a_malformed_header(tmp_path, edit, expected):
    target = tmp_path / "hyperzzw.py"
    vendoring.vendor(target)
    target.write_bytes(edit(target.read_bytes()))
    with pytest.raises(vendoring.VendoringError, match="malformed|no provenance header") as raised:
        vendoring.check(target)
    assert raised.value.kinds == ("malformed",)
    assert expected in str(raised.value)


def test_check_reports_a_missing_file(tmp_path):
    with pytest.raises(vendoring.VendoringError, match="no such file") as raised:
        vendoring.check(tmp_path / "nope.py")
    assert raised.value.kinds == ("missing",)


def test_vendor_refuses_to_overwrite_a_file_it_did_not_write(tmp_path):
    target = tmp_path / "hyperzzw.py"
    target.write_text("my own code\n")
    with pytest.raises(vendoring.VendoringError, match="refusing to overwrite") as raised:
        vendoring.vendor(target)
    assert raised.value.kinds == ("not-vendored",)
    assert target.read_text() == "my own code\n"
    vendoring.vendor(target, force=True)
    vendoring.check(target)


def test_vendor_refuses_a_source_with_other_imports(tmp_path):
    source = tmp_path / "layer.py"
    source.write_bytes(SOURCE.read_bytes() + b"\nimport numpy\n")
    with pytest.raises(vendoring.VendoringError, match="imports numpy") as raised:
        vendoring.vendor(tmp_path / "out.py", source=source)
    assert raised.value.kinds == ("not-vendorable",)
    assert not (tmp_path / "out.py").exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tools_docstring_examples_hold():
    """`read_version` and `foreign_imports` document themselves with examples; scripts/ is not collected
    for doctests (its other entry points import the suite), so they run here."""
    import doctest

    result = doctest.testmod(vendoring, raise_on_error=False, report=True)
    assert result.attempted >= 3 and result.failed == 0, result


def test_cli_writes_and_checks(tmp_path):
    # Run from outside the repository: the script must find the checkout's layer file by itself.
    written = _cli("mypkg/_vendor/hyperzzw.py", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "Wrote mypkg/_vendor/hyperzzw.py" in written.stdout
    target = tmp_path / "mypkg" / "_vendor" / "hyperzzw.py"
    assert vendoring.split(target.read_bytes())[1] == SOURCE.read_bytes()

    checked = _cli("--check", "mypkg/_vendor/hyperzzw.py", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("OK: ") and "unmodified, current" in checked.stdout

    target.write_bytes(target.read_bytes() + b"# local edit\n")
    modified = _cli("--check", "mypkg/_vendor/hyperzzw.py", cwd=tmp_path)
    assert modified.returncode == 1
    assert modified.stderr.startswith("FAILED (MODIFIED): ")
    assert "-# local edit" in modified.stderr

    old = _old_source(tmp_path)
    assert _cli("--source", str(old), "stale.py", cwd=tmp_path).returncode == 0
    stale = _cli("--check", "stale.py", cwd=tmp_path)
    assert stale.returncode == 1 and stale.stderr.startswith("FAILED (STALE): ")
    assert _cli("--check", "--source", str(old), "stale.py", cwd=tmp_path).returncode == 0

    missing = _cli("--check", "nope.py", cwd=tmp_path)
    assert missing.returncode == 1 and "no such file" in missing.stderr

    (tmp_path / "mine.py").write_text("x = 1\n")
    refused = _cli("mine.py", cwd=tmp_path)
    assert refused.returncode == 1 and "refusing to overwrite" in refused.stderr
    assert _cli("--force", "mine.py", cwd=tmp_path).returncode == 0

    usage = _cli(cwd=tmp_path)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_target_copy_is_unmodified():
    """When the suite is pointed at a vendored copy (HYPERZZW_TARGET), that copy must not have been edited.

    Staleness (a copy of another release than this checkout's) is not checked here: the suite's results say
    whether the copy conforms; `python scripts/vendor.py --check PATH` reports staleness.
    """
    from conformance.subjects.hyperzzw import target

    origin = Path(target.ORIGIN)
    if not origin.is_file() or not origin.read_bytes().startswith(vendoring.BEGIN.encode()):
        pytest.skip(f"the layer under test ({target.ORIGIN}) is not a vendored copy")
    provenance, body = vendoring.split(origin.read_bytes())
    assert vendoring.sha256(body) == provenance.sha256, (
        f"{origin} was edited after vendoring (hyperzzw {provenance.version}): "
        "a vendored copy must stay unmodified; see `python scripts/vendor.py --check`"
    )
