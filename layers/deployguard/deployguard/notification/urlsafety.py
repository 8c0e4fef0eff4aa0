"""Outbound connections that go where they were checked: no SSRF from configuration.

Every outbound path (Slack, Teams, PagerDuty and webhook deliveries, the hook's ``http``
and ``tcp`` checks) goes through :func:`check_outbound`, which resolves the host **once**
and returns a :class:`CheckedTarget` carrying the checked address; the connection is
then made to that address (:func:`pinned_session`, :func:`open_tcp`), with the host
name kept for TLS (SNI, certificate) and the ``Host`` header. A second DNS answer can
never change where the request goes (DNS rebinding).

Rules:

- ``https`` only (``http`` too in local mode); no user info in the URL; port not 0;
- the host is a valid DNS name (labels of 1 to 63 characters, 253 in all) or an IP
  literal; legacy numeric forms (``2130706433``, ``0x7f000001``, ``0177.0.0.1``,
  ``127.1``, ``0``) are refused, as they mean an address to some resolvers;
- the host is on the allowlist (``example.com`` exactly, ``*.example.com`` any
  subdomain); an allowlist entry that is only wildcards (``*``, ``*.*``, ``*.com``) is
  refused when the configuration loads (:func:`check_allowlist`);
- every address the name resolves to, or the literal, is public: private, loopback,
  link-local (the instance metadata service), multicast, reserved, unspecified and
  shared addresses are refused, and so is every IPv6 address that embeds IPv4
  (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo);
- local mode (``DEPLOYGUARD_LOCAL=1``) allows a loopback receiver only when its host
  (``127.0.0.1``, ``::1`` or ``localhost``) is listed on the allowlist itself: an
  explicit opt-in; no other name may resolve to loopback, even locally.

Redirects are never followed (every caller sends ``allow_redirects=False`` and a 3xx
fails the attempt), so a safe URL cannot bounce to an unsafe one, and the environment's
proxy settings are ignored (a proxy would resolve the name again). Messages never
contain the URL's path or query: webhook URLs are secrets.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from deployguard.exceptions import ConfigError

Resolver = Callable[[str], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_URL_LENGTH = 2048
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _system_resolver(host: str) -> list[str]:
    """Every address of ``host``, IPv4 first, else in the resolver's order (the first is the one used)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    found = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    return sorted(found, key=lambda a: ":" in a)


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed the checks, and the one address a connection to it may use."""

    url: str
    scheme: str
    host: str  # the name as checked (lower case, IDNA): SNI, certificate and Host header
    port: int
    address: str  # the checked IP address the connection goes to

    @property
    def display(self) -> str:
        return f"{self.scheme}://{self.host}/…"


def redact(url: str) -> str:
    """A URL safe to log: scheme and host only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme or '?'}://{host}/…"


def check_allowlist(patterns: Iterable[str]) -> list[str]:
    """The allowlist, or ValueError naming the entry that would allow (nearly) every host.

    Entries are host names (``hooks.example.com``), IP literals, or ``*.`` followed by a
    domain of at least two labels (``*.example.com``). ``*``, ``*.*``, ``*.com`` and any
    other wildcard are refused.
    """
    checked: list[str] = []
    for i, raw in enumerate(patterns):
        pattern = raw.strip().lower().rstrip(".")
        suffix = pattern[2:] if pattern.startswith("*.") else pattern
        if not suffix or set(suffix) <= set("*.?"):
            raise ValueError(f"allowed_hosts.{i}: {raw!r} allows every host; list the hosts (or *.domain.tld)")
        if any(ch in suffix for ch in "*?[]"):
            raise ValueError(f"allowed_hosts.{i}: {raw!r}: only a leading '*.' may be a wildcard")
        if pattern.startswith("*.") and "." not in suffix:
            raise ValueError(f"allowed_hosts.{i}: {raw!r} allows a whole top-level domain; name the domain")
        checked.append(raw)
    return checked


def _canonical(host: str) -> str:
    host = host.lower().strip().rstrip(".").strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def host_allowed(host: str, allowlist: Iterable[str]) -> bool:
    """``host`` equals an entry, or is a subdomain of a ``*.domain`` entry."""
    host = _canonical(host)
    for pattern in allowlist:
        pattern = _canonical(pattern)
        if not pattern:
            continue
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def unsafe_reason(address: IPAddress) -> str | None:
    """Why a connection to ``address`` is refused, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6"
        if address.sixtofour is not None:
            return "6to4 IPv6 (embeds IPv4)"
        if address.teredo is not None:
            return "Teredo IPv6 (embeds IPv4)"
        if any(address in net for net in _NAT64):
            return "NAT64 IPv6 (embeds IPv4)"
        if address in _IPV4_COMPATIBLE and not address.is_unspecified and not address.is_loopback:
            return "IPv4-compatible IPv6"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    if not address.is_global:
        return "non-global"
    return None


def _normalize_host(host: str) -> str:
    """The host in lower-case ASCII (IDNA), or ValueError saying why it is not a host name."""
    host = host.lower().rstrip(".")
    if ":" in host:  # an IPv6 literal: urlsplit has removed the brackets
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError("not a valid IPv6 address") from None
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise ValueError("not a valid host name") from exc
    if len(ascii_host) > 253:
        raise ValueError("host name longer than 253 characters")
    labels = ascii_host.split(".")
    for label in labels:
        if len(label) > 63:
            raise ValueError(f"a label of the host name is {len(label)} characters long, at most 63 are allowed")
        if not _LABEL.match(label):
            raise ValueError("not a valid host name")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            ipaddress.IPv4Address(ascii_host)
        except ValueError:
            raise ValueError(
                "a numeric host must be a dotted-quad IPv4 address (no 127.1, 0x7f000001, 0177.0.0.1)"
            ) from None
    return ascii_host


def check_outbound(
    url: str,
    allowlist: Iterable[str],
    local_mode: bool,
    *,
    field: str | None = None,
    resolve: bool = True,
    resolver: Resolver | None = None,
) -> CheckedTarget:
    """Check ``url`` and resolve its host once; raise :class:`ConfigError` naming ``field`` if refused.

    Without ``resolve`` (configuration checks at load time) a host name is checked but
    not resolved, and the target's ``address`` is empty: such a target is for
    validation only, never for a connection.
    """

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"URL {redact(url)} refused: {reason}", field=field)

    if len(url) > MAX_URL_LENGTH:
        raise ConfigError(f"URL refused: longer than {MAX_URL_LENGTH} characters", field=field)
    try:
        parts = urlsplit(url.strip())
        raw_host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise refuse("not a valid URL") from exc
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if local_mode else ("https",)
    if scheme not in allowed_schemes:
        raise refuse("https is required" if scheme == "http" else f"scheme {scheme or 'missing'!r} not allowed")
    if not raw_host:
        raise refuse("no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("credentials in the URL are not allowed")
    if port == 0:
        raise refuse("port 0")
    try:
        host = _normalize_host(raw_host)
    except ValueError as exc:
        raise refuse(str(exc)) from None

    allowlist = list(allowlist)
    loopback_opt_in = local_mode and host in LOOPBACK_HOSTS and host in {_canonical(p) for p in allowlist}
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        reason = unsafe_reason(literal)
        if reason and not (reason == "loopback" and (loopback_opt_in or local_mode)):
            raise refuse(f"{reason} address")
    if not host_allowed(host, allowlist):
        if host in LOOPBACK_HOSTS and local_mode:
            raise refuse(f"loopback receivers need {host} on the allowlist (explicit opt-in, local mode only)")
        raise refuse(f"host {host} is not on the allowlist")
    if literal is None and not resolve:
        if host in LOOPBACK_HOSTS and not loopback_opt_in:
            raise refuse("loopback address")
        return CheckedTarget(url, scheme, host, port or _default_port(scheme), "")
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = (resolver or _system_resolver)(host)
        except (OSError, UnicodeError) as exc:
            raise refuse(f"host {host} does not resolve") from exc
        if not addresses:
            raise refuse(f"host {host} does not resolve")
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise refuse(f"host {host} resolves to something that is not an address") from None
        reason = unsafe_reason(address)
        if reason == "loopback" and loopback_opt_in:
            continue
        if reason:
            raise refuse(f"{reason} address" if literal is not None else f"host {host} resolves to a {reason} address")
    return CheckedTarget(url, scheme, host, port or _default_port(scheme), addresses[0])


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def validate_outbound_url(
    url: str,
    allowlist: Iterable[str],
    local_mode: bool,
    *,
    field: str | None = None,
    resolve: bool = False,
    resolver: Resolver | None = None,
) -> str:
    """Return ``url`` if DeployGuard may call it, else raise :class:`ConfigError` (a load-time check)."""
    check_outbound(url, allowlist, local_mode, field=field, resolve=resolve, resolver=resolver)
    return url


# --------------------------------------------------------------------------- connections


def open_tcp(target: CheckedTarget, timeout: float) -> socket.socket:
    """A TCP connection to the checked address of ``target`` (never resolved again)."""
    if not target.address:
        raise ValueError("a target checked without resolution cannot be connected to")
    return socket.create_connection((target.address, target.port), timeout=timeout)
