"""The run lifecycle (Store.run) and the latest-run rule (Store.latest_run), on both backends."""

from __future__ import annotations

import os
import platform

import pytest
import sqlalchemy as sa

from stemstore.store.schema import Run
from stemstore.store.connection import Store, describe_error


def run_row(store: Store, run_id: int) -> Run:
    with store.session() as s:
        run = s.get(Run, run_id)
        s.expunge(run)
        return run


def test_run_done_with_counts_and_message(store):
    progress = {"n": 0}
    with store.run("extraction", group="bass", params={"a": 1}, seed=7) as run:
        assert run_row(store, run.id).status == "running"
        run.counts = lambda: {"n": progress["n"]}  # read when the run ends
        progress["n"] = 3
        run.message = "all fine"
    row = run_row(store, run.id)
    process = row.params.pop("process")  # who ran it, to tell an interrupted run (below)
    assert process["pid"] == os.getpid() and process["host"] == platform.node()
    assert (row.kind, row.status, row.group_name, row.params, row.seed) == (
        "extraction",
        "done",
        "bass",
        {"a": 1},
        7,
    )
    assert row.counts == {"n": 3} and row.message == "all fine" and row.finished_at is not None

    with store.run("segment") as plain:
        pass
    row = run_row(store, plain.id)
    assert row.status == "done" and row.message is None and row.counts is None


def test_run_failed_with_message_and_counts(store):
    with pytest.raises(ValueError, match="bad value"):
        with store.run("segment", group="bass") as run:
            run.counts = {"done": 2}
            raise ValueError("bad value")
    row = run_row(store, run.id)
    assert (row.status, row.message, row.counts) == ("failed", "ValueError: bad value", {"done": 2})
    assert row.finished_at is not None

    with pytest.raises(RuntimeError):
        with store.run("segment", failure_message=lambda exc: f"custom {exc}") as custom:
            raise RuntimeError("x" * 1000)
    assert run_row(store, custom.id).message == "custom " + "x" * 1000

    with pytest.raises(RuntimeError):
        with store.run("segment") as long:
            raise RuntimeError("y" * 1000)
    assert len(run_row(store, long.id).message) == 500


def test_run_interrupted(store):
    with pytest.raises(KeyboardInterrupt):
        with store.run("extraction") as run:
            raise KeyboardInterrupt
    row = run_row(store, run.id)
    assert (row.status, row.message) == ("failed", "interrupted")

    with pytest.raises(KeyboardInterrupt):
        with store.run("segment", failure_message=describe_error) as typed:
            raise KeyboardInterrupt
    assert run_row(store, typed.id).message == "KeyboardInterrupt: "


def test_deferred_and_recorded_runs(store):
    with store.run("ingest", deferred=True) as never:
        pass
    assert never.id is None
    with pytest.raises(ValueError):
        with store.run("ingest", deferred=True) as never_failed:
            raise ValueError("before anything changed")
    assert never_failed.id is None
    assert store.read_sql("SELECT COUNT(*) AS n FROM runs")["n"][0] == 0

    with store.run("ingest", deferred=True) as late:
        assert late.start() == late.start()  # starts once
        late.message = "changed"
    assert run_row(store, late.id).status == "done"

    with store.run("regression", group="bass") as recorded:
        with store.session() as s:
            s.get(Run, recorded.id).status = "done"
            s.get(Run, recorded.id).message = "written with the results"
        recorded.recorded = True
        recorded.message = "not written"
    row = run_row(store, recorded.id)
    assert (row.status, row.message, row.finished_at) == ("done", "written with the results", None)


def test_latest_run(store):
    assert store.latest_run("selection", "bass") is None
    ids = {}
    for name, group, status, stale in [
        ("old", "bass", "done", False),
        ("stale", "bass", "done", True),
        ("failed", "bass", "failed", False),
        ("running", "bass", "running", False),
        ("other_group", "keys", "done", False),
    ]:
        ids[name] = store.start_run("selection", group=group)
        with store.session() as s:
            s.execute(sa.update(Run).where(Run.id == ids[name]).values(status=status, stale=stale))
    ids["regression"] = store.start_run("regression", group="bass")
    store.finish_run(ids["regression"])

    assert store.latest_run("selection", "bass") == ids["old"]
    assert store.latest_run("selection", "bass", current_only=False) == ids["stale"]
    assert store.latest_run("selection", "keys") == ids["other_group"]
    assert store.latest_run("regression", "bass") == ids["regression"]
    assert store.latest_run("selection", "vocal") is None
    # the rule is the latest_runs view's, which the reports' is_latest flags read too
    view = store.read_sql("SELECT * FROM latest_runs WHERE kind = 'selection' AND group_name = 'bass'")
    assert (int(view["latest_run_id"][0]), int(view["current_run_id"][0])) == (ids["stale"], ids["old"])


def test_latest_run_callers_keep_their_stale_rule(store):
    """The figures and predict take the latest finished run, stale or not; regress takes f_pred
    from the latest current selection run."""
    from stemstore.errors import StemstoreError
    from stemstore.analysis.regression_runs import latest_regression_run, selection_fpred
    from stemstore.analysis.selection_runs import latest_selection_run

    current, stale = store.start_run("selection", group="bass"), store.start_run("selection", group="bass")
    regression = store.start_run("regression", group="bass")
    for run_id in (current, stale, regression):
        store.finish_run(run_id)
    with store.session() as s:
        s.execute(sa.update(Run).where(Run.id.in_([stale, regression])).values(stale=True))
    assert latest_selection_run(store, "bass") == stale
    assert latest_regression_run(store, "bass") == regression
    with pytest.raises(StemstoreError, match=f"selection run {current} has an empty f_pred"):
        selection_fpred(store, "bass")


def test_a_run_whose_process_is_gone_shows_as_interrupted(store):
    """kill -9 leaves a run ``running``: status tells it from one a live process holds."""
    import subprocess
    import sys

    from stemstore.reports import status

    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
    )
    held = store.start_run("extraction")
    gone = store.start_run("ingest")
    with store.session() as s:
        row = s.get(Run, gone)
        row.params = {**row.params, "process": {**row.params["process"], "pid": victim.pid}}
    victim.kill()
    victim.wait()
    runs = status(store)["runs"].set_index("id")["state"]
    assert runs[held].startswith("running (pid ")
    assert runs[gone] == f"interrupted (pid {victim.pid} is gone)"
