"""A local OIDC token endpoint (client-credentials grant) for the OAUTHBEARER tests."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer

import orjson


@dataclass
class TokenEndpoint:
    """Issues `make_token(n)` tokens that live `lifetime_s`; refuses every client (401), is
    down (`down_status`, e.g. 503) or redirects elsewhere if told to."""

    make_token: Callable[[int], str]
    lifetime_s: int
    refuse: bool = False
    down_status: int | None = None
    redirect_to: str | None = None
    issued: list[str] = field(default_factory=list)
    requests: int = 0
    url: str = ""


@contextmanager
def token_endpoint(make_token: Callable[[int], str], lifetime_s: int) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(make_token, lifetime_s)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            endpoint.requests += 1
            if endpoint.refuse or endpoint.down_status is not None:
                self.send_response(401 if endpoint.refuse else endpoint.down_status or 503)
                self.end_headers()
                return
            if endpoint.redirect_to is not None:
                self.send_response(307)
                self.send_header("Location", endpoint.redirect_to)
                self.end_headers()
                return
            token = endpoint.make_token(len(endpoint.issued))
            endpoint.issued.append(token)
            body = orjson.dumps(
                {"access_token": token, "token_type": "Bearer", "expires_in": endpoint.lifetime_s}
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/token"
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
