"""The sensor-anomaly experiment (Ludwig's HyperNetworkCombiner example, on Keras 3): see README.md."""
