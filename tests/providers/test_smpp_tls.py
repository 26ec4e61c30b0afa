"""SMPP over TLS: the provider's ``tls=`` against the emulator's TLS listener, over loopback.

The emulator serves a certificate from a CA it makes at start (or one given to it); the
provider trusts that CA through ``ca_file=`` and checks the certificate as it would a public
SMSC's. A certificate it cannot trust is refused at once with an error naming the fix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from smsgate.emulators.base import Callbacks
from smsgate.emulators.smpp import SmppEmulator
from smsgate.emulators.tls import generate_tls_files
from smsgate.errors import ConfigError, ProviderUnavailable, TransientError
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.smpp import QueueSink, SmppProvider
from tests.providers.contract import with_options

TO = "+4915112345678"


@asynccontextmanager
async def smsc(**kwargs: Any) -> AsyncIterator[SmppEmulator]:
    emulator = SmppEmulator(callbacks=Callbacks(delay=0.01), **kwargs)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def provider_for(url: str, **options: str) -> SmppProvider:
    provider = create_provider(with_options(url, **options))
    assert isinstance(provider, SmppProvider)
    return provider


def test_a_tls_bind_submits_and_receives_receipts() -> None:
    async def main() -> None:
        async with smsc(tls=True) as emulator:
            url = emulator.provider_url()
            assert "tls=true" in url and "ca_file=" in url
            provider = provider_for(url)
            sink = QueueSink()
            await provider.alisten(sink)
            message = Message(to=TO, body="over TLS " * 30, sender="MyApp")
            result = await provider.asend(message)
            event = await asyncio.wait_for(sink.deliveries.get(), 5)
            connection = provider._tx
            assert connection is not None
            tls = connection.writer.get_extra_info("ssl_object")
            await provider.aclose()
            assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3")
            assert result.status == Status.SENT and result.segments == 2
            assert emulator.messages[0].body == message.body
            # The receipts of both parts came back over the TLS bind, folded into one.
            assert event.message_id == message.id and event.status == Status.DELIVERED
            assert "2 parts" in (event.reason or "")
            assert emulator.connections == emulator.tls_connections == 1

    asyncio.run(main())


def test_an_untrusted_certificate_is_refused_at_once_naming_the_fix(tmp_path: Path) -> None:
    other_ca = generate_tls_files(["127.0.0.1"], tmp_path).ca_file

    async def main() -> None:
        async with smsc(tls=True) as emulator:
            plain = emulator.provider_url().split("&ca_file=")[0]
            for url in (plain, f"{plain}&ca_file={other_ca}"):
                # connect_timeout is long: a refused certificate must not be retried until then.
                provider = provider_for(url, connect_timeout="30")
                started = time.monotonic()
                with pytest.raises(ProviderUnavailable) as info:
                    await provider.asend(Message(to=TO, body="hi", sender="MyApp"))
                await provider.aclose()
                assert time.monotonic() - started < 5
                error = info.value
                assert error.field == "ca_file" and error.failover
                assert "certificate of the SMSC at 127.0.0.1" in str(error)
                assert "not trusted" in str(error) and "ca_file=PATH" in str(error)
            assert emulator.binds == 0 and emulator.submits == 0

    asyncio.run(main())


def test_tls_against_a_plain_smpp_port_says_to_check_tls() -> None:
    async def main() -> None:
        async with smsc() as emulator, smsc(tls=True) as trusted:
            assert trusted.tls_files is not None
            url = f"{emulator.provider_url()}&tls=true&ca_file={trusted.tls_files.ca_file}"
            provider = provider_for(url, connect_timeout="0.3", backoff="0.05")
            with pytest.raises(TransientError) as info:
                await provider.asend(Message(to=TO, body="hi", sender="MyApp"))
            await provider.aclose()
            # The SMSC hangs up on a TLS hello: nothing was sent, and the error says what to
            # check.
            assert f"127.0.0.1:{emulator.smpp_port} over TLS" in str(info.value)
            assert "TLS port" in str(info.value)
            assert emulator.binds == 0 and emulator.submits == 0

    asyncio.run(main())


def test_a_ca_file_that_is_missing_or_not_pem_is_refused_where_the_url_is_read(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    url = "smpp://acme:pw@127.0.0.1:2775?from=Acme&tls=true"
    for path in (tmp_path / "missing.pem", garbage):
        with pytest.raises(ConfigError) as info:
            provider_for(f"{url}&ca_file={path}")
        assert info.value.field == "ca_file" and path.name in str(info.value)
        assert "PEM" in str(info.value)


def test_the_emulator_serves_a_certificate_of_ones_own(tmp_path: Path) -> None:
    files = generate_tls_files(["127.0.0.1"], tmp_path)

    async def main() -> None:
        async with smsc(tls_cert=str(files.cert_file), tls_key=str(files.key_file)) as emulator:
            url = emulator.provider_url()
            assert "tls=true" in url and "ca_file" not in url  # the CA is the caller's
            provider = provider_for(f"{url}&ca_file={files.ca_file}")
            result = await provider.asend(Message(to=TO, body="own certificate", sender="MyApp"))
            await provider.aclose()
            assert result.status == Status.SENT and emulator.tls_connections == 1

    asyncio.run(main())
    with pytest.raises(ValueError, match="tls_cert and tls_key together"):
        SmppEmulator(tls_cert=str(files.cert_file))


def test_a_client_certificate_from_the_transport_options(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("esme.example")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "client")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))

    async def main() -> None:
        async with smsc(
            tls_cert=str(paths["cert"]),
            tls_key=str(paths["key"]),
            tls_client_ca=str(paths["ca"]),
        ) as emulator:
            url = f"{emulator.provider_url()}&ca_file={paths['ca']}"
            provider = provider_for(url, client_cert=str(paths["client"]))
            result = await provider.asend(Message(to=TO, body="mutual TLS", sender="MyApp"))
            await provider.aclose()
            assert result.status == Status.SENT and emulator.binds == 1
            # Without the client certificate the SMSC hangs up on the bind (TLS 1.3 judges it
            # after the handshake): no bind, no submit, and the error names client_cert.
            anonymous = provider_for(url, connect_timeout="0.3", backoff="0.05")
            with pytest.raises(TransientError) as info:
                await anonymous.asend(Message(to=TO, body="anonymous", sender="MyApp"))
            await anonymous.aclose()
            assert "client_cert=" in str(info.value)
            assert emulator.binds == 1 and emulator.submits == 1

    asyncio.run(main())
