"""The HTTP API: 1c. ``sokka serve --allow-no-token`` on an address other than
loopback, as a user runs it: a warning names the address at start, and the
dashboard's actions still need their CSRF token."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from sokka.adapters.sql import SQLStore
from sokka.core.task import Status, TaskSpec
from tests.shell.http_api.helpers import sokka_serve


def _warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if " WARNING sokka.http: no token on " in line]


def test_serving_every_interface_without_a_token_warns_and_dashboard_actions_need_csrf(
    tmp_path: Path,
) -> None:
    with sokka_serve(tmp_path, "--host", "0.0.0.0", "--allow-no-token", token=None) as (
        server,
        base_url,
    ):
        port = base_url.rsplit(":", 1)[1]
        (warning,) = _warnings((tmp_path / "serve.log").read_text())
        assert f"no token on 0.0.0.0:{port} (--allow-no-token)" in warning
        assert "/ui/" in warning
        assert "proxy" in warning
        with SQLStore(f"sqlite:///{tmp_path / 'q.db'}") as store:
            store.create_task(TaskSpec(topic="mail", task_id="m1"))
            # The API is open, as the flag says (a proxy in front is to authenticate).
            assert httpx.post(f"{base_url}/v1/count_tasks", json={}).status_code == 200
            with httpx.Client(base_url=base_url) as browser:
                page = browser.get("/ui/tasks/m1")
                assert page.status_code == 200  # no login on a server without a token
                found = re.search(r'name="csrf" value="([^"]+)"', page.text)
                assert found is not None
                csrf = found.group(1)
                form = {"task_id": "m1", "reason": "forged"}
                refused = [
                    # no session cookie (what another site's page sends: SameSite=Strict)
                    httpx.post(f"{base_url}/ui/actions/cancel", data={**form, "csrf": csrf}),
                    browser.post("/ui/actions/cancel", data=form),  # no CSRF token
                    browser.post("/ui/actions/cancel", data={**form, "csrf": "0" * 64}),
                    browser.post(  # from another site's page
                        "/ui/actions/cancel",
                        data={**form, "csrf": csrf},
                        headers={"Origin": "http://evil.example"},
                    ),
                ]
                assert [r.status_code for r in refused] == [403, 403, 403, 403]
                assert store.get_task("m1").status is Status.STARTING
                done = browser.post("/ui/actions/cancel", data={**form, "csrf": csrf})
                assert done.status_code == 303
                assert store.get_task("m1").status is Status.FAILED
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_serving_loopback_without_a_token_does_not_warn(tmp_path: Path) -> None:
    with sokka_serve(tmp_path, token=None) as (server, _base_url):
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "(no token)" in log
    assert _warnings(log) == []
