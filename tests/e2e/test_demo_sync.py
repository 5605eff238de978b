"""End to end: the demo FastAPI app, the real syncgate binary in front of it, real HTTP and WebSocket
clients. These tests check the contract of SPEC as a browser would see it, over loopback only.

Sockets and HTTP run in one asyncio loop per test (`asyncio.run`), every receive has a timeout, and
assertions about seq are relative to the position the sidecar reports, so tests sharing one stack
do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from conftest import Stack

RECEIVE_TIMEOUT_S = 5.0
SILENCE_S = 0.3
POSITION = re.compile(r"projects=(\d+)")


# --- helpers --------------------------------------------------------------------------------------


@asynccontextmanager
async def socket(stack: Stack, user: str | None = None) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    """A generic-protocol socket from the sidecar's own origin; yields it with its `welcome`."""
    headers = {"X-User-Id": user} if user else {}
    async with connect(
        stack.ws_url,
        origin=stack.origin,  # type: ignore[arg-type]
        additional_headers=headers,
        proxy=None,
        compression=None,
        open_timeout=RECEIVE_TIMEOUT_S,
    ) as ws:
        welcome = await receive(ws)
        assert welcome.get("op") == "welcome", welcome
        assert isinstance(welcome.get("client_id"), str) and welcome["client_id"]
        assert welcome.get("user") == user
        yield ws, welcome


async def receive(ws: ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S)
    assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
    frame = json.loads(raw)
    assert isinstance(frame, dict), frame
    return frame


async def assert_silent(ws: ClientConnection, seconds: float = SILENCE_S) -> None:
    try:
        raw = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return
    pytest.fail(f"expected no frame within {seconds}s, got {raw!r}")


async def subscribe(ws: ClientConnection, channel: str, since: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"op": "subscribe", "channel": channel}
    if since is not None:
        message["since"] = since
    await ws.send(json.dumps(message))
    reply = await receive(ws)
    assert reply.get("op") == "subscribed" and reply.get("channel") == channel, reply
    return reply


def http(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.base_url, timeout=RECEIVE_TIMEOUT_S, trust_env=False)


async def projects_position(client: httpx.AsyncClient) -> int:
    """GETs the list through the sidecar and returns the `projects` seq it is at."""
    resp = await client.get("/api/projects")
    assert resp.status_code == 200, resp.text
    header = resp.headers.get("x-sync-position")
    assert header is not None, f"no X-Sync-Position on GET /api/projects: {dict(resp.headers)}"
    match = POSITION.fullmatch(header.strip())
    assert match, f"X-Sync-Position should be exactly projects=<seq>, got {header!r}"
    return int(match.group(1))


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_project_event(event: dict[str, Any], action: str, project_id: str, seq: int) -> None:
    expected = {
        "type": f"project_{action}",
        "channel": "projects",
        "seq": seq,
        "resource": "projects",
        "resource_id": project_id,
        "action": action,
        "invalidate": [["projects"], ["project", project_id]],
        "data": None,
        "actor": "7",
    }
    assert {key: event.get(key) for key in expected} == expected, event
    assert set(event) == set(expected) | {"id", "ts"}, f"envelope keys differ from SPEC: {sorted(event)}"
    assert isinstance(event["id"], str) and event["id"], event
    assert isinstance(event["ts"], int) and abs(event["ts"] - now_ms()) < 5000, event


# --- tests ----------------------------------------------------------------------------------------


def test_get_through_sidecar_is_not_cacheable_and_carries_position(stack: Stack) -> None:
    async def scenario() -> None:
        async with http(stack) as client:
            resp = await client.get("/api/projects")
            assert resp.status_code == 200
            # The demo app sets no Cache-Control: this is the sidecar's default rule for /api.
            directives = {d.strip().lower() for d in resp.headers.get("cache-control", "").split(",")}
            assert "no-cache" in directives, resp.headers.get("cache-control")
            assert POSITION.fullmatch(resp.headers.get("x-sync-position", "")), resp.headers

    asyncio.run(scenario())


def test_project_create_update_delete_reach_subscriber_as_three_ordered_events(stack: Stack) -> None:
    async def scenario() -> None:
        async with http(stack) as client, socket(stack, user="8") as (ws, _):
            position = await projects_position(client)
            await subscribe(ws, "projects", since=position)
            as_alice = {"X-User-Id": "7"}

            created = await client.post("/api/projects", json={"name": "Apollo"}, headers=as_alice)
            assert created.status_code == 201, created.text
            project_id = str(created.json()["id"])
            updated = await client.patch(f"/api/projects/{project_id}", json={"name": "Artemis"}, headers=as_alice)
            assert updated.status_code == 200, updated.text
            deleted = await client.delete(f"/api/projects/{project_id}", headers=as_alice)
            assert deleted.status_code == 200, deleted.text

            events = [await receive(ws) for _ in range(3)]
            for event, action, offset in zip(events, ["created", "updated", "deleted"], [1, 2, 3], strict=True):
                assert_project_event(event, action, project_id, seq=position + offset)
            assert len({e["id"] for e in events}) == 3, events
            await assert_silent(ws)  # exactly three
            assert await projects_position(client) == position + 3

    asyncio.run(scenario())


def test_mutation_answered_404_emits_nothing(stack: Stack) -> None:
    async def scenario() -> None:
        async with http(stack) as client, socket(stack, user="8") as (ws, _):
            position = await projects_position(client)
            await subscribe(ws, "projects", since=position)

            missing = await client.patch("/api/projects/999999", json={"name": "nope"}, headers={"X-User-Id": "7"})
            assert missing.status_code == 404
            await assert_silent(ws)

            # The failed mutation took no seq either: the next real change is exactly position + 1.
            created = await client.post("/api/projects", json={"name": "after 404"}, headers={"X-User-Id": "7"})
            assert created.status_code == 201
            event = await receive(ws)
            assert_project_event(event, "created", str(created.json()["id"]), seq=position + 1)

    asyncio.run(scenario())


def test_x_sync_event_header_is_published_to_the_user_and_stripped(stack: Stack) -> None:
    async def scenario() -> None:
        async with http(stack) as client, socket(stack, user="7") as (ws, _):
            await subscribe(ws, "user:7")

            resp = await client.post(
                "/api/notifications", json={"user_id": "7", "title": "Build finished"}, headers={"X-User-Id": "8"}
            )
            assert resp.status_code == 201, resp.text
            assert "x-sync-event" not in resp.headers, "the sidecar must strip X-Sync-Event"

            event = await receive(ws)
            assert event.get("type") == "notification_created", event
            assert event.get("channel") == "user:7", event
            assert event.get("data") == {"title": "Build finished"}, event
            assert event.get("invalidate") == [["notifications"]], event
            assert isinstance(event.get("seq"), int) and isinstance(event.get("id"), str), event
            await assert_silent(ws)

            # The browser's refetch, through the sidecar with its own credentials, sees it.
            mine = await client.get("/api/notifications", headers={"Authorization": "Bearer alice-token"})
            assert mine.status_code == 200
            assert "Build finished" in [n["title"] for n in mine.json()]

    asyncio.run(scenario())


def test_user_channel_is_refused_to_other_users_and_anonymous(stack: Stack) -> None:
    async def scenario() -> None:
        async with socket(stack, user="8") as (ws, _):
            await ws.send(json.dumps({"op": "subscribe", "channel": "user:7"}))
            reply = await receive(ws)
            assert reply.get("op") == "error" and reply.get("code") == "forbidden", reply
            assert reply.get("ref") == "subscribe", reply
        # With authentication configured, an anonymous socket is refused at the handshake.
        with pytest.raises(InvalidStatus) as refused:
            async with socket(stack, user=None):
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(scenario())


def test_publish_api_delivers_to_subscribers_and_checks_the_token(stack: Stack) -> None:
    async def scenario() -> None:
        body = {"channel": "user:7", "type": "report_ready", "data": {"n": 1}, "invalidate": [["reports"]]}
        async with socket(stack, user="7") as (ws, _), httpx.AsyncClient(trust_env=False) as admin:
            await subscribe(ws, "user:7")
            refused = await admin.post(
                f"{stack.admin_url}/publish", json=body, headers={"Authorization": "Bearer wrong"}
            )
            assert refused.status_code in (401, 403), refused.text
            await assert_silent(ws)

            accepted = await admin.post(
                f"{stack.admin_url}/publish", json=body, headers={"Authorization": f"Bearer {stack.publish_token}"}
            )
            assert accepted.status_code == 202, accepted.text
            event = await receive(ws)
            assert event.get("type") == "report_ready" and event.get("data") == {"n": 1}, event
            assert event.get("seq") == accepted.json().get("seq"), (event, accepted.text)

    asyncio.run(scenario())


def test_cross_origin_socket_is_refused(stack: Stack) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStatus):
            async with connect(
                stack.ws_url, origin="http://evil.example", proxy=None, open_timeout=RECEIVE_TIMEOUT_S  # type: ignore[arg-type]
            ):
                pass

    asyncio.run(scenario())
