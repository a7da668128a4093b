"""The FastAPI app of the studio: the page, its static files and the HTTP API (API.md).

`create_app(studio)` wires the routes (routes_images.py, routes_jobs.py) to one Studio, the
token gate and upload limit around them, and error handlers that answer every problem with
{"detail": "<one sentence>"}: user errors with their 4xx code, anything unexpected with a
500 sentence (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from unetkit.errors import UnetkitError
from unetkit.serve.errors import ApiError
from unetkit.serve.routes_images import router as images_router
from unetkit.serve.routes_jobs import router as jobs_router
from unetkit.serve.security import BodyLimit, TokenGate
from unetkit.serve.state import Studio, studio_version

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("unetkit.serve")
WHERE = {"query": "Query parameter", "path": "Path parameter", "body": "Field",
         "header": "Header", "cookie": "Cookie"}


def create_app(studio: Studio) -> FastAPI:
    """The studio's app over `studio` (which holds the data set, models and jobs)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        studio.training.cancel()  # a training process does not outlive its server

    app = FastAPI(title="unetkit studio", version=studio_version(), lifespan=lifespan,
                  description="Look at a prediction, fix it, train again. The page at / "
                              "uses this API; so can scripts (see serve/API.md).")
    app.state.studio = studio
    _handlers(app)

    @app.get("/", include_in_schema=False)
    def page() -> Any:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info(request: Request) -> dict[str, Any]:
        """Version, the current model, the data set and the training status."""
        return request.app.state.studio.info()

    @app.get("/api/models")
    def models(request: Request) -> dict[str, Any]:
        """The model the server started with and every model trained since."""
        store = request.app.state.studio.models
        return {"current": store.current.id if store.current else None,
                "models": [e.as_dict() for e in store.entries]}

    app.include_router(images_router)
    app.include_router(jobs_router)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    app.add_middleware(BodyLimit, max_mb=studio.settings.max_upload_mb)
    app.add_middleware(TokenGate, token=studio.settings.token)  # outermost: checked first
    return app


def _handlers(app: FastAPI) -> None:
    """Every error as {"detail": "<one sentence>"}."""

    @app.exception_handler(UnetkitError)
    def user_error(request: Request, exc: UnetkitError) -> JSONResponse:
        status = exc.status if isinstance(exc, ApiError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"There is nothing at {request.url.path}."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
        return JSONResponse({"detail": str(detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_sentence(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"Internal error ({type(exc).__name__}) while "
                             f"answering {request.url.path}; the server log has the "
                             "details."}, status_code=500)


def validation_sentence(errors: list[dict[str, Any]]) -> str:
    """FastAPI's list of validation errors -> one sentence about the first."""
    if not errors:
        return "The request is not valid."
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ())]
    where = WHERE.get(loc[0], "Value") if loc else "Value"
    name = ".".join(loc[1:]) or "body"
    got = first.get("input")
    shown = "" if got is None or isinstance(got, dict) else f" (got {str(got)[:60]!r})"
    return f"{where} {name!r}: {first.get('msg', 'invalid')}{shown}."
