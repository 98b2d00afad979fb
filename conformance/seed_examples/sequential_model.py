# KerasFactory HyperZZWOperator page, "Quick Start > In a Sequential Model", verbatim except the import line:
# `from kerasfactory.layers import HyperZZWOperator` -> `from hyperzzw import HyperZZWOperator`.
# The snippet holds no model: it only imports and notes that two-input layers need the functional API.
import keras
from hyperzzw import HyperZZWOperator

# Note: Sequential models don't work well with multiple inputs
# Use functional API for HyperZZWOperator
