"""Regression runs in the store, their reports, the PCA figure and prediction (issue 6).

Every test runs on DuckDB and on PostgreSQL (the ``store`` fixture), on the study's real
reference pairs where it can.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import sqlalchemy as sa
from typer.testing import CliRunner

from stemstore.cli.app import app
from stemstore.errors import StemstoreError
from stemstore.store.bulk import import_features
from stemstore.analysis.regression import MODEL_NAMES, pairs_to_xy, predict_stem, run_regression
from stemstore.analysis.regression_runs import best_model, predict, regress, regression_summary, run_model
from stemstore.reports import report

from tests.support import GROUPS, REFERENCE, require_shared

#: Small grids so the tuned preset runs in seconds in tests.
SMALL_GRIDS = {
    "svr": {"kernel": ["rbf"], "C": [1.0, 10.0], "gamma": ["scale"], "epsilon": [0.1]},
    "rf": {"n_estimators": [30], "max_features": [1.0]},
    "knn": {"n_neighbors": [5, 10]},
    "pls": {"n_components": [1, 2]},
    "lr": {},
}
#: A few catalog features, for constructed data.
FEATURES = [
    "lowLevel.spectral_centroid.mean",
    "lowLevel.spectral_flux.mean",
    "lowLevel.zerocrossingrate.mean",
]


def reference_file(group: str) -> Path:
    return require_shared(REFERENCE / f"{group}-pairs.csv")


def reference_features(group: str) -> list[str]:
    columns = pd.read_csv(reference_file(group), nrows=0).columns
    return [c for c in columns if c not in ("multitrack", "instrument", "role", "pair", "split")]


def import_reference(store, group: str) -> list[str]:
    import_features(store, reference_file(group))
    return reference_features(group)


def write_pairs(
    path: Path,
    n_pairs: int,
    *,
    instrument: str = "bass",
    seed: int = 0,
    constant: str | None = None,
    zero_test: str | None = None,
) -> Path:
    """A pairs CSV where the stem is a noisy linear function of the raw values; every fifth
    pair is a test pair."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_pairs):
        raw = rng.uniform(1.0, 2.0, size=len(FEATURES))
        stem = 0.8 * raw + 0.1 + rng.normal(0, 0.01, size=len(FEATURES))
        split = "test" if k % 5 == 0 else "train"
        for role, values in (("raw", raw), ("stem", stem)):
            row = {
                "multitrack": f"mt{k:03d}",
                "instrument": instrument,
                "role": role,
                "pair": f"{instrument}-p{k:03d}",
                "split": split,
                **dict(zip(FEATURES, values)),
            }
            if constant == role or constant == "both":
                row[FEATURES[0]] = 1.0
            if zero_test and role == "stem" and split == "test" and k == 0:
                row[zero_test] = 0.0
            rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def finite_where_defined(table6: pd.DataFrame) -> bool:
    defined = table6[table6["n_zero_targets"] == 0]
    return bool(np.isfinite(defined[["mape", "mae"]].to_numpy(dtype=float)).all())


# -- the reference data, paper preset, through the library and the command line --------------------
def test_reference_paper_runs_all_groups_reports_plot_and_determinism(store, db_url, tmp_path):
    """Every group: finite mape/mae, stored and shown by table6/table7; bass goes through the
    CLI (regress, report, plot pca); the paper preset gives identical metrics for lr/svr/knn/pls
    when run twice."""
    runner = CliRunner()
    runs = {}
    for group in GROUPS:
        features = import_reference(store, group)
        if group == "bass":
            result = runner.invoke(
                app,
                [
                    "regress",
                    "--group",
                    "bass",
                    "--preset",
                    "paper",
                    "--outliers",
                    "none",
                    "--features",
                    ",".join(features),
                    "--jobs",
                    "-1",
                    "--db",
                    db_url,
                ],
            )
            assert result.exit_code == 0, result.output
            assert "regression run" in result.output and "a-mape" in result.output
            runs[group] = int(result.output.split()[2])
        else:
            runs[group] = regress(store, group, features=features, preset="paper", outliers="none", n_jobs=-1)

        n_rows = len(pd.read_csv(reference_file(group)))
        snapshot = store.read_sql(
            "SELECT split, excluded FROM run_segments WHERE run_id = :r", {"r": runs[group]}
        )
        assert len(snapshot) == n_rows and snapshot["excluded"].isna().all()
        stored_split = pd.read_csv(reference_file(group))["split"].value_counts()
        assert snapshot["split"].value_counts().to_dict() == stored_split.to_dict()  # the split is kept
        models = store.read_sql(
            "SELECT model, artifact FROM regression_models WHERE run_id = :r", {"r": runs[group]}
        )
        assert set(MODEL_NAMES) <= set(models["model"])
        # only the best (a model, or the average as 'ensemble') is stored; the rest refit on demand
        assert set(models.loc[models["artifact"].notna(), "model"]) == {best_model(store, runs[group]).name}
        n_test = int(stored_split["test"]) // 2
        preds = store.read_sql(
            "SELECT COUNT(*) AS n FROM regression_predictions WHERE run_id = :r", {"r": runs[group]}
        )
        assert int(preds["n"].iloc[0]) == len(MODEL_NAMES) * n_test * len(features)

    table6 = report(store, "table6")
    assert set(table6["group_name"]) == set(GROUPS)
    for group in GROUPS:
        rows = table6[table6["group_name"] == group]
        assert len(rows) == len(MODEL_NAMES) * len(reference_features(group))
        assert list(rows.drop_duplicates("feature")["feature"]) == reference_features(group)  # f_pred order
    assert finite_where_defined(table6)

    table7 = report(store, "table7")
    assert set(table7["group_name"]) == set(GROUPS)
    assert table7["best"].notna().all() and (table7["a_mape"] > 0).all()

    result = runner.invoke(app, ["report", "table6", "--group", "bass", "--format", "csv", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "tonal.hpcp.dvar2.33" in result.output and "svr" in result.output
    result = runner.invoke(app, ["report", "table7", "--format", "csv", "--db", db_url])
    assert result.exit_code == 0 and result.output.startswith("group_name,run_id")
    assert len(result.output.strip().splitlines()) == 1 + len(GROUPS)

    png = tmp_path / "fig4.png"
    result = runner.invoke(app, ["plot", "pca", "--group", "bass", "-o", str(png), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Determinism: the same run again gives the same metrics for the models without randomness.
    again = regress(
        store, "bass", features=reference_features("bass"), preset="paper", outliers="none", n_jobs=-1
    )
    sql = (
        "SELECT model, feature_id, mape, mae FROM regression_metrics WHERE run_id = :r "
        "AND model IN ('lr', 'svr', 'knn', 'pls') ORDER BY model, feature_id"
    )
    first, second = store.read_sql(sql, {"r": runs["bass"]}), store.read_sql(sql, {"r": again})
    assert len(first) == 4 * len(reference_features("bass"))
    pd.testing.assert_frame_equal(first, second)
    # The report shows the latest run by default, and any run on request.
    assert set(report(store, "table6", groups=["bass"])["run_id"]) == {again}
    assert set(report(store, "table6", groups=["bass"], run_id=runs["bass"])["run_id"]) == {runs["bass"]}


def test_reference_tuned_run_records_cv_and_outliers(store):
    features = import_reference(store, "guitar")
    run_id = regress(store, "guitar", features=features, preset="tuned", grids=SMALL_GRIDS)
    table6 = report(store, "table6", groups=["guitar"])
    assert len(table6) == len(MODEL_NAMES) * len(features) and finite_where_defined(table6)
    models = store.read_sql(
        "SELECT model, hyperparams, cv_scores FROM regression_models WHERE run_id = :r", {"r": run_id}
    ).set_index("model")
    cv = json.loads(models.loc["svr", "cv_scores"])
    assert cv["n_splits"] == 5 and math.isfinite(cv["best_mape"])
    assert json.loads(models.loc["rf", "hyperparams"])["n_estimators"] == 30
    run = store.read_sql("SELECT status, params, counts FROM runs WHERE id = :r", {"r": run_id}).iloc[0]
    assert run["status"] == "done"
    counts, params = json.loads(run["counts"]), json.loads(run["params"])
    assert (
        params["preset"] == "tuned" and params["features"] == features and params["split_source"] == "stored"
    )
    excluded = store.read_sql(
        "SELECT COUNT(*) AS n FROM run_segments WHERE run_id = :r AND excluded = 'outlier'", {"r": run_id}
    )
    assert int(excluded["n"].iloc[0]) == 2 * counts["outlier_pairs"]
    summary = regression_summary(store, run_id)
    assert summary.counts == counts and summary.warnings == counts["warnings"]
    text = (
        f"regression run {run_id} (guitar, tuned): {counts['train_pairs']} training and "
        f"{counts['test_pairs']} test pairs, {counts['outlier_pairs']} outlier pairs removed; "
    )
    if counts["best"]:
        text += f"best {counts['best']} with a-mape {counts['a_mape']:.4g}"
    else:
        text += "no target feature has a best mape within 0.5: no model chosen"
    assert summary.describe() == text


# -- lazily stored models ----------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["paper", "tuned"])
def test_models_not_stored_refit_bit_identically(store, preset):
    """Only the best model is written; every other one, refitted from the run's seed,
    hyperparameters and split, predicts exactly as the model the run fitted."""
    features = import_reference(store, "bass")
    grids = SMALL_GRIDS if preset == "tuned" else None
    run_id = regress(store, "bass", features=features, preset=preset, grids=grids)
    df = pd.read_csv(reference_file("bass"))
    original = run_regression(df, features, "bass", preset=preset, grids=grids)  # same data and seed
    best = original.ensemble.models
    models = store.read_sql("SELECT model, artifact FROM regression_models WHERE run_id = :r", {"r": run_id})
    assert set(models.loc[models["artifact"].notna(), "model"]) == (
        {best[0]} if len(best) == 1 else {"ensemble"}
    )
    assert models["artifact"].isna().sum() == len(MODEL_NAMES) - (len(best) == 1)

    X = pairs_to_xy(df, features).X  # training and test pairs
    for name in MODEL_NAMES:
        refit = run_model(store, run_id, name)
        expected = predict_stem(original.models[name].estimator, X)
        np.testing.assert_array_equal(predict_stem(refit, X), expected, err_msg=name)
    np.testing.assert_array_equal(
        predict_stem(best_model(store, run_id).estimator, X), predict_stem(original.best_estimator, X)
    )


def test_refit_refuses_when_the_values_changed(store):
    """A refit that cannot reproduce the run's test predictions is an error, not a silently
    different model."""
    features = import_reference(store, "bass")
    run_id = regress(store, "bass", features=features, preset="tuned", grids=SMALL_GRIDS)
    lazy = store.read_sql(
        "SELECT model FROM regression_models WHERE run_id = :r AND artifact IS NULL ORDER BY model",
        {"r": run_id},
    )["model"].iloc[0]
    train = store.read_sql(
        "SELECT MIN(segment_id) AS s FROM run_segments WHERE run_id = :r AND split = 'train' "
        "AND excluded IS NULL",
        {"r": run_id},
    )["s"].iloc[0]
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE feature_values SET value = value * 1.5 WHERE segment_id = :s"), {"s": int(train)}
        )
    with pytest.raises(StemstoreError, match="does not reproduce the run's test predictions"):
        run_model(store, run_id, lazy)
    with pytest.raises(StemstoreError, match="has no model 'nosuch'"):
        run_model(store, run_id, "nosuch")


# -- prediction ----------------------------------------------------------------------------------
def test_predict_from_a_wav(store, db_url, tmp_path):
    """A regression run on catalog features, then a synthetic recording in: finite predictions."""
    features = import_reference(store, "bass")
    run_id = regress(store, "bass", features=features, preset="tuned", grids=SMALL_GRIDS)
    sr = 44100
    t = np.arange(int(3.0 * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 55.0 * t) + 0.1 * np.sin(2 * np.pi * 110.0 * t)
    wav = tmp_path / "bass_di.wav"
    sf.write(wav, tone.astype(np.float32), sr)

    out = predict(store, wav, "bass")
    assert list(out["feature"]) == features
    assert np.isfinite(out[["raw", "predicted_stem"]].to_numpy()).all()
    assert out.attrs["run_id"] == run_id and out.attrs["notes"]  # 3 s < 10 s: analysed whole
    assert best_model(store, run_id).features == features

    result = CliRunner().invoke(
        app, ["predict", str(wav), "--group", "bass", "--format", "json", "--db", db_url]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["run_id"] == run_id and len(body["features"]) == len(features)

    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "missing.wav"), "--group", "bass", "--db", db_url]
    )
    assert result.exit_code == 1 and "not found" in result.output


# -- bad input -----------------------------------------------------------------------------------
def failed_runs(store) -> pd.DataFrame:
    return store.read_sql("SELECT id, message FROM runs WHERE kind = 'regression' AND status = 'failed'")


def test_bad_input_gives_clear_messages(store, db_url, tmp_path):
    import_features(store, write_pairs(tmp_path / "few.csv", 6))
    with pytest.raises(StemstoreError, match="only 6 complete pair"):
        regress(store, "bass", features=FEATURES, preset="paper")
    # The failed run is recorded with its message, and nothing partial is kept.
    failed = failed_runs(store)
    assert len(failed) == 1 and "only 6 complete pair" in failed["message"].iloc[0]
    assert store.read_sql("SELECT COUNT(*) AS n FROM regression_metrics")["n"].iloc[0] == 0
    assert store.read_sql("SELECT COUNT(*) AS n FROM run_segments")["n"].iloc[0] == 0

    import_features(
        store, write_pairs(tmp_path / "constant.csv", 20, instrument="electric bass", constant="stem")
    )
    # The "electric bass" rows belong to the bass group too: 26 pairs, a constant stem column.
    store.set_group("eb", ["electric bass"])
    with pytest.raises(StemstoreError, match="constant.*lowLevel.spectral_centroid.mean"):
        regress(store, "eb", features=FEATURES, preset="tuned", grids=SMALL_GRIDS)

    with pytest.raises(StemstoreError, match="unknown group 'nosuch'"):
        regress(store, "nosuch", features=FEATURES)
    with pytest.raises(StemstoreError, match="unknown run 999"):
        regress(store, "bass", selection_run=999)
    with pytest.raises(StemstoreError, match="no finished selection run"):
        regress(store, "bass")
    with pytest.raises(StemstoreError, match="unknown feature name"):
        regress(store, "bass", features=["lowLevel.no_such_feature.mean"])
    with pytest.raises(StemstoreError, match="lack values of: lowLevel.spectral_rolloff.mean"):
        regress(store, "bass", features=FEATURES + ["lowLevel.spectral_rolloff.mean"])
    with pytest.raises(StemstoreError, match="no finished regression run"):
        predict(store, tmp_path / "x.wav", "guitar")

    # Through the CLI: one line on stderr, status 1, no traceback.
    for args in (
        ["regress", "--group", "nosuch", "--features", FEATURES[0]],
        ["plot", "pca", "--group", "keys", "-o", str(tmp_path / "x.png")],
        ["predict", str(tmp_path / "missing.wav"), "--group", "bass"],
    ):
        result = CliRunner().invoke(app, [*args, "--db", db_url])
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1, (
            result.output
        )
    # a preset is a choice: Typer refuses others before anything runs, with its usage status 2
    result = CliRunner().invoke(
        app, ["regress", "--group", "bass", "--preset", "fancy", "--features", FEATURES[0], "--db", db_url]
    )
    assert result.exit_code == 2 and "Invalid value" in result.output and "fancy" in result.output


def test_zero_target_is_infinite_mape_and_counted(store, tmp_path):
    import_features(store, write_pairs(tmp_path / "zero.csv", 30, zero_test=FEATURES[1]))
    run_id = regress(store, "bass", features=FEATURES, preset="tuned", grids=SMALL_GRIDS, outliers="none")
    table6 = report(store, "table6", groups=["bass"])
    zero = table6[table6["feature"] == FEATURES[1]]
    assert (zero["n_zero_targets"] == 1).all() and np.isposinf(zero["mape"].astype(float)).all()
    assert np.isfinite(zero["mae"].astype(float)).all()
    other = table6[table6["feature"] != FEATURES[1]]
    assert np.isfinite(other["mape"].astype(float)).all()
    # The ensemble leaves the undefined feature out.
    table7 = report(store, "table7", groups=["bass"])
    assert FEATURES[1] not in table7["kept_features"].iloc[0] and table7["run_id"].iloc[0] == run_id
