"""A throw-away certificate authority and HTTPS servers on loopback addresses, and a fake DNS.

``FakeDns`` replaces ``socket.getaddrinfo`` for one test (monkeypatch): names get the
answers the test scripts, one per lookup (the last repeats), and the addresses listed in
``routes`` stand for hosts of the internet served by a local server on another loopback
address, so a connection to a checked public address can be observed on 127.0.0.x.
Nothing on the system (``/etc/hosts``, resolv.conf) is touched.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pytest_httpserver import HTTPServer

_REAL_GETADDRINFO = socket.getaddrinfo


@dataclass
class Tls:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_tls(directory: Path, names: list[str]) -> Tls:
    """A CA and a server certificate for ``names`` (DNS names or IP addresses), written under ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DeployGuard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    tls.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tls


@dataclass
class FakeDns:
    """Scripted DNS answers for names; ``routes`` maps public addresses to local ones that serve them."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.lookups.append(name)
        if name in self.answers:
            script = self.answers[name]
            answer = script[min(self.lookups.count(name), len(script)) - 1]
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (a, int(port or 0)) if ":" not in a else (a, int(port or 0), 0, 0),
                )
                for a in answer
            ]
        if name in self.routes:
            return _REAL_GETADDRINFO(self.routes[name], port, family, type, proto, flags)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, f"fake DNS has no answer for {name}") from None
        return _REAL_GETADDRINFO(name, port, family, type, proto, flags)


class _PromptHTTPServer(HTTPServer):  # type: ignore[misc]
    """pytest-httpserver's server, told to stop within 20 ms rather than its serve_forever's 0.5 s poll (half a
    second of a test's teardown per server, for nothing)."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


@contextmanager
def https_servers(tls: Tls, hosts: list[str]) -> Iterator[list[HTTPServer]]:
    """One HTTPS server per loopback address in ``hosts``, all on the same port."""
    servers: list[HTTPServer] = []
    try:
        port = 0
        for host in hosts:
            server = _PromptHTTPServer(host=host, port=port, ssl_context=tls.server_context())
            server.start()
            port = server.port
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            if server.is_running():
                server.clear()
                server.stop()
