"""The feature catalog: the 1812 pooled Essentia features whose names are a contract.

The catalog travels inside the package (``stemstore/data/feature_catalog.csv``) so that an
installed ``stemstore`` needs nothing from the source tree at run time.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

import pandas as pd

CATALOG_FILE = "feature_catalog.csv"
#: Statistics of PoolAggregator, in the order Essentia reports them.
FRAME_STATISTICS = (
    "min",
    "max",
    "median",
    "mean",
    "var",
    "stdev",
    "skew",
    "kurt",
    "dmean",
    "dvar",
    "dmean2",
    "dvar2",
)


def catalog_bytes() -> bytes:
    return resources.files("stemstore.data").joinpath(CATALOG_FILE).read_bytes()


@lru_cache(maxsize=1)
def catalog_version() -> str:
    """A short content hash: two stores share a catalog version iff they share its text."""
    return hashlib.sha256(catalog_bytes()).hexdigest()[:12]


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    with resources.files("stemstore.data").joinpath(CATALOG_FILE).open("r") as fh:
        df = pd.read_csv(fh, dtype={"statistic": "string", "index": "Int64"})
    df["statistic"] = df["statistic"].fillna("")
    df["frame_size"] = df["frame_size"].astype("Int64")
    df["hop_size"] = df["hop_size"].astype("Int64")
    df.insert(0, "position", range(len(df)))
    return df


def load_catalog() -> pd.DataFrame:
    """The catalog as a DataFrame, one row per feature, in catalog order (a copy)."""
    return _load().copy()


@lru_cache(maxsize=1)
def feature_names() -> tuple[str, ...]:
    """All feature names in catalog order."""
    return tuple(_load()["name"])
