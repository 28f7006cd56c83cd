"""The dashboard under ``/ui/``, in a real headless browser (Debian's chromium driven
by playwright) against a real server (uvicorn) on a real SQLite store.

Each test saves screenshots under its tmp dir; with ``SOKKA_SCREENSHOTS=DIR``
the ones the docs show are written to DIR as well (``docs/`` regenerates them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from sokka.adapters.sql import SQLStore
from sokka.core.commands import LeaseToken
from sokka.core.errors import TaskCancelled
from sokka.core.task import Status, TaskSpec
from sokka.shell.http import create_app, serve_in_background
from tests.browsers import chromium_path

TOKEN = "dashboard-test-token-0123456789"
TRACEBACK = (
    "ValueError: the mail server refused the message\n"
    "Traceback (most recent call last):\n"
    '  File "handlers.py", line 12, in send\n'
    "    raise ValueError('the mail server refused the message')\n"
    "ValueError: the mail server refused the message"
)
HOSTILE = {"note": "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'>"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLStore]:
    """emails: 60 terminated, 2 failed (one with a traceback), 1 running, 1 starting
    whose data holds markup; reports: 1 snoozed."""
    with SQLStore(f"sqlite:///{tmp_path / 'dashboard.db'}") as made:
        made.create_schema()
        made.create_tasks([TaskSpec(topic="emails", task_id=f"done-{i:02d}") for i in range(60)])
        for task in made.reserve_tasks("emails", "worker-a", limit=60):
            made.terminate(task.task_id, "worker-a", 1)
        for task_id in ("bounced-1", "bounced-2"):
            made.create_task(TaskSpec(topic="emails", task_id=task_id, max_attempts=1,
                                      data={"to": f"{task_id}@example.com"}))  # fmt: skip
        first, second = made.reserve_tasks("emails", "worker-a", limit=2)
        made.fail(first.task_id, "worker-a", 1, TRACEBACK)
        made.fail(second.task_id, "worker-a", 1, "timed out")
        made.create_task(TaskSpec(topic="emails", task_id="sending"))
        made.reserve_tasks("emails", "worker-b")
        made.create_task(TaskSpec(topic="emails", task_id="hostile", data=HOSTILE))
        made.create_task(TaskSpec(topic="reports", task_id="weekly"))
        made.reserve_tasks("reports", "worker-c")
        made.snooze("weekly", "worker-c", 1, 3_600_000)
        yield made


@pytest.fixture
def open_server(store: SQLStore) -> Iterator[str]:
    with serve_in_background(create_app(store)) as base_url:
        yield base_url


@pytest.fixture
def guarded_server(store: SQLStore) -> Iterator[str]:
    with serve_in_background(create_app(store, token=TOKEN)) as base_url:
        yield base_url


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


def shoot(page: Any, tmp_path: Path, name: str, *, docs: bool = False) -> None:
    """A full-page screenshot in the test's tmp dir (and in $SOKKA_SCREENSHOTS)."""
    target = tmp_path / "screenshots" / f"{name}.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 1000  # a picture, not an empty file
    wanted = os.environ.get("SOKKA_SCREENSHOTS")
    if docs and wanted:
        shutil.copy(target, Path(wanted) / f"dashboard-{name}.png")


def cells(page: Any, selector: str) -> list[list[str]]:
    rows = page.locator(f"{selector} tbody tr")
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def test_the_overview_shows_each_topic_with_its_counts(
    page: Any, open_server: str, tmp_path: Path
) -> None:
    response = page.goto(f"{open_server}/ui/")
    assert response.status == 200
    rows = cells(page, "#topics")
    assert [row[0] for row in rows] == ["emails", "reports"]
    emails, reports = rows
    # starting, running, snoozed, failed, terminated, leased
    assert emails[1:7] == ["1", "1", "0", "2", "60", "1"]
    assert reports[1:7] == ["0", "0", "1", "0", "0", "1"]
    assert "Requeue 2 failed" in emails[-1]
    shoot(page, tmp_path, "overview", docs=True)


def test_filters_and_paging_follow_the_store(page: Any, open_server: str, tmp_path: Path) -> None:
    page.goto(f"{open_server}/ui/")
    # A count is a link to the tasks it counts.
    page.locator('#topics tr[data-topic="emails"] a.count-failed').click()
    page.wait_for_url(re.compile(r"/ui/tasks\?topic=emails&status=failed$"))
    assert [row[0] for row in cells(page, "table.tasks")] == ["bounced-1", "bounced-2"]
    assert page.locator('select[name="status"]').input_value() == "failed"
    # The filter form: every terminated task of emails, a page (50) at a time.
    page.locator('select[name="status"]').select_option("terminated")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=terminated"))
    first = [row[0] for row in cells(page, "table.tasks")]
    assert first == [f"done-{i:02d}" for i in range(50)]
    shoot(page, tmp_path, "tasks")
    page.locator("#next-page").click()
    page.wait_for_url(re.compile(r"cursor="))
    second = [row[0] for row in cells(page, "table.tasks")]
    assert second == [f"done-{i:02d}" for i in range(50, 60)]
    assert page.locator("#next-page").count() == 0
    # A topic filter alone.
    page.goto(f"{open_server}/ui/tasks?topic=reports")
    assert [row[:3] for row in cells(page, "table.tasks")] == [["weekly", "reports", "snoozed"]]
    # A bad filter is a clear error naming the field, not a crash.
    response = page.goto(f"{open_server}/ui/tasks?status=done")
    assert response.status == 400
    assert "status: must be one of" in page.locator(".problem").inner_text()


def test_leased_tasks_show_their_owners(page: Any, open_server: str) -> None:
    page.goto(f"{open_server}/ui/leased")
    rows = cells(page, "#leased")
    assert [(row[0], row[2], row[3]) for row in rows] == [
        ("sending", "running", "worker-b"),
        ("weekly", "snoozed", "worker-c"),
    ]
    page.goto(f"{open_server}/ui/leased?topic=reports")
    assert [row[0] for row in cells(page, "#leased")] == ["weekly"]


def test_a_task_shows_its_data_and_its_errors_with_the_traceback(
    page: Any, open_server: str, store: SQLStore, tmp_path: Path
) -> None:
    page.goto(f"{open_server}/ui/tasks?topic=emails&status=failed")
    page.get_by_role("link", name="bounced-1").click()
    page.wait_for_url(re.compile(r"/ui/tasks/bounced-1$"))
    assert page.locator("#task-status").inner_text() == "failed"
    assert '"to": "bounced-1@example.com"' in page.locator("#task-data").inner_text()
    assert page.locator(".error-line").first.inner_text() == (
        "attempt 1: ValueError: the mail server refused the message"
    )
    traceback = page.locator("pre.traceback").first.inner_text()
    assert traceback.startswith("Traceback (most recent call last):")
    assert 'File "handlers.py", line 12, in send' in traceback
    shoot(page, tmp_path, "task", docs=True)


def test_requeue_from_the_task_page_goes_through_the_store(
    page: Any, open_server: str, store: SQLStore, tmp_path: Path
) -> None:
    page.goto(f"{open_server}/ui/tasks/bounced-1")
    page.locator("#requeue").click()
    page.wait_for_url(re.compile(r"/ui/tasks/bounced-1\?done=requeued$"))
    assert "Requeued" in page.locator(".notice").inner_text()
    assert page.locator("#task-status").inner_text() == "starting"
    requeued = store.get_task("bounced-1")
    assert (requeued.status, requeued.failures) == (Status.STARTING, 0)
    # The other failed task was not touched; a failed task has no cancel button.
    assert store.get_task("bounced-2").status is Status.FAILED
    page.goto(f"{open_server}/ui/tasks/bounced-2")
    assert page.locator("#cancel").count() == 0


def test_cancel_and_bulk_requeue_go_through_the_store(
    page: Any, open_server: str, store: SQLStore
) -> None:
    page.goto(f"{open_server}/ui/tasks/hostile")
    page.locator('input[name="reason"]').fill("not wanted")
    page.locator("#cancel").click()
    page.wait_for_url(re.compile(r"done=cancelled$"))
    cancelled = store.get_task("hostile")
    assert cancelled.status is Status.FAILED
    assert "not wanted" in (cancelled.error or "")
    page.goto(f"{open_server}/ui/")
    page.get_by_role("button", name="Requeue 3 failed").click()
    page.wait_for_url(re.compile(r"/ui/tasks\?topic=emails&done=bulk"))
    assert page.locator(".notice").inner_text() == "Requeued 3 failed tasks (0 had moved on)."
    for task_id in ("bounced-1", "bounced-2", "hostile"):
        assert store.get_task(task_id).status is Status.STARTING
    assert store.count_tasks("emails").topics[0].failed == 0


def test_cancel_a_running_task_from_its_page_fences_its_worker(
    page: Any, open_server: str, store: SQLStore, tmp_path: Path
) -> None:
    page.goto(f"{open_server}/ui/tasks/sending")
    assert page.locator("#task-status").inner_text() == "running"
    page.locator('input[name="reason"]').fill("recipient unsubscribed")
    page.locator("#cancel").click()
    page.wait_for_url(re.compile(r"/ui/tasks/sending\?done=cancelled-running$"))
    assert "reports nothing" in page.locator(".notice").inner_text()
    assert page.locator("#task-status").inner_text() == "failed"
    assert page.locator("#cancel").count() == 0
    shoot(page, tmp_path, "cancelled-running")
    cancelled = store.get_task("sending")
    assert (cancelled.status, cancelled.error) == (
        Status.FAILED,
        "cancelled: recipient unsubscribed",
    )
    # worker-b's next keepalive is refused, and says why
    (kept,) = store.extend_leases("worker-b", [LeaseToken("sending", 1)])
    assert isinstance(kept.failure(), TaskCancelled)


def test_pause_and_resume_a_topic_from_the_overview(
    page: Any, open_server: str, store: SQLStore, tmp_path: Path
) -> None:
    page.goto(f"{open_server}/ui/")
    page.locator('tr[data-topic="reports"] button.pause-topic').click()
    page.wait_for_url(re.compile(r"/ui/\?done=paused$"))
    assert "Paused" in page.locator(".notice").inner_text()
    assert store.paused_topics() == ["reports"]
    assert cells(page, "#topics")[1][0] == "reports paused"
    assert "reports" in page.locator("#paused-topics").inner_text()
    shoot(page, tmp_path, "paused", docs=True)
    store.revoke_lease("weekly", store.get_task("weekly").record_ver)  # woken: ready
    assert store.reserve_tasks("reports", "worker-c") == []
    page.locator('tr[data-topic="reports"] button.resume-topic').click()
    page.wait_for_url(re.compile(r"/ui/\?done=resumed$"))
    assert store.paused_topics() == []
    assert page.locator("#paused-topics").count() == 0
    assert [t.task_id for t in store.reserve_tasks("reports", "worker-c")] == ["weekly"]


def test_a_paused_topic_without_tasks_is_listed_and_can_be_resumed(
    page: Any, open_server: str, store: SQLStore
) -> None:
    store.pause_topic("invoices")
    page.goto(f"{open_server}/ui/")
    assert "invoices" in page.locator("#paused-topics").inner_text()
    page.locator("#paused-topics button.resume-topic").click()
    page.wait_for_url(re.compile(r"done=resumed$"))
    assert store.paused_topics() == []


def test_task_data_with_markup_is_shown_escaped_and_never_runs(page: Any, open_server: str) -> None:
    page.goto(f"{open_server}/ui/tasks/hostile")
    shown = page.locator("#task-data").inner_text()
    assert "<script>window.__pwned = 1</script>" in shown
    assert "onerror='window.__pwned=2'" in shown
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#task-data script, #task-data img").count() == 0


def test_a_server_with_a_token_asks_for_it_once_and_refuses_a_wrong_one(
    page: Any, guarded_server: str, store: SQLStore, tmp_path: Path
) -> None:
    page.goto(f"{guarded_server}/ui/tasks?topic=reports")
    page.wait_for_url(re.compile(r"/ui/login\?next="))
    shoot(page, tmp_path, "login", docs=True)
    # A wrong token is refused, and the pages stay closed.
    page.locator('input[name="token"]').fill("not-the-token-at-all")
    with page.expect_response(re.compile(r"/ui/login$")) as refused:
        page.get_by_role("button", name="Sign in").click()
    assert refused.value.status == 401
    assert page.locator(".problem").inner_text() == "Wrong token."
    assert page.goto(f"{guarded_server}/ui/").url.startswith(f"{guarded_server}/ui/login")
    # The right token opens the page asked for first, and the session holds.
    page.goto(f"{guarded_server}/ui/tasks?topic=reports")
    page.locator('input[name="token"]').fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/tasks\?topic=reports$"))
    assert [row[0] for row in cells(page, "table.tasks")] == ["weekly"]
    assert page.goto(f"{guarded_server}/ui/leased").status == 200
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "sokka_session"
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    # An action works in the session; signing out closes the pages again.
    page.goto(f"{guarded_server}/ui/tasks/bounced-2")
    page.locator("#requeue").click()
    page.wait_for_url(re.compile(r"done=requeued$"))
    assert store.get_task("bounced-2").status is Status.STARTING
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/login$"))
    assert page.goto(f"{guarded_server}/ui/").url.startswith(f"{guarded_server}/ui/login")


def test_after_five_wrong_tokens_the_login_page_says_to_wait_even_for_the_right_one(
    page: Any, guarded_server: str, tmp_path: Path
) -> None:
    page.goto(f"{guarded_server}/ui/login")
    for attempt in range(5):
        page.locator('input[name="token"]').fill(f"not-the-token-{attempt}")
        with page.expect_response(re.compile(r"/ui/login$")) as refused:
            page.get_by_role("button", name="Sign in").click()
        assert refused.value.status == 401
    page.locator('input[name="token"]').fill(TOKEN)
    with page.expect_response(re.compile(r"/ui/login$")) as locked:
        page.get_by_role("button", name="Sign in").click()
    assert locked.value.status == 429
    assert 0 < int(locked.value.headers["retry-after"]) <= 60
    message = page.locator(".problem").inner_text()
    assert re.fullmatch(r"Too many wrong tokens from your address: try again in \d+ s\.", message)
    assert page.context.cookies()[0]["name"] == "sokka_session"  # the unsigned one only
    assert page.goto(f"{guarded_server}/ui/").url.startswith(f"{guarded_server}/ui/login")
    shoot(page, tmp_path, "login-locked")


# -- without a browser: what a forged request gets -----------------------------------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_an_action_without_the_csrf_token_or_from_another_origin_is_refused(
    open_server: str, store: SQLStore
) -> None:
    with httpx.Client(base_url=open_server) as client:
        page = client.get("/ui/tasks/bounced-1")
        csrf = _csrf(page.text)
        form = {"task_id": "bounced-1"}
        # No session cookie at all (what a page of another site sends: SameSite=Strict).
        bare = httpx.post(f"{open_server}/ui/actions/requeue", data={**form, "csrf": csrf})
        assert bare.status_code == 403
        assert client.post("/ui/actions/requeue", data=form).status_code == 403
        wrong = client.post("/ui/actions/requeue", data={**form, "csrf": "0" * 64})
        assert wrong.status_code == 403
        other = client.post(
            "/ui/actions/requeue",
            data={**form, "csrf": csrf},
            headers={"Origin": "http://evil.example"},
        )
        assert other.status_code == 403
        assert store.get_task("bounced-1").status is Status.FAILED
        done = client.post("/ui/actions/requeue", data={**form, "csrf": csrf})
        assert done.status_code == 303
        assert store.get_task("bounced-1").status is Status.STARTING


def test_the_api_still_needs_the_bearer_token_and_a_forged_cookie_opens_nothing(
    guarded_server: str,
) -> None:
    with httpx.Client(base_url=guarded_server) as client:
        assert client.post("/v1/count_tasks", json={}).status_code == 401
        forged = "abc.1.9999999999." + "0" * 64
        answer = httpx.get(f"{guarded_server}/ui/", headers={"Cookie": f"sokka_session={forged}"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login")
        # A login must come from the login form (its CSRF token).
        assert client.post("/ui/login", data={"token": TOKEN}).status_code == 403


def test_pages_forbid_framing_and_scripts(open_server: str) -> None:
    answer = httpx.get(f"{open_server}/ui/")
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src" not in policy
    assert "default-src 'none'" in policy
    assert answer.headers["x-frame-options"] == "DENY"


# -- sokka dashboard, run as a user runs it ------------------------------------------------


def test_sokka_dashboard_serves_the_pages_on_loopback_without_a_login(
    store: SQLStore, tmp_path: Path
) -> None:
    from tests.shell.test_cli import _free_port, sokka

    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    port = _free_port()
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    server = subprocess.Popen(
        [*command, "dashboard", "--db", url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/ui/", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, "sokka dashboard exited"
                assert time.monotonic() < deadline, "sokka dashboard did not come up"
                time.sleep(0.05)
        assert answer.status_code == 200
        assert 'data-topic="emails"' in answer.text
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=20)
    assert server.returncode == 0, output
    assert f"dashboard on http://127.0.0.1:{port}/ui/" in output
    refused = sokka("dashboard", "--db", url, "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "listens on loopback only" in refused.stderr
