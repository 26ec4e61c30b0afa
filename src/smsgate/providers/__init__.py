"""The provider registry: ``create_provider("twilio://SID:TOKEN@+15017122661")``.

Provider modules are imported only when their scheme is used, so adding providers costs nothing
at start-up. Each provider class carries its descriptor (scheme, URL form, URL options and which
are secret, capabilities, emulator); option checking, redaction and docs/providers.md read it.
Adding one is docs/adding-a-provider.md: the module, a row here, its emulator (named on the
class), and a test module on the shared contract tests.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from smsgate.errors import ConfigError
from smsgate.providers.base import HttpProvider, ProviderInfo
from smsgate.providers.transport import validate_base_url

if TYPE_CHECKING:
    from smsgate.providers.base import Provider

#: scheme -> where its class lives. Everything else about a provider (URL form, options,
#: secrets, capabilities, emulator) is declared on the class itself, and read from there.
PROVIDERS: dict[str, ProviderInfo] = {
    info.scheme: info
    for info in (
        ProviderInfo("twilio", "smsgate.providers.twilio", "TwilioProvider"),
        ProviderInfo("smspm", "smsgate.providers.smspm", "SmspmProvider"),
        ProviderInfo("smsroute", "smsgate.providers.smsroute", "SmsrouteProvider"),
        ProviderInfo("vonage", "smsgate.providers.vonage", "VonageProvider"),
        ProviderInfo("plivo", "smsgate.providers.plivo", "PlivoProvider"),
        ProviderInfo("telnyx", "smsgate.providers.telnyx", "TelnyxProvider"),
        ProviderInfo("infobip", "smsgate.providers.infobip", "InfobipProvider"),
        ProviderInfo("sinch", "smsgate.providers.sinch", "SinchProvider"),
        ProviderInfo("clickatell", "smsgate.providers.clickatell", "ClickatellProvider"),
        ProviderInfo("aws", "smsgate.providers.aws", "AwsProvider"),
        ProviderInfo("smtp", "smsgate.providers.smtp", "SmtpProvider", aliases=("smtps",)),
        ProviderInfo("smpp", "smsgate.providers.smpp", "SmppProvider"),
    )
}
#: libraries of the optional extras, and the extra that installs each
_EXTRAS = {"aiosmtplib": "smtp"}
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
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        raise ConfigError(
            f"provider {scheme!r} needs the [{extra}] extra: pip install 'smsgate[{extra}]'",
            field="provider",
        ) from None
    cls: type[Provider] = getattr(module, info.cls)
    return cls


def create_provider(url: str, *, name: str | None = None, **overrides: Any) -> Provider:
    """Build a provider from its URL; ``overrides`` set constructor options (e.g. ``clock``)."""
    from smsgate.providers.url import ProviderURL

    parsed = ProviderURL.parse(url)
    cls = provider_class(parsed.scheme)
    parsed.check_options(cls.declared_options())
    provider = cls.from_url(parsed, name=name)
    for key, value in overrides.items():
        if not hasattr(provider, key):
            raise ConfigError(f"provider option {key!r} is not known", field=key)
        setattr(provider, key, value)
    if "base_url" in overrides and isinstance(provider, HttpProvider):
        validate_base_url(provider.base_url)
    return provider


def check_url(url: str) -> None:
    """Refuse a provider URL whose options the provider does not take (with "did you mean"),
    without building the provider: for config load and ``config check``. A scheme not known
    here is left to :func:`create_provider`, which says which are."""
    from smsgate.providers.url import ProviderURL

    parsed = ProviderURL.parse(url)
    scheme = _ALIASES.get(parsed.scheme, parsed.scheme)
    if scheme in PROVIDERS:
        parsed.check_options(provider_class(scheme).declared_options())


def available_providers() -> list[type[Provider]]:
    """Every provider class that imports in this build (for docs and the CLI)."""
    classes = []
    for scheme in PROVIDERS:
        try:
            classes.append(provider_class(scheme))
        except ConfigError:
            continue
    return classes
