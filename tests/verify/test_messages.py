"""The texts: GSM-7 and one segment in every locale, origin-bound lines last."""

from __future__ import annotations

import pytest

import smsgate
from smsgate.errors import InvalidMessage
from smsgate.verify.messages import TEMPLATES, check_template, locale_of, render


@pytest.mark.parametrize("locale", sorted(TEMPLATES))
@pytest.mark.parametrize("app_name", [None, "A" * 20])
def test_every_locale_is_gsm7_and_one_segment(locale: str, app_name: str | None) -> None:
    text = render(
        "1234567890",
        ttl=600,
        locale=locale,
        app_name=app_name,
        webotp_origin="accounts.example.com",
        android_app_hash="FA+9qCX9VSu",
    )
    info = smsgate.segments(text)
    assert (info.encoding, info.segments) == ("GSM-7", 1), (locale, text)
    assert "1234567890" in text and "10" in text


def test_webotp_line_is_last_and_the_app_hash_before_it() -> None:
    text = render("482913", ttl=300, webotp_origin="example.com", android_app_hash="FA+9qCX9VSu")
    lines = text.splitlines()
    assert lines[-1] == "@example.com #482913"
    assert lines[-2] == "FA+9qCX9VSu"
    assert lines[0] == "Your verification code is 482913. It expires in 5 minutes."


def test_locales_fall_back() -> None:
    assert locale_of("pt-BR", "en") == "pt"
    assert locale_of("de_AT", "en") == "de"
    assert locale_of("xx", "fr") == "fr"
    assert locale_of(None, "zz") == "en"


def test_custom_templates_are_checked() -> None:
    assert render("1234", ttl=60, template="{code} for {app}", app_name="X") == "1234 for X"
    for bad in ("no code here", "{code} {nope}", "{code", "x" * 601 + "{code}"):
        with pytest.raises(InvalidMessage) as exc:
            check_template(bad)
        assert exc.value.field == "template"
