"""Golden fixtures: computing them from the oracle, writing them, and reading them back verified.

Layout of `golden/hyperzzw/` (documented for readers in `golden/hyperzzw/README.md`):

- `cases/<case id>.npz`: per case, the inputs (`x`, `context`, `kernel`, `cotangent`) and the oracle's
  exact `output`, `dx`, `dcontext`, `dkernel`, each rounded once to the case's dtype and stored in the NumPy
  dtype that holds it exactly (bfloat16 values in float32);
- `training.npz`: the training run's data, its reference states (one exact SGD step each, from the previous
  stored state), the losses and the per-step bounds;
- `errors.json`: the expected `(exception type, message)` of every bad-input entry and mode;
- `keras/saved-<backend>.keras`: a small model saved by each backend, loaded by every backend;
- `manifest.json`: provenance (generator, oracle, input draws, seed, the case catalogue's hash), each
  case's definition and tolerance summary, the training rule, and a sha256 per file.

Only `scripts/regenerate_golden.py` writes here, and only bytes that changed. Readers verify checksums and
the catalogue hash first; a file whose bytes are wrong is *damaged* (restore it from git), fixtures that
are intact but no longer what the oracle gives are *stale* (regenerate them).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from conformance.subjects.hyperzzw import bad_inputs, cases, oracle, tolerance

# HYPERZZW_GOLDEN points the suite at another copy of golden/hyperzzw/ (the suite's own tests use it on damaged copies).
ROOT = Path(os.environ.get("HYPERZZW_GOLDEN") or Path(__file__).resolve().parents[3] / "golden" / "hyperzzw")
MANIFEST = ROOT / "manifest.json"
REGENERATE = "nox -t golden  (or: python scripts/regenerate_golden.py, with a Keras backend installed)"
QUANTITIES = ("output", "dx", "dcontext", "dkernel")


RESTORE = "git checkout -- golden/hyperzzw/"


class GoldenError(Exception):
    """The stored fixtures are damaged (bytes not what the manifest says) or stale (not what the oracle and
    the case catalogue give today)."""


def _damaged(path: Path | str, what: str) -> GoldenError:
    """A file whose bytes are not the ones golden/hyperzzw/ was written with: restore it, don't regenerate."""
    return GoldenError(
        f"golden fixture {path} is damaged: {what}. Restore the committed fixtures with: {RESTORE}"
        " (regenerate only if you changed the oracle or the case catalogue on purpose)"
    )


def _stale(path: Path | str, what: str) -> GoldenError:
    """Intact fixtures that no longer match the oracle or the catalogue: regenerate, review, commit."""
    return GoldenError(
        f"golden fixture {path} is stale: {what}. Regenerate with: {REGENERATE}, review the printed drift, "
        "and commit golden/hyperzzw/"
    )


# --- computing ---------------------------------------------------------------------------------------------


def compute_case(case: cases.Case) -> dict[str, np.ndarray]:
    """The case's stored arrays (float64 values, each exactly representable in its stored dtype): the
    inputs, and the oracle's exact output and gradients, each rounded once to the case's dtype."""
    inputs = cases.make_inputs(case)
    x, context, kernel, g = inputs["x"], inputs["context"], inputs["kernel"], inputs["cotangent"]
    dx, dcontext, dkernel = oracle.gradients(x, context, kernel, g, case.dtype)
    arrays = dict(inputs)
    arrays["output"] = oracle.forward(x, context, kernel, case.dtype)
    arrays["dx"] = dx
    arrays["dkernel"] = dkernel
    if case.context_dtype is None:  # an integer context has no gradient
        arrays["dcontext"] = dcontext
    return arrays


def carriers(case: cases.Case, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays in the NumPy dtypes they are stored in."""
    out = {name: value.astype(oracle.CARRIERS[case.dtype]) for name, value in arrays.items()}
    if case.context_dtype is not None:
        out["context"] = arrays["context"].astype(case.context_dtype)
    return out


def compute_masks() -> dict[str, np.ndarray]:
    """Each mask case's input masks and the oracle's output mask (absent where the output carries none), under
    `<case slug>/<x_mask | context_mask | output_mask>`."""
    out = {}
    for case in cases.MASK_CASES:
        masks = cases.make_masks(case)
        output = oracle.output_mask(masks.get("x_mask"), masks.get("context_mask"), case.x_shape, case.context_shape)
        if output is not None:
            masks["output_mask"] = output
        out.update({f"{cases.mask_slug(case)}/{name}": mask for name, mask in masks.items()})
    return out


def compute_training() -> dict[str, np.ndarray]:
    """The training run's reference: from the stored state `(kernels[k], ws[k])` one exact SGD step gives
    `losses[k]` and `(kernels[k + 1], ws[k + 1])`, each rounded once to float32, with the per-step bounds
    of `tolerance.sgd_step_atols`. Every step starts from the stored (rounded) state, so errors do not compound."""
    t = cases.TRAINING
    data = cases.make_training_inputs(t)
    carrier = oracle.CARRIERS[t.dtype]
    kernels, ws, steps = [data["kernel"]], [data["w"]], []
    for _ in range(t.steps):
        step = oracle.sgd_step(data["x"], data["context"], data["y"], kernels[-1], ws[-1], t.learning_rate, t.dtype)
        step.update(tolerance.sgd_step_atols(step, t.learning_rate, t.dtype))
        kernels.append(step["kernel"])
        ws.append(step["w"])
        steps.append(step)
    return {
        "x": data["x"].astype(carrier),
        "context": data["context"].astype(carrier),
        "y": data["y"].astype(carrier),
        "kernels": np.stack(kernels).astype(carrier),
        "ws": np.stack(ws).astype(carrier),
        "losses": np.array([s["loss"] for s in steps]).astype(carrier),
        "loss_atol": np.array([s["loss_atol"] for s in steps], dtype=np.float64),
        "kernel_atol": np.stack([s["kernel_atol"] for s in steps]),
        "w_atol": np.stack([s["w_atol"] for s in steps]),
    }


def tolerance_summary(case: cases.Case, arrays: dict[str, np.ndarray]) -> dict:
    """The per-case tolerance record stored in the manifest (the tests recompute the elementwise arrays)."""
    x, context, kernel, g = arrays["x"], arrays["context"], arrays["kernel"], arrays["cotangent"]
    atols = dict(zip(("dx", "dcontext", "dkernel"), tolerance.gradient_atols(x, context, kernel, g, case.dtype)))
    atols["output"] = tolerance.forward_atol(x, context, kernel, case.dtype)
    lengths = tolerance.reduction_lengths(x.shape, context.shape, kernel.shape)
    return {
        "rule": "atol = gamma(n + 2) * M elementwise; gamma(n) = n*u/(1-n*u), u = eps/2; M = the formula on |inputs|"
        " (plus the underflow floor, which depends on the backend; see conformance/subjects/hyperzzw/tolerance.py)",
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
    """A deterministic .npz (fixed timestamps, sorted names, no compression: zlib implementations such as
    zlib-ng compress the same data to different bytes), so unchanged data gives unchanged bytes anywhere."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with archive.open(info, "w") as handle:
                np.lib.format.write_array(handle, np.array(arrays[name], order="C"), allow_pickle=False)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build() -> tuple[dict[str, bytes], dict]:
    """Everything the oracle side of `golden/hyperzzw/` holds, in memory: `({relative path: bytes}, manifest)`."""
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
    files["masks.npz"] = npz_bytes(compute_masks())
    files["errors.json"] = (json.dumps(bad_inputs.expected_pairs(), indent=1, sort_keys=True) + "\n").encode()
    manifest = {
        "generator": "scripts/regenerate_golden.py",
        "oracle": "conformance.subjects.hyperzzw.oracle: exact rational arithmetic (Python integers), each value"
        " rounded once to the case's dtype, to nearest, ties to even; no BLAS, LAPACK or libm, so no machine or"
        " library version changes a byte",
        "inputs": "conformance.subjects.hyperzzw.cases.Draws: raw PCG64 words (seed below, and a CRC-32 of the case"
        " id), integer arithmetic, rounded once to the case's dtype",
        "errors": "conformance.subjects.hyperzzw.bad_inputs.CATALOGUE (the hand-written specification of every error)",
        "seed": cases.SEED,
        "catalogue_sha256": cases.catalogue_hash(),
        "cases": manifest_cases,
        "training": {
            "file": "training.npz",
            "definition": cases.TRAINING.definition(),
            "rule": "per step k: from (kernels[k], ws[k]) one exact SGD step, rounded once to float32, gives"
            " losses[k], kernels[k + 1], ws[k + 1]; loss_atol, kernel_atol, w_atol bound a correct float32"
            " step (conformance.subjects.hyperzzw.oracle.sgd_step,"
            " conformance.subjects.hyperzzw.tolerance.sgd_step_atols)",
        },
        "masks": {
            "file": "masks.npz",
            "definitions": [case.definition() for case in cases.MASK_CASES],
            "rule": "per case: the input masks drawn from PCG64 words (conformance.subjects.hyperzzw.cases.make_masks),"
            " and the output mask conformance.subjects.hyperzzw.oracle.output_mask gives; compared exactly",
        },
        "sha256": {path: sha256(data) for path, data in sorted(files.items())},
    }
    return files, json.loads(json.dumps(manifest))  # as stored: tuples become lists


def read_manifest() -> dict:
    if not MANIFEST.is_file():
        raise _damaged(MANIFEST, "missing")
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _damaged(MANIFEST, f"not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), dict):
        raise _damaged(MANIFEST, "it has no sha256 table")
    return manifest


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
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
    manifest = dict(manifest)
    manifest["sha256"] = dict(sorted({**manifest["sha256"], **old_keras}.items()))
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if not MANIFEST.is_file() or MANIFEST.read_text() != text:
        MANIFEST.write_text(text)


def keras_file_content(data: bytes) -> dict:
    """What a `.keras` file holds, without what changes on every save (`date_saved`, zip timestamps): the
    config, the rest of the metadata, and every weight array's dtype, shape and bytes."""
    import h5py

    content = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in sorted(archive.namelist()):
            blob = archive.read(name)
            if name == "metadata.json":
                metadata = json.loads(blob)
                metadata.pop("date_saved", None)
                content[name] = metadata
            elif name.endswith(".json"):
                content[name] = json.loads(blob)
            elif name.endswith(".h5"):
                arrays = {}
                with h5py.File(io.BytesIO(blob), "r") as weights:
                    weights.visititems(
                        lambda key, item: (
                            arrays.__setitem__(key, (str(item.dtype), item.shape, item[()].tobytes()))
                            if isinstance(item, h5py.Dataset)
                            else None
                        )
                    )
                content[name] = arrays
            else:
                content[name] = blob
    return content


def record_keras_file(path: str, data: bytes) -> bool:
    """Writes one backend's `.keras` file and records its checksum in the manifest, unless the stored file
    (intact) already holds the same content; returns whether it wrote. So regenerating twice changes no byte."""
    full = ROOT / path
    manifest = read_manifest()
    stored = full.read_bytes() if full.is_file() else None
    if stored is not None and manifest["sha256"].get(path) == sha256(stored):
        if keras_file_content(stored) == keras_file_content(data):
            return False
    (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    (ROOT / path).write_bytes(data)
    manifest["sha256"][path] = sha256(data)
    manifest["sha256"] = dict(sorted(manifest["sha256"].items()))
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return True


# --- reading -----------------------------------------------------------------------------------------------


def verified_bytes(path: str, manifest: dict | None = None) -> bytes:
    """The bytes of a fixture file, after checking it exists and matches the manifest's checksum."""
    manifest = manifest or read_manifest()
    expected = manifest["sha256"].get(path)
    full = ROOT / path
    if expected is None:
        raise _damaged(full, "not listed in golden/hyperzzw/manifest.json")
    if not full.is_file():
        raise _damaged(full, "missing")
    data = full.read_bytes()
    if sha256(data) != expected:
        raise _damaged(full, f"checksum mismatch (sha256 {sha256(data)[:12]}..., manifest says {expected[:12]}...)")
    return data


def check_catalogue(manifest: dict | None = None) -> None:
    """Fails when the case catalogue changed but the fixtures were not regenerated."""
    manifest = manifest or read_manifest()
    if manifest.get("catalogue_sha256") != cases.catalogue_hash():
        raise _stale(
            MANIFEST,
            "the case catalogue (conformance/subjects/hyperzzw/cases.py) changed since the fixtures were generated",
        )


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


def status(files: dict[str, bytes], manifest: dict) -> tuple[str, list[str]]:
    """Where golden/hyperzzw/ stands against `build()`'s `files` and `manifest`: ("damaged", why) when its bytes are
    not the ones its manifest records (restore them), else ("stale", what changed) when it is intact but not
    what the oracle and the catalogue give today (regenerate), else ("current", []). Damaged is told apart
    from stale because the fixes differ. The one definition of the check: `regenerate_golden.py --check` and
    `test_fixtures.py` both use it."""
    try:
        stored = read_manifest()
        damaged = []
        for path in stored["sha256"]:
            try:
                verified_bytes(path, stored)
            except GoldenError as exc:
                damaged.append(str(exc))
    except GoldenError as exc:
        damaged = [str(exc)]
    if damaged:
        return "damaged", damaged
    stale = differences(files, manifest)
    return ("stale", stale) if stale else ("current", [])


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
                details.append(
                    f"{name}: shape/dtype {getattr(a, 'shape', None)}/{getattr(a, 'dtype', None)}"
                    f" -> {getattr(b, 'shape', None)}/{getattr(b, 'dtype', None)}"
                )
                continue
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
            if not same.all():
                with np.errstate(invalid="ignore"):
                    diff = np.nanmax(np.abs(np.where(same, 0.0, a64 - b64)))
                details.append(f"{name}: {int((~same).sum())} values differ, largest |diff| {diff:.3g}")
        lines.append(f"changed  {path}: " + ("; ".join(details) or "same values, different bytes"))
    lines.extend(manifest_differences(old_manifest, manifest))
    return lines


def _without_keras(manifest: dict) -> dict:
    out = dict(manifest)
    out["sha256"] = {p: s for p, s in manifest.get("sha256", {}).items() if not p.startswith("keras/")}
    return out


def manifest_differences(old: dict, new: dict) -> list[str]:
    """Every field of the regenerated manifest that the stored one does not hold identically (the `.keras`
    checksums aside: those files are written by the backends, not the oracle)."""
    old, new = _without_keras(old), _without_keras(new)
    lines = []
    for key in sorted(set(old) | set(new)):
        if key == "cases" and isinstance(old.get(key), dict):
            for case_id in sorted(set(old[key]) | set(new[key])):
                if old[key].get(case_id) != new[key].get(case_id):
                    fields = sorted(
                        f
                        for f in set(old[key].get(case_id) or {}) | set(new[key].get(case_id) or {})
                        if (old[key].get(case_id) or {}).get(f) != (new[key].get(case_id) or {}).get(f)
                    )
                    lines.append(f"changed  manifest.json: cases/{case_id}: {', '.join(fields) or 'added/removed'}")
        elif old.get(key) != new.get(key):
            lines.append(f"changed  manifest.json: {key}")
    return lines


# --- the .keras files, one saved by each backend ------------------------------------------------------------

KERAS_CASE = "rank2-float32"  # the case whose kernel the saved model holds and whose data it is run on
KERAS_BACKENDS = ("jax", "torch", "tensorflow")


def keras_path(backend_name: str) -> str:
    return f"keras/saved-{backend_name}.keras"


def keras_model(layer_class, kernel: np.ndarray | None = None):
    """A functional model around the layer, the one the `.keras` files hold; with KERAS_CASE's kernel unless
    `kernel` is given."""
    import keras

    case = cases.by_id(KERAS_CASE)
    kernel = compute_case(case)["kernel"] if kernel is None else kernel
    x = keras.Input(shape=case.x_shape[1:], name="x")
    context = keras.Input(shape=case.context_shape[1:], name="context")
    layer = layer_class(case.input_dim, name="zzw")
    model = keras.Model([x, context], layer([x, context]), name="golden_model")
    layer.hyper_kernel.assign(kernel.astype(np.float32))
    return model


# The formats users save a model in besides `.keras`, each round-tripped by every backend session, and the
# `.weights.h5` inside each backend's golden `.keras` file, loaded by every other backend.
SAVED_FORMATS = ("weights.h5", "legacy h5", "pickle")


def keras_model_bytes(layer_class) -> bytes:
    """KERAS_CASE's model (`keras_model`) saved as `.keras` bytes."""
    import tempfile

    model = keras_model(layer_class)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()
