"""saved: the layer in a functional model saved as a `.keras` file by every backend (record phase), then every
backend's file loaded and run by every backend (load phase), each against the model the saving backend ran before
saving (`saved/reference`, recorded only as that reference): the deployment path across backends."""

from __future__ import annotations

from conformance.harness.run import layer_sources

NAME = "saved"
ROWS = (NAME,)
UNJUDGED = ("saved/reference",)
FAMILY_DEPTH = 2


def observe(run, layer, tensors) -> None:
    run.attempt(NAME, lambda: _save(run, layer))


def _save(run, layer) -> None:
    path = run.out_dir / run.subject.name / f"saved-{run.backend.NAME}.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    model = run.model(layer)
    run.record_outputs("saved/reference", model(run.tensors()))  # what its loads are compared with
    model.save(path)


def load(run) -> None:
    # Made once first, so that the module defining the layer (and registering it with Keras) is imported.
    layer = run.attempt("saved/layer", run.subject.make_layer)
    if layer is not None:
        run.sources = layer_sources(layer)
    for saved_by in run.backends:
        path = run.out_dir / run.subject.name / f"saved-{saved_by}.keras"
        row = f"saved/{saved_by}"
        if not path.is_file():
            run.text(row, f"missing: {saved_by} saved no file")
            continue

        def load_and_call(path=path, row=row):
            model = run.keras.saving.load_model(path)
            run.record_outputs(row, model(run.tensors()))

        run.attempt(row, load_and_call)


def judge(judge, row: str) -> None:
    if row in (NAME, "saved/layer"):  # raised on every backend; making the layer before loading raised
        judge.same_text(row)
    else:  # a loaded model against the model the loading backend saved (the same layer, weights, inputs)
        reference = judge.own("saved/reference" + judge.suffix(row), "model before saving")
        judge.numeric(row, reference, judge.tolerance)
