"""Experiments with the layer that are not conformance checks; each in its own folder with its README."""
