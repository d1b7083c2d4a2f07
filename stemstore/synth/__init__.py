"""A synthetic multitrack corpus for demos and tests, shaped like MedleyDB."""
