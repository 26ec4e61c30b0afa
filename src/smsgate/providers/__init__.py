"""The provider registry: ``create_provider("twilio://SID:TOKEN@+15017122661")``.

Provider modules are imported only when their scheme is used, so adding providers costs nothing
at start-up. To add one: write ``providers/<name>.py`` on :class:`~smsgate.providers.base.Provider`,
add a row here, an emulator in ``emulators/``, and a test module on the shared contract tests.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from smsgate.errors import ConfigError
from smsgate.providers.base import HttpProvider, ProviderInfo
from smsgate.providers.transport import validate_base_url

if TYPE_CHECKING:
    from smsgate.providers.base import Provider

PROVIDERS: dict[str, ProviderInfo] = {
    info.scheme: info
    for info in (
        ProviderInfo(
            "twilio",
            "smsgate.providers.twilio",
            "TwilioProvider",
            "twilio://SID:TOKEN@+15017122661",
        ),
        ProviderInfo(
            "smspm", "smsgate.providers.smspm", "SmspmProvider", "smspm://HASH:TOKEN@MyApp"
        ),
        ProviderInfo(
            "smsroute", "smsgate.providers.smsroute", "SmsrouteProvider", "smsroute://KEY@MyApp"
        ),
        ProviderInfo(
            "vonage", "smsgate.providers.vonage", "VonageProvider", "vonage://KEY:SECRET@MyApp"
        ),
        ProviderInfo(
            "plivo",
            "smsgate.providers.plivo",
            "PlivoProvider",
            "plivo://AUTH_ID:TOKEN@+14155550100",
        ),
        ProviderInfo(
            "telnyx",
            "smsgate.providers.telnyx",
            "TelnyxProvider",
            "telnyx://KEY@+14155550100?profile=ID",
        ),
        ProviderInfo(
            "smtp",
            "smsgate.providers.smtp",
            "SmtpProvider",
            "smtp://USER:PASS@smtp.example.com:587?from=me@example.com",
            aliases=("smtps",),
        ),
    )
}
_ALIASES = {alias: info.scheme for info in PROVIDERS.values() for alias in info.aliases}


def provider_class(scheme: str) -> type[Provider]:
    scheme = _ALIASES.get(scheme.lower(), scheme.lower())
    info = PROVIDERS.get(scheme)
    if info is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown provider scheme {scheme!r}; known: {known}", field="provider")
    try:
        module = import_module(info.module)
    except ModuleNotFoundError as exc:
        if exc.name == info.module:
            raise ConfigError(
                f"provider {scheme!r} is not available in this build", field="provider"
            ) from None
        raise
    cls: type[Provider] = getattr(module, info.cls)
    return cls


def create_provider(url: str, *, name: str | None = None, **overrides: Any) -> Provider:
    """Build a provider from its URL; ``overrides`` set constructor options (e.g. ``clock``)."""
    from smsgate.providers.url import ProviderURL

    parsed = ProviderURL.parse(url)
    provider = provider_class(parsed.scheme).from_url(parsed, name=name)
    for key, value in overrides.items():
        if not hasattr(provider, key):
            raise ConfigError(f"provider option {key!r} is not known", field=key)
        setattr(provider, key, value)
    if "base_url" in overrides and isinstance(provider, HttpProvider):
        validate_base_url(provider.base_url)
    return provider


def available_providers() -> list[type[Provider]]:
    """Every provider class that imports in this build (for docs and the CLI)."""
    classes = []
    for scheme in PROVIDERS:
        try:
            classes.append(provider_class(scheme))
        except ConfigError:
            continue
    return classes
