"""The layers declared for the harness, and what defines each one's conformance: `hyperzzw/` (this project's
layer: its oracle, cases, bad inputs, strategies, tolerances, mutants and its harness declaration),
`keras_layers.py` (Keras's own) and `kerasfactory_layers.py` (KerasFactory's)."""
