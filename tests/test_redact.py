"""The package's one redaction format, and every place a URL is shown using it."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from smsgate.config import Config
from smsgate.errors import ConfigError
from smsgate.outbox.store import StoreURL
from smsgate.providers import available_providers, create_provider
from smsgate.providers.base import Provider
from smsgate.providers.url import ProviderURL
from smsgate.redact import redact_settings, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "twilio://AC0123456789abcdef:tok3n@+15017122661",
            "twilio://AC0123456789abcdef:***@+15017122661",
        ),
        ("vonage://abc123:s3cret@MyApp", "vonage://abc123:***@MyApp"),
        ("telnyx://KEY0123456789@+14155550100", "telnyx://***@+14155550100"),
        # SMSPM's user part is its API hash: hidden with the password (which holds an "@")
        ("smspm://HASH:to@ken@MyApp", "smspm://***@MyApp"),
        (
            "smsroute://KEY@MyApp?base_url=http://127.0.0.1:9000",
            "smsroute://***@MyApp?base_url=http://127.0.0.1:9000",
        ),
        (
            "smtp://me:pw@smtp.example.com:587?from=me@example.com",
            "smtp://me:***@smtp.example.com:587?from=me@example.com",
        ),
        (
            "vonage://k:s@MyApp?base_url=http://127.0.0.1:8080&api_secret=zz&signature_secret=yy#x",
            "vonage://k:***@MyApp?base_url=http://127.0.0.1:8080&api_secret=***&signature_secret=***#***",
        ),
        # a nested URL is redacted by the same rules; a proxy option is hidden whole
        (
            "twilio://AC1:t@+1?base_url=https://u:p@api.example.com/v1",
            "twilio://AC1:***@+1?base_url=https://***@api.example.com/v1",
        ),
        ("twilio://AC1:t@+1?proxy=http://u:p@127.0.0.1:3128", "twilio://AC1:***@+1?proxy=***"),
        # an unknown scheme's user part may be a key
        ("acme://user:pw@host?api_key=k&region=eu", "acme://***@host?api_key=***&region=eu"),
        ("sandbox://", "sandbox://"),
        ("sqlite:///var/lib/smsgate.db", "sqlite:///var/lib/smsgate.db"),
        ("postgresql://app:pw@db:5432/sms", "postgresql://app:***@db:5432/sms"),
        (
            "postgresql://app@db/sms?sslpassword=x&sslmode=require",
            "postgresql://app@db/sms?sslpassword=***&sslmode=require",
        ),
        # an http(s) URL's query may be its token whatever the name: every value hidden
        (
            "https://u:p@example.com/hook?sig=abc&n=1#frag",
            "https://***@example.com/hook?sig=***&n=***#***",
        ),
        ("https://TOKEN@example.com/hook", "https://***@example.com/hook"),
        # a password holding "?" unencoded: the part before it may be half the password
        ("https://user:pa?ss@host/x", "https://***@host/x"),
        ("not a url with user:pass@host", "***@host"),
        ("twilio:SID:TOKEN", "***"),
        ("plain-name", "plain-name"),
        ("api.example.com/v1?key=K&x=1#F", "api.example.com/v1?key=***&x=***#***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_settings_hides_secret_names_and_urls() -> None:
    settings = {
        "api_keys": ["a", "b"],
        "host": "0.0.0.0",
        "nested": {"webhook_secret": "x", "callback": "https://u:p@example.com/hook", "port": 1},
    }
    assert redact_settings(settings) == {
        "api_keys": "***",
        "host": "0.0.0.0",
        "nested": {
            "webhook_secret": "***",
            "callback": "https://***@example.com/hook",
            "port": 1,
        },
    }


@pytest.mark.parametrize("provider", available_providers(), ids=lambda p: p.scheme)
def test_every_place_shows_a_provider_url_in_the_same_format(provider: type[Provider]) -> None:
    """ProviderURL.masked, config check's summary and redact_url agree, and hide every secret."""
    secrets = {o.name: f"S3CRET{o.name}" for o in provider.declared_options().values() if o.secret}
    # what each scheme needs beyond credentials to be a URL a config accepts
    needed = {"smtp": {"from": "me%40example.com"}}.get(provider.scheme, {})
    query = "&".join(f"{k}={v}" for k, v in {**needed, **secrets}.items())
    # 8 characters: SMPP 3.4 caps a bind password there
    url = f"{provider.scheme}://USERPART:PWSECRET@host" + (f"?{query}" if query else "")
    expected = redact_url(url)
    assert ProviderURL.parse(url).masked() == expected
    config = Config.from_dict({"providers": {"p": {"url": url}}})
    assert config.masked()["providers"]["p"]["url"] == expected
    for secret in ["PWSECRET", *secrets.values()]:
        assert secret not in expected
    assert ("USERPART" in expected) is not provider.secret_username


def test_the_store_and_transport_errors_use_the_same_format() -> None:
    url = "postgresql://app:PGSECRET@127.0.0.1:5432/sms?sslpassword=KEYSECRET"
    assert (
        StoreURL.parse(url).masked
        == redact_url(url)
        == ("postgresql://app:***@127.0.0.1:5432/sms?sslpassword=***")
    )
    base = "https://user:PW@api.example.com:8443/v1?key=K"
    with pytest.raises(ConfigError) as info:
        create_provider("twilio://AC123:TOKEN@+15017122661?base_url=" + quote(base, safe=""))
    assert repr(redact_url(base)) in info.value.message
    assert "PW" not in info.value.message and "TOKEN" not in info.value.message
