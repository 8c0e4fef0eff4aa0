"""boto3 clients, created lazily and once per container.

Every AWS call of DeployGuard goes through a client from here, so that:
- throttled calls are retried with backoff (botocore ``adaptive`` retry mode);
- a local endpoint (``DEPLOYGUARD_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``) applies to all;
- the embedded AWS (moto, in-process) can reset the cache between runs.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config

_RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    connect_timeout=5,
    read_timeout=30,
)

# one HTTP attempt per call: for callers that retry themselves within a deadline of their own
_SINGLE_ATTEMPT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=5,
    read_timeout=10,
)

_clients: dict[str, Any] = {}
_resources: dict[str, Any] = {}
_tables: dict[str, tuple[Any, Any]] = {}
_lock = threading.Lock()


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def endpoint_url() -> str | None:
    return os.environ.get("DEPLOYGUARD_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


def client(service: str, *, retries: bool = True) -> Any:
    """The one boto3 client of ``service`` for this container.

    ``retries=False``: a client that makes one HTTP attempt per call, for a caller that
    retries within its own deadline (the hook's status call must land before it).
    """
    # the endpoint and region are part of the key: a client made for another endpoint is never reused
    key = f"{service}#{'retries' if retries else 'single-attempt'}#{endpoint_url()}#{region()}"
    cached = _clients.get(key)
    if cached is not None:
        return cached
    with _lock:
        if key not in _clients:
            _clients[key] = boto3.client(
                service,
                region_name=region(),
                endpoint_url=endpoint_url(),
                config=_RETRY_CONFIG if retries else _SINGLE_ATTEMPT_CONFIG,
            )
        return _clients[key]


def resource(service: str) -> Any:
    key = f"{service}#{endpoint_url()}#{region()}"
    cached = _resources.get(key)
    if cached is not None:
        return cached
    with _lock:
        if key not in _resources:
            _resources[key] = boto3.resource(
                service, region_name=region(), endpoint_url=endpoint_url(), config=_RETRY_CONFIG
            )
        return _resources[key]


def table(name: str) -> Any:
    """The DynamoDB Table resource ``name`` of this container's resource, made once (boto3 builds a
    sub-resource's class again at every ``Table(name)``: ~2 ms of CPU each)."""
    parent = resource("dynamodb")
    cached = _tables.get(name)
    if cached is None or cached[0] is not parent:
        cached = (parent, parent.Table(name))
        _tables[name] = cached
    return cached[1]


def reset() -> None:
    """Forget every cached client (the embedded AWS calls this when it starts)."""
    with _lock:
        _clients.clear()
        _resources.clear()
        _tables.clear()
