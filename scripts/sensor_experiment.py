"""Reproduce the sensor-anomaly experiment: concat baseline vs HyperZZWOperator, on the current Keras backend.

    KERAS_BACKEND=jax python scripts/sensor_experiment.py [--epochs 30] [--seed 0] [--split-seed 0]

Prints a Markdown table: test metrics per model plus the majority-class baseline. Everything it runs is in
`conformance/sensor.py`; see that module's docstring for the dataset, the split and the models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# `conformance` is not an installed package: make the repository root importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance import sensor  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
