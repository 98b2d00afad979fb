"""Golden fixtures: computing them from the oracle, writing them, and reading them back verified.

Layout of `golden/` (documented for readers in `golden/README.md`):

- `cases/<case id>.npz`: per case, the inputs (`x`, `context`, `kernel`, `cotangent`) and the oracle's
  `output`, `dx`, `dcontext`, `dkernel`, each rounded to the case's dtype and stored in the NumPy dtype that
  holds it exactly (bfloat16 values in float32);
- `training.npz`: the training run's data, initial weights, loss trajectory and final weights;
- `errors.json`: the expected `(exception type, message)` of every bad-input entry and mode;
- `keras/saved-<backend>.keras`: a small model saved by each backend, loaded by every backend;
- `manifest.json`: provenance (generator, oracle, NumPy version, seed, the case catalogue's hash), each
  case's definition and tolerance summary, and a sha256 per file.

Only `scripts/regenerate_golden.py` writes here. Readers verify checksums and the catalogue hash first and
fail with a message naming the file and the command that regenerates it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from conformance import bad_inputs, cases, oracle, tolerance

ROOT = Path(__file__).resolve().parents[1] / "golden"
MANIFEST = ROOT / "manifest.json"
REGENERATE = "nox -t golden  (or: python scripts/regenerate_golden.py, with a Keras backend installed)"
QUANTITIES = ("output", "dx", "dcontext", "dkernel")


class GoldenError(Exception):
    """The stored fixtures are missing, corrupted or stale."""


def _fail(path: Path | str, what: str) -> GoldenError:
    return GoldenError(f"golden fixture {path}: {what}. Regenerate with: {REGENERATE}")


# --- computing ---------------------------------------------------------------------------------------------


def compute_case(case: cases.Case) -> dict[str, np.ndarray]:
    """The case's stored arrays (float64 values, each exactly representable in its stored dtype)."""
    inputs = cases.make_inputs(case)
    x, context, kernel, g = inputs["x"], inputs["context"], inputs["kernel"], inputs["cotangent"]
    dx, dcontext, dkernel = oracle.gradients(x, context, kernel, g)
    arrays = dict(inputs)
    arrays["output"] = oracle.round_to(oracle.forward(x, context, kernel), case.dtype)
    arrays["dx"] = oracle.round_to(dx, case.dtype)
    arrays["dkernel"] = oracle.round_to(dkernel, case.dtype)
    if case.context_dtype is None:  # an integer context has no gradient
        arrays["dcontext"] = oracle.round_to(dcontext, case.dtype)
    return arrays


def carriers(case: cases.Case, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays in the NumPy dtypes they are stored in."""
    out = {name: value.astype(oracle.CARRIERS[case.dtype]) for name, value in arrays.items()}
    if case.context_dtype is not None:
        out["context"] = arrays["context"].astype(case.context_dtype)
    return out


def compute_training() -> dict[str, np.ndarray]:
    t = cases.TRAINING
    data = cases.make_training_inputs(t)
    args = (data["x"], data["context"], data["y"], data["kernel"], data["w"], t.learning_rate, t.steps)
    losses, kernel, w = oracle.train_sgd(*args)
    loss_atol, weight_atol = oracle.train_sgd_error_bounds(*args, unit_roundoff=tolerance.UNIT_ROUNDOFF[t.dtype])
    return {
        **data,
        "losses": losses,
        "final_kernel": kernel,
        "final_w": w,
        "loss_atol": loss_atol,
        "weight_atol": np.asarray(weight_atol),
    }


def tolerance_summary(case: cases.Case, arrays: dict[str, np.ndarray]) -> dict:
    """The per-case tolerance record stored in the manifest (the tests recompute the elementwise arrays)."""
    x, context, kernel, g = arrays["x"], arrays["context"], arrays["kernel"], arrays["cotangent"]
    atols = dict(zip(("dx", "dcontext", "dkernel"), tolerance.gradient_atols(x, context, kernel, g, case.dtype)))
    atols["output"] = tolerance.forward_atol(x, context, kernel, case.dtype)
    lengths = tolerance.reduction_lengths(x.shape, context.shape, kernel.shape)
    return {
        "rule": "atol = gamma(n + 2) * M elementwise; gamma(n) = n*u/(1-n*u), u = eps/2; M = the oracle on |inputs|",
        "unit_roundoff": tolerance.UNIT_ROUNDOFF[case.dtype],
        "n": lengths,
        "max_atol": {
            name: float(np.max(np.where(np.isfinite(a), a, 0.0))) if a.size else 0.0
            for name, a in atols.items()
            if name in arrays
        },
    }


# --- writing -----------------------------------------------------------------------------------------------


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic .npz (fixed timestamps, sorted names), so unchanged data gives unchanged bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as handle:
                np.lib.format.write_array(handle, np.array(arrays[name], order="C"), allow_pickle=False)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build() -> tuple[dict[str, bytes], dict]:
    """Everything the oracle side of `golden/` holds, in memory: `({relative path: bytes}, manifest)`."""
    files: dict[str, bytes] = {}
    manifest_cases = {}
    for case in cases.CASES:
        arrays = compute_case(case)
        path = f"cases/{case.id}.npz"
        files[path] = npz_bytes(carriers(case, arrays))
        manifest_cases[case.id] = {
            "file": path,
            "definition": case.definition(),
            "tolerance": tolerance_summary(case, arrays),
        }
    training = compute_training()
    files["training.npz"] = npz_bytes(training)
    files["errors.json"] = (json.dumps(bad_inputs.expected_pairs(), indent=1, sort_keys=True) + "\n").encode()
    manifest = {
        "generator": "scripts/regenerate_golden.py",
        "oracle": "conformance.oracle: float64 NumPy, rounded to each case's dtype (round to nearest even)",
        "errors": "conformance.bad_inputs.CATALOGUE (the hand-written specification of every error)",
        "numpy": np.__version__,
        "seed": cases.SEED,
        "catalogue_sha256": cases.catalogue_hash(),
        "cases": manifest_cases,
        "training": {"file": "training.npz", "definition": cases.TRAINING.definition()},
        "sha256": {path: sha256(data) for path, data in sorted(files.items())},
    }
    return files, manifest


def read_manifest() -> dict:
    if not MANIFEST.is_file():
        raise _fail(MANIFEST, "missing")
    try:
        return json.loads(MANIFEST.read_text())
    except json.JSONDecodeError as exc:
        raise _fail(MANIFEST, f"not valid JSON ({exc})") from None


def write(files: dict[str, bytes], manifest: dict) -> None:
    """Writes the oracle files and the manifest, keeping the `.keras` entries other backends wrote."""
    old_keras = {}
    if MANIFEST.is_file():
        old = json.loads(MANIFEST.read_text())
        old_keras = {p: s for p, s in old.get("sha256", {}).items() if p.startswith("keras/")}
        for path in old.get("sha256", {}):
            if not path.startswith("keras/") and path not in files:
                (ROOT / path).unlink(missing_ok=True)  # a case that left the catalogue
    for path, data in files.items():
        target = ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    manifest = dict(manifest)
    manifest["sha256"] = {**manifest["sha256"], **old_keras}
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def record_keras_file(path: str, data: bytes) -> None:
    """Writes one backend's `.keras` file and records its checksum in the manifest."""
    (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    (ROOT / path).write_bytes(data)
    manifest = read_manifest()
    manifest["sha256"][path] = sha256(data)
    manifest["sha256"] = dict(sorted(manifest["sha256"].items()))
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# --- reading -----------------------------------------------------------------------------------------------


def verified_bytes(path: str, manifest: dict | None = None) -> bytes:
    """The bytes of a fixture file, after checking it exists and matches the manifest's checksum."""
    manifest = manifest or read_manifest()
    expected = manifest["sha256"].get(path)
    full = ROOT / path
    if expected is None:
        raise _fail(full, "not listed in golden/manifest.json")
    if not full.is_file():
        raise _fail(full, "missing")
    data = full.read_bytes()
    if sha256(data) != expected:
        raise _fail(full, f"checksum mismatch (sha256 {sha256(data)[:12]}..., manifest says {expected[:12]}...)")
    return data


def check_catalogue(manifest: dict | None = None) -> None:
    """Fails when the case catalogue changed but the fixtures were not regenerated."""
    manifest = manifest or read_manifest()
    if manifest.get("catalogue_sha256") != cases.catalogue_hash():
        raise _fail(MANIFEST, "the case catalogue (conformance/cases.py) changed since the fixtures were generated")


def load_npz(path: str, manifest: dict | None = None) -> dict[str, np.ndarray]:
    """A fixture's arrays, verified, widened from their stored dtypes to float64 (exactly)."""
    with np.load(io.BytesIO(verified_bytes(path, manifest)), allow_pickle=False) as data:
        return {name: data[name].astype(np.float64) for name in data.files}


def load_case(case: cases.Case, manifest: dict | None = None) -> dict[str, np.ndarray]:
    """A case's arrays (float64 values, each exactly representable in the case's dtype)."""
    return load_npz(f"cases/{case.id}.npz", manifest)


def load_errors(manifest: dict | None = None) -> dict[str, list]:
    return json.loads(verified_bytes("errors.json", manifest))


# --- comparing ---------------------------------------------------------------------------------------------


def _npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        return {name: loaded[name] for name in loaded.files}


def differences(files: dict[str, bytes], manifest: dict) -> list[str]:
    """What regenerating would change, one line per file: added, removed, and per changed array the
    largest difference, so a reviewer sees numeric drift before committing."""
    lines = []
    old_manifest = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {"sha256": {}}
    old_paths = {p for p in old_manifest.get("sha256", {}) if not p.startswith("keras/")}
    for path in sorted(set(files) - old_paths):
        lines.append(f"added    {path}")
    for path in sorted(old_paths - set(files)):
        lines.append(f"removed  {path}")
    for path in sorted(set(files) & old_paths):
        full = ROOT / path
        old = full.read_bytes() if full.is_file() else b""
        if old == files[path]:
            continue
        if not path.endswith(".npz") or not old:
            lines.append(f"changed  {path}" + ("" if old else " (was missing)"))
            continue
        try:
            before = _npz_arrays(old)
        except (ValueError, OSError, zipfile.BadZipFile):
            lines.append(f"changed  {path} (the stored file is unreadable)")
            continue
        after = _npz_arrays(files[path])
        details = []
        for name in sorted(set(before) | set(after)):
            a, b = before.get(name), after.get(name)
            if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
                details.append(f"{name}: shape/dtype {getattr(a, 'shape', None)}/{getattr(a, 'dtype', None)}"
                               f" -> {getattr(b, 'shape', None)}/{getattr(b, 'dtype', None)}")
                continue
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
            if not same.all():
                with np.errstate(invalid="ignore"):
                    diff = np.nanmax(np.abs(np.where(same, 0.0, a64 - b64)))
                details.append(f"{name}: {int((~same).sum())} values differ, largest |diff| {diff:.3g}")
        lines.append(f"changed  {path}: " + ("; ".join(details) or "same values, different bytes"))
    if old_manifest.get("catalogue_sha256") != manifest["catalogue_sha256"]:
        lines.append("changed  manifest.json: the case catalogue hash")
    return lines


# --- the .keras files, one saved by each backend ------------------------------------------------------------

KERAS_CASE = "rank2-float32"  # the case whose kernel the saved model holds and whose data it is run on
KERAS_BACKENDS = ("jax", "torch", "tensorflow")


def keras_path(backend_name: str) -> str:
    return f"keras/saved-{backend_name}.keras"


def keras_model_bytes(layer_class) -> bytes:
    """A functional model around the layer, holding KERAS_CASE's kernel, saved as `.keras` bytes."""
    import tempfile

    import keras

    case = cases.by_id(KERAS_CASE)
    kernel = compute_case(case)["kernel"].astype(np.float32)
    x = keras.Input(shape=case.x_shape[1:], name="x")
    context = keras.Input(shape=case.context_shape[1:], name="context")
    layer = layer_class(case.input_dim, name="zzw")
    model = keras.Model([x, context], layer([x, context]), name="golden_model")
    layer.hyper_kernel.assign(kernel)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()
