"""`deployguard serve --local`: the operations console on 127.0.0.1 over the embedded AWS.

A small HTTP server stands in for API Gateway's HTTP API: each request is matched against the
routes of template.yaml (``AWS::ApiGatewayV2::Route``), becomes a payload 2.0 event and goes to
the function of the route's integration (``ConsoleReadFunction`` for the GET routes and the page,
``ConsoleWriteFunction`` for the POST routes) through the real Lambda Invoke API of the embedded
AWS; a request no route matches is answered 404, as API Gateway does.
It also stands in for the JWT authoriser: two local-only bearer tokens, made at start and
printed, one that may write and one that may only read; any other token is refused (401) as
API Gateway would, and so is a request without one to a route whose ``AuthorizationType`` is not
``NONE`` (every /api route and /openapi.json: only the page and its assets are public), or whose
token lacks the route's scope (403). A ``Host`` other than 127.0.0.1, localhost or [::1] is refused
(403): a page of another site resolving to 127.0.0.1 (DNS rebinding) gets nothing.
The embedded AWS holds what ``make demo`` left (its saved local
state, see :mod:`deployguard_local.local_state`; without one the demo's four rollouts run
in-process at start) and one live canary that moves slowly enough to watch and abort from the
page (``--no-live`` leaves it out).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from deployguard.models import LambdaTarget
from deployguard_local.emulator import EmbeddedAws, _environment, sample_handler
from deployguard_local.template import Stack
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

READ_SCOPE, WRITE_SCOPE = "deployguard/read", "deployguard/write"


@dataclass(frozen=True)
class ApiRoute:
    """One route of the console's HTTP API (its ``RouteKey``) and the function its integration invokes."""

    method: str
    path: re.Pattern[str]
    function: str  # the template's logical id
    protected: bool = True  # AuthorizationType other than NONE: a bearer token is needed
    scope: str | None = None  # the scope the route's JWT authoriser asks for (AuthorizationScopes)

    def matches(self, method: str, path: str) -> bool:
        wanted = "GET" if method == "HEAD" else method
        return self.method in (wanted, "ANY") and self.path.fullmatch(path) is not None


def api_routes(stack: Stack) -> list[ApiRoute]:
    """The routes of template.yaml's HTTP API, each with the Lambda function of its integration."""
    functions: dict[str, str] = {}
    for logical_id, resource in stack.of_type("AWS::ApiGatewayV2::Integration").items():
        uri = resource["Properties"]["IntegrationUri"]
        functions[logical_id] = uri["Fn::GetAtt"][0] if isinstance(uri, dict) and "Fn::GetAtt" in uri else str(uri)
    routes = []
    for resource in stack.of_type("AWS::ApiGatewayV2::Route").values():
        props = resource["Properties"]
        method, _, template = str(props["RouteKey"]).partition(" ")
        target = props["Target"]
        text = target.get("Fn::Sub", "") if isinstance(target, dict) else str(target)
        integration = re.fullmatch(r"integrations/\$\{(\w+)\}", text)
        if integration is None or integration.group(1) not in functions:
            continue
        pattern = re.sub(r"\\\{(\w+)\\\+\\\}", ".+", re.escape(template))  # {proxy+}: one or more segments
        pattern = re.sub(r"\\\{(\w+)\\\}", "[^/]+", pattern)  # {name}: one segment
        protected = props.get("AuthorizationType", "NONE") != "NONE"  # JWT or AWS_IAM (an !If of the two)
        routes.append(
            ApiRoute(method.upper(), re.compile(pattern), functions[integration.group(1)], protected,
                     _route_scope(props.get("AuthorizationScopes")))
        )  # fmt: skip
    return routes


def _route_scope(scopes: Any) -> str | None:
    """The local scope of a route's ``AuthorizationScopes`` (``!If [ConsoleUsesJwt, [!Ref ConsoleReadScope], ...]``)."""
    text = json.dumps(scopes) if scopes is not None else ""
    if "ConsoleWriteScope" in text:
        return WRITE_SCOPE
    if "ConsoleReadScope" in text:
        return READ_SCOPE
    return None


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def local_host(value: str | None) -> bool:
    """A Host header naming this machine (127.0.0.1 or localhost, any port): a page of another site whose
    name resolves to 127.0.0.1 (DNS rebinding) sends its own name, and is refused."""
    if not value:
        return False
    host = value.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host in LOCAL_HOSTS


@dataclass
class LocalCredentials:
    """Bearer tokens the local server accepts, and the identity and scopes each stands for."""

    write_token: str = field(default_factory=lambda: "dgw-" + secrets.token_urlsafe(24))
    read_token: str = field(default_factory=lambda: "dgr-" + secrets.token_urlsafe(24))

    def claims(self, token: str) -> dict[str, Any] | None:
        if secrets.compare_digest(token, self.write_token):
            return {"sub": "local-operator", "username": "local-operator", "scope": f"{READ_SCOPE} {WRITE_SCOPE}"}
        if secrets.compare_digest(token, self.read_token):
            return {"sub": "local-viewer", "username": "local-viewer", "scope": READ_SCOPE}
        return None


def http_api_event(
    method: str, target: str, headers: dict[str, str], body: bytes, claims: dict[str, Any] | None
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as the $default route sends it."""
    parts = urlsplit(target)
    now = time.time()
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": headers.get("host", "127.0.0.1"),
        "http": {
            "method": method,
            "path": parts.path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": "$default",
        "stage": "$default",
        "time": datetime.now().strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": claims["scope"].split()}}
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in query.items()}
    if body:
        event["body"] = body.decode("utf-8", errors="replace")
    return event


class _QuietServer(ThreadingHTTPServer):
    """A browser that closes a page mid-poll drops its connection: nothing the server did wrong, so no
    traceback on stderr; any other error is still printed."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class ConsoleServer:
    """The local stand-in for API Gateway in front of the console's functions (read and write)."""

    def __init__(self, aws: EmbeddedAws, credentials: LocalCredentials, port: int = 8700) -> None:
        self.aws = aws
        self.credentials = credentials
        self.routes = api_routes(aws.stack)
        self.httpd = _QuietServer(("127.0.0.1", port), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None
        # one request at a time, as one Lambda container serves them (the resolver holds the current event)
        self.invoke_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ConsoleServer:
        self.thread = threading.Thread(  # stopped within 50 ms (serve_forever's default poll: half a second)
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="console-server", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the function's own logs tell what happened

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                if not local_host(headers.get("host")):  # DNS rebinding: only this machine's names are served
                    self._reply(403, {"content-type": "application/json"}, b'{"message":"Forbidden: Host"}')
                    return
                claims = None
                auth = headers.get("authorization", "")
                if auth:
                    scheme, _, token = auth.partition(" ")
                    claims = server.credentials.claims(token.strip()) if scheme.lower() == "bearer" else None
                    if claims is None:  # API Gateway's JWT authoriser refuses it before the function
                        self._reply(401, {"content-type": "application/json"}, b'{"message":"Unauthorized"}')
                        return
                path = urlsplit(self.path).path
                route = next((r for r in server.routes if r.matches(self.command, path)), None)
                if route is None:  # API Gateway answers a request no route matches itself
                    self._reply(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                    return
                if route.protected and claims is None:  # API Gateway's authoriser: no token, no function
                    self._reply(401, {"content-type": "application/json"}, b'{"message":"Unauthorized"}')
                    return
                if route.protected and route.scope and route.scope not in str((claims or {}).get("scope", "")).split():
                    self._reply(403, {"content-type": "application/json"}, b'{"message":"Forbidden"}')
                    return
                event = http_api_event(self.command, self.path, headers, body, claims)
                with server.invoke_lock:
                    payload, errored = server.aws.invoke(route.function, event)
                if errored or not isinstance(payload, dict):
                    self._reply(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
                    return
                out = payload.get("body") or ""
                data = out.encode("utf-8") if isinstance(out, str) else bytes(out)
                reply_headers = {k.lower(): str(v) for k, v in (payload.get("headers") or {}).items()}
                self._reply(int(payload.get("statusCode", 200)), reply_headers, data)

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            # OPTIONS too: no route takes it, so it is API Gateway's 404 JSON (not http.server's 501 HTML page)
            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        return Handler


# --------------------------------------------------------------------------- what the server shows


class ClockGate:
    """Holds the simulated clock at each advance until released: a canary stays in flight."""

    def __init__(self, seconds_per_minute: float | None) -> None:
        self.seconds_per_minute = seconds_per_minute
        self.released = threading.Event()

    def __call__(self, before: datetime, after: datetime) -> None:
        minutes = (after - before).total_seconds() / 60
        if self.seconds_per_minute is None:
            self.released.wait()  # until released
        else:
            self.released.wait(self.seconds_per_minute * minutes)


def start_live_canary(
    aws: EmbeddedAws, function_name: str = "orders-api", seconds_per_minute: float | None = 5.0
) -> tuple[LambdaTarget, ClockGate, threading.Thread]:
    """Start a canary through the real state machine whose simulated minutes last
    ``seconds_per_minute`` of real time (None: until the gate is released)."""
    assert aws.clock is not None
    versions = aws.deploy_sample_function(function_name, "live", sample_handler)
    target = LambdaTarget(
        function_name=function_name, alias="live", stable_version=versions[0], new_version=versions[1]
    )
    traffic = LambdaTrafficSource(function_name, "live", 2000, {v: VersionBehaviour() for v in versions}, seed=21)
    aws.clock.listeners.append(traffic.on_clock)
    gate = ClockGate(seconds_per_minute)
    aws.clock.late_listeners.append(gate)
    request = {
        "deployment": {
            "deployment_id": f"live-{function_name}",
            "service": function_name,
            "version": versions[1],
            "target": target.model_dump(),
        }
    }

    def run() -> None:
        try:
            aws.run_state_machine("CanaryStateMachine", request, timeout=24 * 3600)
        except Exception:
            if aws.closed.is_set():  # the console (or a test) ended before the canary: nothing left to watch
                return
            raise

    worker = threading.Thread(
        target=run,
        name="live-canary",
        daemon=True,
    )
    worker.start()
    return target, gate, worker


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@contextlib.contextmanager
def demo_console(
    port: int = 8700,
    *,
    state_dir: Path | None = None,
    live: bool = True,
    seconds_per_minute: float | None = 5.0,
    out: Any = None,
) -> Iterator[tuple[ConsoleServer, EmbeddedAws, LocalCredentials]]:
    """The embedded AWS holding what ``make demo`` left (its saved state, or the demo run here when none
    was saved) and a live canary, served on 127.0.0.1."""
    from deployguard.storage.repository import DeploymentRepository
    from deployguard_local import local_state
    from deployguard_local.demo import DEMO_CONFIG, builtin_demo, flush_digests
    from deployguard_local.receivers import local_receivers

    directory = state_dir or local_state.default_dir()
    saved = local_state.present(directory)
    log = out if out is not None else io.StringIO()
    with local_receivers(echo=None) as receivers:
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        # a saved state runs with the configuration it was saved with, its functions and aliases as saved
        config = (local_state.saved_config(directory) if saved else None) or DEMO_CONFIG
        with _environment(env), EmbeddedAws(config_file=config) as aws:
            if saved:
                local_state.load(aws, directory)
                local_state.restore_functions(aws, directory)
            else:
                builtin_demo(aws, log)
                flush_digests(aws)
                aws.invoker.drain()
            if live:
                start_live_canary(aws, seconds_per_minute=seconds_per_minute)
                repository = DeploymentRepository()
                wait_until(
                    lambda: (d := repository.find_deployment("live-orders-api")) is not None and d.canary_weight > 0
                )
            credentials = LocalCredentials()
            server = ConsoleServer(aws, credentials, port).start()
            try:
                yield server, aws, credentials
            finally:
                # the live canary's execution stays parked at its gate: released, it would go on calling
                # AWS after this embedded AWS has closed (its daemon thread ends with the process)
                server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployguard serve", description="the operations console on 127.0.0.1")
    parser.add_argument("--local", action="store_true", help="over the embedded AWS holding the demo's rollouts")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--no-live", action="store_true", help="do not start the slow canary you can abort")
    parser.add_argument("--seconds-per-minute", type=float, default=5.0, help="pace of the live canary")
    parser.add_argument("--state-dir", type=Path, help="the saved local state (default: where make demo saves it)")
    parser.add_argument("--openapi", action="store_true", help="print the OpenAPI document and exit")
    args = parser.parse_args(argv)
    if args.openapi:
        print(json.dumps(openapi_document(), indent=2))
        return 0
    if not args.local:
        print("deployguard serve: only --local is served from here; on AWS the console is the stack's ConsoleUrl")
        return 2
    print("deployguard serve: loading what make demo left into the embedded AWS ...", flush=True)
    with demo_console(
        args.port, state_dir=args.state_dir, live=not args.no_live, seconds_per_minute=args.seconds_per_minute
    ) as (
        server,
        _aws,
        credentials,
    ):
        print(f"console:     {server.url}/#token={credentials.write_token}")
        print(f"write token: {credentials.write_token}   (local only; may control canaries)")
        print(f"read token:  {credentials.read_token}   (local only; may only read)")
        print(f"OpenAPI:     {server.url}/openapi.json      Ctrl-C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


def openapi_document() -> dict[str, Any]:
    """The console API's OpenAPI document, generated from its routes (deployguard.console_api)."""
    from deployguard.console_api import openapi_document as generate

    return generate()
