"""The HTTP API: regressions of the first review."""

from __future__ import annotations

import json

import httpx
import pytest

from sokka.adapters.memory import MemoryStore
from tests.shell.http_api.helpers import (
    AUTH,
    JSON_BODY,
    TOKEN,
    assert_problem,
    post,
    snapshot,
)


@pytest.mark.parametrize(
    "authorization",
    [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}"],
    ids=["lower-case scheme", "upper-case scheme", "two spaces"],
)
def test_the_scheme_is_case_insensitive_and_may_be_followed_by_several_spaces(
    http: httpx.Client, backing: MemoryStore, authorization: str
) -> None:
    response = post(http, "get_task", {"task_id": "t-starting"},
                    headers={**JSON_BODY, "Authorization": authorization})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] == "t-starting"


def test_two_authorization_headers_are_refused_even_if_one_is_right(
    http: httpx.Client, backing: MemoryStore
) -> None:
    before = snapshot(backing)
    headers = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer wrong-token-0123456789"),
        ("Authorization", f"Bearer {TOKEN}"),
    ]
    body = json.dumps({"task_id": "t-starting", "reason": "r"}).encode()
    response = http.post("/v1/cancel", content=body, headers=headers)
    problem = assert_problem(response, 401, "unauthorized")
    assert "one Authorization header" in problem["detail"]
    assert snapshot(backing) == before


@pytest.mark.parametrize("content_type", ["application/json; charset=latin-1",
                                          'application/json; charset="utf-16"'])  # fmt: skip
def test_json_in_another_charset_than_utf8_answers_415(
    http: httpx.Client, backing: MemoryStore, content_type: str
) -> None:
    before = snapshot(backing)
    response = post(http, "cancel", {"task_id": "t-starting", "reason": "r"},
                    headers={**AUTH, "Content-Type": content_type})  # fmt: skip
    assert_problem(response, 415, "unsupported-media-type")
    assert snapshot(backing) == before


def test_json_declared_utf8_is_accepted(http: httpx.Client, backing: MemoryStore) -> None:
    utf8 = {**AUTH, "Content-Type": "application/json; charset=UTF-8"}
    response = post(http, "get_task", {"task_id": "t-starting"}, headers=utf8)
    assert response.status_code == 200, response.text


def test_a_trailing_slash_answers_404_unknown_endpoint_not_a_redirect(
    http: httpx.Client, backing: MemoryStore
) -> None:
    before = snapshot(backing)
    response = post(http, "get_task/", {"task_id": "t-starting"}, headers={**AUTH, **JSON_BODY})
    assert_problem(response, 404, "unknown-endpoint")
    assert "location" not in response.headers
    assert snapshot(backing) == before
