"""Reproduce the sensor-anomaly experiment: concat baseline vs HyperZZWOperator, on the current Keras backend.

    KERAS_BACKEND=jax python -m experiments.sensor [--epochs 30] [--seed 0] [--split-seed 0]

Run from the repository root (or `nox -s sensor-jax`). Prints a Markdown table: test metrics per model plus
the majority-class baseline. Everything it runs is in `experiment.py`; see its docstring for the dataset, the
split and the models.
"""

from __future__ import annotations

import argparse
import sys

from experiments.sensor import experiment as sensor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.sensor", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--epochs", type=int, default=sensor.EPOCHS, help="training epochs (default: %(default)s)")
    add("--seed", type=int, default=0, help="keras.utils.set_random_seed seed per model (default: %(default)s)")
    add("--split-seed", type=int, default=sensor.SPLIT_SEED, help="seed of the split (default: %(default)s)")
    args = parser.parse_args(argv)
    result = sensor.run_experiment(epochs=args.epochs, seed=args.seed, split_seed=args.split_seed)
    print(sensor.markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
