"""The console in a real headless Chromium (Selenium + Debian's chromium-driver): one browser and
one gateway (two Twilio emulators, the worker in the server) for the whole module.

Each test saves a screenshot under the run's temporary directory (or ``$SMSGATE_SCREENSHOTS``).
Skipped, with the reason, where no Chromium or chromedriver can be found.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from smsgate.config import Config
from smsgate.console.auth import Role
from smsgate.emulators.base import Callbacks, EmulatorThread
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.errors import OptedOut
from smsgate.message import Message
from smsgate.outbox.cli_support import open_outbox
from smsgate.server.app import create_app
from smsgate.server.runner import ServerThread
from smsgate.server.settings import ServerSettings
from tests.console.conftest import PASSWORD, ConsoleServer
from tests.server.conftest import Running

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)
DRIVER = shutil.which("chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WAIT = 20.0
#: how far the page is wider than the window (a phone must not scroll sideways)
OVERFLOW = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "no chromium and chromedriver on PATH (apt-get install chromium chromium-driver)"
        )
    profile = tempfile.mkdtemp(prefix="smsgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1366,900")
    try:
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService(executable_path=DRIVER)
        )
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"chromium would not start: {exc.msg}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.get("about:blank")  # close live streams before the server stops
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("SMSGATE_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Gateway:
    def __init__(self, console: ConsoleServer, emulators: dict[str, EmulatorThread]) -> None:
        self.console = console
        self.emulators = emulators

    @property
    def running(self) -> Running:
        return self.console.running

    def received(self, name: str) -> list[Any]:
        emulator = self.emulators[name]
        return list(emulator.call(lambda: list(emulator.emulator.messages)))

    def deliver(self, name: str, provider_message_id: str, outcome: str = "delivered") -> None:
        thread = self.emulators[name]
        found = thread.call(lambda: thread.emulator.by_id[provider_message_id])
        asyncio.run_coroutine_threadsafe(
            thread.emulator.deliver_callback(found, outcome), thread.loop
        ).result(10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("gateway")
    # receipts only when a test asks for them (deliver), so a test sees the timeline grow
    emulators = {
        name: TwilioEmulator(callbacks=Callbacks(delay=3600)).run_in_thread()
        for name in ("alpha", "beta")
    }
    config = Config.from_dict(
        {
            "store": f"sqlite:///{folder / 'smsgate.db'}",
            "providers": {
                name: {"url": thread.emulator.provider_url()} for name, thread in emulators.items()
            },
            "routes": [{"name": "default", "providers": ["alpha", "beta"]}],
        }
    )
    outbox = open_outbox(config, migrate=True)

    def make(url: str) -> Any:
        settings = ServerSettings.from_mapping(config.server, public_url=url)
        return create_app(config, settings=settings, outbox=outbox, worker=True)

    thread = ServerThread(make)
    running = Running(thread, "", requests.Session())
    yield Gateway(ConsoleServer(running), emulators)
    thread.stop()
    outbox.close()
    for emulator in emulators.values():
        emulator.stop()


def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def shot(driver: Any, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    return path


def sign_in(driver: Any, gateway: Gateway, role: Role = Role.ADMIN) -> str:
    name = gateway.console.user(role)
    driver.delete_all_cookies()
    driver.get(gateway.console.url + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    until(
        lambda: driver.find_elements(By.CSS_SELECTOR, "h1") and "Overview" in driver.title,
        "the overview",
    )
    return name


def click(driver: Any, css: str, *, confirm: bool = False) -> None:
    """Click and, when that submits a form, wait for the next page."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    if confirm:
        WebDriverWait(driver, WAIT).until(lambda d: d.switch_to.alert).accept()
    if css.split()[-1].startswith(("button", "form")) or "button" in css:
        WebDriverWait(driver, WAIT).until(staleness_of(page))


def live_text(driver: Any, element_id: str) -> str:
    """The text of an element that server-sent events may replace at any moment."""
    for _ in range(50):
        try:
            return str(driver.find_element(By.ID, element_id).text)
        except (StaleElementReferenceException, NoSuchElementException):
            time.sleep(0.05)
    raise AssertionError(f"#{element_id} kept being replaced")


def text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "main").text)


def submit(gateway: Gateway, **fields: Any) -> str:
    return gateway.running.outbox.submit(Message(**{"to": "+15555550100", "body": "hi", **fields}))


def state_of(gateway: Gateway, message_id: str) -> str:
    return gateway.running.outbox.status(message_id).state


# -- the tests ------------------------------------------------------------------------------


def test_sign_in_shows_the_overview_on_a_laptop_and_a_phone(
    browser: Any, gateway: Gateway, shots: Path
) -> None:
    driver = browser
    driver.delete_all_cookies()
    driver.get(gateway.console.url + "/messages")
    assert "/login" in driver.current_url  # not signed in: sent to sign in
    name = gateway.console.user(Role.READONLY)
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys("not the password")
    click(driver, "form button[type=submit]")
    assert "are not right" in driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    click(driver, "form button[type=submit]")
    until(lambda: "/console/messages" in driver.current_url, "the page asked for")
    driver.get(gateway.console.url + "/")
    until(lambda: live_text(driver, "depth-queued").isdigit(), "the queue figures")
    assert driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert f"{name}" in driver.find_element(By.CSS_SELECTOR, ".who").text
    shot(driver, shots, "overview-laptop")
    driver.set_window_size(390, 844)
    try:
        shot(driver, shots, "overview-phone")
        # nothing wider than the phone: tables scroll inside their own box
        assert driver.execute_script(OVERFLOW) <= 0
    finally:
        driver.set_window_size(1366, 900)
    click(driver, ".who button")
    until(lambda: "/login" in driver.current_url, "the sign-in page after signing out")
    driver.get(gateway.console.url + "/")
    assert "/login" in driver.current_url


def test_filter_the_log(browser: Any, gateway: Gateway, shots: Path) -> None:
    driver = browser
    later = datetime.now(UTC) + timedelta(days=1)
    scheduled = [submit(gateway, to=f"+1555555{i:04d}", send_at=later) for i in range(3)]
    other = submit(gateway, to="+447700900123", send_at=later, purpose="otp")
    sign_in(driver, gateway, Role.READONLY)
    driver.get(gateway.console.url + "/messages")
    Select(driver.find_element(By.ID, "f-state")).select_by_visible_text("scheduled")
    Select(driver.find_element(By.ID, "f-window")).select_by_value("24h")
    driver.find_element(By.ID, "f-country").send_keys("US")
    click(driver, ".filters button[type=submit]")
    until(lambda: "state=scheduled" in driver.current_url, "the filtered log")
    ids = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "table.log a.mono")]
    assert set(scheduled) <= set(ids)
    assert other not in ids
    shot(driver, shots, "log-filtered")
    driver.find_element(By.ID, "f-q").send_keys("7700900")
    driver.find_element(By.ID, "f-country").clear()
    click(driver, ".filters button[type=submit]")
    ids = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "table.log a.mono")]
    assert ids == [other]
    driver.set_window_size(390, 844)
    try:
        shot(driver, shots, "log-phone")
        assert driver.execute_script(OVERFLOW) <= 0
    finally:
        driver.set_window_size(1366, 900)


def test_timeline_grows_as_receipts_arrive(browser: Any, gateway: Gateway, shots: Path) -> None:
    driver = browser
    message_id = submit(gateway, to="+15555550111", body="Your order shipped")
    until(lambda: state_of(gateway, message_id) == "sent", "the send")
    record = gateway.running.outbox.status(message_id)
    sign_in(driver, gateway, Role.READONLY)
    driver.get(f"{gateway.console.url}/messages/{message_id}")
    driver.execute_script("window.__same_page = true")
    before = len(driver.find_elements(By.CSS_SELECTOR, ".timeline li"))
    assert "delivered" not in live_text(driver, "timeline")
    assert record.provider is not None and record.provider_message_id is not None
    gateway.deliver(record.provider, record.provider_message_id)
    until(
        lambda: "→ delivered" in live_text(driver, "timeline"),
        "the delivered receipt on the page",
    )
    assert len(driver.find_elements(By.CSS_SELECTOR, ".timeline li")) > before
    assert driver.execute_script("return window.__same_page") is True  # no reload
    driver.find_element(By.CSS_SELECTOR, ".timeline details summary").click()
    shot(driver, shots, "message-timeline")
    driver.set_window_size(390, 844)
    try:
        shot(driver, shots, "message-phone")
        assert driver.execute_script(OVERFLOW) <= 0
    finally:
        driver.set_window_size(1366, 900)


def test_cancel_a_scheduled_message(browser: Any, gateway: Gateway, shots: Path) -> None:
    driver = browser
    message_id = submit(gateway, send_at=datetime.now(UTC) + timedelta(hours=2))
    sign_in(driver, gateway)
    driver.get(f"{gateway.console.url}/messages/{message_id}")
    click(driver, "form[action$='/cancel'] button", confirm=True)
    until(lambda: driver.find_elements(By.CSS_SELECTOR, ".notice"), "the notice")
    assert driver.find_element(By.ID, "state").text == "canceled"
    until(lambda: "canceled in the console by" in live_text(driver, "timeline"), "the event")
    assert state_of(gateway, message_id) == "canceled"
    assert not driver.find_elements(By.CSS_SELECTOR, "form[action$='/cancel']")
    shot(driver, shots, "message-canceled")


def test_add_and_remove_a_suppression(browser: Any, gateway: Gateway, shots: Path) -> None:
    driver = browser
    name = sign_in(driver, gateway)
    driver.get(gateway.console.url + "/suppressions")
    driver.find_element(By.ID, "a-recipient").send_keys("+1 555 555 0199")
    driver.find_element(By.ID, "a-reason").send_keys("asked by phone")
    click(driver, "form[action$='/suppressions'][method=post] button")
    until(lambda: "Suppressed." in text(driver), "the notice")
    row = driver.find_element(By.CSS_SELECTOR, "#suppressions tbody tr").text
    assert "+15555550199" in row and f"console:{name}" in row and "asked by phone" in row
    with pytest.raises(OptedOut):
        submit(gateway, to="+15555550199")
    shot(driver, shots, "suppression-added")
    click(driver, "#suppressions form button", confirm=True)
    until(lambda: "Removed 1 entry." in text(driver), "the removal")
    assert "+15555550199" not in driver.find_element(By.ID, "suppressions").text
    submit(gateway, to="+15555550199")  # accepted again


def test_create_and_revoke_a_key(browser: Any, gateway: Gateway, shots: Path) -> None:
    driver = browser
    sign_in(driver, gateway)
    driver.get(gateway.console.url + "/keys")
    driver.find_element(By.ID, "k-name").send_keys("billing")
    click(driver, "form[action$='/keys'] button")
    key = until(
        lambda: (
            driver.find_elements(By.ID, "new-key")
            and driver.find_element(By.ID, "new-key").get_attribute("value")
        ),
        "the new key",
    )
    assert key.startswith("sgk_")
    shot(driver, shots, "key-created")
    api = gateway.running.url + "/v1/messages?limit=1"
    auth = {"Authorization": f"Bearer {key}"}
    assert requests.get(api, headers=auth, timeout=10).status_code == 200
    driver.get(gateway.console.url + "/keys")  # shown once: a reload no longer has it
    assert not driver.find_elements(By.ID, "new-key")
    click(
        driver,
        "#keys form[action$='/revoke'] button[aria-label='Revoke key billing']",
        confirm=True,
    )
    until(lambda: "revoked" in text(driver), "the revocation")
    assert requests.get(api, headers=auth, timeout=10).status_code == 401


def test_pause_a_provider_and_the_router_skips_it(
    browser: Any, gateway: Gateway, shots: Path
) -> None:
    driver = browser
    sign_in(driver, gateway)
    driver.get(gateway.console.url + "/providers")
    driver.find_element(By.ID, "why-alpha").send_keys("carrier incident")
    click(driver, "button[aria-label='Pause alpha']")
    until(lambda: "alpha paused" in text(driver), "the pause")
    assert "carrier incident" in driver.find_element(By.ID, "provider-alpha").text
    shot(driver, shots, "provider-paused")
    before = len(gateway.received("alpha"))
    message_id = submit(gateway, to="+15555550177", body="routed around alpha")
    until(lambda: state_of(gateway, message_id) == "sent", "the send")
    assert gateway.running.outbox.status(message_id).provider == "beta"
    assert len(gateway.received("alpha")) == before
    assert any(m.to == "+15555550177" for m in gateway.received("beta"))
    click(driver, "button[aria-label='Resume alpha']")
    until(lambda: "alpha resumed" in text(driver), "the resume")
    again = submit(gateway, to="+15555550178", body="alpha is back")
    until(lambda: state_of(gateway, again) == "sent", "the send")
    assert gateway.running.outbox.status(again).provider == "alpha"


def test_csrf_and_lockout(browser: Any, gateway: Gateway, shots: Path) -> None:
    driver = browser
    sign_in(driver, gateway)
    driver.get(gateway.console.url + "/providers")
    driver.execute_script(
        "document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged')"
    )
    click(driver, "button[aria-label='Pause beta']")
    assert "security token" in text(driver)
    from smsgate.outbox.tables.pauses import ProviderPauses

    # nothing changed in the store
    assert "beta" not in ProviderPauses(gateway.running.outbox.store).names()  # type: ignore[arg-type]
    shot(driver, shots, "csrf-refused")
    name = gateway.console.user(Role.ADMIN)
    driver.delete_all_cookies()
    driver.get(gateway.console.url + "/login")
    for _ in range(5):
        driver.find_element(By.ID, "name").clear()
        driver.find_element(By.ID, "name").send_keys(name)
        driver.find_element(By.ID, "password").send_keys("wrong password!")
        click(driver, "form button[type=submit]")
    assert "locked" in driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    driver.find_element(By.ID, "name").clear()
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    click(driver, "form button[type=submit]")
    assert "locked" in driver.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "/login" in driver.current_url
    shot(driver, shots, "locked-out")


UNLABELLED = """
return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 80));
"""


def test_every_control_is_labelled_and_the_keyboard_reaches_it(
    browser: Any, gateway: Gateway, shots: Path
) -> None:
    driver = browser
    submit(gateway, send_at=datetime.now(UTC) + timedelta(hours=3))
    sign_in(driver, gateway)
    for path in ("/", "/messages", "/compose", "/suppressions", "/keys", "/providers", "/webhooks"):
        driver.get(gateway.console.url + path)
        assert driver.execute_script(UNLABELLED) == [], path
        assert driver.execute_script("return document.documentElement.lang") == "en"
    driver.get(gateway.console.url + "/messages")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    focused = driver.switch_to.active_element
    assert focused.text == "Skip to content" and focused.is_displayed()
    focused.send_keys(Keys.ENTER)
    for _ in range(40):  # from the skip link, Tab walks into the filter form
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element.get_attribute("id") == "f-state":
            break
    else:
        raise AssertionError("Tab never reached the state filter")
    shot(driver, shots, "keyboard-focus")
