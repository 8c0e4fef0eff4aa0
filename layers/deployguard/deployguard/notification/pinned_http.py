"""Sessions pinned to a checked address (:func:`pinned_session`): every request goes to the one address
:mod:`deployguard.notification.urlsafety` checked (imported with ``requests`` only when something is sent)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from deployguard.notification.urlsafety import CheckedTarget, _default_port, redact

SocketHook = Callable[[socket.socket], None]


def _pinned(cls: type[HTTPConnection], address: str, on_socket: SocketHook | None = None) -> type[HTTPConnection]:
    """A urllib3 connection class that connects to ``address`` whatever its host name resolves to now;
    ``on_socket`` is told every socket it opens (so that a watchdog can shut it down), before any TLS:
    wrapping detaches that object, so a hook that must reach the connection later keeps a ``dup()``."""

    class Pinned(cls):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> socket.socket:
            # urllib3 opens the socket to _dns_host: the checked address for this one call;
            # outside it the host stays the name, for SNI, the certificate check and Host
            name: str = self._dns_host  # type: ignore[has-type]
            self._dns_host = address
            try:
                sock: socket.socket = super()._new_conn()
            finally:
                self._dns_host = name
            if on_socket is not None:
                on_socket(sock)
            return sock

    return Pinned


class PinnedAdapter(HTTPAdapter):
    """A requests transport that sends every request to one checked address, for one host only."""

    def __init__(self, target: CheckedTarget, on_socket: SocketHook | None = None) -> None:
        if not target.address:
            raise ValueError("a target checked without resolution cannot be connected to")
        self.target = target
        self.on_socket = on_socket
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        address = self.target.address
        hook = self.on_socket
        http_pool = type(
            "PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": _pinned(HTTPConnection, address, hook)}
        )
        https_pool = type(
            "PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": _pinned(HTTPSConnection, address, hook)}
        )
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        if (parts.hostname or "").lower().rstrip(".") != self.target.host or (
            parts.port or _default_port(parts.scheme)
        ) != self.target.port:
            raise requests.exceptions.InvalidURL(f"{redact(request.url or '')} is not the checked target")
        return super().send(request, **kwargs)


def pinned_session(target: CheckedTarget, on_socket: SocketHook | None = None) -> requests.Session:
    """A session whose requests go only to ``target``'s checked address; no proxy, no redirect;
    ``on_socket`` is told each socket it connects.
    (Callers import this module when they first send: a function that only checks URLs does not pay for
    ``requests``.)"""
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would resolve the name again
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle  # a custom CA bundle still applies (trust_env is off)
    adapter = PinnedAdapter(target, on_socket)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
