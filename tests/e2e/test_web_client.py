"""The web client in a real headless Chromium (Debian's), against ``taskledger up``: a person's
whole journey, from registering to logging in with a password reset through the mailed link.

Screenshots of the task list and the history view go to ``TASKLEDGER_SCREENSHOTS`` (the README's
come from ``TASKLEDGER_SCREENSHOTS=docs/screenshots``), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from tests.e2e.test_up import REPO, Up, bearer, login
from tests.e2e.test_up_mail import _wait_for

pytestmark = pytest.mark.e2e

# Playwright drives the system's chromium; its own browser downloads are never used.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1200, "height": 820}
PHONE = {"width": 390, "height": 844}
# Every form control of the page, those of each task included, has a name a screen reader says.
UNLABELLED = """[...document.querySelectorAll("input, select, textarea, button")]
    .filter((c) => !c.labels?.length && !c.getAttribute("aria-label") && !c.textContent.trim())
    .map((c) => c.outerHTML)"""
LINK = re.compile(r"(http://\S+/reset-password)#token=([A-Za-z0-9_\-.]+)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("TASKLEDGER_SCREENSHOTS") or tmp_path / "screenshots")
    directory = directory if directory.is_absolute() else REPO / directory
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Watched:
    """A browser tab, with every URL it asked for and every console error (a CSP refusal is
    one), so the test can say no token went into a URL and the page broke no rule."""

    def __init__(self, context: BrowserContext) -> None:
        self.page: Page = context.new_page()
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.urls.append(request.url))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message: ConsoleMessage) -> None:
        # The API's refusals (401, 412...) are logged by the browser too: they are expected.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)


def _context(browser: Browser, viewport: dict[str, int]) -> BrowserContext:
    phone = viewport["width"] < 600
    return browser.new_context(
        viewport=viewport,  # type: ignore[arg-type]
        locale="en-GB",
        timezone_id="UTC",
        is_mobile=phone,
        has_touch=phone,
        device_scale_factor=1,
    )


def _view(page: Page) -> Locator:
    """The view on screen: the page holds every view's form, all but one hidden."""
    return page.locator("main > section:not([hidden])")


def _log_in(page: Page, email: str, password: str) -> None:
    _view(page).get_by_label("Email").fill(email)
    _view(page).get_by_label("Password").fill(password)
    _view(page).get_by_role("button", name="Log in").click()


def _new_task(
    page: Page, title: str, priority: str, labels: str, description: str = "", due: str = ""
) -> None:
    page.get_by_role("button", name="New task").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Title").fill(title)
    dialog.get_by_label("Description").fill(description)
    dialog.get_by_label("Priority").select_option(priority)
    dialog.get_by_label("Due").fill(due)
    dialog.get_by_label("Labels").fill(labels)
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(f"“{title}” is created.")


def test_a_person_uses_the_whole_product_in_a_browser(
    tmp_path: Path, browser: Browser, shots: Path
) -> None:
    data_dir = tmp_path / "data"
    email, password, fresh = "ada@example.com", "correct horse battery", "a fresh passphrase"
    with Up(data_dir) as up:
        url = up.start()
        desktop = _context(browser, DESKTOP)
        tab = Watched(desktop)
        tab.page.goto(url)
        _register_and_log_in(tab.page, email, password)
        _create_edit_and_meet_a_conflict(tab.page, url, email, password, shots)
        _filter_page_and_delete(tab.page, url, email, password)
        _history_and_as_of(tab.page, shots)
        token = _forget_and_reset(tab.page, data_dir, url, email, password, fresh)

        # No token in any URL the browser asked for, nor in any log of the run.
        assert not [u for u in tab.urls if "token" in u.split("#")[0] or token in u.split("#")[0]]
        refresh_token = tab.page.evaluate("sessionStorage.getItem('taskledger.refresh')")
        assert isinstance(refresh_token, str)
        assert len(refresh_token) > 20
        logs = "".join(p.read_text(errors="replace") for p in (data_dir / "logs").glob("*.log"))
        assert token not in logs
        assert refresh_token not in logs
        assert tab.errors == []
        desktop.close()

        phone = _context(browser, PHONE)
        small = Watched(phone)
        small.page.goto(url)
        _on_a_phone(small.page, email, fresh, shots)
        assert small.errors == []
        phone.close()


def _register_and_log_in(page: Page, email: str, password: str) -> None:
    page.get_by_role("link", name="Create an account").click()
    _view(page).get_by_label("Email").fill(email)
    _view(page).get_by_label("Display name").fill("Ada")
    _view(page).get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")
    expect(_view(page).get_by_label("Email")).to_have_value(email)
    _view(page).get_by_label("Password").fill("not my password")
    _view(page).get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert").first).to_have_text("email or password is wrong")
    _log_in(page, email, password)
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    expect(page.locator("#who-name")).to_have_text("Ada")


def _create_edit_and_meet_a_conflict(
    page: Page, url: str, email: str, password: str, shots: Path
) -> None:
    # Due in ten days, 17:00 UTC (the browser's zone), as the datetime-local field takes it.
    due = (datetime.now(UTC) + timedelta(days=10)).replace(hour=17, minute=0, second=0)
    _new_task(
        page,
        "Write the quarterly report",
        "high",
        "work, writing",
        "Figures from Q3",
        due.strftime("%Y-%m-%dT%H:%M"),
    )
    _new_task(page, "Buy milk", "low", "home")
    _new_task(page, "Call the plumber", "medium", "home")
    page.get_by_role("button", name="Edit Write the quarterly report").click()
    page.get_by_role("dialog").get_by_label("Title").fill("Write the Q4 report")
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("“Write the Q4 report” is saved.")
    page.get_by_label("Status of Write the Q4 report").select_option("in_progress")
    expect(page.get_by_role("status")).to_contain_text("is now In progress")
    page.get_by_label("Status of Buy milk").select_option("done")
    expect(page.get_by_role("status")).to_have_text("“Buy milk” is now Done.")

    # A write elsewhere while the dialog is open: the conflict is said, and resolved.
    page.get_by_role("button", name="Edit Call the plumber").click()
    with httpx.Client(base_url=url, timeout=30) as client:
        tokens = login(client, email, password)
        tasks = client.get("/v1/tasks", headers=bearer(tokens)).json()["items"]
        plumber = next(t for t in tasks if t["title"] == "Call the plumber")
        elsewhere = client.patch(
            f"/v1/tasks/{plumber['id']}",
            json={"title": "Call the plumber about the leak"},
            headers=bearer(tokens),
        )
        assert elsewhere.status_code == 200
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Priority").select_option("high")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_contain_text("changed elsewhere")
    expect(dialog.get_by_role("alert")).to_contain_text("changed: title")
    dialog.get_by_role("button", name="Load the latest version").click()
    expect(dialog.get_by_label("Title")).to_have_value("Call the plumber about the leak")
    dialog.get_by_label("Priority").select_option("high")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    plumber_item = page.locator("#task-list > li").filter(has_text="about the leak")
    expect(plumber_item).to_contain_text("high priority")
    report_item = page.locator("#task-list > li").filter(has_text="Q4 report")
    expect(report_item).to_contain_text(re.compile(rf"due {due.day} \w+ {due.year}, 17:00:00"))
    expect(page.locator("#stats")).to_have_text("1 to do · 1 in progress · 1 done · 0 overdue")
    assert page.evaluate(UNLABELLED) == []
    page.screenshot(path=str(shots / "tasks-desktop.png"), full_page=True)


def _filter_page_and_delete(page: Page, url: str, email: str, password: str) -> None:
    items = page.locator("#task-list > li")
    page.get_by_label("Search").fill("report")
    page.get_by_role("button", name="Apply").click()
    expect(items).to_have_count(1)
    page.get_by_role("button", name="Clear").click()
    expect(items).to_have_count(3)
    _view(page).get_by_label("Status", exact=True).select_option("done")
    page.get_by_role("button", name="Apply").click()
    expect(items).to_have_count(1)
    expect(items).to_contain_text("Buy milk")
    page.get_by_role("button", name="Clear").click()

    with httpx.Client(base_url=url, timeout=30) as client:
        tokens = login(client, email, password)
        for n in range(10):
            made = client.post("/v1/tasks", json={"title": f"Chore {n}"}, headers=bearer(tokens))
            assert made.status_code == 201
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Apply").click()
    expect(items).to_have_count(10)
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#page-no")).to_have_text("Page 2")
    expect(items).to_have_count(3)
    expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    page.get_by_role("button", name="← Previous").click()
    expect(items).to_have_count(10)

    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Delete Chore 9").click()
    expect(page.get_by_role("status")).to_have_text("“Chore 9” is deleted.")
    expect(page.get_by_role("button", name="Delete Chore 9")).to_have_count(0)

    # A reload forgets the access token: the refresh token in the tab gets a new one.
    page.reload()
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    expect(page.locator("#stats")).to_have_text("10 to do · 1 in progress · 1 done · 0 overdue")


def _history_and_as_of(page: Page, shots: Path) -> None:
    page.get_by_role("button", name="History of Write the Q4 report").click()
    expect(page.get_by_role("heading", name="History of “Write the Q4 report”")).to_be_visible()
    entries = page.locator("#timeline > li")
    expect(entries).to_have_count(3)
    expect(entries.nth(0)).to_contain_text("Created · v1")
    expect(entries.nth(1)).to_contain_text("Edited · v2")
    expect(entries.nth(1)).to_contain_text("by you")
    expect(entries.nth(2)).to_contain_text("Status changed · v3")
    state = page.locator("#asof-state")
    expect(state.locator("dd.changed mark")).to_have_text("In progress")
    entries.nth(0).get_by_role("button").click()
    expect(state).to_contain_text("Write the quarterly report")
    expect(state).to_contain_text("To do")
    expect(state.locator("dd.changed")).to_have_count(0)
    # Any instant: a minute before the task was made, it did not exist.
    created = datetime.fromisoformat(page.locator("#asof-when").get_attribute("datetime") or "")
    page.get_by_label("Or any instant").fill(f"{created - timedelta(minutes=1):%Y-%m-%dT%H:%M:%S}")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#asof-missing")).to_have_text("The task did not exist at this instant.")
    expect(state.locator("dd")).to_have_count(0)
    # The slider steps through the timeline's instants from the keyboard.
    page.get_by_label("Step through the changes").press("ArrowRight")
    expect(state.locator("dd.changed mark")).to_have_text("Write the Q4 report")
    expect(state.locator("dd.changed del")).to_have_text("Write the quarterly report")
    expect(entries.nth(1).get_by_role("button")).to_have_attribute("aria-current", "true")
    page.screenshot(path=str(shots / "history-desktop.png"), full_page=True)
    page.get_by_role("button", name="← Back to tasks").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_have_text("You are logged out.")


def _forget_and_reset(
    page: Page, data_dir: Path, url: str, email: str, old: str, fresh: str
) -> str:
    """Forgot-password, the link from the .eml, a new password; returns the reset token."""
    page.get_by_role("link", name="Forgot your password?").click()
    _view(page).get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status")).to_contain_text("a mail with a reset link")
    mail = _wait_for(data_dir / "mail", "Reset your taskledger password")
    body = mail.get_body(("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found is not None
    assert found.group(1) == f"{url}/reset-password"  # the port up serves, not 8000
    page.goto(found.group(0))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    assert page.url == f"{url}/reset-password"  # the token is gone from the address bar
    page.get_by_label(re.compile(r"^New password")).fill(fresh)
    page.get_by_label("The same again").fill(fresh)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    _log_in(page, email, old)
    expect(page.get_by_role("alert").first).to_have_text("email or password is wrong")
    _log_in(page, email, fresh)
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    return found.group(2)


def _on_a_phone(page: Page, email: str, password: str, shots: Path) -> None:
    """A phone-sized screen: everything fits the width, nothing scrolls sideways."""
    _log_in(page, email, password)
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    expect(page.locator("#filters")).not_to_have_attribute("open", "")  # the list first
    expect(page.locator("#task-list > li")).to_have_count(12)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.screenshot(path=str(shots / "tasks-phone.png"))
    page.get_by_role("button", name="History of Write the Q4 report").click()
    page.locator("#timeline > li").nth(1).get_by_role("button").click()
    expect(page.locator("#asof-state dd.changed mark")).to_have_text("Write the Q4 report")
    expect(page.get_by_role("heading", name="As of")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.evaluate("scrollTo(0, 0)")
    page.screenshot(path=str(shots / "history-phone.png"))
