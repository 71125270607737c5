"""OciOkeWorkloadIdentityAuth: an OKE pod's identity, exchanged at the local proxymux stand-in and checked
by the signature-verifying local endpoint."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import genai_handler.auth
from genai_handler import OciOkeWorkloadIdentityAuth
from genai_handler.doctor import diagnose
from genai_handler.errors import MisconfiguredError
from genai_handler.local.endpoint import Fault, LocalEndpoint
from genai_handler.local.identity import LocalIdentity, new_key
from genai_handler.local.proxymux import LocalProxymux
from genai_handler.settings import DEFAULT_MODEL, Settings
from genai_handler.upstream import make_auth

from .conftest import PROJECT_OCID

pytestmark = pytest.mark.timeout(60, method="thread")


def _pod(monkeypatch: pytest.MonkeyPatch, proxymux: LocalProxymux) -> None:
    for name, value in proxymux.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def proxymux(tmp_path: Path, identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalProxymux]:
    """The stand-in, and this process in its pod."""
    with LocalProxymux(tmp_path / "pod", identity=identity) as server:
        _pod(monkeypatch, server)
        yield server


def _auth(proxymux: LocalProxymux) -> OciOkeWorkloadIdentityAuth:
    return OciOkeWorkloadIdentityAuth(str(proxymux.token_path), proxymux_port=proxymux.port)


def _client(endpoint: LocalEndpoint, auth: httpx2.Auth) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="not-used", base_url=endpoint.base_url, project=PROJECT_OCID, http_client=httpx2.Client(auth=auth)
    )


def test_given_an_oke_pod_when_the_openai_sdk_calls_then_oci_accepts_the_proxymux_token(
    proxymux: LocalProxymux, upstream: LocalEndpoint
) -> None:
    # given
    client = _client(upstream, _auth(proxymux))
    # when
    answer = client.responses.create(model=DEFAULT_MODEL, input="hi from a pod")
    # then: signed with the session token the proxymux issued, bound to the key made in the pod
    assert answer.output_text == "Local answer to: hi from a pod"
    assert [r.status for r in upstream.requests] == [200]
    assert upstream.requests[-1].key_id == f"ST${proxymux.issued[-1]}"


def test_given_the_sdks_argument_names_when_made_then_a_literal_token_works_and_other_keywords_are_accepted(
    proxymux: LocalProxymux, upstream: LocalEndpoint
) -> None:
    # given the token itself rather than its path, and the SDK signer's own options
    auth = OciOkeWorkloadIdentityAuth(
        service_account_token=proxymux.token_path.read_text(),
        proxymux_port=proxymux.port,
        log_requests=False,
        retry_strategy=None,
    )
    # when / then
    with httpx2.Client(auth=auth) as client:
        assert client.get(f"{upstream.base_url}/models", headers={"OpenAI-Project": PROJECT_OCID}).status_code == 200


def test_given_short_lived_tokens_when_calling_across_several_lifetimes_then_none_is_rejected(
    tmp_path: Path, identity: LocalIdentity, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given tokens that live 4 s
    with LocalProxymux(tmp_path / "short", identity=identity, lifetime_s=4) as proxymux:
        _pod(monkeypatch, proxymux)
        auth = _auth(proxymux)
        with httpx2.Client(auth=auth) as client:
            # when calling every 0.1 s for 9 s
            until = time.monotonic() + 9
            while time.monotonic() < until:
                client.get(f"{upstream.base_url}/models", headers={"OpenAI-Project": PROJECT_OCID})
                time.sleep(0.1)
        exchanges = len(proxymux.requests)
    # then every call was accepted at once, with tokens renewed ahead of expiry, not once per call
    assert {r.status for r in upstream.requests} == {200}
    assert 3 <= exchanges <= 8
    assert len({r.key_id for r in upstream.requests}) >= 3


def test_given_threads_sharing_one_auth_when_they_start_together_then_one_exchange_serves_them(
    proxymux: LocalProxymux, upstream: LocalEndpoint
) -> None:
    # given 16 threads and one auth with no token yet
    auth = _auth(proxymux)
    with httpx2.Client(auth=auth, timeout=20) as client:

        def work(_: int) -> list[int]:
            headers = {"OpenAI-Project": PROJECT_OCID}
            return [client.get(f"{upstream.base_url}/models", headers=headers).status_code for _ in range(4)]

        # when
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(work, range(16)))
    # then all succeed with one exchange
    assert results == [[200] * 4] * 16
    assert len(proxymux.requests) == 1


def test_given_an_async_client_when_many_calls_run_together_then_all_are_signed_with_one_exchange(
    proxymux: LocalProxymux, upstream: LocalEndpoint
) -> None:
    # given
    auth = _auth(proxymux)

    async def scenario() -> list[int]:
        async with httpx2.AsyncClient(auth=auth, timeout=20) as client:
            headers = {"OpenAI-Project": PROJECT_OCID}
            calls = (client.get(f"{upstream.base_url}/models", headers=headers) for _ in range(30))
            return [r.status_code for r in await asyncio.gather(*calls)]

    # when / then
    assert asyncio.run(scenario()) == [200] * 30
    assert len(proxymux.requests) == 1


def test_given_a_401_when_calling_then_it_exchanges_anew_and_retries_once(
    proxymux: LocalProxymux, upstream: LocalEndpoint
) -> None:
    # given OCI rejects the first call
    upstream.inject(Fault(kind="status", status=401, code="NotAuthenticated"))
    # when
    with httpx2.Client(auth=_auth(proxymux)) as client:
        response = client.get(f"{upstream.base_url}/models", headers={"OpenAI-Project": PROJECT_OCID})
    # then: a second token, one retry
    assert response.status_code == 200
    assert [r.status for r in upstream.requests] == [401, 200]
    assert len(proxymux.issued) == 2
    assert upstream.requests[-1].key_id == f"ST${proxymux.issued[-1]}"


def test_given_a_slow_proxymux_when_the_token_is_renewed_then_signing_is_not_blocked(
    tmp_path: Path, identity: LocalIdentity, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a token past half its lifetime, and a proxymux that now takes 2 s to answer
    with LocalProxymux(tmp_path / "slow", identity=identity, lifetime_s=6) as proxymux:
        _pod(monkeypatch, proxymux)
        auth = _auth(proxymux)
        first = auth.credentials()
        time.sleep(3.1)
        answer = proxymux.answer

        def slowly(*request: Any) -> tuple[int, bytes]:
            time.sleep(2)
            return answer(*request)

        monkeypatch.setattr(proxymux, "answer", slowly)
        # when
        started = time.monotonic()
        during = auth.credentials()
        elapsed = time.monotonic() - started
        # then: the current token signs at once while the next is fetched in the background
        assert during is first and elapsed < 0.5
        deadline = time.monotonic() + 10
        while auth.credentials() is first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert auth.credentials().key_id == f"ST${proxymux.issued[-1]}" != first.key_id


# Each misconfiguration is named; no message shows a token.


def test_given_no_kubernetes_service_host_when_made_then_it_says_not_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(MisconfiguredError, match="KUBERNETES_SERVICE_HOST is not set: not running in a Kubernetes pod"):
        OciOkeWorkloadIdentityAuth()


def test_given_no_token_file_when_made_then_it_names_the_default_path_and_the_mount(
    proxymux: LocalProxymux, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(genai_handler.auth, "SERVICE_ACCOUNT_TOKEN_PATH", str(proxymux.directory / "absent"))
    with pytest.raises(
        MisconfiguredError, match=r"no readable service account token file.*automountServiceAccountToken"
    ):
        OciOkeWorkloadIdentityAuth(proxymux_port=proxymux.port)


def test_given_a_missing_token_path_argument_when_made_then_it_names_the_argument(proxymux: LocalProxymux) -> None:
    with pytest.raises(MisconfiguredError, match=r"service_account_token_path"):
        OciOkeWorkloadIdentityAuth(str(proxymux.directory / "absent"))


def test_given_no_ca_file_when_made_then_it_names_the_variable(
    proxymux: LocalProxymux, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH", str(proxymux.directory / "absent.crt"))
    with pytest.raises(MisconfiguredError, match=r"CA certificate.*OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH"):
        _auth(proxymux)


def test_given_a_cluster_that_is_not_enhanced_when_exchanging_then_it_says_so(
    tmp_path: Path, identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalProxymux(tmp_path / "basic", identity=identity, enhanced=False) as proxymux:
        _pod(monkeypatch, proxymux)
        with pytest.raises(MisconfiguredError, match=r"HTTP 403.*not an enhanced cluster") as caught:
            _auth(proxymux).credentials()
    assert proxymux.token_path.read_text() not in caught.value.message


def test_given_a_foreign_service_account_token_when_exchanging_then_it_says_the_token_was_refused(
    proxymux: LocalProxymux,
) -> None:
    foreign = proxymux.write_service_account_token(proxymux.service_account_token(key=new_key()))
    with pytest.raises(MisconfiguredError, match="did not accept the service account token") as caught:
        _auth(proxymux).credentials()
    assert foreign not in caught.value.message and "HTTP 401" in caught.value.message


def test_given_an_expired_service_account_token_when_exchanging_then_it_says_expired_before_sending(
    proxymux: LocalProxymux,
) -> None:
    proxymux.write_service_account_token(proxymux.service_account_token(lifetime_s=-5))
    with pytest.raises(MisconfiguredError, match=r"service account token file.*has expired"):
        _auth(proxymux).credentials()
    assert proxymux.requests == []


def test_given_no_proxymux_listening_when_exchanging_then_it_says_unreachable(proxymux: LocalProxymux) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(MisconfiguredError, match=r"cannot reach the OKE proxymux at https://127\.0\.0\.1:\d+/"):
        OciOkeWorkloadIdentityAuth(str(proxymux.token_path), proxymux_port=port).credentials()


def test_given_a_ca_that_did_not_sign_the_proxymux_when_exchanging_then_tls_fails_as_unreachable(
    tmp_path: Path, proxymux: LocalProxymux, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalProxymux(tmp_path / "other") as other:
        monkeypatch.setenv("OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH", str(other.ca_path))
        with pytest.raises(MisconfiguredError, match="cannot reach the OKE proxymux"):
            _auth(proxymux).credentials()
    assert proxymux.issued == []


# Selected by GENAI_AUTH, and diagnosed by `make doctor` in the pod.


def test_given_genai_auth_oke_workload_identity_when_the_client_is_made_then_it_uses_the_pods_identity(
    proxymux: LocalProxymux, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the proxymux port OKE fixes, pointed at the stand-in
    monkeypatch.setattr(genai_handler.auth, "SERVICE_ACCOUNT_TOKEN_PATH", str(proxymux.token_path))
    monkeypatch.setattr(genai_handler.auth, "PROXYMUX_PORT", proxymux.port)
    settings = Settings(project_ocid=PROJECT_OCID, base_url=upstream.base_url, auth="oke_workload_identity")
    # when
    auth = make_auth(settings)
    # then
    assert isinstance(auth, OciOkeWorkloadIdentityAuth)
    assert auth.credentials().key_id == f"ST${proxymux.issued[-1]}"


def _doctor_in_pod(monkeypatch: pytest.MonkeyPatch, proxymux: LocalProxymux, upstream: LocalEndpoint) -> dict[str, Any]:
    """`make doctor`'s report in the pod: the default token path and port pointed at the stand-in."""
    monkeypatch.setattr(genai_handler.auth, "SERVICE_ACCOUNT_TOKEN_PATH", str(proxymux.token_path))
    monkeypatch.setattr(genai_handler.auth, "PROXYMUX_PORT", proxymux.port)
    environ = {
        "GENAI_AUTH": "oke_workload_identity",
        "GENAI_PROJECT_OCID": PROJECT_OCID,
        "GENAI_BASE_URL": upstream.base_url,
    }
    return diagnose(environ)


def test_given_an_oke_pod_when_the_doctor_runs_then_every_check_passes(
    proxymux: LocalProxymux, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # when
    report = _doctor_in_pod(monkeypatch, proxymux, upstream)
    # then
    assert report["ok"], report
    credentials = next(c for c in report["checks"] if c["name"] == "credentials")
    assert "OKE workload identity" in credentials["detail"]


def test_given_a_pod_of_a_basic_cluster_when_the_doctor_runs_then_it_names_the_enhanced_cluster_fix(
    tmp_path: Path, identity: LocalIdentity, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalProxymux(tmp_path / "basic", identity=identity, enhanced=False) as proxymux:
        _pod(monkeypatch, proxymux)
        report = _doctor_in_pod(monkeypatch, proxymux, upstream)
    failed = report["checks"][-1]
    assert not report["ok"] and failed["name"] == "credentials"
    assert "not an enhanced cluster" in failed["detail"] and "enhanced" in failed["fix"]
