"""The sensor-anomaly experiment (`experiment.py`): the dataset is the source's, bit for bit; the split,
metrics and models are what they say; and a short run of the whole pipeline, and of the command line, works
on this backend. Runs in every backend session (the suite's testpaths include experiments/)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.subjects.hyperzzw import target
from experiments.sensor import __main__ as cli
from experiments.sensor import experiment as sensor

# The dataset --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return sensor.make_dataset()


def test_dataset_matches_the_original_pandas_code(data):
    assert data.readings.shape == (1800, 3) and data.readings.dtype == np.float64
    assert data.anomaly.shape == (1800,) and data.anomaly.dtype == np.int64
    assert data.sha256() == sensor.DATASET_SHA256


def test_dataset_counts(data):
    types, counts = np.unique(data.sensor_type, return_counts=True)
    assert dict(zip(types.tolist(), counts.tolist())) == {"temperature": 600, "pressure": 600, "humidity": 600}
    anomalies = {t: int(data.anomaly[data.sensor_type == t].sum()) for t in sensor.SENSOR_TYPES}
    assert anomalies == {"temperature": 4, "pressure": 18, "humidity": 11}
    assert data.anomaly.mean() == pytest.approx(33 / 1800)
    assert set(np.unique(data.anomaly).tolist()) == {0, 1}


def test_dataset_labels_follow_the_source_rules(data):
    a, b, c = data.readings.T
    rules = {"temperature": a > 2.5, "pressure": b < -0.5, "humidity": (a + b + c) > 0}
    for sensor_type, rule in rules.items():
        rows = data.sensor_type == sensor_type
        np.testing.assert_array_equal(data.anomaly[rows], rule[rows].astype(np.int64), err_msg=sensor_type)


def test_shuffle_is_a_permutation_of_the_generated_order():
    order = sensor.pandas_sample_order(1800, 42)
    assert sorted(order.tolist()) == list(range(1800))
    np.testing.assert_array_equal(order, sensor.pandas_sample_order(1800, 42))


# The split and the metrics -------------------------------------------------------------------------------


def test_split_is_fixed_disjoint_stratified_and_85_15(data):
    train, test = sensor.split(data)
    assert (len(train), len(test)) == (1530, 270)
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(1800))
    again = sensor.split(data)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    # Stratified: each type keeps ~15% of its rows and of its anomalies (4, 18, 11) in the test set.
    held_out = data.take(test)
    for sensor_type, anomalies in zip(sensor.SENSOR_TYPES, (1, 3, 2)):
        rows = held_out.sensor_type == sensor_type
        assert int(held_out.anomaly[rows].sum()) == anomalies, sensor_type
        assert int(rows.sum()) == 90, sensor_type
    assert not np.array_equal(test, sensor.split(data, seed=1)[1])


def test_standardizer_uses_training_statistics(data):
    train, _ = sensor.split(data)
    standardizer = sensor.Standardizer.fit(data.readings[train])
    z = standardizer(data.readings[train])
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)


def test_confusion_metrics():
    y_true = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    y_pred = np.array([1, 1, 0, 1, 0, 0, 0, 0])  # TP 2, FN 1, FP 1, TN 4
    assert sensor.accuracy(y_true, y_pred) == 6 / 8
    assert sensor.balanced_accuracy(y_true, y_pred) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert sensor.f1_score(y_true, y_pred) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # Predicting "normal" everywhere: no anomaly found, F1 0, balanced accuracy 1/2.
    none = np.zeros_like(y_true)
    assert sensor.f1_score(y_true, none) == 0.0
    assert sensor.balanced_accuracy(y_true, none) == 0.5
    assert sensor.f1_score(none, none) == 0.0
    assert sensor.majority_class(y_true) == 0
    assert sensor.majority_class(np.array([1, 1, 0])) == 1


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(sensor.average_ranks([0.1, 0.5, 0.5, 0.9, 0.2, 0.2]), [1.0, 4.5, 4.5, 6.0, 2.5, 2.5])


def test_roc_auc_counts_ties_half():
    y_true = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.5, 0.5, 0.9, 0.2, 0.2])
    # By pairs: positive 0.5 beats 0.1 and 0.2, ties 0.5 (2.5); 0.9 beats all (3); 0.2 beats 0.1, ties 0.2 (1.5).
    assert sensor.roc_auc(y_true, scores) == pytest.approx(7 / 9)
    assert sensor.roc_auc(y_true, np.where(y_true == 1, 0.9, 0.1)) == 1.0
    assert sensor.roc_auc(y_true, np.where(y_true == 1, 0.1, 0.9)) == 0.0
    assert sensor.roc_auc(y_true, np.full(6, 0.3)) == 0.5
    assert math.isnan(sensor.roc_auc(np.zeros(4, dtype=int), np.arange(4.0)))


# The models and a short run ------------------------------------------------------------------------------


def test_models_have_the_same_budget():
    concat, hyper = sensor.build_concat_model(), sensor.build_hyperzzw_model()
    assert concat.count_params() == hyper.count_params() == 9217
    for model in (concat, hyper):
        assert [tuple(t.shape) for t in model.inputs] == [(None, 3), (None, 3)]
        assert tuple(model.outputs[0].shape) == (None, 1)
        units = [layer.units for layer in model.layers if hasattr(layer, "units")]
        assert units == [128, 64, 1]
    (operator,) = [layer for layer in hyper.layers if isinstance(layer, target.HyperZZWOperator)]
    assert tuple(operator.hyper_kernel.shape) == (3, 128)


@pytest.fixture(scope="module")
def short_run():
    """Both models, 3 epochs on the first 512 training rows: the pipeline end to end, in a few seconds."""
    return sensor.run_experiment(epochs=3, seed=0, train_rows=512)


def test_short_run_metrics_are_in_range(short_run):
    assert (short_run.n_train, short_run.n_test) == (512, 270)
    assert short_run.anomaly_rate == pytest.approx(33 / 1800)
    assert [m.name for m in short_run.models] == ["Concat", "HyperZZW"]
    for result in [m.metrics for m in short_run.models] + [short_run.majority]:
        assert set(result) == {"accuracy", "balanced_accuracy", "f1", "roc_auc"}
        assert all(0.0 <= value <= 1.0 for value in result.values()), result
    # The majority class is "normal": its accuracy is the share of normal test rows.
    assert short_run.majority["accuracy"] == pytest.approx(1 - short_run.test_anomalies / short_run.n_test)
    assert short_run.majority["balanced_accuracy"] == 0.5 and short_run.majority["roc_auc"] == 0.5


def test_short_run_hyperzzw_model_trains(short_run):
    (hyper,) = [m for m in short_run.models if m.name == "HyperZZW"]
    assert hyper.params == 9217
    assert len(hyper.loss) == 3 and all(math.isfinite(v) for v in hyper.loss)
    assert hyper.loss[-1] < hyper.loss[0]


def test_markdown_table(short_run):
    lines = sensor.markdown_table(short_run).splitlines()
    assert lines[2].startswith("| model | params | accuracy |")
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split(" | ")[0] for row in rows] == ["| Concat", "| HyperZZW", "| majority class"]
    assert all(row.count("|") == 8 for row in rows)


def test_command_line_runs_the_experiment_it_was_asked_for(capsys):
    """The real command line (no stand-in for the experiment): one epoch, other seeds, printed as the table."""
    assert cli.main(["--epochs", "1", "--seed", "3", "--split-seed", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "; 1 epochs," in lines[0] and "seed 3;" in lines[0] and "(seed 5):" in lines[0], lines[0]
    assert "1530 train, 270 test rows" in lines[0], lines[0]
    rows = [line.split(" | ")[0] for line in lines[4:]]
    assert rows == ["| Concat", "| HyperZZW", "| majority class"], lines
