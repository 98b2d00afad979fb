from hyperzzw.layer import HyperZZWOperator, __version__
