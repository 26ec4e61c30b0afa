"""One descriptor per provider: what the registry, option checking, redaction and docs rely on."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import smsgate
import tests.providers
from smsgate.emulators import emulator_class, emulators
from smsgate.errors import ConfigError
from smsgate.providers import PROVIDERS, check_url, create_provider, provider_class
from smsgate.providers.url import ProviderURL
from tests.providers.contract import ProviderContract
from tests.providers.reconcile_contract import ReconcileContract

SCHEMES = sorted(PROVIDERS)


def emulator_url(scheme: str) -> str:
    emulator = emulator_class(scheme)()
    emulator.url = "http://127.0.0.1:9"
    url: str = emulator.provider_url()
    return url


def contract_suites(base: type = ProviderContract) -> dict[str, list[str]]:
    """Test classes per provider scheme: ``base`` subclasses and, for ProviderContract, each
    module's acceptance suite (SMTP's contract is the non-answer suite; it has no HTTP faults)."""
    found: dict[str, list[str]] = {}
    folder = Path(tests.providers.__file__).parent
    for info in pkgutil.iter_modules([str(folder)]):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"tests.providers.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, base) and cls is not base:
                found.setdefault(cls.emulator_cls.name, []).append(cls.__name__)
            scheme = getattr(cls, "contract_for", None)
            if base is ProviderContract and isinstance(scheme, str):
                found.setdefault(scheme, []).append(cls.__name__)
    return found


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_registered_provider_has_an_emulator_and_a_contract_suite(scheme: str) -> None:
    cls = provider_class(scheme)
    assert cls.emulator, f"{scheme}: no emulator declared"
    assert emulators()[scheme] == cls.emulator
    assert emulator_class(scheme).name == scheme, f"{scheme}: {cls.emulator} does not import"
    assert contract_suites().get(scheme), f"{scheme}: no contract-test subclass"


def test_every_provider_that_declares_reconcile_runs_the_reconcile_contract() -> None:
    # The docs table says "Reconcile: yes" from the capability; the contract proves it.
    declared = {s for s in SCHEMES if provider_class(s).capabilities.reconcile}
    assert declared >= {"twilio", "sinch", "infobip", "plivo"}
    assert set(contract_suites(ReconcileContract)) == declared


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_provider_declares_exactly_the_options_it_reads(scheme: str) -> None:
    cls = provider_class(scheme)
    parsed = ProviderURL.parse(emulator_url(scheme))
    cls.from_url(parsed)
    declared = set(cls.declared_options())
    assert parsed.read <= declared, f"{scheme} reads undeclared {parsed.read - declared}"
    assert declared <= parsed.read, f"{scheme} declares options it never reads"
    assert all(option.doc and option.kind for option in cls.declared_options().values())


@pytest.mark.parametrize(
    ("url", "wrong", "meant"),
    [
        ("twilio://AC1:tok@+15005550006?base_ur=http://127.0.0.1:9", "base_ur", "base_url"),
        ("twilio://AC1:tok@+15005550006?callbak=https://hooks.example", "callbak", "callback"),
        ("vonage://k:s@MyApp?signature_secrett=x", "signature_secrett", "signature_secret"),
        ("smtp://u:p@127.0.0.1:25?carier=googlefi&from=me@example.com", "carier", "carrier"),
    ],
)
def test_a_misspelled_option_is_refused_with_did_you_mean_wherever_the_url_is_read(
    url: str, wrong: str, meant: str, tmp_path: Path
) -> None:
    for read in (create_provider, smsgate.Gateway.from_url, check_url):
        with pytest.raises(ConfigError) as info:
            read(url)
        assert (
            f"{wrong!r}" in info.value.message and f"did you mean {meant!r}" in info.value.message
        )
        assert info.value.field == wrong or read is smsgate.Gateway.from_url
    config = tmp_path / "smsgate.toml"
    config.write_text(f'[providers.main]\nurl = "{url}"\n', encoding="utf-8")
    from smsgate.config import Config

    with pytest.raises(ConfigError, match=f"did you mean {meant!r}"):
        Config.load(config)


def test_config_check_refuses_a_misspelled_option(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "smsgate.toml"
    config.write_text(
        '[providers.main]\nurl = "twilio://AC1:secret-token@+15005550006?base_ur=http://x"\n',
        encoding="utf-8",
    )
    smsgate_cli = str(Path(sys.executable).parent / "smsgate")
    done = subprocess.run(
        [smsgate_cli, "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "did you mean 'base_url'" in done.stdout + done.stderr
    assert "secret-token" not in done.stdout + done.stderr


def test_a_number_option_that_is_not_a_number_is_refused_where_the_url_is_read() -> None:
    with pytest.raises(ConfigError, match="timeout='soon' must be a number"):
        check_url("twilio://AC1:tok@+15005550006?timeout=soon")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_masked_hides_every_declared_secret(scheme: str) -> None:
    cls = provider_class(scheme)
    secrets = {o.name: f"S3CRET-{o.name}" for o in cls.declared_options().values() if o.secret}
    user, password = "USERPART-secret", "PASSWORD-secret"
    query = "&".join(f"{k}={v}" for k, v in secrets.items())
    url = f"{scheme}://{user}:{password}@host" + (f"?{query}" if query else "")
    shown = ProviderURL.parse(url).masked()
    for secret in [password, *secrets.values()]:
        assert secret not in shown
    assert (user in shown) is not cls.secret_username
