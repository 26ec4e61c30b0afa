"""smsgate.toml: loading, ${VAR} interpolation, every error message, masking, `config check`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from smsgate.cli import config as config_cli
from smsgate.clock import FakeClock
from smsgate.config import (
    CONFIG_ENV_VAR,
    DEFAULT_STORE,
    Config,
    interpolate,
    load_config,
    parse_duration,
    parse_flag,
    receipts_requested,
)
from smsgate.errors import ConfigError
from smsgate.message import Message, Purpose
from smsgate.retry import RetryPolicy
from smsgate.routing import Action, AmbiguousPolicy, CircuitState

SECRETS = {
    "TWILIO_TOKEN": "tw-secret-7f3a",
    "SMSROUTE_KEY": "sr-secret-91bc",
    "DB_PASSWORD": "pg-secret",
}

FULL = """
store = "postgresql://smsgate:${DB_PASSWORD}@127.0.0.1:5432/sms"
public_url = "https://sms.example.com/"

[providers.twilio]
url = "twilio://AC0123456789abcdef:${TWILIO_TOKEN}@+15017122661"
rate = "100/s"
burst = 20
senders = { "+15017122661" = "1/s", "+15017122662" = { rate = "30/min", burst = 2 } }
[providers.twilio.options]
status_callback = "${PUBLIC:-https://sms.example.com}/hooks/twilio"
auth_token = "${TWILIO_TOKEN}"

[providers.smsroute]
url = "smsroute://${SMSROUTE_KEY}@MyApp?base_url=http://127.0.0.1:9000"

[retry]
max_attempts = 4
base_delay = "500ms"
max_delay = "5min"

[[routes]]
name = "otp"
purposes = ["otp"]
providers = ["twilio", "smsroute"]
ambiguous = "resend"
max_attempts = 6

[[routes]]
name = "uk"
countries = ["+44"]
providers = ["smsroute"]

[[routes]]
name = "default"
providers = ["twilio", "smsroute"]
jitter = "equal"

[worker]
concurrency = "${CONCURRENCY:-32}"
lease_seconds = "2min"
batch_size = 250

[circuit_breaker]
failure_threshold = 3
cooldown = 15

[server]
host = "0.0.0.0"
port = 8080
help_text = "Example Co: reply STOP to opt out"

[otp]
code_length = 8
ttl = "10min"
honor_opt_outs = false
"""


def from_toml(text: str, env: dict[str, str] | None = None) -> Config:
    return Config.from_toml(textwrap.dedent(text), env=env if env is not None else dict(SECRETS))


def config_error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        from_toml(text, env)
    return str(caught.value)


# ---- loading


def test_the_embedded_defaults() -> None:
    config = Config.default()
    assert config.store == DEFAULT_STORE == "sqlite:///smsgate.db"
    assert config.providers == {}
    assert config.routes == ()
    assert config.source is None
    assert config.worker.concurrency >= 1
    assert config.warnings() == [
        "no providers are defined; add a [providers.NAME] table with a url to send"
    ]


def test_no_path_and_no_env_var_uses_the_defaults() -> None:
    assert Config.load(env={}) == Config.default()
    assert load_config(env={CONFIG_ENV_VAR: "  "}) == Config.default()


def test_a_full_file_resolves(tmp_path: Path) -> None:
    file = tmp_path / "smsgate.toml"
    file.write_text(FULL)
    config = Config.load(file, env=SECRETS)
    assert config.source == str(file)
    assert config.store == "postgresql://smsgate:pg-secret@127.0.0.1:5432/sms"
    assert config.public_url == "https://sms.example.com"
    twilio = config.providers["twilio"]
    assert twilio.url == "twilio://AC0123456789abcdef:tw-secret-7f3a@+15017122661"
    assert twilio.scheme == "twilio"
    assert twilio.limit is not None and str(twilio.limit) == "100/s burst 20"
    assert {sender: str(limit) for sender, limit in twilio.senders.items()} == {
        "+15017122661": "1/s burst 1",
        "+15017122662": "30/min burst 2",
    }
    assert twilio.options["status_callback"] == "https://sms.example.com/hooks/twilio"
    assert config.providers["smsroute"].limit is None

    otp, uk, default = config.routes
    assert otp.purposes == {Purpose.OTP}
    assert otp.ambiguous is AmbiguousPolicy.RESEND
    assert otp.retry == RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=300.0)
    assert uk.countries == ("+44",)
    assert uk.retry == RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=300.0)
    assert default.is_default and default.retry.jitter == "equal"
    assert not config.routes_implicit

    assert (config.worker.concurrency, config.worker.lease_seconds, config.worker.batch_size) == (
        32,
        120.0,
        250,
    )
    assert (config.circuit_breaker.failure_threshold, config.circuit_breaker.cooldown) == (3, 15.0)
    assert (config.otp.code_length, config.otp.ttl, config.otp.honor_opt_outs) == (8, 600.0, False)
    assert Config.default().otp.honor_opt_outs
    assert config.server == {
        "host": "0.0.0.0",
        "port": 8080,
        "help_text": "Example Co: reply STOP to opt out",
    }
    assert config.file is not None and config.file.server.port == 8080
    assert config.warnings() == []


def test_the_file_can_come_from_the_env_var(tmp_path: Path) -> None:
    file = tmp_path / "elsewhere.toml"
    file.write_text('[providers.sandbox]\nurl = "smsroute://KEY@MyApp"\n')
    config = load_config(env={CONFIG_ENV_VAR: str(file)})
    assert config.source == str(file)
    assert list(config.providers) == ["sandbox"]


def test_an_explicit_path_wins_over_the_env_var(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.toml"
    chosen.write_text('store = "sqlite:///chosen.db"\n')
    config = Config.load(chosen, env={CONFIG_ENV_VAR: str(tmp_path / "missing.toml")})
    assert config.store == "sqlite:///chosen.db"


def test_a_missing_file_says_where_its_name_came_from(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(
        ConfigError, match=rf"config file {missing} \(from --config\) does not exist"
    ):
        Config.load(missing, env={})
    with pytest.raises(ConfigError, match=rf"\(from {CONFIG_ENV_VAR}\) does not exist"):
        Config.load(env={CONFIG_ENV_VAR: str(missing)})


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.toml"
    file.write_text('store = "sqlite:///x.db"\n[providers.twilio\nurl = "x"\n')
    with pytest.raises(ConfigError, match=r"broken.toml is not valid TOML: .*line 2"):
        Config.load(file, env={})


def test_providers_without_routes_get_one_implicit_default_route() -> None:
    config = from_toml(
        """
        [providers.twilio]
        url = "twilio://SID:${TWILIO_TOKEN}@+15017122661"
        [providers.smsroute]
        url = "smsroute://KEY@MyApp"
        [retry]
        max_attempts = 2
        """
    )
    (route,) = config.routes
    assert route.name == "default"
    assert route.providers == ("twilio", "smsroute")
    assert route.retry.max_attempts == 2
    assert config.routes_implicit
    assert config.masked()["routes"][0]["implicit"] is True


def test_warnings_for_unused_providers_and_a_missing_default_route() -> None:
    config = from_toml(
        """
        [providers.twilio]
        url = "twilio://SID:TOKEN@+15017122661"
        [providers.spare]
        url = "smsroute://KEY@MyApp"
        [[routes]]
        name = "otp"
        purposes = "otp"
        providers = "twilio"
        """
    )
    assert config.routes[0].providers == ("twilio",)
    warnings = config.warnings()
    assert any("no default route" in warning for warning in warnings)
    assert "provider spare is not used by any route" in warnings


# ---- what the worker builds from it


def test_the_router_follows_the_configured_routes_and_breaker_settings() -> None:
    clock = FakeClock()
    config = from_toml(FULL)
    router = config.router(clock)
    assert router.route_for(Message(to="+447700900123", body="hi")).name == "uk"
    assert (
        router.route_for(Message(to="+447700900123", body="hi", purpose=Purpose.OTP)).name == "otp"
    )
    assert router.route_for(Message(to="+15555550100", body="hi")).name == "default"
    for _ in range(3):
        router.breakers["twilio"].record_failure()
    assert router.breakers.states()["twilio"] is CircuitState.OPEN
    clock.advance(15.0)
    assert router.breakers.states()["twilio"] is CircuitState.HALF_OPEN
    assert router.plan(Message(to="+15555550100", body="hi")).action is Action.SEND


def test_the_rate_limiter_has_provider_and_sender_buckets() -> None:
    config = from_toml(FULL)
    limiter = config.rate_limiter(clock=FakeClock())
    assert dict(limiter.limits()).keys() == {
        "provider:twilio",
        "sender:twilio:+15017122661",
        "sender:twilio:+15017122662",
    }
    assert limiter.max_batch("twilio") == 20
    assert limiter.max_batch("twilio", "+15017122662") == 2
    assert limiter.max_batch("smsroute") is None


# ---- ${VAR} interpolation


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-${B}-post", {"A": "1", "B": "2"}, "pre-1-2-post"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A}", {"A": ""}, ""),
        ("${A:-http://h:80/p}", {}, "http://h:80/p"),
        ("cost $5 and $${LITERAL}", {}, "cost $5 and ${LITERAL}"),
        ("no placeholders", {}, "no placeholders"),
    ],
)
def test_interpolate(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, "key", env) == expected


def test_a_missing_variable_names_the_key_and_the_variable() -> None:
    message = config_error(
        """
        [providers.twilio]
        url = "twilio://SID:${TWILIO_TOKEN}@+15017122661"
        """,
        env={},
    )
    assert message == (
        "providers.twilio.url: environment variable TWILIO_TOKEN is not set; export TWILIO_TOKEN, "
        "or write ${TWILIO_TOKEN:-default} to give a fallback"
    )


def test_interpolation_reaches_into_lists_and_nested_tables() -> None:
    message = config_error(
        """
        [server]
        api_keys = ["ok", "${MISSING_KEY}"]
        """,
        env={},
    )
    assert message.startswith("server.api_keys[1]: environment variable MISSING_KEY is not set")
    message = config_error(
        """
        [[routes]]
        name = "${ROUTE_NAME}"
        providers = ["x"]
        """,
        env={},
    )
    assert message.startswith("routes[0].name: environment variable ROUTE_NAME is not set")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${UNCLOSED", "store: unclosed ${ in '${UNCLOSED'; close it with }"),
        (
            "${1BAD}",
            "store: ${1BAD} is not a variable reference; write ${NAME} or ${NAME:-default}",
        ),
        ("${A-b}", "store: ${A-b} is not a variable reference"),
    ],
)
def test_malformed_placeholders(value: str, expected: str) -> None:
    assert config_error(f'store = "{value}"').startswith(expected)


# ---- every error names the key and the fix


PROVIDER = '[providers.twilio]\nurl = "twilio://SID:TOKEN@+15017122661"\n'
TWO_PROVIDERS = PROVIDER + '[providers.smsroute]\nurl = "smsroute://KEY@MyApp"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('provider = "x"', "provider: unknown key; did you mean 'providers'?"),
        ("colour = 1", "colour: unknown key; known keys: store, public_url, providers, routes,"),
        (
            'store = "mysql://root:hunter2@db/sms"',
            "store: 'mysql://***@db/sms' is not a store URL; use \"sqlite:///path/to/smsgate.db\"",
        ),
        (
            "store = 5",
            'store: expected non-empty text, got a number; write e.g. store = "sqlite:///',
        ),
        (
            'public_url = "ftp://files"',
            "public_url: 'ftp://files' is not an http(s) URL; write e.g. public_url = \"https://",
        ),
        ("providers = 1", "providers: expected a table, got a number; write it as [providers]"),
        ('[providers.twilio]\nrate = "1/s"', 'providers.twilio.url: missing; add url = "scheme://'),
        (
            '[providers.twilio]\nurl = "twilio:/SID:hunter2@x"',
            "providers.twilio.url: '***@x' is not a provider URL; write scheme://",
        ),
        (
            PROVIDER + 'rate = "fast"',
            "providers.twilio.rate: 'fast' is not a rate; "
            "write COUNT/UNIT with UNIT one of s, min, h, d",
        ),
        (
            PROVIDER + "rate = [1]",
            'providers.twilio.rate: expected a rate, got a list; write e.g. rate = "1/s"',
        ),
        (PROVIDER + "burst = 5", 'providers.twilio.burst: a burst needs a rate; add rate = "1/s"'),
        (
            PROVIDER + 'rate = "1/s"\nburst = 0',
            "providers.twilio.burst: 0 is out of range; use a whole number at least 1",
        ),
        (PROVIDER + 'rates = "1/s"', "providers.twilio.rates: unknown key; did you mean 'rate'?"),
        (
            PROVIDER + 'senders = { "+15017122661" = "often" }',
            "providers.twilio.senders.\"+15017122661\": 'often' is not a rate",
        ),
        (
            PROVIDER + 'senders = { "+15017122661" = { burst = 2 } }',
            'providers.twilio.senders."+15017122661".rate: missing; add rate = "1/s"',
        ),
        (
            PROVIDER + 'senders = { "+15017122661" = true }',
            'providers.twilio.senders."+15017122661": expected a rate, got a boolean',
        ),
        (PROVIDER + "options = 3", "providers.twilio.options: expected a table, got a number"),
        (
            '[providers."my twilio"]\nurl = "twilio://x"',
            'providers."my twilio": provider names are letters, digits, - and _',
        ),
        (
            'routes = "everything"',
            "routes: expected a list of tables, got text; write each route as [[routes]]",
        ),
        (
            TWO_PROVIDERS + '[[routes]]\nname = "a"\nproviders = ["twilio"]\n'
            '[[routes]]\nname = "b"\nproviders = ["twillio"]',
            'routes[1].providers[0]: unknown provider "twillio"; '
            "defined providers: twilio, smsroute; "
            'did you mean "twilio"?',
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["vonage"]',
            'routes[0].providers[0]: unknown provider "vonage"; defined providers: twilio; '
            "add a [providers.vonage] table or fix the name",
        ),
        (
            PROVIDER + '[[routes]]\nproviders = ["twilio"]',
            "routes[0].name: missing; give the route a name",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"',
            "routes[0].providers: missing; list providers to try in order",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = []',
            "routes[0].providers: empty; name at least one",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio", "twilio"]',
            "routes[0].providers[1]: twilio is already in the chain; list each provider once",
        ),
        (
            PROVIDER
            + '[[routes]]\nname = "a"\nproviders = ["twilio"]\npurposes = ["otp", "promo"]',
            "routes[0].purposes[1]: unknown purpose 'promo'; "
            "use one of transactional, otp, marketing",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\ncountries = ["44"]',
            "routes[0].countries[0]: '44' is not a country prefix; write + and the calling code",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\ncountries = [44]',
            "routes[0].countries[0]: expected text, got a number",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\nambiguous = "maybe"',
            "routes[0].ambiguous: 'maybe' is not a policy; "
            "use one of auto, retry_same_key, reconcile, "
            "resend, unknown",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\nmax_attempts = "five"',
            "routes[0].max_attempts: 'five' is not a whole number; write e.g. max_attempts = 3",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\nmax_attempts = 0',
            "routes[0].max_attempts: 0 is out of range; use a whole number at least 1",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\nbase_delay = "soon"',
            "routes[0].base_delay: 'soon' is not a duration; write seconds (30) or text like",
        ),
        (
            PROVIDER
            + '[[routes]]\nname = "a"\nproviders = ["twilio"]\nbase_delay = 10\nmax_delay = 5',
            "routes[0].max_delay: 5s is shorter than base_delay (10s); raise max_delay or lower",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\nretries = 3',
            "routes[0].retries: unknown key; known keys: name, purposes, countries, providers,",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\n'
            '[[routes]]\nname = "a"\nproviders = ["twilio"]\npurposes = ["otp"]',
            "routes[1].name: 'a' is already the name of routes[0]; give each route its own name",
        ),
        (
            PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio"]\n'
            '[[routes]]\nname = "b"\nproviders = ["twilio"]',
            "routes[1]: matches the same purposes and countries as routes[0], "
            "so it would never be chosen",
        ),
        (
            '[retry]\njitter = "some"',
            "retry.jitter: 'some' is not a jitter mode; use one of full, equal, none",
        ),
        ("[retry]\nattempts = 3", "retry.attempts: unknown key; did you mean 'max_attempts'?"),
        (
            "[worker]\nconcurrency = 0",
            "worker.concurrency: 0 is out of range; use a whole number between 1",
        ),
        ('[worker]\nlease_seconds = "-5s"', "worker.lease_seconds: '-5s' is not a duration"),
        (
            "[worker]\nlease_seconds = 0",
            "worker.lease_seconds: 0 is not above zero; use a positive duration",
        ),
        (
            "[worker]\nthreads = 4",
            "worker.threads: unknown key; known keys: concurrency, lease_seconds",
        ),
        ("[circuit_breaker]\ncooldown = true", "circuit_breaker.cooldown: True is not a duration"),
        (
            "[otp]\ncode_length = 3",
            "otp.code_length: 3 is out of range; use a whole number between 4 and 10",
        ),
        (
            '[otp]\nhonor_opt_outs = "no"',
            "otp.honor_opt_outs: expected true or false, got text; write e.g. honor_opt_outs = true",
        ),
        ("server = 1", "server: expected a table, got a number; write it as [server]"),
        ("[server]\nprot = 80", "server.prot: unknown key; did you mean 'port'?"),
        ('[server]\nport = "eighty"', "server.port: 'eighty' is not a TCP port; use a number"),
        (
            '[providers.t]\nurl = "twillio://AC:T@+15017122661"',
            "providers.t.url: unknown provider scheme 'twillio'; did you mean \"twilio://\"?",
        ),
        (
            PROVIDER + '[pricing.per_segment.twillio]\n"+1" = 0.01',
            'pricing.per_segment.twillio: prices for "twillio", which is not a provider; '
            'defined providers: twilio; did you mean "twilio"?',
        ),
        (
            PROVIDER + '[pricing.per_segment.twilio]\n"+1" = -1',
            'pricing.per_segment.twilio."+1": -1 is below zero',
        ),
        (
            PROVIDER + '[pricing.per_segment.twilio]\n"1" = 0.01',
            "pricing.per_segment.twilio.1: '1' is not a country prefix",
        ),
    ],
)
def test_config_errors_name_the_key_and_the_fix(text: str, expected: str) -> None:
    message = config_error(text)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_config_error_field_is_the_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        from_toml(PROVIDER + '[[routes]]\nname = "a"\nproviders = ["twilio", "nope"]')
    assert caught.value.field == "routes[0].providers[1]"


def test_numbers_may_come_from_the_environment() -> None:
    config = from_toml('[worker]\nconcurrency = "${N}"\nbatch_size = "${B:-7}"', env={"N": "12"})
    assert (config.worker.concurrency, config.worker.batch_size) == (12, 7)
    assert config_error('[worker]\nconcurrency = "${N}"', env={"N": "many"}).startswith(
        "worker.concurrency: 'many' is not a whole number"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("30", 30.0), ("5min", 300.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert from_toml(f'[otp]\nttl = "{text}"').otp.ttl == seconds


def test_parse_duration_is_usable_by_other_settings() -> None:
    assert parse_duration("2h", "server.webhook_timeout") == 7200.0
    with pytest.raises(ConfigError, match=r"^server\.webhook_timeout: 'later' is not a duration"):
        parse_duration("later", "server.webhook_timeout")


def test_parse_flag_is_usable_by_other_settings() -> None:
    assert parse_flag(False, "server.worker") is False
    with pytest.raises(ConfigError, match=r"^server\.worker: expected true or false, got text; "):
        parse_flag("yes", "server.worker")


def test_the_server_settings_read_flags_with_parse_flag() -> None:
    from smsgate.server.settings import ServerSettings

    with pytest.raises(ConfigError) as caught:
        ServerSettings.from_mapping({"fast_submit": 1})
    assert caught.value.field == "server.fast_submit"
    assert str(caught.value) == (
        "server.fast_submit: expected true or false, got a number; write e.g. fast_submit = true"
    )


def test_receipts_are_requested_unless_the_server_table_says_not() -> None:
    assert receipts_requested(Config.default().server) is True
    config = from_toml("[server]\nrequest_receipts = false")
    assert receipts_requested(config.server) is False
    from smsgate.server.settings import ServerSettings

    assert ServerSettings.from_config(config).request_receipts is False
    with pytest.raises(ConfigError, match=r"^server\.request_receipts: expected true or false"):
        receipts_requested(from_toml('[server]\nrequest_receipts = "off"').server)


# ---- secrets are masked (the format itself is tests/test_redact.py)


def test_the_masked_summary_holds_no_secret() -> None:
    config = from_toml(FULL)
    summary = config.masked()
    dumped = json.dumps(summary, ensure_ascii=False)
    for secret in SECRETS.values():
        assert secret not in dumped
    assert summary["providers"]["twilio"]["url"] == "twilio://AC0123456789abcdef:***@+15017122661"
    assert (
        summary["providers"]["smsroute"]["url"]
        == "smsroute://***@MyApp?base_url=http://127.0.0.1:9000"
    )
    assert summary["store"] == "postgresql://smsgate:***@127.0.0.1:5432/sms"
    assert summary["routes"][0] == {
        "name": "otp",
        "purposes": ["otp"],
        "countries": [],
        "providers": ["twilio", "smsroute"],
        "max_attempts": 6,
        "base_delay": 0.5,
        "max_delay": 300.0,
        "jitter": "full",
        "ambiguous": "resend",
        "quiet_hours": None,
        "quiet_purposes": ["marketing"],
        "implicit": False,
    }


# ---- smsgate config check


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """smsgate (test harness)"""

    config_cli.register(app)
    return app


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    file = tmp_path / "smsgate.toml"
    file.write_text(FULL)
    return file


def test_check_prints_the_resolved_routes_with_secrets_masked(
    cli: typer.Typer, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(config_file)], env=SECRETS)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"config: {config_file} (from --config)"
    assert "store: postgresql://smsgate:***@127.0.0.1:5432/sms" in lines
    assert any(
        "twilio://AC0123456789abcdef:***@+15017122661  rate 100/s burst 20" in line
        for line in lines
    )
    assert any("sender +15017122662: 30/min burst 2" in line for line in lines)
    assert any(
        line.split()[:2] == ["otp", "otp;"] and "twilio -> smsroute" in line for line in lines
    )
    assert any("uk" in line and "+44 -> smsroute" in line for line in lines)
    assert lines[-1] == "config OK"
    for secret in SECRETS.values():
        assert secret not in result.output


def test_check_json(cli: typer.Typer, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    result = CliRunner().invoke(
        cli, ["config", "check", "-c", str(config_file), "--json"], env=SECRETS
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [route["name"] for route in data["routes"]] == ["otp", "uk", "default"]
    assert data["providers"]["twilio"]["url"] == "twilio://AC0123456789abcdef:***@+15017122661"


def test_check_reads_the_env_var(cli: typer.Typer, config_file: Path) -> None:
    result = CliRunner().invoke(
        cli, ["config", "check"], env={**SECRETS, CONFIG_ENV_VAR: str(config_file)}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"config: {config_file} (from SMSGATE_CONFIG)\n")


def test_check_without_a_file_shows_the_defaults(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "store: sqlite:///smsgate.db" in result.stdout
    assert "warning: no providers are defined" in result.stdout


def test_check_error_is_one_line_exit_2(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    file = tmp_path / "smsgate.toml"
    file.write_text(TWO_PROVIDERS + '[[routes]]\nname = "a"\nproviders = ["twillio"]\n')
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(file)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f'smsgate: {file} (from --config): routes[0].providers[0]: unknown provider "twillio"; '
        'defined providers: twilio, smsroute; did you mean "twilio"?\n'
    )


def test_check_missing_variable_and_missing_file(
    cli: typer.Typer, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "store: environment variable DB_PASSWORD is not set" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    missing = tmp_path / "absent.toml"
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(missing)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"smsgate: config file {missing} (from --config) does not exist"
    )


def test_quiet_hours_on_a_route() -> None:
    config = Config.from_dict(
        {
            "providers": {"twilio": {"url": TWILIO_URL_FOR_QUIET}},
            "routes": [
                {
                    "name": "marketing",
                    "providers": ["twilio"],
                    "quiet_hours": "21:00-08:00",
                    "quiet_purposes": ["marketing", "transactional"],
                }
            ],
        }
    )
    (route,) = config.routes
    assert str(route.quiet_hours) == "21:00-08:00"
    assert sorted(route.quiet_purposes) == ["marketing", "transactional"]
    for bad, message in [("9pm-8am", "not a window"), ("08:00-08:00", "same time")]:
        with pytest.raises(ConfigError, match=message) as error:
            Config.from_dict(
                {
                    "providers": {"twilio": {"url": TWILIO_URL_FOR_QUIET}},
                    "routes": [{"name": "m", "providers": ["twilio"], "quiet_hours": bad}],
                }
            )
        assert error.value.field == "routes[0].quiet_hours"


TWILIO_URL_FOR_QUIET = "twilio://AC00000000000000000000000000000000:token@+15005550006"


# ---- the schema


def test_every_key_has_a_description_and_every_value_an_example() -> None:
    """Error messages write "write e.g. KEY = EXAMPLE" from these, and editors show them."""
    from smsgate import config as module

    sections = [module.ConfigFile, *module.Section.__subclasses__()]
    for section in sections:
        assert section.__doc__, section
        for name, field in section.model_fields.items():
            table = module._inner_model(field.annotation) is not None or name == "options"
            assert table or field.description, f"{section.__name__}.{name}"
            assert table or field.examples, f"{section.__name__}.{name}"


def test_an_error_in_a_named_table_still_gives_the_key_s_example() -> None:
    message = config_error(
        PROVIDER + 'senders = { "+15017122661" = { rate = "1/s", burst = "x" } }'
    )
    assert message == (
        "providers.twilio.senders.\"+15017122661\".burst: 'x' is not a whole number; "
        "write e.g. burst = 1"
    )


def test_the_json_schema_describes_every_table() -> None:
    from smsgate.config import json_schema

    schema = json_schema()
    assert schema["title"] == "smsgate.toml"
    tables = {"providers", "routes", "retry", "worker", "circuit_breaker", "server", "otp"}
    assert tables | {"store", "public_url", "pricing", "console", "verify", "retention"} == set(
        schema["properties"]
    )
    route = schema["$defs"]["RouteSection"]
    assert route["required"] == ["name", "providers"]
    assert route["properties"]["purposes"]["items"]["enum"] == ["transactional", "otp", "marketing"]
    duration = schema["$defs"]["WorkerSection"]["properties"]["lease_seconds"]
    assert {"type": "number", "exclusiveMinimum": 0} in duration["anyOf"]


def test_a_providers_receipt_timeout_and_validity_are_durations() -> None:
    config = from_toml(
        """
        [providers.twilio]
        url = "twilio://SID:TOKEN@+15017122661"
        receipt_timeout = "10min"
        validity = "4h"
        [providers.backup]
        url = "twilio://SID:TOKEN@+15017122662"
        """
    )
    twilio, backup = config.providers["twilio"], config.providers["backup"]
    assert (twilio.receipt_timeout, twilio.validity) == (600.0, 14400.0)
    assert (backup.receipt_timeout, backup.validity) == (None, None)  # the worker's defaults
    with pytest.raises(ConfigError, match=r"providers.twilio.receipt_timeout: 'soon'"):
        from_toml(
            '[providers.twilio]\nurl = "twilio://SID:TOKEN@+15017122661"\nreceipt_timeout = "soon"'
        )
