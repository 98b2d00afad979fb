"""The sensor-anomaly experiment of Ludwig's `HyperNetworkCombiner` example, rebuilt on Keras 3.

The source (Ludwig's "HyperNetwork Combiner" example page) generates 1,800 sensor readings, three numeric
readings plus a categorical `sensor_type`, where the rule that makes a row anomalous depends on the sensor
type, and claims that a hypernetwork combiner (test accuracy 0.9234) beats plain concatenation (0.7812).
This module reproduces the dataset exactly and tests the claim with `HyperZZWOperator` in place of Ludwig's
combiner, on whichever Keras backend is running:

- `make_dataset()` is the source's generator as written (`np.random.default_rng(42)`, 600 rows per type,
  types in the order temperature, pressure, humidity), shuffled exactly as
  `df.sample(frac=1, random_state=42).reset_index(drop=True)` shuffles, but with NumPy only: pandas is not a
  dependency. `DATASET_SHA256` pins the result to what the original pandas code produces.
- `split()` is a fixed, seeded 85/15 train/test split, stratified by sensor type and label. The source
  instead evaluates on `df.sample(frac=0.15, random_state=99)` drawn from the very rows it trained on, which
  measures training fit, not generalisation (leakage); that is not copied.
- `build_concat_model()` is the concat baseline (z-scored readings and the one-hot type, concatenated,
  Dense 128 relu -> Dense 64 relu -> Dense 1 sigmoid); `build_hyperzzw_model()` spends the same layer budget,
  and exactly the same number of parameters, with the one-hot type as the context of a `HyperZZWOperator`
  that rescales the 128 reading features per sensor type.
- The metrics are NumPy: accuracy, balanced accuracy, F1 and rank-based ROC-AUC of the anomaly class, and the
  majority-class baseline, which matters here: fewer than 2% of the rows are anomalies.

`python -m experiments.sensor` (`__main__.py`) is the command line over `run_experiment()` and
`markdown_table()`; README.md beside this file holds the measured table.
"""

from __future__ import annotations

import dataclasses
import hashlib

import keras
import numpy as np

from conformance.subjects.hyperzzw.target import HyperZZWOperator

# ---------------------------------------------------------------------------------------------------------
# The dataset, as the source generates it.

SEED = 42  # np.random.default_rng(42) in the source
N_PER_TYPE = 600
SENSOR_TYPES = ("temperature", "pressure", "humidity")
READINGS = ("sensor_a", "sensor_b", "sensor_c")
SHUFFLE_SEED = 42  # df.sample(frac=1, random_state=42) in the source

# sha256 of the dataset produced by the ORIGINAL pandas code of the source (its generator and shuffle, run
# verbatim, with the indentation the stored page text lost restored and only `df.to_csv` left out, under
# pandas 3.1.1 and numpy 2.4.6 in a throwaway virtualenv; the arrays also compared equal element for element
# with `make_dataset()`'s), hashed as
# `Dataset.sha256()` does: the (1800, 3) float64 readings (columns sensor_a, sensor_b, sensor_c) as C-ordered
# little-endian bytes, then the sensor_type strings joined by "\n" in UTF-8, then the anomaly labels as
# little-endian int64. `make_dataset()` must reproduce it bit for bit.
DATASET_SHA256 = "b0104f2c455fd3e7f572798e3e813f4d00ee8471e332a15deb2cc630de99d29d"


def make_samples(sensor_type, n, rng):
    """The source's `make_samples`, returning `(readings of shape (n, 3), labels)` instead of a DataFrame.

    The draws, their order and the labelling rules are the source's, line for line.
    """
    if sensor_type == "temperature":
        a = rng.normal(0.0, 1.0, n)
        b = rng.normal(0.0, 1.0, n)
        c = rng.normal(0.0, 1.0, n)
        label = (a > 2.5).astype(int)
    elif sensor_type == "pressure":
        a = rng.normal(1.0, 0.8, n)
        b = rng.normal(1.0, 0.8, n)
        c = rng.normal(1.0, 0.8, n)
        label = (b < -0.5).astype(int)
    else:  # humidity
        a = rng.normal(-1.0, 0.9, n)
        b = rng.normal(-1.0, 0.9, n)
        c = rng.normal(-1.0, 0.9, n)
        label = ((a + b + c) > 0).astype(int)
    return np.stack([a, b, c], axis=1), label


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Rows of the sensor dataset, in the source's column order."""

    readings: np.ndarray  # (n, 3) float64: sensor_a, sensor_b, sensor_c
    sensor_type: np.ndarray  # (n,) str, one of SENSOR_TYPES
    anomaly: np.ndarray  # (n,) int64, 1 for an anomaly

    def __len__(self):
        return len(self.anomaly)

    @property
    def type_index(self) -> np.ndarray:
        """The sensor type as an index into `SENSOR_TYPES`."""
        return np.array([SENSOR_TYPES.index(t) for t in self.sensor_type.tolist()], dtype=np.int64)

    def take(self, rows) -> Dataset:
        return Dataset(self.readings[rows], self.sensor_type[rows], self.anomaly[rows])

    def sha256(self) -> str:
        """The checksum `DATASET_SHA256` is stated in (see its comment)."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.readings, dtype="<f8").tobytes())
        digest.update("\n".join(self.sensor_type.tolist()).encode("utf-8"))
        digest.update(np.ascontiguousarray(self.anomaly, dtype="<i8").tobytes())
        return digest.hexdigest()


def pandas_sample_order(n, random_state):
    """The row order of `df.sample(frac=1, random_state=random_state)` for a frame of `n` rows.

    pandas turns an int `random_state` into `np.random.RandomState(random_state)` and, with `frac=1` and no
    weights, draws `choice(n, size=n, replace=False)`, which for `RandomState` is `permutation(n)[:n]`.
    """
    return np.random.RandomState(random_state).permutation(n)


def make_dataset() -> Dataset:
    """The source's 1,800-row dataset, shuffled as the source shuffles it; checksum `DATASET_SHA256`."""
    rng = np.random.default_rng(SEED)
    parts = [make_samples(t, N_PER_TYPE, rng) for t in SENSOR_TYPES]
    readings = np.concatenate([r for r, _ in parts]).astype(np.float64)
    anomaly = np.concatenate([label for _, label in parts]).astype(np.int64)
    sensor_type = np.repeat(np.array(SENSOR_TYPES), N_PER_TYPE)
    order = pandas_sample_order(len(anomaly), SHUFFLE_SEED)
    return Dataset(readings[order], sensor_type[order], anomaly[order])


# ---------------------------------------------------------------------------------------------------------
# The split and the features.

TEST_FRACTION = 0.15
SPLIT_SEED = 0


def split(data: Dataset, test_fraction=TEST_FRACTION, seed=SPLIT_SEED):
    """`(train_rows, test_rows)`, sorted: an 85/15 split, stratified by sensor type and label, fixed by `seed`.

    Each of the six (sensor type, anomaly) strata is permuted with `np.random.default_rng(seed)` (strata in
    the order type index, then label) and its first `round(test_fraction * len(stratum))` rows go to the test
    set: 270 test rows with 1 + 3 + 2 = 6 of the 33 anomalies. Stratifying matters at this anomaly rate: an
    unstratified 15% sample of these 1,800 rows can hold no anomaly at all (the first 270 rows of
    `np.random.default_rng(3).permutation(1800)` hold none), and one test row is 0.37 points of accuracy.
    """
    rng = np.random.default_rng(seed)
    strata = data.type_index * 2 + data.anomaly
    test = []
    for stratum in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == stratum))
        test.append(rows[: int(round(test_fraction * len(rows)))])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(data)), test)
    return train, test


@dataclasses.dataclass(frozen=True)
class Standardizer:
    """z-scoring with statistics (mean, population standard deviation) taken from the training rows only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, readings) -> Standardizer:
        return cls(readings.mean(axis=0), readings.std(axis=0))

    def __call__(self, readings) -> np.ndarray:
        return (readings - self.mean) / self.std


def features(data: Dataset, standardizer: Standardizer):
    """The two model inputs, `[z-scored readings (n, 3), one-hot sensor type (n, 3)]`, as float32."""
    readings = standardizer(data.readings).astype(np.float32)
    one_hot = np.eye(len(SENSOR_TYPES), dtype=np.float32)[data.type_index]
    return [readings, one_hot]


# ---------------------------------------------------------------------------------------------------------
# The models. Both take [readings, one-hot type] and have 9,217 parameters.


def _inputs():
    return (
        keras.Input(shape=(len(READINGS),), name="readings"),
        keras.Input(shape=(len(SENSOR_TYPES),), name="sensor_type"),
    )


def build_concat_model() -> keras.Model:
    """The concat baseline: [readings, one-hot] -> Dense 128 relu -> Dense 64 relu -> Dense 1 sigmoid."""
    readings, sensor_type = _inputs()
    x = keras.layers.Concatenate(name="concat")([readings, sensor_type])
    x = keras.layers.Dense(128, activation="relu", name="dense_128")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense_64")(x)
    output = keras.layers.Dense(1, activation="sigmoid", name="anomaly")(x)
    return keras.Model([readings, sensor_type], output, name="concat")


def build_hyperzzw_model() -> keras.Model:
    """readings -> Dense 128 relu -> HyperZZWOperator(128), context the one-hot type -> Dense 64 relu -> Dense 1.

    With a one-hot context, `context @ hyper_kernel` picks one row of the (3, 128) kernel, so each sensor type
    rescales (and may flip the sign of) each of the 128 reading features in its own way. The type reaches the
    network only through the operator. Parameters: 512 + 384 + 8,256 + 65 = 9,217, the baseline's
    896 + 8,256 + 65.
    """
    readings, sensor_type = _inputs()
    x = keras.layers.Dense(128, activation="relu", name="dense_128")(readings)
    x = HyperZZWOperator(128, name="hyperzzw")([x, sensor_type])
    x = keras.layers.Dense(64, activation="relu", name="dense_64")(x)
    output = keras.layers.Dense(1, activation="sigmoid", name="anomaly")(x)
    return keras.Model([readings, sensor_type], output, name="hyperzzw")


MODELS = {"Concat": build_concat_model, "HyperZZW": build_hyperzzw_model}

# ---------------------------------------------------------------------------------------------------------
# Metrics, in NumPy. The anomaly class (label 1) is the positive class.

THRESHOLD = 0.5


def accuracy(y_true, y_pred) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _confusion(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
    tp = int(np.sum(y_true & y_pred))
    fp = int(np.sum(~y_true & y_pred))
    fn = int(np.sum(y_true & ~y_pred))
    tn = int(np.sum(~y_true & ~y_pred))
    return tp, fp, fn, tn


def balanced_accuracy(y_true, y_pred) -> float:
    """The mean of the recalls of the two classes (a class absent from `y_true` is left out)."""
    tp, fp, fn, tn = _confusion(y_true, y_pred)
    recalls = [hits / total for hits, total in ((tp, tp + fn), (tn, tn + fp)) if total]
    return float(np.mean(recalls))


def f1_score(y_true, y_pred) -> float:
    """F1 of the anomaly class, `2TP / (2TP + FP + FN)`; 0 when there is nothing to find and nothing found."""
    tp, fp, fn, _ = _confusion(y_true, y_pred)
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def average_ranks(values) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks (scipy's `rankdata` default)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start of each run of equal values, and each run's average of the 1-based ranks it covers.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_ranks = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def roc_auc(y_true, scores) -> float:
    """ROC-AUC of the anomaly class from ranks (Mann-Whitney U), ties counted half; NaN with one class only."""
    y_true = np.asarray(y_true) == 1
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y_true, scores, threshold=THRESHOLD) -> dict:
    """Accuracy, balanced accuracy, F1 and ROC-AUC of `scores` (probabilities of an anomaly)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    y_pred = (scores >= threshold).astype(np.int64)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "f1": f1_score(y_true, y_pred),
        "roc_auc": roc_auc(y_true, scores),
    }


def majority_class(y_train) -> int:
    """The most frequent training label (ties go to 0, the normal class)."""
    return int(np.argmax(np.bincount(np.asarray(y_train), minlength=2)))


# ---------------------------------------------------------------------------------------------------------
# The experiment.

EPOCHS = 30
LEARNING_RATE = 1e-3
BATCH_SIZE = 32  # Keras's default


@dataclasses.dataclass
class ModelResult:
    name: str
    params: int
    metrics: dict  # on the test rows
    loss: list  # training loss per epoch


@dataclasses.dataclass
class ExperimentResult:
    backend: str
    epochs: int
    seed: int
    split_seed: int
    n_rows: int
    anomaly_rate: float  # over the whole dataset
    n_train: int
    n_test: int
    test_anomalies: int
    majority: dict  # the majority-class baseline's metrics on the test rows
    models: list  # of ModelResult


def train_and_evaluate(name, build, train_x, train_y, test_x, test_y, *, epochs, seed, batch_size=BATCH_SIZE):
    """Builds, compiles (Adam, binary cross-entropy), fits and evaluates one model; seeds Keras first."""
    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE), loss="binary_crossentropy")
    history = model.fit(
        train_x, train_y.astype(np.float32), epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0
    )
    scores = model.predict(test_x, batch_size=256, verbose=0)
    return ModelResult(
        name=name,
        params=model.count_params(),
        metrics=classification_metrics(test_y, scores),
        loss=[float(v) for v in history.history["loss"]],
    )


def run_experiment(epochs=EPOCHS, seed=0, split_seed=SPLIT_SEED, models=None, train_rows=None):
    """Runs the experiment on the current Keras backend.

    `models` picks entries of `MODELS` (default: all); `train_rows` caps the training rows (for quick tests).
    """
    data = make_dataset()
    train_idx, test_idx = split(data, seed=split_seed)
    if train_rows is not None:
        train_idx = train_idx[:train_rows]
    train, test = data.take(train_idx), data.take(test_idx)
    standardizer = Standardizer.fit(train.readings)
    train_x, test_x = features(train, standardizer), features(test, standardizer)

    majority = majority_class(train.anomaly)
    results = [
        train_and_evaluate(name, MODELS[name], train_x, train.anomaly, test_x, test.anomaly, epochs=epochs, seed=seed)
        for name in (models or MODELS)
    ]
    return ExperimentResult(
        backend=keras.backend.backend(),
        epochs=epochs,
        seed=seed,
        split_seed=split_seed,
        n_rows=len(data),
        anomaly_rate=float(data.anomaly.mean()),
        n_train=len(train),
        n_test=len(test),
        test_anomalies=int(test.anomaly.sum()),
        majority=classification_metrics(test.anomaly, np.full(len(test), float(majority))),
        models=results,
    )


def markdown_table(result: ExperimentResult) -> str:
    """A Markdown table, one row per model plus the majority-class baseline, with a one-line caption."""
    caption = (
        f"backend {result.backend}, keras {keras.__version__}; {result.epochs} epochs, Adam lr {LEARNING_RATE}, "
        f"batch {BATCH_SIZE}, seed {result.seed}; {result.n_rows} rows, anomaly rate {result.anomaly_rate:.2%}; "
        f"stratified 85/15 split (seed {result.split_seed}): {result.n_train} train, {result.n_test} test rows "
        f"({result.test_anomalies} anomalies)"
    )
    lines = [
        caption,
        "",
        "| model | params | accuracy | balanced accuracy | F1 (anomaly) | ROC-AUC | final train loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model in result.models:
        m = model.metrics
        lines.append(
            f"| {model.name} | {model.params:,} | {m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} | "
            f"{m['f1']:.4f} | {m['roc_auc']:.4f} | {model.loss[-1]:.4f} |"
        )
    m = result.majority
    lines.append(
        f"| majority class | 0 | {m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} | {m['f1']:.4f} | "
        f"{m['roc_auc']:.4f} | – |"
    )
    return "\n".join(lines)
