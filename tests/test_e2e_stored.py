"""Stored responses and conversations through `make serve`'s gateway with two callers: each sees only
their own, and another caller's id answers exactly as an unknown one (docs/security.md)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity
from genai_handler.stored import OWNER_KEY

from .conftest import TEMPLATE, function_env

TOKENS = {"alice-token": "alice@example.com", "bob-token": "bob@example.com"}


@pytest.fixture(scope="module")
def gateway(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalGateway]:
    env = function_env(identity, endpoint, GENAI_ALLOW_STORED_RESPONSES="true")
    log_dir = tmp_path_factory.mktemp("stored")
    with (
        open(log_dir / "function.log", "ab") as log,
        LocalGateway(env, tokens=TOKENS, function_log=log, console=io.StringIO(), template=TEMPLATE) as gw,
    ):
        yield gw


def _client(gateway: LocalGateway, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/genai/v1", api_key=token, max_retries=0, timeout=30)


def _creates(endpoint: LocalEndpoint) -> int:
    return sum(1 for r in endpoint.requests if r.method == "POST" and r.path.endswith("/responses"))


def test_given_alices_response_when_she_and_bob_use_its_id_then_only_she_can(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given a response Alice stored (store defaults to true), with metadata that claims another owner
    alice, bob = _client(gateway, "alice-token"), _client(gateway, "bob-token")
    first = alice.responses.create(input="Capital of France?", metadata={OWNER_KEY: "someone-else", "k": "v"})
    # when Alice continues, reads, lists and Bob tries each with her id
    follow = alice.responses.create(input="And of Italy?", previous_response_id=first.id)
    read = alice.responses.retrieve(first.id)
    items = alice.responses.input_items.list(follow.id)
    creates = _creates(upstream)
    refused = []
    for attempt in (
        lambda: bob.responses.retrieve(first.id),
        lambda: bob.responses.create(input="Mine now?", previous_response_id=first.id),
        lambda: bob.responses.input_items.list(first.id),
        lambda: bob.responses.cancel(first.id),
        lambda: bob.responses.delete(first.id),
        lambda: bob.responses.retrieve("resp_never_made"),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        refused.append(caught.value.body)
    # then Alice has her history; her forged owner was replaced by hers
    assert follow.output_text == "Local answer to: And of Italy?" and read.id == first.id
    assert [item.type for item in items.data] and read.metadata is not None and read.metadata["k"] == "v"
    assert read.metadata[OWNER_KEY] not in ("someone-else", "")
    # and Bob gets one answer for her ids and for an id nobody made, and none of his calls reached create
    assert all(body == refused[-1] for body in refused)
    assert _creates(upstream) == creates
    # when Alice deletes it, then it is gone for her too
    alice.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(first.id)


def test_given_a_background_call_when_its_owner_polls_then_it_completes_and_others_cannot_cancel_it(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given Alice's background call, answered at once as queued
    alice, bob = _client(gateway, "alice-token"), _client(gateway, "bob-token")
    queued = alice.responses.create(input="A long task", background=True)
    assert queued.status in ("queued", "in_progress")
    # when Bob tries to cancel it
    with pytest.raises(openai.NotFoundError):
        bob.responses.cancel(queued.id)
    # then Alice polls it to completion, each poll a short invocation
    until = time.monotonic() + 10
    polled = alice.responses.retrieve(queued.id)
    while polled.status in ("queued", "in_progress") and time.monotonic() < until:
        time.sleep(0.05)
        polled = alice.responses.retrieve(queued.id)
    assert polled.status == "completed" and polled.output_text == "Local answer to: A long task"
    # when she starts another and cancels it, then it stays cancelled
    second = alice.responses.create(input="Another long task", background=True)
    assert alice.responses.cancel(second.id).status == "cancelled"
    assert alice.responses.retrieve(second.id).status == "cancelled"


def test_given_a_plain_json_client_when_it_chats_on_the_main_route_then_previous_response_id_carries_on(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given a first answer on /genai/chat, for a client without an OpenAI SDK
    url, auth = f"{gateway.url}/genai/chat", {"Authorization": "Bearer alice-token"}
    first = httpx.post(url, json={"prompt": "Capital of France?"}, headers=auth, timeout=30).json()
    # when the next turn names it
    second = httpx.post(
        url, json={"prompt": "And Italy?", "previous_response_id": first["id"]}, headers=auth, timeout=30
    )
    # then OCI got the previous id, and another caller cannot use it
    assert second.status_code == 200 and second.json()["output_text"] == "Local answer to: And Italy?"
    assert json.loads(upstream.requests[-1].body)["previous_response_id"] == first["id"]
    other = {"prompt": "Mine?", "previous_response_id": first["id"]}
    refused = httpx.post(url, json=other, headers={"Authorization": "Bearer bob-token"}, timeout=30)
    assert refused.status_code == 404 and refused.json()["error"]["type"] == "not_found"


def test_given_alices_conversation_when_used_by_each_caller_then_only_she_reaches_it(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given a conversation Alice started with one item
    alice, bob = _client(gateway, "alice-token"), _client(gateway, "bob-token")
    conversation = alice.conversations.create(items=[{"role": "user", "content": "Remember: blue."}])
    # when she talks in it, and Bob tries to read, list, add to, update, use and delete it
    answer = alice.responses.create(input="What colour?", conversation=conversation.id)
    for attempt in (
        lambda: bob.conversations.retrieve(conversation.id),
        lambda: bob.conversations.items.list(conversation.id),
        lambda: bob.conversations.items.create(conversation.id, items=[{"role": "user", "content": "hi"}]),
        lambda: bob.conversations.update(conversation.id, metadata={"x": "y"}),
        lambda: bob.responses.create(input="What colour?", conversation=conversation.id),
        lambda: bob.conversations.delete(conversation.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    # then Alice's conversation holds her items and the answer, and she can delete it
    assert answer.output_text == "Local answer to: What colour?"
    listed = alice.conversations.items.list(conversation.id, order="asc")
    assert len(listed.data) >= 3
    alice.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        alice.conversations.retrieve(conversation.id)


def test_given_stored_responses_turned_off_when_a_stored_route_is_called_then_it_is_refused_naming_the_setting(
    identity: LocalIdentity, upstream: LocalEndpoint, tmp_path: Path
) -> None:
    # given the operator's switch off
    env = function_env(identity, upstream, GENAI_ALLOW_STORED_RESPONSES="false")
    with (
        open(tmp_path / "function.log", "ab") as log,
        LocalGateway(env, tokens=TOKENS, function_log=log, console=io.StringIO(), template=TEMPLATE) as gw,
    ):
        client = _client(gw, "alice-token")
        # when
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.retrieve("resp_1")
        answer = client.responses.create(input="hi")
    # then the route names the setting, and a plain call is answered without storing
    assert "GENAI_ALLOW_STORED_RESPONSES" in caught.value.message
    assert answer.output_text == "Local answer to: hi" and json.loads(upstream.requests[-1].body)["store"] is False
