"""genai_handler.upstream: the real OpenAI SDK against the local endpoint, faults injected."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from genai_handler.errors import RateLimited, UpstreamAuthError, UpstreamError, UpstreamRejected, UpstreamTimeout
from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import Settings
from genai_handler.upstream import _build_client, client_for, create_response

from .conftest import PROJECT_OCID

ARGS = {"model": "xai.grok-4-1-fast-reasoning", "input": "hello", "max_output_tokens": 50, "store": False}


@pytest.fixture
def rp_env(identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def settings(rp_env: None, endpoint: LocalEndpoint) -> Settings:
    return Settings(project_ocid=PROJECT_OCID, base_url=endpoint.base_url)


@pytest.fixture
def call(settings: Settings, upstream: LocalEndpoint) -> Iterator:
    client = _build_client(settings)

    def _call(budget_s: float = 10.0, retries: int = 2, **arguments: object):
        return create_response(client, {**ARGS, **arguments}, time.monotonic() + budget_s, retries)

    yield _call
    client.close()


def test_success_returns_the_response_and_the_opc_request_id(call, upstream: LocalEndpoint) -> None:
    result = call()
    assert result.response.output_text == "Local answer to: hello"
    assert result.request_id == upstream.requests[-1].request_id
    assert result.attempts == 1


def test_the_client_is_built_once_per_settings(settings: Settings) -> None:
    assert client_for(settings) is client_for(settings)


def test_compartment_setting_is_sent_as_opc_compartment_id(rp_env: None, upstream: LocalEndpoint) -> None:
    compartment = "ocid1.compartment.oc1..aaaacompartment"
    client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url=upstream.base_url, compartment_ocid=compartment))
    create_response(client, ARGS, time.monotonic() + 10, 0)
    assert upstream.requests[-1].headers["opc-compartment-id"] == compartment


@pytest.mark.parametrize("kind", ["drop", "reset", "truncated"])
def test_broken_connections_are_retried(call, upstream: LocalEndpoint, kind: str) -> None:
    upstream.inject(Fault(kind=kind))
    assert call().attempts == 2


@pytest.mark.parametrize("kind", ["drop", "reset", "truncated"])
def test_broken_connections_without_retries_left_are_upstream_errors(call, upstream: LocalEndpoint, kind: str) -> None:
    upstream.inject(Fault(kind=kind))
    with pytest.raises(UpstreamError):
        call(retries=0)


@pytest.mark.parametrize("kind", ["non_json", "wrong_shape"])
def test_unreadable_answers_are_upstream_errors_with_the_request_id(call, upstream: LocalEndpoint, kind: str) -> None:
    upstream.inject(Fault(kind=kind))
    with pytest.raises(UpstreamError) as caught:
        call()
    assert caught.value.request_id == upstream.requests[-1].request_id
    assert "cannot read" in caught.value.message


def test_a_dripping_body_is_cut_at_the_deadline(call, upstream: LocalEndpoint) -> None:
    upstream.inject(Fault(kind="drip", delay_s=0.3))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        call(budget_s=2.0)
    assert time.monotonic() - started < 3.0


def test_connection_refused_is_an_upstream_error(rp_env: None) -> None:
    client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url="http://127.0.0.1:9/openai/v1"))
    with pytest.raises(UpstreamError, match="could not reach"):
        create_response(client, ARGS, time.monotonic() + 5, 1)


def test_retry_after_beyond_the_deadline_is_not_waited_for(call, upstream: LocalEndpoint) -> None:
    upstream.inject(Fault(kind="status", status=429, retry_after="30"))
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        call(budget_s=10)
    assert time.monotonic() - started < 2 and caught.value.retry_after == 30


def test_rate_limit_without_retry_after_suggests_the_backoff(call, upstream: LocalEndpoint) -> None:
    upstream.inject(*[Fault(kind="status", status=429)] * 3)
    with pytest.raises(RateLimited) as caught:
        call(retries=0)
    assert caught.value.retry_after >= 1


def test_upstream_400_is_reported_as_rejected_with_oci_code(call, upstream: LocalEndpoint) -> None:
    with pytest.raises(UpstreamRejected, match="InvalidParameter"):
        call(model="not.offered-here")


def test_wrong_project_is_an_iam_error(rp_env: None, upstream: LocalEndpoint) -> None:
    client = _build_client(Settings(project_ocid="ocid1.generativeaiproject.oc1.us-chicago-1.other", base_url=upstream.base_url))
    with pytest.raises(UpstreamAuthError, match="NotAuthorizedOrNotFound"):
        create_response(client, ARGS, time.monotonic() + 5, 0)


def test_an_expired_deadline_makes_no_call(call, upstream: LocalEndpoint) -> None:
    with pytest.raises(UpstreamTimeout):
        call(budget_s=-1)
    assert upstream.requests == []


def test_idle_connection_closed_by_the_server_is_replaced_transparently(rp_env: None, identity: LocalIdentity) -> None:
    # given a server that closes idle keep-alive connections after 0.5 s
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, idle_timeout_s=0.5) as server:
        client = _build_client(Settings(project_ocid=PROJECT_OCID, base_url=server.base_url))
        create_response(client, ARGS, time.monotonic() + 5, 0)
        time.sleep(1.0)
        # when the next call comes, then it succeeds on a new connection without a retry
        assert create_response(client, ARGS, time.monotonic() + 5, 0).attempts == 1
        assert server.connections_opened == 2


def test_connection_outlives_httpx_default_five_second_keepalive(call, upstream: LocalEndpoint) -> None:
    call()
    time.sleep(6)  # longer than httpx2's default keepalive_expiry
    call()
    assert upstream.connections_opened == 1


def test_a_5xx_asking_for_a_long_wait_passes_its_retry_after_on(call, upstream: LocalEndpoint) -> None:
    upstream.inject(Fault(kind="status", status=503, code="ServiceUnavailable", retry_after="45"))
    with pytest.raises(UpstreamError) as caught:
        call(budget_s=10)
    assert caught.value.retry_after == 45 and len(upstream.requests) == 1
