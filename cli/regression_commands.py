"""Commands of the regression stage (docs/method.md, section 5): regress, plot pca, predict."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from stemstore.enums import OutlierRule, RegressionPreset

from .common import (
    DbOption,
    FormatOption,
    GroupName,
    app,
    feature_names,
    features_option,
    open_store,
    plot_app,
    user_errors,
)
from .render import Format, render


@app.command()
@user_errors
def regress(
    group: GroupName,
    features: features_option(
        "Feature names (inputs and targets). Default: the f_pred of the group's latest selection run."
    ) = None,
    selection: Annotated[
        int | None, typer.Option(help="Take f_pred from this selection run instead of the latest.")
    ] = None,
    preset: Annotated[
        RegressionPreset,
        typer.Option(
            help="'tuned': grid search with 5-fold CV, scaled inputs and targets. 'paper': the "
            "study's hyperparameters (bass, guitar, vocal, keys), unscaled."
        ),
    ] = RegressionPreset.TUNED,
    outliers: Annotated[
        OutlierRule,
        typer.Option(help="'3sigma' drops training pairs with a value over 3 sd from the mean; 'none'."),
    ] = OutlierRule.THREE_SIGMA,
    test_fraction: Annotated[
        float, typer.Option(help="Share of multitracks held out when the pairs carry no stored split.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the split, the forests and the CV folds.")] = 0,
    threshold: Annotated[
        float, typer.Option(help="Ensemble: drop target features whose best mape is above this.")
    ] = 0.5,
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Parallel jobs: processes of the tuned grid searches, threads of the paper forest "
            "(-1: all cores). Default: all cores for 'tuned', one for 'paper' (faster on a few "
            "dozen pairs). Results are the same whatever the number."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Learn to predict a group's stem feature values from its raw ones; record the run.

    Fits SVR, random forest, KNN, PLS and linear regression, scores them per target feature
    (see `stemstore report table6`) and finds the best model or average of models
    (`stemstore report table7`). The best model is stored for `stemstore predict`.

    Example: `stemstore regress --group bass --preset paper --outliers none`
    """
    from stemstore.analysis.regression import DEFAULT_N_JOBS
    from stemstore.analysis.regression_runs import regress as run_regress
    from stemstore.analysis.regression_runs import regression_summary

    with open_store(db) as store:
        run_id = run_regress(
            store,
            group,
            features=feature_names(features),
            selection_run=selection,
            preset=preset.value,
            outliers=outliers.value,
            test_fraction=test_fraction,
            seed=seed,
            n_jobs=jobs if jobs is not None else DEFAULT_N_JOBS[preset.value],
            ensemble_threshold=threshold,
        )
        summary = regression_summary(store, run_id)
    typer.echo(summary.describe())
    for note in summary.warnings:
        typer.echo(f"note: {note}", err=True)


@plot_app.command("pca")
@user_errors
def plot_pca(
    group: GroupName,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")],
    db: DbOption = None,
) -> None:
    """Fig. 4: the group's raw and stem segments in two PCA dimensions, in two colours.

    Features: those of the group's latest regression run, else its latest selection's f_pred.

    Example: `stemstore plot pca --group bass -o fig4-bass.png`
    """
    from stemstore.analysis.regression_runs import pca_figure

    from stemstore.analysis.plots import check_figure_path

    check_figure_path(output)  # before any work: a bad path is one line at once
    with open_store(db, writer=False) as store:
        info = pca_figure(store, group, output)
    left_out = f"; {info['left_out']} segments lacking a value left out" if info["left_out"] else ""
    typer.echo(
        f"wrote {output}: {info['raw']} raw and {info['stem']} stem segments, "
        f"{len(info['features'])} features from {info['source']}{left_out}"
    )


@app.command()
@user_errors
def predict(
    audio: Annotated[Path, typer.Argument(help="A raw recording (any length, any format Essentia reads).")],
    group: GroupName,
    db: DbOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Predict where the processed stem will sit: the recording's own values of the group's
    target features and the stem values the best stored model predicts.

    The highest-energy window (as long as the group's segments, 10 s by default) is analysed
    as in the segment stage; a shorter recording is analysed whole.

    Example: `stemstore predict bass_di.wav --group bass --format json`
    """
    from stemstore.analysis.regression_runs import predict as run_predict

    with open_store(db, writer=False) as store:
        frame = run_predict(store, audio, group)
    info = frame.attrs
    if fmt == Format.json:
        print(
            json.dumps(
                {
                    "group": group,
                    "run_id": info["run_id"],
                    "model": info["model"],
                    "a_mape": None
                    if info["a_mape"] is None or math.isnan(info["a_mape"])
                    else info["a_mape"],
                    "window_start_s": info["window_start_s"],
                    "window_s": info["window_s"],
                    "notes": info["notes"],
                    "features": [
                        {"feature": r.feature, "raw": r.raw, "predicted_stem": r.predicted_stem}
                        for r in frame.itertuples(index=False)
                    ],
                },
                indent=2,
            )
        )
        return
    for note in info["notes"]:
        typer.echo(f"note: {note}", err=True)
    render(
        frame,
        fmt,
        title=f"{group}: {audio.name}, model {info['model']} of regression run "
        f"{info['run_id']}, window at {info['window_start_s']:.2f} s",
    )
