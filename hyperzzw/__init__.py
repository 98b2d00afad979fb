"""hyperzzw: the HyperZZWOperator Keras 3 layer. The layer itself is the single file `hyperzzw/layer.py`."""

from hyperzzw.layer import HyperZZWOperator, __version__

__all__ = ["HyperZZWOperator", "__version__"]
