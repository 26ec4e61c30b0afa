"""Throwaway certificate authorities for emulators that speak TLS, on trustme.

An emulator that speaks TLS (the SMTP emulator's STARTTLS and implicit TLS) needs a CA its client
can be told to trust; trustme makes one that Python's ``ssl`` verifies like a public CA's, so the
emulators and the tests keep no certificate-building code of their own. (The AWS emulator's SNS
signing certificate is the exception, built in ``emulators/aws.py``, which says why.)
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

#: the names every loopback certificate answers to, besides those asked for
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of a CA and of a server certificate it signed (with its private key)."""

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path


def generate_tls_files(hosts: list[str], directory: Path | None = None) -> TlsFiles:
    """A throwaway CA and a server certificate it signs, valid for ``hosts`` and loopback."""
    import trustme  # here, not at import: it loads cryptography, which start-up does not need

    directory = directory or Path(tempfile.mkdtemp(prefix="smsgate-tls-"))
    ca = trustme.CA(organization_name="smsgate emulator")
    leaf = ca.issue_cert(*dict.fromkeys([*LOOPBACK_NAMES, *hosts]), common_name="localhost")
    files = TlsFiles(directory, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    files.key_file.touch(mode=0o600)
    leaf.private_key_pem.write_to_path(str(files.key_file))
    return files
