"""The Connectors page: static HTML, CSS and JavaScript served by the plugin's FastAPI app.

``GET /airconnect/ui/connectors.html`` (``?dag_id=ID`` for one DAG's connectors) is a page
without a build step. The Airflow UI shows it in an iframe (the plugin's ``external_views``, see
:mod:`airconnect.plugin`): in the navigation bar, and as a "Connectors" tab of every DAG.
Its script calls the REST API next to it (``/airconnect/connectors...``) with the browser's
own Airflow session (the UI's ``_token`` cookie, which the same-origin iframe sends), so what it
shows and what its buttons may do are exactly what that user may see and do through the REST
API: :func:`airconnect.rest.check_access` guards these files like every other route.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

UI_DIR = Path(__file__).resolve().parent

#: The files the page is made of, with their media types; nothing else under ui/ is served.
FILES = {
    "connectors.html": "text/html; charset=utf-8",
    "connectors.js": "text/javascript; charset=utf-8",
    "connectors.css": "text/css; charset=utf-8",
}

router = APIRouter()


@router.get("/ui/{filename}", include_in_schema=False)
def ui_file(filename: str) -> FileResponse:
    media_type = FILES.get(filename)
    if media_type is None:
        raise HTTPException(404, f"no such file in airconnect's UI: {filename}")
    # no-cache: the browser revalidates (ETag), so an upgrade of the plugin shows at once.
    return FileResponse(UI_DIR / filename, media_type=media_type, headers={"Cache-Control": "no-cache"})


__all__ = ["FILES", "UI_DIR", "router"]
