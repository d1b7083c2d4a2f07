"""The enums of stemstore.enums are the values the library, the schema and the CLI accept."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stemstore.analysis import regression, selection
from stemstore.cli.app import app
from stemstore.corpus import ingest
from stemstore.enums import IngestFormat, OutlierRule, RegressionPreset, SelectionPreset, TrackKind


def test_enum_members_are_plain_strings():
    assert TrackKind.STEM == "stem" and f"{TrackKind.STEM}" == "stem" and str(TrackKind.RAW) == "raw"


def test_presets_and_rules_match_the_library():
    assert set(selection.PRESETS) == set(SelectionPreset.values())
    assert set(regression.PRESETS) == set(RegressionPreset.values())
    assert set(regression.DEFAULT_N_JOBS) == set(RegressionPreset.values())
    assert set(regression.OUTLIER_RULES) == set(OutlierRule.values())
    assert set(ingest.FORMATS) == set(IngestFormat.values())


@pytest.mark.parametrize(
    "args",
    [
        ["select", "--group", "bass", "--preset", "slow"],
        ["regress", "--group", "bass", "--preset", "best"],
        ["regress", "--group", "bass", "--outliers", "2sigma"],
        ["study", "--group", "bass", "--select-preset", "slow"],
        ["ingest", ".", "--format", "zip"],
    ],
)
def test_the_cli_offers_choices_and_refuses_others(args, tmp_path):
    result = CliRunner().invoke(app, [*args, "--db", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 2
    assert "Invalid value" in result.output
    assert not (tmp_path / "s.duckdb").exists()  # refused before the store is opened
