"""genai_handler.local.proxymux: OKE's proxymux stand-in, checked with the oci SDK's own OKE workload
identity signer, the reference for what a pod sends and reads.

The SDK fixes the proxymux port at 12250 (oci/auth/signers/resource_principals_signer.py passes its
module constant OCI_KUBERNETES_PROXYMUX_SERVICE_PORT to the signer; no argument or variable changes it),
so these tests patch that one constant to the stand-in's port; everything else is the SDK as shipped.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import oci
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.identity import LocalIdentity, new_key
from genai_handler.local.proxymux import PATH, LocalProxymux
from genai_handler.settings import DEFAULT_MODEL

from .conftest import PROJECT_OCID

pytestmark = pytest.mark.timeout(60, method="thread")


@pytest.fixture
def proxymux(tmp_path: Path, identity: LocalIdentity) -> Iterator[LocalProxymux]:
    with LocalProxymux(tmp_path / "pod", identity=identity) as server:
        yield server


def _in_pod(monkeypatch: pytest.MonkeyPatch, proxymux: LocalProxymux) -> None:
    """The pod's environment for the SDK, the port being the one patched constant (see the module doc)."""
    for name, value in proxymux.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        oci.auth.signers.resource_principals_signer, "OCI_KUBERNETES_PROXYMUX_SERVICE_PORT", str(proxymux.port)
    )


def _exchange(proxymux: LocalProxymux, service_account_token: str) -> httpx2.Response:
    """One exchange as a pod posts it: a fresh key's base64 DER public key, the token as Bearer, TLS to its CA."""
    public = (
        new_key().public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return httpx2.post(
        proxymux.url,
        json={"podKey": base64.b64encode(public).decode()},
        headers={"authorization": f"Bearer {service_account_token}"},
        verify=ssl.create_default_context(cafile=proxymux.ca_path),
    )


def _sdk_signer(proxymux: LocalProxymux) -> Any:  # the SDK is untyped
    return oci.auth.signers.get_oke_workload_identity_resource_principal_signer(
        service_account_token_path=str(proxymux.token_path), retry_strategy=oci.retry.NoneRetryStrategy()
    )


def test_given_the_sdks_oke_signer_when_it_exchanges_then_its_token_is_the_stand_ins_and_oci_accepts_it(
    proxymux: LocalProxymux, upstream: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a pod's environment
    _in_pod(monkeypatch, proxymux)
    # when the SDK's signer exchanges the service account token and signs a call
    signer = _sdk_signer(proxymux)
    answer = requests.post(
        f"{upstream.base_url}/responses",
        json={"model": DEFAULT_MODEL, "input": "hi"},
        headers={"OpenAI-Project": PROJECT_OCID},
        auth=signer,
        timeout=10,
    )
    # then the token is one the stand-in issued, and the signature-verifying endpoint accepts the call
    assert signer.get_security_token() in proxymux.issued
    assert answer.status_code == 200
    assert upstream.requests[-1].key_id == f"ST${proxymux.issued[-1]}"


def test_given_the_sdks_oke_signer_when_it_exchanges_then_it_sends_what_the_stand_in_expects(
    proxymux: LocalProxymux, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    _in_pod(monkeypatch, proxymux)
    # when
    signer = _sdk_signer(proxymux)
    # then one POST with the service account token as a bearer, JSON, a request id, and the session key
    [seen] = proxymux.requests
    assert (seen.method, seen.path, seen.status) == ("POST", PATH, 200)
    assert seen.headers["authorization"] == f"Bearer {proxymux.token_path.read_text()}"
    assert seen.headers["content-type"] == "application/json"
    assert len(seen.headers["opc-request-id"].split("/")) == 3
    public = signer.session_key_supplier.get_key_pair()["public"]
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert seen.pod_key == base64.b64encode(der).decode()


def test_given_a_cluster_that_is_not_enhanced_when_the_sdk_exchanges_then_it_reports_its_403(
    tmp_path: Path, identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    with LocalProxymux(tmp_path / "basic", identity=identity, enhanced=False) as proxymux:
        _in_pod(monkeypatch, proxymux)
        # when / then: the SDK's own message for the proxymux's 403
        with pytest.raises(oci.exceptions.ServiceError) as caught:
            _sdk_signer(proxymux)
    assert caught.value.status == 403
    assert caught.value.message == "Please ensure the cluster type is enhanced"


def test_given_a_foreign_service_account_token_when_the_sdk_exchanges_then_it_is_refused_401(
    proxymux: LocalProxymux, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a token signed by another cluster's key
    _in_pod(monkeypatch, proxymux)
    proxymux.write_service_account_token(proxymux.service_account_token(key=new_key()))
    # when / then
    with pytest.raises(oci.exceptions.ServiceError) as caught:
        _sdk_signer(proxymux)
    assert caught.value.status == 401
    assert caught.value.message == "Failed to get RPST token from proxymux"


def test_given_the_stand_in_when_reached_without_its_ca_then_tls_fails(proxymux: LocalProxymux) -> None:
    # when / then: its certificate chains to its own CA only
    with pytest.raises(httpx2.ConnectError):
        httpx2.post(proxymux.url, json={})


def test_given_an_expired_service_account_token_when_posted_then_it_is_refused_401(proxymux: LocalProxymux) -> None:
    # given
    expired = proxymux.service_account_token(lifetime_s=-10)
    # when
    answer = _exchange(proxymux, expired)
    # then
    assert answer.status_code == 401
    assert proxymux.issued == []


def test_given_a_valid_exchange_when_answered_then_the_body_is_base64_json_with_an_st_token(
    proxymux: LocalProxymux,
) -> None:
    # given the pod's mounted token
    token = proxymux.token_path.read_text()
    # when
    answer = _exchange(proxymux, token)
    # then
    assert answer.status_code == 200
    assert json.loads(base64.b64decode(answer.content)) == {"token": f"ST${proxymux.issued[-1]}"}
