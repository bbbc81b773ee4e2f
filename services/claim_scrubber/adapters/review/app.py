"""The review page as a FastAPI application: server-rendered (Jinja2), htmx for the worklist
fragment, server-sent events for live updates. It shows PHI, so every request needs the token
(a bearer header, or the cookie /login sets from it), pages are never cached, and the content
security policy allows no inline script."""

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from claim_scrubber.adapters.review_board import ReviewBoard, ReviewItem
from claim_scrubber.rules import CATALOG

__all__ = ["ReviewState", "review_app"]

_HERE: Final = Path(__file__).parent
_COOKIE: Final = "review_token"
_SHOWN: Final = 500
"""Claims listed on the worklist at most (the groups count them all)."""
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_RULES: Final = {rule.id: rule for rule in CATALOG}


@dataclass(slots=True)
class ReviewState:
    """The board the feed fills, and a version the live updates wait on."""

    ruleset_version: str
    board: ReviewBoard = field(default_factory=ReviewBoard)
    version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, document: bytes) -> None:
        """Take one scrub result as published."""
        if self.board.take(orjson.loads(document), document):
            self.version += 1
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_change(self, seen: int, timeout_s: float) -> int:
        """The version once it is past `seen` (or as it is after `timeout_s`)."""
        if self.version == seen:
            waiting = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiting.wait(), timeout_s)
        return self.version


def review_app(state: ReviewState, token: str | None) -> FastAPI:
    """The page over `state`; `token` None: open (allowed on loopback only, by the caller)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token is not None and request.url.path != "/login" and not _authorized(request, token):
            response: Response = Response("unauthorized\n", status_code=401)
            response.headers["WWW-Authenticate"] = "Bearer"
        else:
            response = await call_next(request)
        response.headers.update(_HEADERS)
        return response

    @app.get("/login")
    async def login(token_given: str = Query("", alias="token")) -> Response:
        """Set the session cookie from the token (the URL `make run` prints)."""
        if token is not None and not hmac.compare_digest(token_given.encode(), token.encode()):
            return Response("unauthorized\n", status_code=401)
        response = RedirectResponse("/", status_code=303)
        if token is not None:
            response.set_cookie(_COOKIE, token, httponly=True, samesite="strict")
        return response

    def page(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            name,
            {
                "open_count": len(state.board.items),
                "ruleset_version": state.ruleset_version,
                "version": state.version,
                **context,
            },
        )

    def worklist(payer: str, rule: str) -> dict[str, Any]:
        items = state.board.open_items(payer_kind=payer or None, rule_id=rule or None)
        return {
            "groups": state.board.groups(payer_kind=payer or None),
            "items": items[:_SHOWN],
            "more": max(0, len(items) - _SHOWN),
            "payer": payer,
            "rule": rule,
            "titles": {rule_id: entry.title for rule_id, entry in _RULES.items()},
            "payer_kinds": state.board.payer_kinds(),
        }

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request, payer: str = "", rule: str = "") -> HTMLResponse:
        return page(request, "worklist.html", worklist(payer, rule))

    @app.get("/worklist", response_class=HTMLResponse)
    async def fragment(request: Request, payer: str = "", rule: str = "") -> HTMLResponse:
        return page(request, "_worklist.html", worklist(payer, rule))

    @app.get("/claims/{claim_id:path}", response_class=HTMLResponse)
    async def claim(request: Request, claim_id: str) -> HTMLResponse:
        item = state.board.items.get(claim_id)
        if item is None:
            raise HTTPException(404, "no open item for this claim")
        return page(request, "claim.html", _claim_view(item))

    @app.get("/events")
    async def events(since: int = -1) -> StreamingResponse:
        """`changed` whenever the queue changes after version `since` (the page's)."""

        async def stream() -> AsyncIterator[bytes]:
            seen = since if since >= 0 else state.version
            yield b"retry: 2000\n\n"
            while True:
                now = await state.wait_change(seen, timeout_s=15)
                if now != seen:
                    seen = now
                    yield f"event: changed\ndata: {now}\n\n".encode()
                else:
                    yield b": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


def _authorized(request: Request, token: str) -> bool:
    given = request.cookies.get(_COOKIE, "")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        given = header[7:]
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _finding(finding: dict[str, Any]) -> dict[str, Any]:
    rule = _RULES.get(str(finding.get("rule_id")))
    return {
        **finding,
        "title": rule.title if rule else "",
        "why": rule.doc.why if rule else "",
        "source": rule.doc.source if rule else "",
    }


def _claim_view(item: ReviewItem) -> dict[str, Any]:
    """The claim's lines with each finding beside its line; claim-level ones apart."""
    result = item.result
    claim = result.get("claim") or {}
    diagnoses = claim.get("diagnoses") or []
    findings = [_finding(f) for f in result.get("findings", [])]
    lines = []
    for line in claim.get("lines") or []:
        number = line.get("line_number")
        pointers = line.get("diagnosis_pointers") or []
        pointed = [
            diagnoses[p - 1] for p in pointers if isinstance(p, int) and 0 < p <= len(diagnoses)
        ]
        lines.append(
            {
                "number": number,
                "code": line.get("procedure_code", ""),
                "modifiers": " ".join(line.get("modifiers") or []),
                "units": line.get("units"),
                "charge": line.get("charge", ""),
                "date": line.get("service_date", ""),
                "place": line.get("place_of_service") or claim.get("place_of_service", ""),
                "diagnoses": ", ".join(
                    pointed if claim.get("claim_type") == "professional" else diagnoses
                ),
                "findings": [f for f in findings if f.get("line_number") == number],
            }
        )
    source = result.get("source") or {}
    return {
        "item": item,
        "result": result,
        "claim": claim,
        "claim_findings": [f for f in findings if f.get("line_number") is None],
        "lines": lines,
        "source": "/".join(str(source.get(k, "")) for k in ("topic", "partition", "offset")),
    }
