"""Issue 13 end to end: who called (the caller header in the log line) and traces (Zipkin spans),
through func.py under the real fdk, `make serve`'s gateway, the local endpoint and a loopback collector.

The Fn agent sends the platform's headers (Fn-*, x-b3-*) at the top level and a gateway caller's
headers as Fn-Http-H-*; FunctionProcess.invoke sends both, and cuts a call at Fn-Deadline as the agent does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest

from genai_handler.local.agent import REPO_ROOT, FunctionProcess, chat_route
from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.gateway import DEFAULT_SUBJECT, LocalGateway
from genai_handler.local.identity import LocalIdentity
from genai_handler.logs import CALLER_HEADER
from genai_handler.settings import DEFAULT_MODEL
from genai_handler.tracing import REPORT_BOUND_S

from .conftest import TEMPLATE, function_env, start_function
from .test_tracing import DATA_KEY, PLATFORM_SPAN, TRACE_ID, Collector, dead_url

PROMPT = "CANARY-TRACE-PROMPT-w3jd"
ANSWER = "Local answer to"


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as server:
        yield server


def _call(
    function: FunctionProcess,
    body: Mapping[str, Any],
    *,
    platform: Mapping[str, str] | None = None,
    caller: Mapping[str, str | bytes] | None = None,
    gateway: bool = True,
    deadline_s: float = 30.0,
) -> tuple[str, int, dict[str, Any]]:
    """One invocation as the Fn agent sends it: `platform` headers at the top level (x-b3-*, or a
    header a direct `fn invoke` carries), `caller` headers as Fn-Http-H-* on a gateway call.
    Returns the call id, the status the caller sees and the JSON body."""
    call_id = uuid.uuid4().hex
    answer = function.invoke(
        body, gateway=gateway, headers=caller, platform_headers=platform, deadline_s=deadline_s, call_id=call_id
    )
    return call_id, answer.http_status, answer.json()


def _log_line(path: Path, call_id: str) -> dict[str, Any]:
    """The invocation's one JSON log line, once the fdk's stderr has it."""
    until = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line)
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.startswith("{") and call_id in line
        ]
        lines = [line for line in lines if line.get("call_id") == call_id]
        if lines or time.monotonic() > until:
            assert len(lines) == 1, f"expected one log line for {call_id}, got {lines}"
            return lines[0]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def quiet_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ops") / "function.log"


@pytest.fixture(scope="module")
def untraced(identity: LocalIdentity, endpoint: LocalEndpoint, quiet_log: Path) -> Iterator[FunctionProcess]:
    """The default: OCI_TRACING_ENABLED unset (a collector URL alone switches nothing on)."""
    function = start_function(function_env(identity, endpoint, OCI_TRACE_COLLECTOR_URL=dead_url()), quiet_log)
    yield function
    function.stop()


# --- who called ----------------------------------------------------------------------------------


def test_given_the_gateways_caller_header_when_invoked_then_it_reaches_the_log_line(
    untraced: FunctionProcess, upstream: LocalEndpoint, quiet_log: Path
) -> None:
    # given API Gateway set the caller header from the JWT subject
    # when it forwards a prompt
    call_id, status, _ = _call(untraced, {"prompt": PROMPT}, caller={CALLER_HEADER: "ocid1.user.oc1..aaaaalice"})
    # then the invocation's log line names the caller, and nothing of the prompt
    line = _log_line(quiet_log, call_id)
    assert status == 200 and line["caller"] == "ocid1.user.oc1..aaaaalice" and "caller_malformed" not in line
    assert PROMPT not in json.dumps(line)


def test_given_a_caller_header_through_function_process_when_invoked_then_it_reaches_the_log_line(
    untraced: FunctionProcess, upstream: LocalEndpoint, quiet_log: Path
) -> None:
    # when
    answer = untraced.invoke({"prompt": "hi"}, headers={CALLER_HEADER: "alice@example.com"}, call_id="ops-caller-agent")
    # then
    assert answer.http_status == 200
    assert _log_line(quiet_log, "ops-caller-agent")["caller"] == "alice@example.com"


def test_given_a_direct_invoke_with_the_header_when_answered_then_no_caller_is_logged(
    untraced: FunctionProcess, upstream: LocalEndpoint, quiet_log: Path
) -> None:
    # given a direct `fn invoke` (no Fn-Intent) that carries the header itself
    # when
    call_id, status, body = _call(untraced, {"prompt": "hi"}, platform={CALLER_HEADER: "mallory"}, gateway=False)
    # then it is answered, and no caller is logged: only the gateway sets one
    assert status == 200 and body["output_text"].startswith(ANSWER)
    line = _log_line(quiet_log, call_id)
    assert "caller" not in line and "mallory" not in json.dumps(line)


def test_given_a_gateway_call_without_the_header_when_answered_then_no_caller_is_logged(
    untraced: FunctionProcess, upstream: LocalEndpoint, quiet_log: Path
) -> None:
    # given a gateway that sets no caller header, and a call that stores nothing
    # when
    answer = untraced.invoke({"prompt": "hi", "store": False}, subject=None, call_id=(call_id := uuid.uuid4().hex))
    # then
    assert answer.http_status == 200
    assert "caller" not in _log_line(quiet_log, call_id)


def test_given_a_gateway_call_without_the_header_when_it_would_store_then_it_fails_closed_as_misconfigured(
    untraced: FunctionProcess, upstream: LocalEndpoint
) -> None:
    # given a gateway that sets no caller header: nothing to own a stored response by
    # when
    answer = untraced.invoke({"prompt": "hi"}, subject=None)
    # then it is refused rather than stored for a shared, unnamed owner, and OCI is never called
    assert answer.http_status == 500 and answer.json()["error"]["type"] == "misconfigured"
    assert "X-Genai-Caller" in answer.json()["error"]["message"] and upstream.requests == []


def test_given_a_hostile_caller_value_when_logged_then_it_is_cut_escaped_and_flagged(
    untraced: FunctionProcess, upstream: LocalEndpoint, quiet_log: Path
) -> None:
    # given a caller value in UTF-8 with a bidi override, a C1 control and 10 kB of padding
    # (the fdk's parser itself refuses C0 controls and DEL with a 400)
    hostile = ("eve\u202egnp.exe\u0085" + "x" * 10_000).encode()
    # when
    call_id, status, _ = _call(untraced, {"prompt": "hi"}, caller={CALLER_HEADER: hostile})
    # then the call is answered as usual, and the log line holds an escaped, bounded, flagged value
    assert status == 200
    line = _log_line(quiet_log, call_id)
    assert line["caller_malformed"] is True
    assert line["caller"].startswith("eve\\u202egnp.exe\\u0085xxx") and "\u202e" not in line["caller"]
    assert len(json.dumps(line)) < 1024


@pytest.fixture(scope="module")
def gateway_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ops-gw") / "function.log"


def _serve(identity: LocalIdentity, endpoint: LocalEndpoint, log: Path, **options: Any) -> LocalGateway:
    return LocalGateway(
        function_env(identity, endpoint),
        timeout_s=20,
        function_log=open(log, "ab"),
        console=open(os.devnull, "w"),
        **options,
        template=TEMPLATE,
    )


def test_given_no_or_a_forged_caller_header_when_make_serve_forwards_then_it_sets_the_subject(
    identity: LocalIdentity, upstream: LocalEndpoint, gateway_log: Path
) -> None:
    with _serve(identity, upstream, gateway_log) as gateway, httpx2.Client(base_url=gateway.url, timeout=30) as http:
        # when a caller sends no caller header, or forges one in any letter case
        plain = http.post(chat_route(), json={"prompt": "hi"})
        forged = http.post(
            chat_route(), json={"prompt": "hi"}, headers=[(CALLER_HEADER, "admin"), (CALLER_HEADER.lower(), "root")]
        )
    # then both are answered
    assert plain.status_code == forged.status_code == 200
    # and the function logs the gateway's subject both times, as `ifExists: OVERWRITE` does
    lines = [json.loads(line) for line in gateway_log.read_text(encoding="utf-8").splitlines() if line.startswith("{")]
    callers = [line.get("caller") for line in lines if "status" in line]
    assert callers == [DEFAULT_SUBJECT, DEFAULT_SUBJECT]
    assert "admin" not in gateway_log.read_text(encoding="utf-8") and "root" not in gateway_log.read_text(
        encoding="utf-8"
    )


def test_given_local_gateways_subject_when_make_serve_forwards_then_it_is_the_logged_caller(
    identity: LocalIdentity, upstream: LocalEndpoint, tmp_path: Path
) -> None:
    # given
    log = tmp_path / "function.log"
    with _serve(identity, upstream, log, subject="dev@example.com") as gateway:
        # when
        assert httpx2.post(f"{gateway.url}{chat_route()}", json={"prompt": "hi"}, timeout=30).status_code == 200
    # then
    assert '"caller": "dev@example.com"' in log.read_text(encoding="utf-8")


def test_given_local_gateway_subject_in_the_environment_when_make_serve_starts_then_it_is_read(tmp_path: Path) -> None:
    # given LOCAL_GATEWAY_SUBJECT in the environment
    env = {**os.environ, "LOCAL_GATEWAY_SUBJECT": "env-subject", "PORT": "0"}
    env = {k: v for k, v in env.items() if not k.startswith("GENAI_")}
    # when `make serve`'s entrypoint starts
    server = subprocess.Popen(
        [sys.executable, "-m", "genai_handler.local.gateway"], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    assert server.stderr is not None
    try:
        banner = ""
        until = time.monotonic() + 60
        while "Ctrl-C" not in banner and time.monotonic() < until and server.poll() is None:
            banner += server.stderr.readline()
    finally:
        server.terminate()
        server.wait(timeout=10)
    # then its banner names the header and the subject it sets
    assert f"{CALLER_HEADER}: env-subject" in banner


# --- traces --------------------------------------------------------------------------------------

B3 = {"X-B3-TraceId": TRACE_ID, "X-B3-SpanId": PLATFORM_SPAN, "X-B3-Sampled": "1"}


@pytest.fixture(scope="module")
def traced_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("traced") / "function.log"


@pytest.fixture(scope="module")
def traced(
    identity: LocalIdentity, endpoint: LocalEndpoint, collector: Collector, traced_log: Path
) -> Iterator[FunctionProcess]:
    """Tracing on, as OCI sets it when the application and the function have tracing enabled."""
    env = function_env(identity, endpoint, OCI_TRACING_ENABLED="1", OCI_TRACE_COLLECTOR_URL=collector.url)
    function = start_function(env, traced_log)
    yield function
    function.stop()


def test_given_a_traced_call_when_answered_then_spans_join_the_platforms_trace_with_a_child_per_attempt(
    traced: FunctionProcess, identity: LocalIdentity, upstream: LocalEndpoint, collector: Collector, traced_log: Path
) -> None:
    # given OCI's real 500 once, then the answer
    collector.reset()
    upstream.inject(Fault("oci_error", name="internal_server_error"))
    # when a traced gateway call comes in
    call_id, status, body = _call(traced, {"prompt": PROMPT}, platform=B3, caller={CALLER_HEADER: "alice"})
    assert status == 200 and body["output_text"] == f"{ANSWER}: {PROMPT}"
    # then the invocation span is the platform span's child in the same trace
    invocation, failed, answered = collector.spans()
    assert {span["traceId"] for span in (invocation, failed, answered)} == {TRACE_ID}
    assert invocation["parentId"] == PLATFORM_SPAN and invocation["kind"] == "SERVER"
    assert invocation["localEndpoint"] == {"serviceName": "local-app::genai"}
    assert invocation["tags"]["fn.call_id"] == call_id and invocation["tags"]["http.status_code"] == "200"
    # and each upstream attempt is its child, with the model, status, opc-request-id and usage
    assert failed["parentId"] == answered["parentId"] == invocation["id"]
    assert failed["tags"]["http.status_code"] == "500" and failed["tags"]["error"] == "upstream_error"
    assert failed["tags"]["opc-request-id"] == upstream.requests[0].request_id
    assert answered["tags"]["opc-request-id"] == upstream.requests[1].request_id == body["request_id"]
    assert answered["tags"]["genai.model"] == DEFAULT_MODEL
    assert answered["tags"]["genai.usage.total_tokens"] == str(body["usage"]["total_tokens"])
    # and no span holds the prompt, the answer, the caller or any credential
    sent = json.dumps(collector.received)
    for secret in (PROMPT, ANSWER, "alice", identity.token, DATA_KEY):
        assert secret not in sent
    # and the log line ties the invocation to its trace
    line = _log_line(traced_log, call_id)
    assert line["trace_id"] == TRACE_ID and line["trace_report"] == "sent"


def test_given_an_unsampled_call_when_answered_then_nothing_is_sent(
    traced: FunctionProcess, upstream: LocalEndpoint, collector: Collector
) -> None:
    # given
    collector.reset()
    # when
    _, status, _ = _call(traced, {"prompt": "hi"}, platform={**B3, "X-B3-Sampled": "0"})
    # then
    assert status == 200
    time.sleep(REPORT_BOUND_S + 0.5)
    assert not collector.received


@pytest.mark.parametrize("mode", ["refuse", "slow"])
def test_given_a_refusing_or_slow_collector_when_called_then_it_neither_fails_nor_holds_the_call(
    traced: FunctionProcess, upstream: LocalEndpoint, collector: Collector, traced_log: Path, mode: str
) -> None:
    # given a collector that answers 500, or answers only after 5 s
    collector.reset(mode)
    # when
    started = time.monotonic()
    call_id, status, body = _call(traced, {"prompt": "hi"}, platform=B3)
    elapsed = time.monotonic() - started
    # then the caller gets the answer, well before the slow collector would have answered
    assert status == 200 and body["output_text"].startswith(ANSWER)
    assert elapsed < REPORT_BOUND_S + 3.0 < collector.delay_s
    assert _log_line(traced_log, call_id)["trace_report"] == {"refuse": "rejected", "slow": "late"}[mode]


def test_given_a_dead_collector_when_called_then_it_neither_fails_nor_holds_the_call(
    identity: LocalIdentity, upstream: LocalEndpoint, tmp_path: Path
) -> None:
    # given
    env = function_env(identity, upstream, OCI_TRACING_ENABLED="1", OCI_TRACE_COLLECTOR_URL=dead_url())
    function = start_function(env, tmp_path / "function.log")
    try:
        _call(function, {"prompt": "warm up"}, platform=B3)
        # when
        started = time.monotonic()
        call_id, status, _ = _call(function, {"prompt": "hi"}, platform=B3)
        elapsed = time.monotonic() - started
    finally:
        function.stop()
    # then
    assert status == 200 and elapsed < REPORT_BOUND_S + 3.0
    line = _log_line(tmp_path / "function.log", call_id)
    assert line["trace_report"] == "failed" and DATA_KEY not in json.dumps(line)


def test_given_a_slow_collector_when_called_then_it_never_holds_the_call_past_its_deadline(
    traced: FunctionProcess, upstream: LocalEndpoint, collector: Collector
) -> None:
    # given the model answers just before the handler's deadline, and the collector is slow
    collector.reset("slow")
    upstream.inject(Fault(kind="delay", delay_s=1.6))
    # when the call's Fn-Deadline is 3 s away (the handler answers by 2 s, its 1 s margin)
    started = time.monotonic()
    _, status, _ = _call(traced, {"prompt": "hi"}, platform=B3, deadline_s=3.0)
    # then the answer still comes before Fn-Deadline
    assert status == 200 and time.monotonic() - started < 3.0


def test_given_tracing_off_when_called_then_nothing_is_sent(
    untraced: FunctionProcess, upstream: LocalEndpoint, collector: Collector, quiet_log: Path
) -> None:
    # given tracing is not enabled, even with B3 headers on the call
    collector.reset()
    # when
    call_id, status, _ = _call(untraced, {"prompt": "hi"}, platform=B3)
    # then
    assert status == 200
    line = _log_line(quiet_log, call_id)
    assert "trace_id" not in line and "trace_report" not in line


_IMPORTED = """
import io, json, sys
from fdk.context import context_from_format
import func
headers = {"fn-call-id": "c", "fn-intent": "httprequest", "fn-http-method": "POST",
           "fn-http-request-url": "/genai/chat", "fn-http-h-x-genai-caller": "local-user",
           "x-b3-traceid": sys.argv[1], "x-b3-spanid": sys.argv[2]}
ctx, data = context_from_format("http-stream", headers=headers, data=io.BytesIO(b'{"prompt": "hi"}'))
reply = func.handler(ctx, data)
print(json.dumps({"status": reply.context().GetResponseHeaders()["fn-http-status"],
                  "tracing": "genai_handler.tracing" in sys.modules}))
"""


@pytest.mark.parametrize("enabled", ["", "0", "1"])
def test_given_a_tracing_setting_when_invoked_then_the_module_loads_only_when_tracing_is_on(
    identity: LocalIdentity, upstream: LocalEndpoint, collector: Collector, enabled: str
) -> None:
    # given a fresh interpreter running a real invocation, tracing unset, off or on
    env = {
        **os.environ,
        **function_env(identity, upstream),
        "PYTHONPATH": str(REPO_ROOT),
        "OCI_TRACE_COLLECTOR_URL": collector.url,
    }
    env.pop("OCI_TRACING_ENABLED", None)
    if enabled:
        env["OCI_TRACING_ENABLED"] = enabled
    collector.reset()
    # when
    ran = subprocess.run(
        [sys.executable, "-c", _IMPORTED, TRACE_ID, PLATFORM_SPAN],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(ran.stdout.splitlines()[-1])
    # then the call is answered, and only with tracing on was the module imported and anything sent
    assert result["status"] == "200"
    assert result["tracing"] is (enabled == "1")
    assert bool(collector.received) is (enabled == "1")
