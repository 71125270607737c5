"""The local API Gateway (`make serve`), driven over real HTTP in front of func.py under the real fdk."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dotenv
import httpx2
import openai
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genai_handler.local.agent import REPO_ROOT
from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.gateway import (
    LocalGateway,
    _banner,
    function_settings,
    function_timeout,
    main,
    parse_dotenv,
    read_dotenv,
    route_pattern,
    routes,
    upstream,
)
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL, MAX_INVOKE_PAYLOAD_BYTES

from .conftest import TEMPLATE, function_env, wait_until_recorded
from .test_local_agent import SLEEPY_FUNCTION

TOKEN = "local-gateway-test-token"
APP_ORIGIN = "http://localhost:3000"  # the browser app a developer allows with LOCAL_GATEWAY_ALLOWED_ORIGIN
DEPLOYED_CORS = json.loads((REPO_ROOT / "policies" / "apigateway-deployment.json").read_text())["requestPolicies"][
    "cors"
]
# Answers every call and appends a line per call to $CALLS_FILE: proof of whether it was invoked.
TALLY_FUNCTION = """\
import os

from fdk import response


def handler(ctx, data=None):
    with open(os.environ["CALLS_FILE"], "a") as calls:
        calls.write("call\\n")
    return response.Response(ctx, response_data="counted", headers={"Content-Type": "text/plain"})
"""
# Appends what it was invoked with to $CALLS_FILE, one JSON line per call: what API Gateway hands the function.
RECORDING_FUNCTION = """\
import json
import os

from fdk import response


def handler(ctx, data=None):
    body = data.getvalue() if data is not None else b""
    caller = ctx.HTTPHeaders().get("x-genai-caller")
    seen = {"method": ctx.Method(), "url": ctx.RequestURL(), "caller": caller, "body": body.decode()}
    with open(os.environ["CALLS_FILE"], "a") as calls:
        calls.write(json.dumps(seen) + "\\n")
    return response.Response(ctx, response_data="{}", headers={"Content-Type": "application/json"})
"""
# Two callers of the local gateway, each with its own token, told apart as two JWT subjects would be.
ALICE_TOKEN, BOB_TOKEN = "alice-local-token", "bob-local-token"


@pytest.fixture(scope="module")
def console() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(scope="module")
def gateway(
    identity: LocalIdentity, endpoint: LocalEndpoint, console: io.StringIO, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalGateway]:
    log = open(tmp_path_factory.mktemp("gw") / "function.log", "ab")  # noqa: SIM115
    env = function_env(identity, endpoint)
    with LocalGateway(
        env, token=TOKEN, allowed_origin=APP_ORIGIN, timeout_s=4, function_log=log, console=console, template=TEMPLATE
    ) as gw:
        yield gw
    log.close()


@pytest.fixture
def client(gateway: LocalGateway) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        yield http


def _gateway_error(answer: httpx2.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"code", "message"} and body["code"] == status
    return body


def _own_host(gateway: LocalGateway) -> str:
    """The Host header a browser or curl sends for the gateway's URL."""
    return gateway.url.removeprefix("http://")


def _raw_exchange(gateway: LocalGateway, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are and read until the gateway closes the connection (a hang fails)."""
    host, port = _own_host(gateway).split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_given_the_deployment_when_the_gateway_lists_routes_then_each_path_is_under_the_prefix_with_its_methods() -> (
    None
):
    # when / then
    assert routes() == {
        "/genai/chat": ("POST",),
        "/genai/v1/responses": ("POST",),
        "/genai/v1/responses/{id}": ("GET", "DELETE"),
        "/genai/v1/responses/{id}/input_items": ("GET",),
        "/genai/v1/responses/{id}/cancel": ("POST",),
        "/genai/v1/conversations": ("POST",),
        "/genai/v1/conversations/{id}": ("GET", "POST", "DELETE"),
        "/genai/v1/conversations/{id}/items": ("GET", "POST"),
        "/genai/v1/conversations/{id}/items/{item_id}": ("GET", "DELETE"),
    }


def test_given_one_path_in_two_routes_when_read_then_it_takes_the_methods_of_both(tmp_path: Path) -> None:
    # given
    spec = {
        "routes": [
            {"path": "/items/{id}", "methods": ["GET"]},
            {"path": "/items/{id}", "methods": ["DELETE", "GET"]},
        ]
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    # when / then
    assert routes(tmp_path / "spec.json", "/p") == {"/p/items/{id}": ("GET", "DELETE")}


def test_given_a_prompt_when_posted_then_the_functions_answer_comes_back_and_one_console_line(
    client: httpx2.Client, upstream: LocalEndpoint, console: io.StringIO
) -> None:
    # when a caller POSTs a prompt with curl's form content type
    answer = client.post(
        "/genai/chat", content=b'{"prompt": "Hello"}', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    # then the function's answer, headers and status come back as HTTP
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    request_id = upstream.requests[-1].request_id
    assert answer.json()["output_text"] == "Local answer to: Hello"
    assert answer.headers["opc-request-id"] == request_id
    # and the console has one line with method, path, status, latency and the upstream request id
    [line] = [line for line in console.getvalue().splitlines() if request_id in line]
    method, path, status, latency, unit, rid = line.split()
    assert (method, path, status, unit, rid) == ("POST", "/genai/chat", "200", "ms", f"opc-request-id={request_id}")
    assert float(latency) >= 0


def test_given_a_query_string_when_posting_to_the_openai_route_then_it_is_kept_and_a_response_comes_back(
    client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # when
    answer = client.post("/genai/v1/responses?trace=1", json={"input": "hi"})
    # then
    assert answer.status_code == 200
    assert answer.json()["object"] == "response" and answer.headers["x-request-id"] == upstream.requests[-1].request_id


@pytest.mark.parametrize(
    ("send", "status", "header"),
    [
        ({"content": b"{not json"}, 400, None),
        ({"content": json.dumps({"prompt": "x" * (1024 * 1024 + 1)}).encode()}, 413, None),
    ],
    ids=["400", "413"],
)
def test_given_a_request_the_function_refuses_when_posted_then_its_status_and_body_pass_through(
    client: httpx2.Client, upstream: LocalEndpoint, send: dict, status: int, header: str | None
) -> None:
    # when
    answer = client.post("/genai/chat", **send)
    # then
    assert answer.status_code == status
    assert answer.json()["error"]["type"] in ("invalid_request", "payload_too_large")
    assert upstream.requests == []


def test_given_a_method_the_route_does_not_take_when_sent_then_the_gateway_answers_405_with_allow(
    client: httpx2.Client, upstream: LocalEndpoint, console: io.StringIO
) -> None:
    # when
    answer = client.get("/genai/chat")
    # then: the gateway's own error, in its {"code", "message"} shape, naming the methods the route takes
    body = _gateway_error(answer, 405)
    assert answer.headers["allow"] == "POST" and body["message"] == "Method Not Allowed"
    assert upstream.requests == []


def test_given_a_throttled_model_when_called_then_429_passes_through_with_retry_after(
    client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(Fault(kind="status", status=429, code="TooManyRequests", retry_after="120"))
    # when
    answer = client.post("/genai/chat", json={"prompt": "busy?"})
    # then
    assert answer.status_code == 429 and answer.headers["retry-after"] == "120"
    assert answer.headers["opc-request-id"] == upstream.requests[-1].request_id


def test_given_a_failing_upstream_when_called_then_502_passes_through(
    client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # given
    upstream.inject(*[Fault(kind="status", status=500)] * 3)
    # when
    answer = client.post("/genai/chat", json={"prompt": "down"})
    # then
    assert answer.status_code == 502 and answer.json()["error"]["type"] == "upstream_error"


def test_given_a_slow_model_when_called_then_504_passes_through_within_the_timeout(
    client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # given a gateway whose function timeout is 4 s (Fn-Deadline), and a model slower than that
    upstream.inject(Fault(kind="delay", delay_s=6))
    # when
    started = time.monotonic()
    answer = client.post("/genai/chat", json={"prompt": "slow"})
    # then
    assert answer.status_code == 504 and answer.json()["error"]["type"] == "timeout"
    assert time.monotonic() - started < 4
    # and the late answer is recorded here, not in whichever test this worker runs next
    assert wait_until_recorded(upstream, 1)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"],
    ids=["none", "wrong", "basic", "longer"],
)
def test_given_no_gateway_token_when_called_then_401_and_the_function_is_not_called(
    gateway: LocalGateway, upstream: LocalEndpoint, console: io.StringIO, authorization: str | None
) -> None:
    # given
    headers = {"Authorization": authorization} if authorization else {}
    before = console.getvalue().count('"call_id"')
    # when
    answer = httpx2.post(f"{gateway.url}/genai/chat", json={"prompt": "let me in"}, headers=headers)
    # then
    _gateway_error(answer, 401)
    assert answer.headers["www-authenticate"] == "Bearer"
    assert upstream.requests == [] and TOKEN not in console.getvalue()
    assert console.getvalue().count('"call_id"') == before


@pytest.mark.parametrize("path", ["/", "/genai", "/genai/v1/chat/completions", "/chat"])
def test_given_an_unrouted_path_when_posted_then_it_gets_404_json(
    client: httpx2.Client, upstream: LocalEndpoint, path: str
) -> None:
    # when / then
    _gateway_error(client.post(path, json={"prompt": "where?"}), 404)


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("/genai/v1/conversations/conv_1/items/msg_1", True),
        ("/genai/v1/conversations/conv%2F1/items/msg.1", True),
        ("/genai/v1/conversations//items/msg_1", False),
        ("/genai/v1/conversations/a/b/items/msg_1", False),
        ("/genai/v1/conversations/conv_1/items/", False),
        ("/genai/v1/conversationsX/conv_1/items/msg_1", False),
    ],
)
def test_given_a_route_template_when_a_path_is_matched_then_each_parameter_is_one_non_empty_segment(
    path: str, matches: bool
) -> None:
    # given / when / then
    assert bool(route_pattern("/genai/v1/conversations/{id}/items/{item_id}").fullmatch(path)) is matches


@pytest.mark.parametrize("template", ["/genai/files/{path*}", "/genai/v1/x{id}", "/genai/v1/{id"])
def test_given_a_route_the_local_gateway_cannot_match_like_api_gateway_when_read_then_it_refuses(
    template: str,
) -> None:
    # when / then: better no local gateway than one that routes otherwise than the deployed one
    with pytest.raises(ValueError, match="whole-segment"):
        route_pattern(template)


# Every call an OpenAI SDK pointed at <gateway>/genai/v1 makes on stored responses and conversations.
STORED_OBJECT_CALLS = [
    ("GET", "/genai/v1/responses/resp_1"),
    ("DELETE", "/genai/v1/responses/resp_1"),
    ("GET", "/genai/v1/responses/resp_1/input_items"),
    ("POST", "/genai/v1/responses/resp_1/cancel"),
    ("POST", "/genai/v1/conversations"),
    ("GET", "/genai/v1/conversations/conv_1"),
    ("POST", "/genai/v1/conversations/conv_1"),
    ("DELETE", "/genai/v1/conversations/conv_1"),
    ("GET", "/genai/v1/conversations/conv_1/items"),
    ("POST", "/genai/v1/conversations/conv_1/items"),
    ("GET", "/genai/v1/conversations/conv_1/items/msg_1"),
    ("DELETE", "/genai/v1/conversations/conv_1/items/msg_1"),
]


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalGateway, Path]]:
    """A gateway with three callers (the one `token`, and two in `tokens`) in front of a function that
    records what each invocation hands it."""
    folder = tmp_path_factory.mktemp("recorder")
    (folder / "func.py").write_text(RECORDING_FUNCTION)
    calls = folder / "calls"
    calls.touch()
    with LocalGateway(
        {"CALLS_FILE": str(calls)},
        function_dir=folder,
        token=TOKEN,
        subject="carol@example.com",
        tokens={ALICE_TOKEN: "alice@example.com", BOB_TOKEN: "bob@example.com"},
        allowed_origin=APP_ORIGIN,
        console=io.StringIO(),
        function_log=subprocess.DEVNULL,
        template=TEMPLATE,
    ) as gw:
        yield gw, calls


def _seen(calls: Path) -> list[dict]:
    return [json.loads(line) for line in calls.read_text().splitlines()]


@pytest.mark.parametrize(("method", "path"), STORED_OBJECT_CALLS)
def test_given_a_stored_object_route_when_called_then_the_function_gets_its_method_full_url_query_and_body(
    recorder: tuple[LocalGateway, Path], method: str, path: str
) -> None:
    # given
    gateway, calls = recorder
    before = len(_seen(calls))
    body = b'{"metadata": {"topic": "x"}}' if method == "POST" else b""
    # when
    answer = httpx2.request(
        method,
        f"{gateway.url}{path}?limit=2&order=asc",
        content=body or None,
        headers={"Authorization": f"Bearer {ALICE_TOKEN}"},
    )
    # then: the URL as API Gateway passes it (the deployment's prefix, the path as sent, the query);
    # GET and DELETE with no body
    assert answer.status_code == 200, answer.text
    [seen] = _seen(calls)[before:]
    assert seen == {
        "method": method,
        "url": f"{path}?limit=2&order=asc",
        "caller": "alice@example.com",
        "body": body.decode(),
    }


def test_given_an_openai_sdk_on_the_gateway_when_it_uses_stored_objects_then_every_call_reaches_the_function(
    recorder: tuple[LocalGateway, Path],
) -> None:
    # given the OpenAI SDK pointed at <gateway>/genai/v1, as a deployed caller points it
    gateway, calls = recorder
    before = len(_seen(calls))
    sdk = openai.OpenAI(base_url=f"{gateway.url}/genai/v1", api_key=BOB_TOKEN, max_retries=0)
    # when
    sdk.responses.retrieve("resp_1")
    sdk.responses.delete("resp_1")
    sdk.responses.input_items.list("resp_1", limit=2)
    sdk.responses.cancel("resp_1")
    sdk.conversations.create()
    sdk.conversations.retrieve("conv_1")
    sdk.conversations.update("conv_1", metadata={"topic": "x"})
    sdk.conversations.delete("conv_1")
    sdk.conversations.items.list("conv_1", limit=2)
    sdk.conversations.items.create("conv_1", items=[{"type": "message", "role": "user", "content": "hi"}])
    sdk.conversations.items.retrieve("msg_1", conversation_id="conv_1")
    sdk.conversations.items.delete("msg_1", conversation_id="conv_1")
    sdk.close()
    # then
    seen = _seen(calls)[before:]
    assert [(call["method"], call["url"].partition("?")[0]) for call in seen] == STORED_OBJECT_CALLS
    assert {call["url"].partition("?")[2] for call in seen if call["method"] == "GET"} == {"", "limit=2"}
    assert {call["caller"] for call in seen} == {"bob@example.com"}


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_given_the_real_function_when_a_stored_object_route_is_called_then_it_is_the_function_that_answers(
    client: httpx2.Client, upstream: LocalEndpoint, method: str
) -> None:
    # given every stored-object call with this method
    paths = [path for verb, path in STORED_OBJECT_CALLS if verb == method]
    # when
    answers = [client.request(method, path, content=b"{}" if method == "POST" else None) for path in paths]
    # then: none is refused by the gateway (its errors are {"code", "message"}); the function answers
    for path, answer in zip(paths, answers, strict=True):
        assert answer.headers["content-type"] == "application/json", path
        assert set(answer.json()) != {"code", "message"}, (path, answer.text)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/genai/v1/responses/resp_1", "GET, DELETE"),
        ("PUT", "/genai/v1/conversations/conv_1", "GET, POST, DELETE"),
        ("PATCH", "/genai/v1/conversations/conv_1/items/msg_1", "GET, DELETE"),
        ("DELETE", "/genai/v1/conversations", "POST"),
        ("GET", "/genai/v1/responses", "POST"),
        ("DELETE", "/genai/v1/responses/resp_1/input_items", "GET"),
        ("GET", "/genai/v1/responses/resp_1/cancel", "POST"),
        ("DELETE", "/genai/v1/conversations/conv_1/items", "GET, POST"),
        ("OPTIONS", "/genai/chat", "POST"),
    ],
)
def test_given_a_method_a_known_path_does_not_route_when_sent_then_405_with_allow_and_no_call(
    recorder: tuple[LocalGateway, Path], method: str, path: str, allow: str
) -> None:
    # given
    gateway, calls = recorder
    before = len(_seen(calls))
    # when
    answer = httpx2.request(method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {ALICE_TOKEN}"})
    # then
    assert _gateway_error(answer, 405) == {"code": 405, "message": "Method Not Allowed"}
    assert answer.headers["allow"] == allow
    assert len(_seen(calls)) == before


def test_given_head_on_a_get_route_when_sent_then_405_as_the_route_lists_no_head(
    recorder: tuple[LocalGateway, Path],
) -> None:
    # given
    gateway, calls = recorder
    before = len(_seen(calls))
    # when
    answer = httpx2.head(f"{gateway.url}/genai/v1/responses/resp_1", headers={"Authorization": f"Bearer {TOKEN}"})
    # then
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, DELETE"
    assert len(_seen(calls)) == before


@pytest.mark.parametrize(
    "path",
    [
        "/genai/v1/responses//cancel",
        "/genai/v1/responses/resp_1/unknown",
        "/genai/v1/responses/resp_1/input_items/x",
        "/genai/v1/responses/a/b/cancel",
        "/genai/v1/conversations/conv_1/items/msg_1/more",
        "/genai/v1/conversation/conv_1",
        "/genai/v1/models",
        "/genai/v1/responses/{id}/cancel/x",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_given_a_path_no_route_template_matches_when_called_then_404_and_no_call(
    recorder: tuple[LocalGateway, Path], path: str, method: str
) -> None:
    # given: a parameter stands for one whole, non-empty segment
    gateway, calls = recorder
    before = len(_seen(calls))
    # when
    answer = httpx2.request(method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {ALICE_TOKEN}"})
    # then
    assert _gateway_error(answer, 404) == {"code": 404, "message": "Not Found"}
    assert len(_seen(calls)) == before


def test_given_two_callers_with_their_own_tokens_when_each_calls_then_the_function_tells_them_apart(
    recorder: tuple[LocalGateway, Path],
) -> None:
    # given
    gateway, calls = recorder
    before = len(_seen(calls))
    # when each caller asks for the same conversation, one forging the other's caller header
    for token, forged in ((ALICE_TOKEN, None), (BOB_TOKEN, "alice@example.com"), (TOKEN, None)):
        headers = {"Authorization": f"Bearer {token}", **({"X-Genai-Caller": forged} if forged else {})}
        assert httpx2.get(f"{gateway.url}/genai/v1/conversations/conv_1", headers=headers).status_code == 200
    # then each is its own token's subject; the `token`/`subject` pair still counts as one caller
    callers = [call["caller"] for call in _seen(calls)[before:]]
    assert callers == ["alice@example.com", "bob@example.com", "carol@example.com"]


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer alice", f"Bearer {ALICE_TOKEN}{BOB_TOKEN}"])
def test_given_several_tokens_when_a_caller_has_none_of_them_then_401_and_no_call(
    recorder: tuple[LocalGateway, Path], authorization: str | None
) -> None:
    # given
    gateway, calls = recorder
    before = len(_seen(calls))
    # when
    answer = httpx2.get(
        f"{gateway.url}/genai/v1/responses/resp_1", headers={"Authorization": authorization} if authorization else {}
    )
    # then
    _gateway_error(answer, 401)
    assert len(_seen(calls)) == before


@pytest.mark.parametrize(
    "tokens", [{"": "mallory"}, {"a-token": ""}, {"a-token": "  "}], ids=["token", "subject", "blank"]
)
def test_given_an_empty_token_or_subject_when_the_gateway_is_made_then_it_refuses(tokens: dict[str, str]) -> None:
    # when / then: an empty token would let anyone in, an empty subject would name no caller
    with pytest.raises(ValueError, match="tokens"):
        LocalGateway({}, tokens=tokens, template=TEMPLATE)


def test_given_the_allowed_origin_when_it_preflights_a_delete_then_cors_allows_it_without_a_call(
    recorder: tuple[LocalGateway, Path],
) -> None:
    # given
    gateway, calls = recorder
    before = len(_seen(calls))
    # when
    answer = httpx2.options(
        f"{gateway.url}/genai/v1/conversations/conv_1",
        headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "DELETE"},
    )
    # then
    assert answer.status_code == 200
    assert {"GET", "POST", "DELETE"} <= set(answer.headers["access-control-allow-methods"].split(", "))
    assert len(_seen(calls)) == before


def test_given_the_gateway_when_make_serve_prints_its_banner_then_each_route_shows_its_methods(
    gateway: LocalGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    # when
    _banner(gateway, "the local endpoint", None)
    # then: one line per route, its methods before its path
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"Local API Gateway on {gateway.url}, routing:"
    for path, methods in routes().items():
        assert f"  {', '.join(methods)} {path}" in lines, path
    assert "  GET, DELETE /genai/v1/responses/{id}" in lines


@pytest.fixture(scope="module")
def tally(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalGateway, Path]]:
    """`make serve`'s default (no token) in front of a function that records each call it gets."""
    folder = tmp_path_factory.mktemp("tally")
    (folder / "func.py").write_text(TALLY_FUNCTION)
    calls = folder / "calls"
    calls.touch()
    env = {"CALLS_FILE": str(calls)}
    with LocalGateway(
        env,
        function_dir=folder,
        allowed_origin=APP_ORIGIN,
        console=io.StringIO(),
        function_log=subprocess.DEVNULL,
        template=TEMPLATE,
    ) as gw:
        yield gw, calls


def _calls(calls: Path) -> int:
    return len(calls.read_text().splitlines())


def _port(gateway: LocalGateway) -> str:
    return gateway.url.rpartition(":")[2]


@pytest.mark.parametrize(
    "host",
    [
        "rebind.evil.example:{port}",
        "127.0.0.1.evil.example:{port}",
        "127.0.0.1:1",
        "localhost:{port}0",
        "127.0.0.1",
        "localhost",
        "[::1]:{port}",  # loopback, but not where the gateway listens
        "localhost.:{port}",
        "",
    ],
    ids=[
        "rebinding",
        "look-alike",
        "other-port",
        "longer-port",
        "no-port",
        "localhost-no-port",
        "ipv6",
        "dot",
        "empty",
    ],
)
def test_given_a_foreign_host_when_a_browser_posts_then_421_and_the_function_is_not_invoked(
    tally: tuple[LocalGateway, Path], host: str
) -> None:
    # given
    gateway, calls = tally
    before = _calls(calls)
    # when a page posts with a Host that is not the gateway's own address (DNS rebinding, say)
    answer = httpx2.post(
        f"{gateway.url}/genai/chat",
        content=b'{"prompt": "spend"}',
        headers={"Host": host.format(port=_port(gateway)), "Content-Type": "text/plain"},
    )
    # then the gateway refuses it itself, without echoing the Host, and the function never sees it
    body = _gateway_error(answer, 421)
    assert "evil" not in answer.text and "Host" in body["message"]
    assert _calls(calls) == before


def test_given_a_rebinding_attack_with_the_right_token_when_posted_then_no_upstream_call_is_spent(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    answer = httpx2.post(
        f"{gateway.url}/genai/chat",
        json={"prompt": "spend"},
        headers={"Host": f"rebind.evil.example:{_port(gateway)}", "Authorization": f"Bearer {TOKEN}"},
    )
    # then
    _gateway_error(answer, 421)
    assert upstream.requests == []


@pytest.mark.parametrize(
    "hosts", [[], ["{own}", "{own}"], ["{own}", "rebind.evil.example"]], ids=["none", "twice", "two-different"]
)
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_given_not_exactly_one_host_when_a_request_arrives_then_400_and_the_function_is_not_invoked(
    tally: tuple[LocalGateway, Path], hosts: list[str], version: str
) -> None:
    # given
    gateway, calls = tally
    before = _calls(calls)
    lines = "".join(f"Host: {host.format(own=_own_host(gateway))}\r\n" for host in hosts)
    request = f"POST /genai/chat {version}\r\n{lines}Content-Length: 2\r\n\r\n{{}}"
    # when
    status, body = _raw_exchange(gateway, request.encode())
    # then
    error = json.loads(body)
    assert status == 400 and error["code"] == 400 and "Host" in error["message"] and "evil" not in error["message"]
    assert _calls(calls) == before


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}"])
def test_given_the_gateways_own_address_as_clients_send_it_when_posted_then_it_is_answered(
    tally: tuple[LocalGateway, Path], host: str
) -> None:
    # given
    gateway, calls = tally
    before = _calls(calls)
    # when
    answer = httpx2.post(f"{gateway.url}/genai/chat", content=b"hi", headers={"Host": host.format(port=_port(gateway))})
    # then
    assert answer.status_code == 200 and answer.text == "counted"
    assert _calls(calls) == before + 1


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://127.0.0.1:1",
        "http://localhost:3001",
        "https://localhost:3000",
        "http://localhost:3000.evil.example",
        f"{APP_ORIGIN}, https://evil.example",
    ],
    ids=["evil", "null", "other-port", "next-port", "https", "suffix", "list"],
)
def test_given_a_foreign_origin_when_a_text_plain_post_arrives_then_403_and_the_function_is_not_invoked(
    tally: tuple[LocalGateway, Path], origin: str
) -> None:
    # given
    gateway, calls = tally
    before = _calls(calls)
    # when a web page posts a "simple" request, which a browser sends without a CORS preflight
    answer = httpx2.post(
        f"{gateway.url}/genai/chat",
        content=b'{"prompt": "spend"}',
        headers={"Origin": origin, "Content-Type": "text/plain"},
    )
    # then the gateway refuses it, names the setting that would allow an origin, and grants no CORS
    body = _gateway_error(answer, 403)
    assert "LOCAL_GATEWAY_ALLOWED_ORIGIN" in body["message"] and "evil" not in answer.text
    assert "access-control-allow-origin" not in answer.headers
    assert _calls(calls) == before


def test_given_a_foreign_origin_and_a_valid_token_when_posted_then_it_is_refused_before_the_token_check(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # when
    answer = httpx2.post(
        f"{gateway.url}/genai/chat",
        json={"prompt": "spend"},
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"},
    )
    # then
    _gateway_error(answer, 403)
    assert upstream.requests == []


def test_given_a_foreign_origin_when_it_sends_a_preflight_then_it_gets_403(tally: tuple[LocalGateway, Path]) -> None:
    # given
    gateway, calls = tally
    before = _calls(calls)
    # when
    answer = httpx2.options(
        f"{gateway.url}/genai/chat", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    # then
    _gateway_error(answer, 403)
    assert not [name for name in answer.headers if name.startswith("access-control-")]
    assert _calls(calls) == before


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_given_the_gateways_own_origin_when_posted_then_it_is_same_origin_and_answered(
    tally: tuple[LocalGateway, Path], origin: str
) -> None:
    # given
    gateway, calls = tally
    before = _calls(calls)
    # when
    answer = httpx2.post(
        f"{gateway.url}/genai/chat", content=b"hi", headers={"Origin": origin.format(port=_port(gateway))}
    )
    # then
    assert answer.status_code == 200 and _calls(calls) == before + 1


def test_given_the_allowed_origin_when_it_preflights_with_no_token_then_it_gets_the_deployed_cors_policy(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given a gateway that requires a token and allows APP_ORIGIN
    # when the browser sends its preflight (which never carries credentials)
    answer = httpx2.options(
        f"{gateway.url}/genai/chat",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    # then the gateway answers it as the deployment's cors block says, and the function is not called
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert answer.headers["access-control-allow-methods"] == ", ".join(DEPLOYED_CORS["allowedMethods"])
    assert answer.headers["access-control-allow-headers"] == ", ".join(DEPLOYED_CORS["allowedHeaders"])
    assert answer.headers["access-control-max-age"] == str(DEPLOYED_CORS["maxAgeInSeconds"])
    assert DEPLOYED_CORS["isAllowCredentialsEnabled"] is False
    assert "access-control-allow-credentials" not in answer.headers
    assert upstream.requests == []


def test_given_the_allowed_origin_when_it_posts_then_it_gets_the_cors_response_headers(
    client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # when
    answer = client.post("/genai/chat", json={"prompt": "from the app"}, headers={"Origin": APP_ORIGIN})
    # then
    assert answer.status_code == 200 and answer.json()["output_text"] == "Local answer to: from the app"
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert answer.headers["access-control-expose-headers"] == ", ".join(DEPLOYED_CORS["exposedHeaders"])
    assert "access-control-allow-credentials" not in answer.headers


def test_given_no_origin_when_a_request_is_posted_then_it_gets_no_cors_headers(
    client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # when
    answer = client.post("/genai/chat", json={"prompt": "curl"})
    # then
    assert answer.status_code == 200
    assert not [name for name in answer.headers if name.startswith("access-control-")]


REAL_OCI_SETTINGS = [
    {"GENAI_AUTH": "session"},
    {"GENAI_AUTH": "api_key", "GENAI_API_KEY": "sk-not-a-real-key"},
    {"GENAI_PROJECT_OCID": "ocid1.generativeaiproject.oc1.us-chicago-1.x", "GENAI_REGION": "us-chicago-1"},
]


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize("settings", REAL_OCI_SETTINGS, ids=["session", "api-key", "project-and-region"])
@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_given_real_oci_and_no_token_when_make_serve_starts_then_exit_2_and_nothing_is_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: dict[str, str], where: str
) -> None:
    # given
    dotenv = tmp_path / ".env"
    environ = settings if where == "environment" else {}
    if where == "dotenv":
        dotenv.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    before = _children()
    # when
    status = main(["--port", "0"], environ=environ, dotenv_path=dotenv)
    # then
    [line] = capsys.readouterr().err.splitlines()
    assert status == 2
    assert "LOCAL_GATEWAY_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))') make serve" in line
    assert "sk-not-a-real-key" not in line and _children() == before


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "localhost:3000",
        "http://localhost:3000/",
        "https://app.example.com/path",
        "ftp://app.example.com",
        f"{APP_ORIGIN} https://evil.example",
        "http://",
    ],
)
@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_given_an_allowed_origin_that_is_not_one_origin_when_make_serve_starts_then_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], origin: str, where: str
) -> None:
    # given
    dotenv = tmp_path / ".env"
    environ = {"LOCAL_GATEWAY_ALLOWED_ORIGIN": origin} if where == "environment" else {}
    if where == "dotenv":
        dotenv.write_text(f"LOCAL_GATEWAY_ALLOWED_ORIGIN='{origin}'\n")
    before = _children()
    # when
    status = main(["--port", "0"], environ=environ, dotenv_path=dotenv)
    # then
    [line] = capsys.readouterr().err.splitlines()
    assert status == 2 and line.startswith("LOCAL_GATEWAY_ALLOWED_ORIGIN") and "scheme://host[:port]" in line
    assert _children() == before


def test_given_a_function_killed_between_calls_when_the_next_call_arrives_then_it_is_restarted(
    gateway: LocalGateway, client: httpx2.Client, upstream: LocalEndpoint, console: io.StringIO
) -> None:
    # given the function process dies (OOM-killed, say)
    assert gateway.function is not None
    pid, restarts = gateway.function.pid, gateway.restarts
    os.kill(pid, signal.SIGKILL)
    gateway.function.process.wait(timeout=5)  # type: ignore[union-attr]
    # when the next call finds it dead (on its own connection and thread, which end with it)
    answer = httpx2.post(
        f"{gateway.url}/genai/chat", json={"prompt": "anyone?"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    # then that call gets 502 JSON, like API Gateway
    assert "restarted" in _gateway_error(answer, 502)["message"]
    # and the gateway has restarted it, says so, and the function outlives the thread that restarted it
    assert gateway.restarts == restarts + 1 and gateway.function.pid != pid
    assert f"function process {pid}" in console.getvalue() and "restarting" in console.getvalue()
    time.sleep(1.0)
    assert gateway.function.alive()
    assert client.post("/genai/chat", json={"prompt": "back?"}).status_code == 200


def test_given_a_call_in_flight_when_the_function_is_killed_then_the_call_gets_502_and_it_is_restarted(
    gateway: LocalGateway, client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # given a call slow enough to be in flight when the function is killed
    upstream.inject(Fault(kind="delay", delay_s=2))
    assert gateway.function is not None
    pid, restarts = gateway.function.pid, gateway.restarts
    # when
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        answer = client.post("/genai/chat", json={"prompt": "crash me"})
    finally:
        killer.join()
    # then
    _gateway_error(answer, 502)
    assert gateway.restarts == restarts + 1
    assert wait_until_recorded(upstream, 1)  # the killed call's request, answered late
    assert client.post("/genai/chat", json={"prompt": "after the crash"}).status_code == 200


def test_given_a_handler_that_raises_when_called_then_the_caller_gets_502_with_the_exception_text(
    tmp_path: Path,
) -> None:
    """Why handler.py never lets one escape: the fdk answers Fn-Http-Status 502 with str(exception)."""
    # given
    (tmp_path / "func.py").write_text("def handler(ctx, data=None):\n    raise RuntimeError('internal detail')\n")
    (tmp_path / "func.yaml").write_text("name: broken\n# timeout: 1\ntimeout: 7  # seconds\nmemory: 128\n")
    with LocalGateway(
        {}, function_dir=tmp_path, console=io.StringIO(), function_log=subprocess.DEVNULL, template=TEMPLATE
    ) as gw:
        # when
        answer = httpx2.post(f"{gw.url}/genai/chat", json={"prompt": "hi"})
        # then
        assert answer.status_code == 502 and answer.text == "internal detail"
        # and the deadline the gateway sends comes from that function's func.yaml
        assert gw.timeout_s == 7 and gw.restarts == 0


def test_given_fifty_concurrent_openai_sdk_calls_when_sent_at_once_then_all_succeed(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given an async OpenAI SDK client that does not retry, so no connection error is hidden
    async def burst() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0) as client:
            answers = await asyncio.gather(
                *(client.responses.create(model=DEFAULT_MODEL, input=f"call {i}") for i in range(50))
            )
        return [answer.output_text for answer in answers]

    # when 50 calls arrive at once / then every one is answered
    assert asyncio.run(burst()) == [f"Local answer to: call {i}" for i in range(50)]


def test_given_a_chunked_body_when_posted_then_it_is_accepted_as_api_gateway_accepts_it(
    client: httpx2.Client, upstream: LocalEndpoint
) -> None:
    # when a generator body makes the client send Transfer-Encoding: chunked, no Content-Length
    answer = client.post("/genai/chat", content=iter([b'{"prompt": ', b'"chunked"}']))
    # then
    assert answer.status_code == 200 and answer.json()["output_text"] == "Local answer to: chunked"


def test_given_a_chunked_body_over_the_payload_limit_when_posted_then_it_gets_413(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given
    request = (
        f"POST /genai/chat HTTP/1.1\r\nHost: {_own_host(gateway)}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        f"{MAX_INVOKE_PAYLOAD_BYTES + 1:x}\r\n"
    ).encode()
    # when
    status, body = _raw_exchange(gateway, request)
    # then
    assert status == 413 and json.loads(body) == {"code": 413, "message": "Payload Too Large"}
    assert upstream.requests == []


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: -1",
        "Content-Length: abc",
        "Content-Length: \u00b2".encode().decode("latin-1"),
        "Content-Length: 2\r\nContent-Length: 20",
        "Content-Length: 2, 20",
        "Content-Length: 2\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: gzip, chunked",
    ],
    ids=["negative", "not-a-number", "unicode-digit", "two-headers", "list", "with-chunked", "gzip"],
)
def test_given_a_body_length_that_cannot_be_trusted_when_posted_then_400_and_the_connection_is_closed(
    gateway: LocalGateway, upstream: LocalEndpoint, framing: str
) -> None:
    # given
    request = (
        f"POST /genai/chat HTTP/1.1\r\nHost: {_own_host(gateway)}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"{framing}\r\n\r\n{{}}"
    )
    # when
    status, body = _raw_exchange(gateway, request.encode("latin-1"))
    # then
    assert status == 400
    error = json.loads(body)
    assert set(error) == {"code", "message"} and error["code"] == 400 and error["message"].startswith("Bad Request")
    assert upstream.requests == []


def test_given_the_same_content_length_twice_when_posted_then_the_request_is_accepted(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given
    body = b'{"prompt": "same"}'
    request = (
        f"POST /genai/chat HTTP/1.1\r\nHost: {_own_host(gateway)}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    # when
    status, answer = _raw_exchange(gateway, request)
    # then
    assert status == 200 and json.loads(answer)["output_text"] == "Local answer to: same"


def test_given_a_function_past_its_deadline_when_called_then_it_is_cut_with_504_and_replaced(tmp_path: Path) -> None:
    # given a function that ignores Fn-Deadline, behind a gateway with a 2 s function timeout
    (tmp_path / "func.py").write_text(SLEEPY_FUNCTION)
    console = io.StringIO()
    with LocalGateway(
        {}, function_dir=tmp_path, timeout_s=2, console=console, function_log=subprocess.DEVNULL, template=TEMPLATE
    ) as gw:
        assert gw.function is not None
        pid = gw.function.pid
        started = time.monotonic()
        # when a call runs past it
        answer = httpx2.post(f"{gw.url}/genai/chat", content=b"sleep 20", timeout=60)
        # then the caller gets the gateway's 504 at the deadline, not the late answer
        body = _gateway_error(answer, 504)
        assert "timeout" in body["message"] and time.monotonic() - started < 10
        # and the container was replaced, said so, and the new one answers
        assert gw.restarts == 1 and gw.function.pid != pid and f"function process {pid}" in console.getvalue()
        assert httpx2.post(f"{gw.url}/genai/chat", content=b"sleep 0").status_code == 200


def test_given_the_repos_func_yaml_when_its_timeout_is_read_then_it_is_the_default_deadline() -> None:
    # when / then
    assert function_timeout(REPO_ROOT / "func.yaml") == 60
    assert function_timeout(REPO_ROOT / "no-such-func.yaml") == 30


def test_given_a_func_yaml_timeout_not_in_ascii_digits_when_read_then_the_default_is_used(tmp_path: Path) -> None:
    # given
    (tmp_path / "func.yaml").write_text("timeout: \u00b2\n", encoding="utf-8")  # str.isdigit() says yes
    # when / then
    assert function_timeout(tmp_path / "func.yaml") == 30


@pytest.mark.parametrize(
    ("line", "seconds"),
    [
        ("timeout: 7  # seconds", 7),
        ("timeout: 0", 0),
        ("timeout: '60'", 30),  # a string, which fn would not take for a number either
        ("timeout: -5", 30),
        ("timeout: 1.5", 30),
        ("memory: 128", 30),
    ],
)
def test_given_a_func_yaml_timeout_line_when_read_then_it_is_whole_seconds_or_the_default(
    tmp_path: Path, line: str, seconds: int
) -> None:
    # given
    (tmp_path / "func.yaml").write_text(f"name: f\n{line}\n", encoding="utf-8")
    # when / then
    assert function_timeout(tmp_path / "func.yaml") == seconds


def test_given_dotenv_text_when_parsed_then_its_values_are_read_as_python_dotenv_reads_them() -> None:
    # given
    text = (
        "GENAI_MODEL=from-dotenv   # the model, says a comment\n"
        "GENAI_A=a#b\n"
        'GENAI_B="quoted # not a comment"  # a comment\n'
        "export GENAI_C='single \\' quote'\n"
        'GENAI_D="two\\nlines"\n'
        "  # an indented comment\n"
        "GENAI_E=\n"
        "GENAI_F\n"
        "GENAI_G='unterminated\n"
        "GENAI_H = spaced  \n"
    )
    # when / then
    assert parse_dotenv(text) == {
        "GENAI_MODEL": "from-dotenv",
        "GENAI_A": "a#b",
        "GENAI_B": "quoted # not a comment",
        "GENAI_C": "single ' quote",
        "GENAI_D": "two\nlines",
        "GENAI_E": "",
        "GENAI_H": "spaced",
    }


_DOTENV_PIECES = st.sampled_from(
    ["GENAI_A", "B", "export ", "=", "#", " ", "\t", "\n", "\r\n", "'", '"', "\\", "\\n", "\\'", "x", "1", "$X", "${Y}"]
)


@pytest.fixture(scope="module")
def dotenv_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dotenv") / ".env"


@settings(max_examples=400, deadline=None)
@given(st.lists(_DOTENV_PIECES, max_size=24).map("".join))
def test_given_any_dotenv_file_when_read_then_it_matches_python_dotenv_without_interpolation(
    dotenv_file: Path, text: str
) -> None:
    # given the text as a file, line endings as written
    dotenv_file.write_text(text, encoding="utf-8", newline="")
    # when python-dotenv reads the file itself, without ${VAR} interpolation
    expected = dotenv.dotenv_values(dotenv_file, interpolate=False, encoding="utf-8")
    # then read_dotenv and parse_dotenv give its values, keys without one (no `=`) left out
    assert read_dotenv(dotenv_file) == parse_dotenv(text.replace("\r\n", "\n").replace("\r", "\n"))
    assert read_dotenv(dotenv_file) == {key: value for key, value in expected.items() if value is not None}


def test_given_environ_and_dotenv_when_picking_settings_then_make_run_and_serve_pass_the_same_genai_ones() -> None:
    # given
    environ = {"GENAI_MODEL": "from-environment", "GENAI_LOG_PROMPTS": "true", "PATH": "/bin"}
    dotenv = {"GENAI_MODEL": "from-dotenv", "GENAI_MAX_RETRIES": "1", "OTHER": "x"}
    # when / then
    assert function_settings(environ, dotenv) == {
        "GENAI_MODEL": "from-environment",
        "GENAI_LOG_PROMPTS": "true",
        "GENAI_MAX_RETRIES": "1",
    }


def test_given_a_dotenv_file_and_the_environment_when_upstream_is_chosen_then_lines_parse_and_env_wins(
    tmp_path: Path,
) -> None:
    # given
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# real OCI from a laptop\n\nexport GENAI_AUTH=session\nGENAI_REGION = 'us-chicago-1'\n"
        'GENAI_PROJECT_OCID="ocid1.generativeaiproject.oc1.us-chicago-1.fromdotenv"\n'
        "GENAI_MODEL=from-dotenv\nnot a line\n"
    )
    assert read_dotenv(dotenv)["GENAI_REGION"] == "us-chicago-1"
    # when
    with upstream({"GENAI_MODEL": "from-environment", "HTTPS_PROXY": "http://proxy:3128", "SECRET": "x"}, dotenv) as (
        env,
        where,
    ):
        # then
        assert env["GENAI_AUTH"] == "session" and env["GENAI_MODEL"] == "from-environment"
        assert env["GENAI_PROJECT_OCID"].endswith("fromdotenv") and env["HTTPS_PROXY"] == "http://proxy:3128"
        # real settings: no local identity, no local endpoint
        assert not any(k.startswith("OCI_RESOURCE_PRINCIPAL") for k in env) and "GENAI_BASE_URL" not in env
        assert "SECRET" not in env and "us-chicago-1" in where and "session" in where


def test_given_project_and_region_alone_when_upstream_is_chosen_then_real_oci_with_a_session(tmp_path: Path) -> None:
    # given
    environ = {"GENAI_PROJECT_OCID": "ocid1.generativeaiproject.oc1.us-chicago-1.x", "GENAI_REGION": "us-chicago-1"}
    # when
    with upstream(environ, tmp_path / "absent.env") as (env, _):
        # then
        assert env["GENAI_AUTH"] == "session"


def test_given_no_real_settings_when_upstream_is_chosen_then_the_local_endpoint_and_identity_are_used(
    tmp_path: Path,
) -> None:
    # given
    environ = {"GENAI_LOG_PROMPTS": "true", "GENAI_AUTH": "resource_principal", "GENAI_BASE_URL": "https://elsewhere"}
    # when
    with upstream(environ, tmp_path / "absent.env") as (env, where):
        # then
        assert env["OCI_RESOURCE_PRINCIPAL_VERSION"] == "2.2" and Path(env["OCI_RESOURCE_PRINCIPAL_RPST"]).exists()
        assert env["GENAI_BASE_URL"].startswith("http://127.0.0.1:") and env["GENAI_BASE_URL"] in where
        assert env["GENAI_LOG_PROMPTS"] == "true"  # behaviour settings still apply


@contextmanager
def _make_serve(
    tmp_path: Path, settings: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int, list[psutil.Process], str]]:
    """`python -m genai_handler.local.gateway` as `make serve` runs it: the process, its port,
    its function process(es) and its banner (up to its last line)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    env.update({"PORT": "1", "LOCAL_GATEWAY_TOKEN": TOKEN, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"})
    env.update(settings or {})
    serve = subprocess.Popen(
        [sys.executable, "-m", "genai_handler.local.gateway", "--port", str(port)],  # --port wins over PORT
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert serve.stdout is not None
        banner = ""
        while not banner.endswith("Ctrl-C to stop.\n") and (line := serve.stdout.readline()):
            banner += line
        children = psutil.Process(serve.pid).children(recursive=True)
        assert children, banner  # func.py under the fdk
        yield serve, port, children, banner
    finally:
        if serve.poll() is None:
            serve.kill()
        serve.communicate(timeout=15)


def test_given_make_serve_on_a_port_when_called_and_sent_sigterm_then_it_answers_and_stops_its_function(
    tmp_path: Path,
) -> None:
    # given make serve on a free port, whose banner says where it listens and what it accepts
    with _make_serve(tmp_path) as (serve, port, children, banner):
        assert f"http://127.0.0.1:{port}" in banner and "local endpoint" in banner
        assert f"Host: 127.0.0.1:{port} or localhost:{port} only" in banner and "LOCAL_GATEWAY_ALLOWED_ORIGIN" in banner
        # when a call arrives on that port
        answer = httpx2.post(
            f"http://127.0.0.1:{port}/genai/chat",
            json={"prompt": "served"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        # then it is answered
        assert answer.status_code == 200 and answer.json()["output_text"] == "Local answer to: served"
        # when make serve gets SIGTERM
        serve.send_signal(signal.SIGTERM)
        output = serve.communicate(timeout=15)[0]
        # then it exits cleanly, having logged the call, and its function process is gone
        assert serve.returncode == 0
        assert "POST /genai/chat 200" in output and TOKEN not in banner + output
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []


def test_given_real_oci_settings_and_a_token_when_make_serve_runs_then_it_starts(tmp_path: Path) -> None:
    # given real-OCI settings and LOCAL_GATEWAY_TOKEN (no call is made: the test sends nothing)
    settings = {"GENAI_AUTH": "session", "GENAI_REGION": "us-chicago-1", "HOME": str(tmp_path)}
    # when
    with _make_serve(tmp_path, settings) as (serve, _, _children, banner):
        # then
        assert "OCI Generative AI in us-chicago-1 (GENAI_AUTH=session)" in banner
        assert "Authorization: Bearer $LOCAL_GATEWAY_TOKEN" in banner and TOKEN not in banner
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0


@pytest.mark.parametrize("stop", [signal.SIGHUP, signal.SIGKILL], ids=["terminal-closed", "killed"])
def test_given_make_serve_when_its_terminal_closes_or_it_is_killed_then_its_function_never_outlives_it(
    tmp_path: Path, stop: signal.Signals
) -> None:
    # given make serve running its function
    with _make_serve(tmp_path) as (serve, _, children, _banner):
        # when its terminal closes (SIGHUP), or it is killed and cannot clean up (SIGKILL)
        serve.send_signal(stop)
        serve.wait(timeout=15)
        # then the function process goes too, within a few seconds
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
        assert serve.returncode == (0 if stop == signal.SIGHUP else -signal.SIGKILL)


@pytest.mark.parametrize(
    ("argv", "env", "bad"),
    [([], {"PORT": "abc"}, "abc"), (["--port", "abc"], {}, "abc"), (["--port", "70000"], {}, "70000")],
)
def test_given_a_bad_port_when_make_serve_starts_then_one_clear_line_and_exit_status_2(
    argv: list[str], env: dict[str, str], bad: str
) -> None:
    # given
    environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    # when
    done = subprocess.run(
        [sys.executable, "-m", "genai_handler.local.gateway", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # then
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if not line.startswith("usage:")]
    assert "port" in error.lower() and repr(bad) in error
