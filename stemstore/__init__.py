"""stemstore: a database-backed dataset and feature store for stem-processing research."""

__version__ = "0.1.0"
