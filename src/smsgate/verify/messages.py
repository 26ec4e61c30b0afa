"""The text that carries a code: per-locale templates, plus origin-bound lines phones autofill.

Every built-in template is written in GSM-7 (no character that would switch the message to UCS-2
and cut a segment from 160 to 70 characters) and stays one segment with a 10-digit code, a
20-character app name, a WebOTP line for a short origin and an Android app hash (the tests render
each one that way). A custom template is checked when it is given: it must hold ``{code}`` and may
use ``{app}`` and ``{minutes}``.

Origin-bound formats, both optional (``[verify] webotp_origin`` and ``android_app_hash``):

- WebOTP (browsers): the last line is ``@example.com #123456``, so only pages of that origin can
  read the code through ``navigator.credentials.get({otp: ...})``.
- Android SMS Retriever: the message contains the app's 11-character hash, so the app (and only
  it) receives the text without asking for SMS permission. It is put on its own line before the
  WebOTP line, which must stay last.
"""

from __future__ import annotations

import math
import string

from smsgate.errors import InvalidMessage

#: locale -> (template naming the app, template without it)
TEMPLATES: dict[str, tuple[str, str]] = {
    "en": (
        "Your {app} code is {code}. It expires in {minutes} minutes.",
        "Your verification code is {code}. It expires in {minutes} minutes.",
    ),
    "es": (
        "Tu codigo de {app} es {code}. Caduca en {minutes} minutos.",
        "Tu codigo de verificacion es {code}. Caduca en {minutes} minutos.",
    ),
    "fr": (
        "Votre code {app} est {code}. Il expire dans {minutes} minutes.",
        "Votre code de verification est {code}. Il expire dans {minutes} minutes.",
    ),
    "de": (
        "Ihr {app}-Code lautet {code}. Er läuft in {minutes} Minuten ab.",
        "Ihr Bestätigungscode lautet {code}. Er läuft in {minutes} Minuten ab.",
    ),
    "it": (
        "Il tuo codice {app} è {code}. Scade tra {minutes} minuti.",
        "Il tuo codice di verifica è {code}. Scade tra {minutes} minuti.",
    ),
    "pt": (
        "Seu codigo {app} é {code}. Expira em {minutes} minutos.",
        "Seu codigo de verificacao é {code}. Expira em {minutes} minutos.",
    ),
    "nl": (
        "Je {app}-code is {code}. Deze verloopt over {minutes} minuten.",
        "Je verificatiecode is {code}. Deze verloopt over {minutes} minuten.",
    ),
    "sv": (
        "Din {app}-kod är {code}. Den gäller i {minutes} minuter.",
        "Din verifieringskod är {code}. Den gäller i {minutes} minuter.",
    ),
    "et": (
        "Teie {app} kood on {code}. See aegub {minutes} minuti pärast.",
        "Teie kinnituskood on {code}. See aegub {minutes} minuti pärast.",
    ),
}
_FIELDS = frozenset({"code", "app", "minutes"})


def locale_of(locale: str | None, default: str) -> str:
    """The template locale for ``locale`` (``pt-BR`` uses ``pt``); unknown ones use ``default``."""
    for candidate in (locale, default):
        if candidate:
            base = candidate.replace("_", "-").split("-", 1)[0].lower()
            if base in TEMPLATES:
                return base
    return "en"


def check_template(template: str, field: str = "template") -> str:
    """Refuse a custom template that cannot carry a code (with the field and the fix)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise InvalidMessage(
            f"{field}: {exc}; write {{code}} where the code goes (double braces for a brace)",
            field=field,
        ) from None
    if "code" not in names:
        raise InvalidMessage(
            f'{field}: the template has no {{code}}; write e.g. "Your code is {{code}}"',
            field=field,
        )
    unknown = names - _FIELDS
    if unknown:
        raise InvalidMessage(
            f"{field}: unknown placeholder {{{sorted(unknown)[0]}}}; use {{code}}, {{app}} or "
            "{minutes}",
            field=field,
        )
    if len(template) > 600:
        raise InvalidMessage(f"{field}: at most 600 characters", field=field)
    return template


def render(
    code: str,
    *,
    ttl: float,
    locale: str | None = None,
    default_locale: str = "en",
    app_name: str | None = None,
    template: str | None = None,
    webotp_origin: str | None = None,
    android_app_hash: str | None = None,
) -> str:
    """The message for ``code``."""
    minutes = max(1, math.ceil(ttl / 60))
    if template is None:
        with_app, without_app = TEMPLATES[locale_of(locale, default_locale)]
        template = with_app if app_name else without_app
    text = template.format(code=code, app=app_name or "", minutes=minutes)
    lines = [text]
    if android_app_hash:
        lines.append(android_app_hash)
    if webotp_origin:
        lines.append(f"@{webotp_origin} #{code}")
    return "\n".join(lines)
