"""The store on both backends: schema, groups, import/export of the reference data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemstore.store import bulk
from stemstore.errors import StemstoreError
from stemstore.store.connection import DEFAULT_GROUPS, Store

from tests.support import GROUPS, REFERENCE, require_shared


def count(store: Store, table: str) -> int:
    return int(store.read_sql(f"SELECT COUNT(*) AS n FROM {table}")["n"][0])


def test_init_creates_catalog_and_default_groups(store):
    assert count(store, "features") == 1812
    groups = store.groups().set_index("group_name")["instruments"]
    for name, members in DEFAULT_GROUPS.items():
        assert sorted(groups[name].split(", ")) == sorted(members)
    again = store.init()  # idempotent
    assert (again["features"], again["groups"]) == (0, 0)  # nothing added the second time
    assert count(store, "features") == 1812


def test_groups_set_and_delete(store):
    store.set_group("my-guitars", ["acoustic guitar", "banjo"])
    assert store.group_instruments("my-guitars") == ["acoustic guitar", "banjo", "my-guitars"]
    store.set_group("my-guitars", ["banjo"])
    assert "acoustic guitar" not in store.group_instruments("my-guitars")
    store.delete_group("my-guitars")
    with pytest.raises(StemstoreError, match="unknown group 'my-guitars'"):
        store.group_instruments("my-guitars")
    with pytest.raises(StemstoreError, match="unknown group"):
        store.delete_group("nope")


@pytest.mark.parametrize("group", GROUPS)
def test_reference_pairs_import_and_export_bit_exact(store, tmp_path, group):
    source = require_shared(REFERENCE / f"{group}-pairs.csv")
    summary = bulk.import_features(store, source)
    original = pd.read_csv(source, dtype={"pair": str})
    assert summary.new_segments == len(original)
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"{group}{suffix}"
        bulk.export_features(store, out, group=group)
        back = pd.read_csv(out, dtype={"pair": str}) if suffix == ".csv" else pd.read_parquet(out)
        key = ["multitrack", "role"]
        a = original.sort_values(key).reset_index(drop=True)
        b = back.sort_values(key).reset_index(drop=True)[list(original.columns)]
        pd.testing.assert_frame_equal(
            a[["multitrack", "instrument", "role", "pair", "split"]],
            b[["multitrack", "instrument", "role", "pair", "split"]],
            check_dtype=False,
        )
        features = [c for c in original.columns if c not in bulk.META_COLUMNS]
        # bit-exact: compare the float64 bit patterns
        assert np.array_equal(a[features].to_numpy().view(np.int64), b[features].to_numpy().view(np.int64))
        # and the export imports back as "nothing new"
        again = bulk.import_features(store, out)
        assert again.new_segments == 0 and again.values_added == 0


def test_second_import_changes_nothing(store):
    source = require_shared(REFERENCE / "bass-pairs.csv")
    bulk.import_features(store, source)
    before = {t: count(store, t) for t in ("segments", "feature_values", "multitracks", "runs")}
    summary = bulk.import_features(store, source)
    assert summary.new_segments == 0 and summary.values_added == 0
    assert "nothing new" in summary.describe()
    assert {t: count(store, t) for t in before} == before


def test_feature_matrix_is_wide_with_labels(store):
    bulk.import_features(store, require_shared(REFERENCE / "vocal-pairs.csv"))
    m = store_matrix = bulk.feature_matrix(store, group="vocal")
    assert list(m.columns[:5]) == bulk.META_COLUMNS
    assert len(m) == 118 and store_matrix.shape[1] == 5 + 4
    assert set(m["role"]) == {"raw", "stem"}
    assert m.iloc[:, 5:].notna().all().all()


def _write(tmp_path, text: str, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ("multitrack,instrument,lowLevel.hfc.mean\nA,bass,1\n", "missing required column"),
        ("multitrack,instrument,role,nosuch.feature\nA,bass,raw,1\n", "unknown feature name.*nosuch.feature"),
        (
            "multitrack,instrument,role,lowLevel.hfc.mean\nA,bass,raw,abc\n",
            "line 2, column lowLevel.hfc.mean: 'abc' is not a number",
        ),
        (
            "multitrack,instrument,role,lowLevel.hfc.mean\nA,bass,raw,\n",
            "line 2, column lowLevel.hfc.mean: empty value",
        ),
        ("multitrack,instrument,role,lowLevel.hfc.mean\nA,bass,mix,1\n", "line 2: role 'mix' is neither"),
        (
            "multitrack,instrument,role,lowLevel.hfc.mean\nA,bass,raw,1\nA,bass,raw,2\n",
            "line 3: repeats the segment",
        ),
        ("multitrack,instrument,role,split,lowLevel.hfc.mean\nA,bass,raw,dev,1\n", "split 'dev'"),
    ],
)
def test_bad_files_change_nothing(store, tmp_path, content, message):
    bulk.import_features(store, require_shared(REFERENCE / "bass-pairs.csv"))
    before = {t: count(store, t) for t in ("segments", "feature_values", "multitracks", "tracks")}
    with pytest.raises(StemstoreError, match=message):
        bulk.import_features(store, _write(tmp_path, content))
    assert {t: count(store, t) for t in before} == before


def test_conflicting_reimport_is_refused_and_changes_nothing(store, tmp_path):
    source = require_shared(REFERENCE / "keys-pairs.csv")
    bulk.import_features(store, source)
    df = pd.read_csv(source, dtype=str, keep_default_na=False)
    df.loc[3, df.columns[-1]] = "12345.5"
    changed = tmp_path / "changed.csv"
    df.to_csv(changed, index=False)
    before = count(store, "feature_values")
    with pytest.raises(StemstoreError, match="already stored with a different"):
        bulk.import_features(store, changed)
    assert count(store, "feature_values") == before


def test_failed_import_rolls_back_new_rows(store, tmp_path):
    """A file that fails after rows were created (conflict found late) leaves no trace."""
    source = require_shared(REFERENCE / "bass-pairs.csv")
    bulk.import_features(store, source)
    df = pd.read_csv(source, dtype=str, keep_default_na=False)
    extra = df.iloc[:2].copy()
    extra["multitrack"] = extra["pair"] = "brand-new"
    df.loc[0, "lowLevel.scvalleys.max.0"] = "0.5"  # conflicts with the stored value
    path = tmp_path / "mixed.csv"
    pd.concat([extra, df]).to_csv(path, index=False)
    with pytest.raises(StemstoreError, match="different"):
        bulk.import_features(store, path)
    assert store.read_sql("SELECT * FROM multitracks WHERE name = 'brand-new'").empty


def test_parquet_import(store, tmp_path):
    df = pd.read_csv(require_shared(REFERENCE / "guitar-pairs.csv"), dtype={"pair": str})
    path = tmp_path / "g.parquet"
    df.to_parquet(path)
    summary = bulk.import_features(store, path)
    assert summary.new_segments == len(df) and summary.features == 6


def test_schema_behind_is_refused(db_url):
    s = Store.open(db_url, create=True, check_schema=False)
    s.upgrade("0001")
    with pytest.raises(StemstoreError, match="run 'stemstore init' to upgrade"):
        Store.open(db_url)
    s.init()
    Store.open(db_url).close()
    s.close()


def test_missing_directory_and_missing_store(tmp_path):
    with pytest.raises(StemstoreError, match="directory does not exist"):
        Store.open(str(tmp_path / "no" / "such" / "x.duckdb"), create=True)
    with pytest.raises(StemstoreError, match="no store at .*run 'stemstore init'"):
        Store.open(str(tmp_path / "absent.duckdb"))


def test_nan_and_inf_values_are_stored_as_values(store, tmp_path):
    """A feature may be NaN or ±inf (Essentia gives them); they are values, not NULLs."""
    path = tmp_path / "odd.csv"
    path.write_text(
        "multitrack,instrument,role,lowLevel.hfc.mean,lowLevel.hfc.max\n"
        "m1,electric bass,raw,nan,inf\nm1,electric bass,stem,-inf,1.5\n"
    )
    bulk.import_features(store, path)
    stored = store.read_sql(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN value IS NULL THEN 1 ELSE 0 END) AS nulls FROM feature_values"
    )
    assert stored["n"][0] == 4 and stored["nulls"][0] == 0
    out = tmp_path / "back.csv"
    bulk.export_features(store, out, instruments=["electric bass"])
    back = pd.read_csv(out)
    assert np.isnan(back["lowLevel.hfc.mean"][0]) and back["lowLevel.hfc.max"][0] == np.inf
    assert back["lowLevel.hfc.mean"][1] == -np.inf
    again = bulk.import_features(store, out)
    assert again.values_added == 0 and again.new_segments == 0


def test_packaged_catalog_is_the_shared_one():
    """The installed tool carries its own copy of the catalog; it must be the contract's."""
    from stemstore.store.catalog import catalog_bytes, feature_names

    from tests.support import SHARED

    assert catalog_bytes() == require_shared(SHARED / "data" / "feature_catalog.csv").read_bytes()
    assert len(feature_names()) == len(set(feature_names())) == 1812


def test_import_of_more_rows_than_postgresql_takes_parameters(store, tmp_path):
    """70,000 rows make 70,000 tracks and segments: every key goes in and out in bulk, never as a
    list of statement parameters (PostgreSQL takes at most 65,535)."""
    n = 70_000
    names = store.features["name"].tolist()[:2]
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "multitrack": [f"Big{i:06d}" for i in range(n)],
            "instrument": "bass",
            "role": "raw",
            names[0]: rng.normal(size=n),
            names[1]: rng.normal(size=n),
        }
    )
    path = tmp_path / "big.parquet"
    frame.to_parquet(path, index=False)
    summary = bulk.import_features(store, path)
    assert (summary.new_segments, summary.values_added, summary.multitracks_created) == (n, 2 * n, n)
    again = bulk.import_features(store, path)
    assert again.new_segments == 0 and again.unchanged_segments == n and again.values_added == 0
    assert count(store, "feature_values") == 2 * n


def test_csv_cells_a_spreadsheet_would_run_are_escaped_and_read_back(store, tmp_path):
    names = store.features["name"].tolist()[:1]
    path = _write(
        tmp_path,
        f"multitrack,instrument,role,pair,{names[0]}\n=HYPERLINK(1),bass,raw,@p,-1.5\n=HYPERLINK(1),bass,stem,@p,2\n",
    )
    bulk.import_features(store, path)
    out = tmp_path / "out.csv"
    bulk.export_features(store, out, instruments=["bass"])
    text = out.read_text()
    assert "'=HYPERLINK(1),bass,raw,'@p,-1.5" in text and "\n=" not in text
    raw = tmp_path / "raw.csv"
    bulk.export_features(store, raw, instruments=["bass"], raw_csv=True)
    assert "\n=HYPERLINK(1),bass,raw,@p,-1.5" in raw.read_text()
    again = bulk.import_features(store, out)  # the escaping is undone on import: same rows
    assert again.new_segments == 0 and again.unchanged_segments == 2
