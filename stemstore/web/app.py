"""``stemstore serve``: the corpus in a browser, for curating it by listening.

A Starlette application with server-rendered Jinja2 pages and no JavaScript:

* ``/``: the multitracks (instruments, stem/raw counts, audio, segment and stale status,
  exclusions), filtered by group, instrument, status and genre, with Table 2 for the filter;
* ``/pairs``: the segment pairs of the filter; ``/pairs/{segment id}``: one pair, its audio
  (the original file, seekable, and the processed window the extractor saw), pictures and
  feature values against the group's distribution;
* ``/multitracks/{id}``: one multitrack's tracks and pairs;
* ``/exclusions``: every decision, reversible, exportable as CSV or JSON; excluding and
  including are the only writes, POSTs checked against a per-session CSRF token;
* ``/results``: Tables 2, 4–7 and Figs. 2–4 for any group and run; ``/query``: read-only SQL.

Audio and picture URLs name track and segment ids, never paths (:mod:`stemstore.web.media`).
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from stemstore import curation, reports
from stemstore.errors import StemstoreError
from stemstore.store.connection import Store
from stemstore.web import corpus
from stemstore.web.media import NotServable, figure_png, picture, processed_window, track_file, wav_bytes

HERE = Path(__file__).parent
CSRF_COOKIE = "stemstore_csrf"
CSRF_FIELD = "csrf"
QUERY_PAGE_SIZE = 100
#: The study's tables: which run kind each one shows.
RESULT_TABLES = {"table4": "selection", "table5": "selection", "table6": "regression", "table7": "regression"}


# -- rendering -----------------------------------------------------------------------------------
def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is pd.NA or value is pd.NaT:
        return ""
    return str(value)


def _table(frame: pd.DataFrame | None) -> dict:
    if frame is None:
        return {"columns": [], "rows": []}
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": [[_cell(v) for v in row] for row in frame.itertuples(index=False)],
    }


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["cell"] = _cell
templates.env.globals["urlencode"] = urlencode


def _csrf_token(request: Request) -> tuple[str, bool]:
    """(the session's token, whether it is new and must be set as a cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) >= 32:
        return token, False
    return secrets.token_urlsafe(32), True


def _page(request: Request, template: str, context: dict, status_code: int = 200) -> Response:
    token, new = _csrf_token(request)
    context = {"request": request, "csrf": token, "store": request.app.state.store.label, **context}
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    if new:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


def _error(request: Request, message: str, status_code: int) -> Response:
    return _page(request, "error.html", {"message": message}, status_code=status_code)


def _int(value: str | None, default: int | None = None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        raise StemstoreError(f"not a number: {value!r}") from None


def _store(request: Request) -> Store:
    return request.app.state.store


def _filters(request: Request) -> corpus.Filters:
    q = request.query_params
    return corpus.Filters(
        group=q.get("group", ""),
        instrument=q.get("instrument", ""),
        status=q.get("status", ""),
        genre=q.get("genre", ""),
        multitrack=q.get("multitrack", ""),
    )


def user_errors(handler: Callable) -> Callable:
    """A StemstoreError becomes a 400 page with its one line; an unknown id a 404."""

    def wrapped(request: Request) -> Response:
        try:
            return handler(request)
        except StemstoreError as exc:
            return _error(request, str(exc), 400)
        except LookupError:
            return _error(request, "not found", 404)

    wrapped.__name__ = handler.__name__
    return wrapped


# -- corpus ----------------------------------------------------------------------------------
@user_errors
def corpus_view(request: Request) -> Response:
    store, f = _store(request), _filters(request)
    f.check(store)
    page = corpus.multitracks(store, f, _int(request.query_params.get("page"), 1))
    table2 = reports.report(
        store,
        "table2",
        groups=[f.group] if f.group else None,
        instruments=[f.instrument] if f.instrument else None,
    )
    return _page(
        request,
        "corpus.html",
        {
            "filters": f,
            "choices": corpus.choices(store),
            "page": page,
            "rows": page.rows.to_dict("records"),
            "table2": _table(table2),
        },
    )


@user_errors
def pairs_view(request: Request) -> Response:
    store, f = _store(request), _filters(request)
    f.check(store)
    page = corpus.pairs(store, f, _int(request.query_params.get("page"), 1))
    return _page(
        request,
        "pairs.html",
        {
            "filters": f,
            "choices": corpus.choices(store),
            "page": page,
            "rows": page.rows.to_dict("records"),
            "group": f.group,
        },
    )


@user_errors
def multitrack_view(request: Request) -> Response:
    store = _store(request)
    data = corpus.multitrack(store, _int(request.path_params["multitrack_id"]))
    f = corpus.Filters(multitrack=data["multitrack"]["name"], status="")
    page = corpus.pairs(store, f, 1)
    return _page(
        request,
        "multitrack.html",
        {**data, "tracks": data["tracks"].to_dict("records"), "pairs": page.rows.to_dict("records")},
    )


@user_errors
def pair_view(request: Request) -> Response:
    store = _store(request)
    data = corpus.pair(store, _int(request.path_params["segment_id"]))
    stem, raw = data["stem"], data["raw"]
    anchor = stem or raw
    groups = corpus.groups_of(store, anchor["instrument_id"])
    analysed = [g for g in groups if store.latest_run("selection", g, current_only=False) is not None]
    group = request.query_params.get("group") or (analysed or groups or [""])[0]
    if group and group not in groups:
        store.group_instruments(group)  # unknown: an error; a known group of another label is fine
    typed = request.query_params.get("features", "").strip()
    source, names, values, problem = "", [], None, None
    try:
        if typed:
            names = [n.strip() for n in typed.split(",") if n.strip()]
            store.feature_ids(names)
            source = "the features you chose"
        elif group:
            source, names = corpus.feature_set(store, group)
        if names and group:
            values = corpus.pair_values(
                store, stem["id"] if stem else None, raw["id"] if raw else None, group, names
            )
    except StemstoreError as exc:
        problem = str(exc)
    return _page(
        request,
        "pair.html",
        {
            **data,
            "segments": [s for s in (stem, raw) if s is not None],
            "groups": groups,
            "group": group,
            "features": typed,
            "source": source,
            "values": _values_table(values) if values is not None else None,
            "problem": problem,
        },
    )


def _values_table(values: pd.DataFrame) -> dict:
    """The pair's values beside the group's distributions, compact enough to read at a glance."""

    def g(x) -> str:
        return "" if x is None or not np.isfinite(x) else f"{x:.4g}"

    rows = [
        [
            v.feature,
            g(v.raw),
            g(v.stem),
            g(v.stem - v.raw),
            f"{g(v.group_raw_median)} ({g(v.group_raw_p10)} – {g(v.group_raw_p90)})",
            f"{g(v.group_stem_median)} ({g(v.group_stem_p10)} – {g(v.group_stem_p90)})",
            f"{v.group_raw_n} / {v.group_stem_n}",
        ]
        for v in values.itertuples(index=False)
    ]
    columns = [
        "feature",
        "raw",
        "stem",
        "stem − raw",
        "group raw: median (p10 – p90)",
        "group stem: median (p10 – p90)",
        "segments raw / stem",
    ]
    return {"columns": columns, "rows": rows}


# -- media -----------------------------------------------------------------------------------
def _bytes_response(request: Request, data: bytes, media_type: str) -> Response:
    """``data`` with HTTP range support (206 for one ``bytes=a-b`` range), so players can seek."""
    size = len(data)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    wanted = request.headers.get("range", "")
    if not wanted.startswith("bytes=") or "," in wanted:
        return Response(data, media_type=media_type, headers=headers)
    first, _, last = wanted[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(size - 1, int(last) if last else size - 1)
    except ValueError:
        return Response(data, media_type=media_type, headers=headers)
    if start > end or start >= size:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)


def _media(handler: Callable) -> Callable:
    def wrapped(request: Request) -> Response:
        try:
            return handler(request)
        except (LookupError, StemstoreError):  # NotServable is a LookupError
            return PlainTextResponse("not found", status_code=404)

    wrapped.__name__ = handler.__name__
    return wrapped


@_media
def track_audio(request: Request) -> Response:
    """The track's file as it is in the corpus (Starlette answers range requests)."""
    path = track_file(_store(request), _int(request.path_params["track_id"]))
    return FileResponse(path, headers={"Cache-Control": "no-store"})


@_media
def processed_audio(request: Request) -> Response:
    segment = corpus.segment(_store(request), _int(request.path_params["segment_id"]))
    data = wav_bytes(processed_window(_store(request), segment))
    return _bytes_response(request, data, "audio/wav")


@_media
def segment_picture(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind not in ("waveform", "spectrogram"):
        raise NotServable(kind)
    segment = corpus.segment(_store(request), _int(request.path_params["segment_id"]))
    return Response(picture(_store(request), segment, kind), media_type="image/png")


# -- curation --------------------------------------------------------------------------------
async def _checked_form(request: Request):
    """The POSTed form if its CSRF token matches the session's cookie and it comes from this
    site; else None."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return None
    form = await request.form()
    cookie, sent = request.cookies.get(CSRF_COOKIE, ""), str(form.get(CSRF_FIELD, ""))
    if len(cookie) < 32 or not secrets.compare_digest(cookie.encode(), sent.encode()):
        return None
    return form


def _back(form, default: str) -> str:
    """Where to go after an action: a local path only (never another site)."""
    target = str(form.get("next", "")) or default
    return target if target.startswith("/") and not target.startswith("//") else default


async def exclude_action(request: Request) -> Response:
    form = await _checked_form(request)
    if form is None:
        return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403)
    store = _store(request)

    def act():
        return curation.exclude(
            store,
            reason=str(form.get("reason", "")),
            segment_id=_int(form.get("segment")),
            multitrack=str(form.get("multitrack")) if form.get("multitrack") else None,
            by=str(form.get("by", "")).strip() or None,
        )

    try:
        await run_in_threadpool(act)
    except StemstoreError as exc:
        return _error(request, str(exc), 400)
    return RedirectResponse(_back(form, "/exclusions"), status_code=303)


async def include_action(request: Request) -> Response:
    form = await _checked_form(request)
    if form is None:
        return PlainTextResponse("refused: missing or wrong CSRF token", status_code=403)
    store = _store(request)
    try:
        exclusion_id = _int(request.path_params["exclusion_id"])
        await run_in_threadpool(
            lambda: curation.include(store, exclusion_id, reason=str(form.get("reason", "")) or None)
        )
    except StemstoreError as exc:
        return _error(request, str(exc), 400)
    return RedirectResponse(_back(form, "/exclusions"), status_code=303)


@user_errors
def exclusions_view(request: Request) -> Response:
    frame = curation.list_exclusions(_store(request))
    return _page(request, "exclusions.html", {"rows": frame.to_dict("records")})


@user_errors
def exclusions_export(request: Request) -> Response:
    frame = curation.list_exclusions(_store(request))
    fmt = request.path_params["fmt"]
    if fmt == "csv":
        return Response(
            frame.to_csv(index=False),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="exclusions.csv"'},
        )
    if fmt == "json":
        records = json.loads(frame.to_json(orient="records", date_format="iso"))
        return Response(
            json.dumps(records, indent=2),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="exclusions.json"'},
        )
    raise LookupError(fmt)


# -- results ---------------------------------------------------------------------------------
@user_errors
def results_view(request: Request) -> Response:
    store = _store(request)
    q = request.query_params
    groups = corpus.choices(store)["group"]
    group = q.get("group") or (groups[0] if groups else "")
    if group:
        store.group_instruments(group)
    runs = corpus.runs(store, group) if group else pd.DataFrame(columns=["id", "kind"])
    chosen = {
        "selection": _int(q.get("selection_run")),
        "regression": _int(q.get("regression_run")),
    }
    tables = {"table2": _table(reports.report(store, "table2", groups=[group] if group else None))}
    problems = {}
    for name, kind in RESULT_TABLES.items():
        try:
            tables[name] = _table(reports.report(store, name, groups=[group], run_id=chosen[kind]))
        except StemstoreError as exc:
            problems[name] = str(exc)
    figure_query = {"group": group}
    if chosen["selection"]:
        figure_query["run"] = chosen["selection"]
    return _page(
        request,
        "results.html",
        {
            "groups": groups,
            "group": group,
            "runs": runs.to_dict("records"),
            "chosen": chosen,
            "tables": tables,
            "problems": problems,
            "figure_query": urlencode(figure_query),
        },
    )


@_media
def results_figure(request: Request) -> Response:
    from stemstore.analysis.regression_runs import pca_figure
    from stemstore.analysis.selection_runs import importance_figure, oob_figure

    store, q = _store(request), request.query_params
    group, run_id = q.get("group", ""), _int(q.get("run"))
    store.group_instruments(group)
    name = request.path_params["name"]
    draw = {
        "fig2": lambda path: importance_figure(store, group, path, run_id=run_id),
        "fig3": lambda path: oob_figure(store, group, path, run_id=run_id),
        "fig4": lambda path: pca_figure(store, group, path),
    }.get(name)
    if draw is None:
        raise LookupError(name)
    return Response(figure_png(draw), media_type="image/png")


# -- read-only SQL ---------------------------------------------------------------------------
@user_errors
def query_view(request: Request) -> Response:
    sql = request.query_params.get("sql", "").strip()
    page_number = max(1, _int(request.query_params.get("page"), 1))
    result, problem, total = None, None, 0
    if sql:
        try:
            frame = reports.query(_store(request), sql)
            total = len(frame)
            start = (page_number - 1) * QUERY_PAGE_SIZE
            result = _table(frame.iloc[start : start + QUERY_PAGE_SIZE])
        except StemstoreError as exc:
            problem = str(exc)
    pages = max(1, -(-total // QUERY_PAGE_SIZE))
    return _page(
        request,
        "query.html",
        {
            "sql": sql,
            "result": result,
            "problem": problem,
            "total": total,
            "page": page_number,
            "pages": pages,
        },
    )


def create_app(store: Store) -> Starlette:
    """The application over an open store (the caller closes it)."""
    routes = [
        Route("/", corpus_view),
        Route("/pairs", pairs_view),
        Route("/pairs/{segment_id}", pair_view),
        Route("/multitracks/{multitrack_id}", multitrack_view),
        Route("/audio/tracks/{track_id}", track_audio),
        Route("/audio/segments/{segment_id}/processed.wav", processed_audio),
        Route("/pictures/segments/{segment_id}/{kind}.png", segment_picture),
        Route("/exclusions", exclusions_view),
        Route("/exclusions.{fmt}", exclusions_export),
        Route("/exclude", exclude_action, methods=["POST"]),
        Route("/exclusions/{exclusion_id}/include", include_action, methods=["POST"]),
        Route("/results", results_view),
        Route("/results/{name}.png", results_figure),
        Route("/query", query_view),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    return app


def serve(db: str | None, *, host: str = "127.0.0.1", port: int = 8000, say=print) -> None:
    """Open the store, print the URL, serve until Ctrl-C."""
    import uvicorn

    with Store.open(db) as store:
        app = create_app(store)
        shown = f"[{host}]" if ":" in host else host
        say(f"serving {store.label} at http://{shown}:{port}/ (Ctrl-C to stop)")
        uvicorn.run(app, host=host, port=port, log_level="warning")
