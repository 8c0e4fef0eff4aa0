"""Validation of outbound URLs (webhooks, health checks): no SSRF from configuration.

Rules: ``https`` only (``http`` too in local mode); no user info in the URL; the host
must be on the allowlist (``example.com`` exactly, ``*.example.com`` any subdomain);
addresses that are private, loopback, link-local (the instance metadata service),
multicast, reserved or unspecified are refused, both as literals and, when
``resolve`` is set, as what the host name resolves to. In local mode loopback
hosts (``127.0.0.1``, ``localhost``, ``::1``) are allowed without the allowlist.

Redirects are never followed by DeployGuard's HTTP delivery, so a safe URL cannot
bounce to an unsafe one. Messages never contain the URL's path or query: webhook URLs
are secrets.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from deployguard.exceptions import ConfigError

Resolver = Callable[[str], list[str]]

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _system_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def redact(url: str) -> str:
    """A URL safe to log: scheme and host only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme or '?'}://{host}/…"


def host_allowed(host: str, allowlist: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowlist:
        pattern = pattern.lower().strip().rstrip(".")
        if not pattern:
            continue
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif fnmatch.fnmatchcase(host, pattern):
            return True
    return False


def _unsafe_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _unsafe_address(address.ipv4_mapped)
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
    )
    for name, hit in checks:
        if hit:
            return name
    if not address.is_global:
        return "non-global"
    return None


def validate_outbound_url(
    url: str,
    allowlist: Iterable[str],
    local_mode: bool,
    *,
    field: str | None = None,
    resolve: bool = False,
    resolver: Resolver | None = None,
) -> str:
    """Return ``url`` if DeployGuard may call it, else raise :class:`ConfigError`.

    ``field`` names the configuration field in the message. With ``resolve`` the host
    name is resolved (``resolver`` or the system's) and every address must be safe.
    """

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"URL {redact(url)} refused: {reason}", field=field)

    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise refuse("not a valid URL") from exc
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if local_mode else ("https",)
    if scheme not in allowed_schemes:
        raise refuse("https is required" if scheme == "http" else f"scheme {scheme or 'missing'!r} not allowed")
    if not host:
        raise refuse("no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("credentials in the URL are not allowed")
    if port == 0:
        raise refuse("port 0")
    host = host.lower().rstrip(".")

    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None

    is_loopback = host in _LOOPBACK_NAMES or (literal is not None and literal.is_loopback)
    if local_mode and is_loopback:
        return url
    if not host_allowed(host, allowlist):
        raise refuse(f"host {host} is not on the allowlist")
    if literal is not None:
        reason = _unsafe_address(literal)
        if reason:
            raise refuse(f"{reason} address")
        return url
    if host in _LOOPBACK_NAMES:
        raise refuse("loopback address")
    if resolve:
        try:
            addresses = (resolver or _system_resolver)(host)
        except OSError as exc:
            raise refuse(f"host {host} does not resolve") from exc
        if not addresses:
            raise refuse(f"host {host} does not resolve")
        for text in addresses:
            reason = _unsafe_address(ipaddress.ip_address(text))
            if reason:
                raise refuse(f"host {host} resolves to a {reason} address")
    return url
