"""Time the regression stage on the study's real reference pairs (run by hand, not by pytest).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_regression.py [--groups bass guitar] [--n-jobs 2]

Targets (one group of ~70 pairs): the paper preset's five models within 60 s, the tuned preset's
grid search within 5 minutes. Prints per-model fit+predict times for the paper preset (each
model alone, on the same split) and the total of each preset, with a-mape of the ensemble.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from stemstore.analysis import regression as reg

# the shared folder beside the checkout (as in tests/conftest.py)
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "aes143-reference"
PAPER_TARGET_S = 60.0
TUNED_TARGET_S = 300.0


def time_paper_models(df: pd.DataFrame, group: str, n_jobs: int | None) -> dict[str, float]:
    """Seconds to fit and predict each paper-preset model alone on the stored split."""
    data = reg.pairs_to_xy(df, None)
    train, test, _ = reg.split_train_test(data.multitracks, data.split)
    models, _, _ = reg.build_paper_models(group, len(train), data.X.shape[1], seed=0, n_jobs=n_jobs)
    seconds = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(data.X[train], data.Y[train])
        model.predict(data.X[test])
        seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["bass", "guitar"])
    parser.add_argument("--n-jobs", type=int, default=None)
    args = parser.parse_args()

    for group in args.groups:
        df = pd.read_csv(REFERENCE / f"{group}-pairs.csv")
        n_pairs = df["pair"].nunique()
        print(f"== {group}: {n_pairs} pairs, {len(reg.feature_columns(df))} features, n_jobs={args.n_jobs}")

        per_model = time_paper_models(df, group, args.n_jobs)
        print(
            "   paper, per model (fit+predict): "
            + ", ".join(f"{name} {s:.2f}s" for name, s in per_model.items())
        )

        for preset, target in (("paper", PAPER_TARGET_S), ("tuned", TUNED_TARGET_S)):
            start = time.perf_counter()
            result = reg.run_regression(df, None, group, preset=preset, n_jobs=args.n_jobs)
            seconds = time.perf_counter() - start
            verdict = "ok" if seconds <= target else "OVER TARGET"
            print(
                f"   {preset:5s} run_regression: {seconds:7.1f}s (target {target:.0f}s, {verdict}); "
                f"best {'+'.join(result.ensemble.models) or '-'} a-mape {result.ensemble.a_mape:.3f} "
                f"on {len(result.ensemble.kept_features)} feature(s)"
            )


if __name__ == "__main__":
    main()
