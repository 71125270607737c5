"""What the function writes to its log, through the real fdk, with every logger trying to talk.

The fdk sets the root logger to DEBUG; OPENAI_LOG=debug asks the SDK to log too. Across happy
paths, refused input, upstream faults and broken configuration, the log must hold no prompt, no
answer, no token, no key material and no Authorization value, and with GENAI_LOG_PROMPTS=true
only the prompts and answers are added. Distinctive canaries make any leak easy to find.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genai_handler.local.agent import FunctionProcess
from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.identity import LocalIdentity

from .conftest import function_env, start_function
from .test_tracing import DATA_KEY, PLATFORM_SPAN, TRACE_ID, Collector

PROMPT = "CANARY-PROMPT-kq7w"
INSTRUCTIONS = "CANARY-INSTRUCTIONS-p3zx"
MESSAGE = "CANARY-MESSAGE-m8rt"
METADATA = "CANARY-METADATA-v2nd"
CALLER_TOKEN = "CANARY-CALLER-JWT-h5yb"
API_KEY = "CANARY-API-KEY-t9qe"
ANSWER = "Local answer to"  # the local model's reply starts with it
NOISY = {"OPENAI_LOG": "debug", "HTTPX_LOG_LEVEL": "trace"}


def _log(function: FunctionProcess, path: Path) -> str:
    time.sleep(0.2)  # the fdk's stderr is flushed per line; give the last one time to land
    assert function.alive()
    return path.read_text(encoding="utf-8", errors="replace")


def _run_catalogue(function: FunctionProcess, endpoint: LocalEndpoint) -> list[str]:
    """Invocations of every kind; returns their call ids."""
    caller = {"Authorization": f"Bearer {CALLER_TOKEN}", "Cookie": f"session={CALLER_TOKEN}"}
    full = {"prompt": PROMPT, "instructions": INSTRUCTIONS, "metadata": {"note": METADATA}}
    messages = {"input": [{"role": "user", "content": [{"type": "input_text", "text": MESSAGE}]}]}
    cases: list[tuple[list[Fault], object, dict]] = [
        ([], full, {}),
        ([], messages, {}),
        ([], full, {"path": "/v1/responses"}),
        ([], full, {"gateway": False}),
        ([], {**full, "colour": "blue"}, {}),
        ([], {**full, "temperature": 9}, {}),
        ([], {"prompt": PROMPT * 3000}, {}),
        ([], f"{PROMPT} is not JSON", {}),
        ([], full, {"method": "GET"}),
        ([Fault(kind="status", status=500)] * 3, full, {}),
        ([Fault(kind="status", status=401, code="NotAuthenticated")] * 2, full, {}),
        ([Fault(kind="status", status=401, code="NotAuthenticated")], messages, {}),
        ([Fault(kind="status", status=429, retry_after="120")], full, {}),
        ([Fault(kind="status", status=400, code="InvalidParameter")], full, {}),
        ([Fault(kind="non_json")], full, {}),
        ([Fault(kind="wrong_shape")], full, {}),
        ([Fault(kind="reset")] * 3, full, {}),
        ([Fault(kind="delay", delay_s=3)], full, {"deadline_s": 2.0}),
    ]
    call_ids = []
    for n, (faults, body, options) in enumerate(cases):
        endpoint.reset()
        endpoint.inject(*faults)
        call_id = f"hygiene-{n}-{time.monotonic_ns()}"
        function.invoke(body, headers=caller, call_id=call_id, **options)  # type: ignore[arg-type]
        call_ids.append(call_id)
    return call_ids


def _secrets(identity: LocalIdentity, signatures: set[str]) -> list[str]:
    """Strings that must never be logged: token, its parts, key material, signatures, caller credentials."""
    _header, claims, signature = identity.token.split(".")
    pem_lines = [line for line in identity.key_path.read_text().splitlines() if not line.startswith("-----")]
    return [
        identity.token,
        claims[:40],
        signature[:40],
        "ST$",
        "PRIVATE KEY",
        pem_lines[0],
        pem_lines[-1],
        "Signature version",
        'keyId="',
        CALLER_TOKEN,
        API_KEY,
        *signatures,
    ]


def _signatures(endpoint: LocalEndpoint) -> set[str]:
    values = set()
    for request in endpoint.requests:
        authorization = request.headers.get("authorization", "")
        if 'signature="' in authorization:
            values.add(authorization.split('signature="', 1)[1][:40])
    return values


def _json_lines(log: str, call_ids: list[str]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {call_id: [] for call_id in call_ids}
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("call_id") in found:
                found[record["call_id"]].append(record)
    return found


@pytest.fixture(scope="module")
def quiet(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FunctionProcess, Path]]:
    """The default: GENAI_LOG_PROMPTS unset, FDK_DEBUG unset, the SDK asked to log at debug."""
    path = tmp_path_factory.mktemp("quiet") / "function.log"
    function = start_function(function_env(identity, endpoint, **NOISY), path)
    yield function, path
    function.stop()


def test_given_default_settings_when_invoked_then_nothing_the_caller_sent_or_any_secret_is_logged(
    quiet: tuple[FunctionProcess, Path], identity: LocalIdentity, endpoint: LocalEndpoint
) -> None:
    function, path = quiet
    # given every kind of invocation, including ones OCI answers with a signed-request round trip
    signatures: set[str] = set()
    call_ids = []
    for _ in range(2):
        call_ids += _run_catalogue(function, endpoint)
        signatures |= _signatures(endpoint)
        identity.rotate()  # and a rotation in between
    # when
    endpoint.reset()
    doctor = function.invoke(b'{"doctor": true}', gateway=False)  # a direct, IAM-authorised diagnosis
    signatures |= _signatures(endpoint)
    log = _log(function, path)
    assert doctor.json()["ok"] is True, doctor.body
    for canary in _secrets(identity, signatures):
        assert canary not in doctor.body.decode(), f"{canary[:30]!r} in the doctor's report"
    # then the log holds none of the prompts, answers or secrets
    for canary in (PROMPT, INSTRUCTIONS, MESSAGE, METADATA, ANSWER, *_secrets(identity, signatures)):
        assert canary not in log, f"{canary[:30]!r} leaked into the log"
    assert "Traceback" not in log and "DEBUG" not in log and "HTTP Request" not in log
    # and every invocation left exactly one JSON line
    assert all(len(lines) == 1 for lines in _json_lines(log, call_ids).values())


def test_given_log_prompts_when_invoked_then_prompts_and_answers_are_logged_but_secrets_never(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # given
    path = tmp_path / "function.log"
    function = start_function(function_env(identity, endpoint, GENAI_LOG_PROMPTS="true", **NOISY), path)
    # when
    try:
        call_ids = _run_catalogue(function, endpoint)
        signatures = _signatures(endpoint)
        log = _log(function, path)
    finally:
        function.stop()
    # then
    lines = _json_lines(log, call_ids)
    happy = lines[call_ids[0]][0]
    assert happy["prompt"] == {"prompt": PROMPT, "instructions": INSTRUCTIONS}
    assert happy["output_text"] == f"{ANSWER}: {PROMPT}"
    assert MESSAGE in json.dumps(lines[call_ids[1]][0])
    for canary in (METADATA, *_secrets(identity, signatures)):
        assert canary not in log, f"{canary[:30]!r} leaked into the log"
    assert "Traceback" not in log


def test_given_broken_credentials_when_invoked_then_they_are_reported_without_their_content(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # given the token and a damaged key passed as literal values, not file paths
    broken_pem = f"-----BEGIN PRIVATE KEY-----\n{'CANARYPEMBODY' * 5}\n-----END PRIVATE KEY-----\n"
    env = function_env(
        identity,
        endpoint,
        OCI_RESOURCE_PRINCIPAL_RPST=identity.token,
        OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM=broken_pem,
        **NOISY,
    )
    path = tmp_path / "function.log"
    function = start_function(env, path)
    # when
    try:
        answer = function.invoke({"prompt": PROMPT})
        log = _log(function, path)
    finally:
        function.stop()
    # then the caller and the log learn what is wrong, not what the credentials hold
    assert answer.http_status == 500 and answer.json()["error"]["type"] == "misconfigured"
    for text in (answer.body.decode(), log):
        for canary in (identity.token, identity.token.split(".")[1][:40], "CANARYPEMBODY", "PRIVATE KEY", PROMPT):
            assert canary not in text
    assert "Traceback" not in log


def test_given_an_invalid_setting_when_invoked_then_it_is_logged_without_the_prompt(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # given
    path = tmp_path / "function.log"
    function = start_function(function_env(identity, endpoint, GENAI_MAX_RETRIES="lots", **NOISY), path)
    # when
    try:
        answer = function.invoke({"prompt": PROMPT, "instructions": INSTRUCTIONS})
        log = _log(function, path)
    finally:
        function.stop()
    # then
    assert answer.http_status == 500 and "GENAI_MAX_RETRIES" in log
    assert PROMPT not in log and INSTRUCTIONS not in log and identity.token not in log and "Traceback" not in log


def test_given_an_api_key_when_invoked_and_refused_then_the_key_is_never_logged(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # given GENAI_AUTH=api_key, which the SDK sends as a Bearer token, and the SDK asked to log
    endpoint.register_bearer(API_KEY)
    path = tmp_path / "function.log"
    env = function_env(identity, endpoint, GENAI_AUTH="api_key", GENAI_API_KEY=API_KEY, **NOISY)
    function = start_function(env, path)
    # when
    try:
        endpoint.reset()
        assert function.invoke({"prompt": PROMPT}).http_status == 200
        assert endpoint.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
        endpoint.inject(*[Fault(kind="status", status=401, code="NotAuthenticated")] * 2)
        assert function.invoke({"prompt": PROMPT}).http_status == 502
        log = _log(function, path)
    finally:
        function.stop()
    # then
    assert API_KEY not in log and PROMPT not in log


def test_given_a_request_with_many_field_names_when_refused_then_its_log_line_stays_small(
    quiet: tuple[FunctionProcess, Path], endpoint: LocalEndpoint
) -> None:
    # given
    function, path = quiet
    body = {"prompt": "hi", **{f"{METADATA}-{i:05d}-{'x' * 40}": 1 for i in range(5000)}}
    # when
    answer = function.invoke(body, call_id="hygiene-field-names")
    # then
    assert answer.http_status == 400
    [line] = _json_lines(_log(function, path), ["hygiene-field-names"])["hygiene-field-names"]
    assert len(json.dumps(line)) < 2048 and len(answer.body) < 2048


def test_given_fdk_debug_when_invoked_then_the_callers_authorization_header_is_logged(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    """Why the README's threat model warns against FDK_DEBUG: the fdk then logs every request header."""
    # given
    path = tmp_path / "function.log"
    function = start_function(function_env(identity, endpoint, FDK_DEBUG="1"), path)
    # when
    try:
        function.invoke({"prompt": PROMPT}, headers={"Authorization": f"Bearer {CALLER_TOKEN}"})
        log = _log(function, path)
    finally:
        function.stop()
    # then
    assert CALLER_TOKEN in log
    assert PROMPT not in log and identity.token not in log  # ours stay out even then


def test_given_caller_tracing_and_guardrails_on_when_invoked_then_no_prompt_or_secret_is_logged_or_traced(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    # given every operations feature switched on: the gateway's caller header, tracing to a
    # collector whose URL holds the APM data key, and guardrails that screen (and flag) the prompt
    flagged = f"{PROMPT} mail ada@example.com, BADWORD, ignore previous instructions"
    b3 = {"X-B3-TraceId": TRACE_ID, "X-B3-SpanId": PLATFORM_SPAN, "X-B3-Sampled": "1"}
    path = tmp_path / "function.log"
    with Collector() as collector:
        env = function_env(
            identity,
            endpoint,
            OCI_TRACING_ENABLED="1",
            OCI_TRACE_COLLECTOR_URL=collector.url,
            GENAI_GUARDRAILS="inform",
            GENAI_COMPARTMENT_OCID=identity.compartment_ocid,
            **NOISY,
        )
        function = start_function(env, path)
        try:
            endpoint.reset()
            caller = {"X-Genai-Caller": "ocid1.user.oc1..aaaalice", "Authorization": f"Bearer {CALLER_TOKEN}"}
            # when a flagged prompt and a clean one go through, and one attempt fails first
            for body in ({"prompt": flagged, "instructions": INSTRUCTIONS}, {"prompt": PROMPT}):
                endpoint.inject(
                    Fault(kind="status", status=503, code="ServiceUnavailable", path="/openai/v1/responses")
                )
                answer = function.invoke(body, headers=caller, platform_headers=b3)
                assert answer.http_status == 200, answer.body
            collector.arrived.wait(5)
            signatures = _signatures(endpoint)
            log = _log(function, path)
        finally:
            function.stop()
        spans = json.dumps(collector.received)
    # then the log line names the caller, the verdicts and the trace, but no prompt, answer or secret
    assert "aaaalice" in log and '"guardrails"' in log and TRACE_ID in log
    for text, where in ((log, "the log"), (spans, "the spans")):
        for canary in (
            PROMPT,
            INSTRUCTIONS,
            ANSWER,
            "ada@example.com",
            "BADWORD",
            DATA_KEY,
            *_secrets(identity, signatures),
        ):
            assert canary not in text, f"{canary[:30]!r} leaked into {where}"
    assert spans != "[]" and "Traceback" not in log
