"""Local stand-ins of the GitHub REST API and the Jira Cloud REST API v3 on 127.0.0.1.

Each is a real HTTP server (stdlib ``http.server`` in a thread) that checks what the real API
checks for the calls DeployGuard makes: the authentication headers, the paths, the JSON
bodies (unknown or missing fields are refused with 422 / 400, Jira descriptions and comments
must be Atlassian Document Format), and answers with the real API's shapes and status codes.
``fail_next`` makes the next requests fail with a status (an outage); ``fail_once`` fails the first
request of a method and path (a regular expression) with a status, once.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

GITHUB_TOKEN = "ghp_localtesttoken000000000000000000000"
JIRA_EMAIL, JIRA_TOKEN = "deployguard@acme.test", "jira-local-api-token"


@dataclass
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class FakeApi:
    """State shared by a server's handler threads."""

    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    fail_once: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path pattern, status)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]


def _is_adf(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("type") == "doc"
        and doc.get("version") == 1
        and isinstance(doc.get("content"), list)
        and all(isinstance(p, dict) and p.get("type") == "paragraph" for p in doc["content"])
    )


def _github(
    api: FakeApi, method: str, path: str, query: dict[str, list[str]], headers: Any, body: Any
) -> tuple[int, Any]:
    if headers.get("Authorization") != f"Bearer {GITHUB_TOKEN}":
        return 401, {"message": "Bad credentials"}
    if headers.get("Accept") != "application/vnd.github+json" or headers.get("X-GitHub-Api-Version") != "2022-11-28":
        return 415, {"message": "Unsupported media type or API version"}
    match = re.fullmatch(r"/repos/acme/shop/issues(?:/(\d+))?(/comments)?", path)
    if match is None:
        return 404, {"message": "Not Found"}
    number, comments = match.group(1), match.group(2)
    if number is None and method == "GET":
        wanted = set(query.get("labels", [""])[0].split(",")) - {""}
        state = query.get("state", ["open"])[0]
        found = [i for i in api.issues.values() if wanted <= {lb["name"] for lb in i["labels"]}
                 and (state == "all" or i["state"] == state)]  # fmt: skip
        return 200, found
    if number is None and method == "POST":
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("title"), str)
            or set(body) - {"title", "body", "labels"}
        ):
            return 422, {"message": "Validation Failed"}
        if not all(isinstance(lb, str) for lb in body.get("labels", [])):
            return 422, {"message": "Validation Failed"}
        n = str(len(api.issues) + 1)
        issue = {"number": int(n), "title": body["title"], "body": body.get("body"), "state": "open",
                 "labels": [{"name": lb} for lb in body.get("labels", [])],
                 "html_url": f"https://github.com/acme/shop/issues/{n}"}  # fmt: skip
        api.issues[n] = issue
        return 201, issue
    if number not in api.issues:
        return 404, {"message": "Not Found"}
    if comments and method == "POST":
        if not isinstance(body, dict) or set(body) != {"body"} or not isinstance(body["body"], str):
            return 422, {"message": "Validation Failed"}
        api.comments.setdefault(number, []).append(body["body"])
        return 201, {"id": len(api.comments[number]), "body": body["body"]}
    if not comments and method == "PATCH":
        allowed = {"state": {"open", "closed"}, "state_reason": {"completed", "not_planned", "reopened"}}
        if not isinstance(body, dict) or any(k not in allowed or v not in allowed[k] for k, v in body.items()):
            return 422, {"message": "Validation Failed"}
        api.issues[number].update(body)
        return 200, api.issues[number]
    return 404, {"message": "Not Found"}


_TRANSITIONS = [
    {"id": "11", "name": "To Do", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
    {"id": "21", "name": "In Progress", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}},
    {"id": "31", "name": "Done", "to": {"name": "Done", "statusCategory": {"key": "done"}}},
]


def _jira(
    api: FakeApi, method: str, path: str, query: dict[str, list[str]], headers: Any, body: Any
) -> tuple[int, Any]:
    expected = "Basic " + base64.b64encode(f"{JIRA_EMAIL}:{JIRA_TOKEN}".encode()).decode()
    if headers.get("Authorization") != expected:
        return 401, {"errorMessages": ["Client must be authenticated to access this resource."]}
    if path == "/rest/api/3/search/jql" and method == "POST":
        jql = body.get("jql", "") if isinstance(body, dict) else ""
        labels = re.findall(r'labels = "([^"]+)"', jql)
        project = re.search(r'project = "([^"]+)"', jql)
        found = [{"id": i["id"], "key": i["key"], "fields": {"status": {"name": i["status"]}}}
                 for i in api.issues.values()
                 if set(labels) <= set(i["fields"]["labels"])
                 and (project is None or i["fields"]["project"]["key"] == project.group(1))]  # fmt: skip
        return 200, {"issues": found[: int(body.get("maxResults", 50))]}
    if path == "/rest/api/3/issue" and method == "POST":
        fields = body.get("fields") if isinstance(body, dict) else None
        errors = {}
        if not isinstance(fields, dict):
            return 400, {"errorMessages": ["fields is required"], "errors": {}}
        if not isinstance(fields.get("project"), dict) or fields["project"].get("key") != "OPS":
            errors["project"] = "valid project is required"
        if not isinstance(fields.get("issuetype"), dict) or fields["issuetype"].get("name") not in ("Task", "Bug"):
            errors["issuetype"] = "valid issue type is required"
        if not isinstance(fields.get("summary"), str) or not fields["summary"]:
            errors["summary"] = "You must specify a summary of the issue."
        if "description" in fields and not _is_adf(fields["description"]):
            errors["description"] = "Operation value must be an Atlassian Document."
        if set(fields) - {"project", "issuetype", "summary", "description", "labels"}:
            errors["fields"] = "Field cannot be set. It is not on the appropriate screen, or unknown."
        if errors:
            return 400, {"errorMessages": [], "errors": errors}
        n = len(api.issues) + 1
        key = f"OPS-{n}"
        api.issues[key] = {"id": str(10000 + n), "key": key, "status": "To Do", "fields": fields}
        return 201, {"id": str(10000 + n), "key": key, "self": f"{api.url}/rest/api/3/issue/{10000 + n}"}
    match = re.fullmatch(r"/rest/api/3/issue/([A-Z]+-\d+)/(comment|transitions)", path)
    if match is None or match.group(1) not in api.issues:
        return 404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."]}
    key, what = match.groups()
    if what == "comment" and method == "POST":
        if not isinstance(body, dict) or not _is_adf(body.get("body")):
            return 400, {"errorMessages": ["Comment body must be an Atlassian Document."], "errors": {}}
        api.comments.setdefault(key, []).append(body["body"])
        return 201, {"id": str(len(api.comments[key])), "body": body["body"]}
    if what == "transitions" and method == "GET":
        return 200, {"transitions": _TRANSITIONS}
    if what == "transitions" and method == "POST":
        chosen = next((t for t in _TRANSITIONS if t["id"] == (body.get("transition") or {}).get("id")), None)
        if chosen is None:
            return 400, {"errorMessages": ["Transition id is not valid for this issue."], "errors": {}}
        api.issues[key]["status"] = chosen["to"]["name"]
        return 204, None
    return 405, {"errorMessages": ["Method not allowed"]}


def _server(api: FakeApi, route: Any) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = "<not json>"
            with api.lock:
                api.requests.append(Recorded(self.command, parts.path, body))
                once = next((f for f in api.fail_once if f[0] == self.command and re.fullmatch(f[1], parts.path)), None)
                if once is not None:
                    api.fail_once.remove(once)
                    status, payload = once[2], {"message": "Service Unavailable"}
                elif api.fail_next:
                    status, payload = api.fail_next.pop(0), {"message": "Service Unavailable"}
                elif raw and self.headers.get("Content-Type") != "application/json":
                    status, payload = 415, {"message": "Content-Type must be application/json"}
                else:
                    status, payload = route(api, self.command, parts.path, parse_qs(parts.query), self.headers, body)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@contextmanager
def tracker_servers() -> Iterator[tuple[FakeApi, FakeApi]]:
    """A GitHub and a Jira stand-in on free ports of 127.0.0.1 (their ``url``)."""
    github, jira = FakeApi(), FakeApi()
    servers = [_server(github, _github), _server(jira, _jira)]
    for api, server in zip((github, jira), servers, strict=True):
        api.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()  # a quick shutdown
    try:
        yield github, jira
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
