"""A certificate authority of our own, on trustme: TLS on loopback with real checks.

``OwnCA(directory)`` writes ``ca.pem`` and can issue server and client certificates signed by it;
a client trusting only ``ca.pem`` verifies them exactly as it would a public CA's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from smsgate.emulators.tls import LOOPBACK_NAMES


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class OwnCA:
    def __init__(self, directory: Path, name: str = "smsgate test CA") -> None:
        self.directory = directory
        self._ca = trustme.CA(organization_name=name)
        self.pem = directory / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.pem))

    def issue(self, name: str, *, client: bool = False) -> Issued:
        """A leaf certificate for ``name`` (server: also valid for 127.0.0.1, ::1, localhost)."""
        names = [name] if client else list(dict.fromkeys([name, *LOOPBACK_NAMES]))
        leaf = self._ca.issue_cert(*names, common_name=name)
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        issued.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(issued.key))
        return issued

    def server_context(
        self, name: str = "server", *, require_client_cert: bool = False
    ) -> ssl.SSLContext:
        """A server-side context with a certificate for ``name``; optionally demanding a client
        certificate signed by this CA."""
        issued = self.issue(name)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(issued.cert, issued.key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.pem)
        return context
