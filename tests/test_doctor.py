"""The doctor against the local endpoint, made to fail in each way a real deployment does."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from genai_handler.doctor import diagnose
from genai_handler.local.agent import REPO_ROOT, FunctionProcess
from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity, make_api_key_profile

from .conftest import PROJECT_OCID, function_env

CHECKS = ["settings", "credentials", "endpoint", "call"]


@pytest.fixture
def principal(rp_identity: LocalIdentity) -> LocalIdentity:
    return rp_identity


@pytest.fixture
def service(principal: LocalIdentity) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trusted_issuer=principal.issuer_public_key, project_ocid=PROJECT_OCID) as server:
        yield server


def _settings(endpoint: LocalEndpoint | None = None, **extra: str) -> dict[str, str]:
    return {"GENAI_PROJECT_OCID": PROJECT_OCID, **({"GENAI_BASE_URL": endpoint.base_url} if endpoint else {}), **extra}


def _failed(report: dict, name: str, *secrets: str) -> dict:
    """The report stops at `name`, which failed; everything before it passed; no secret shown."""
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"]] == CHECKS[: CHECKS.index(name) + 1]
    *passed, failed = report["checks"]
    assert all(c["ok"] and c["fix"] == "" for c in passed) and not failed["ok"] and failed["fix"]
    _assert_no_secrets(report, *secrets)
    return failed


def _assert_no_secrets(report: dict, *secrets: str) -> None:
    text = json.dumps(report)
    for secret in (*secrets, "BEGIN", "PRIVATE KEY", "Signature ", "signature=", "Bearer "):
        assert secret not in text


def _pem(path: Path) -> str:
    return path.read_text().splitlines()[1]  # a line of the key's base64


def test_all_good_passes_every_check_in_order(principal: LocalIdentity, service: LocalEndpoint) -> None:
    report = diagnose(_settings(service))
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == CHECKS
    credentials, call = report["checks"][1], report["checks"][3]
    assert "resource principal" in credentials["detail"] and "valid for" in credentials["detail"]
    assert service.requests[-1].request_id in call["detail"] and "xai.grok-4-1-fast-reasoning answered" in call["detail"]
    assert service.requests[-1].path.endswith("/responses")  # the function's own call, not an undocumented route
    assert service.requests[-1].status == 200
    _assert_no_secrets(report, principal.token, _pem(principal.key_path))


def test_a_missing_setting_is_named_and_nothing_else_runs(principal: LocalIdentity) -> None:
    failed = _failed(diagnose({"GENAI_REGION": "us-chicago-1"}), "settings")
    assert "GENAI_PROJECT_OCID" in failed["detail"] and "fn config function" in failed["fix"]


def test_a_missing_key_file_is_a_credentials_failure(principal: LocalIdentity, service: LocalEndpoint) -> None:
    principal.key_path.unlink()
    failed = _failed(diagnose(_settings(service)), "credentials", principal.token)
    assert "cannot read OCI credentials: No such file or directory" in failed["detail"]
    assert service.requests == []


def test_an_unparseable_user_key_is_a_credentials_failure(tmp_path: Path, service: LocalEndpoint) -> None:
    config, profile, _, _ = make_api_key_profile(tmp_path / "oci")
    (tmp_path / "oci" / "oci_api_key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    settings = _settings(service, GENAI_AUTH="user_principal", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile)
    failed = _failed(diagnose(settings), "credentials", "not a key")
    assert "cannot load the OCI private key" in failed["detail"] and "user principal" in failed["detail"]
    assert "key_file" in failed["fix"] and f"[{profile}]" in failed["fix"]


def test_outside_a_function_a_resource_principal_points_to_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("OCI_RESOURCE_PRINCIPAL")]:
        monkeypatch.delenv(name)
    failed = _failed(diagnose(_settings(GENAI_REGION="us-chicago-1")), "credentials")
    assert "GENAI_AUTH=session" in failed["fix"] and "oci session authenticate" in failed["fix"]


def test_an_expired_resource_principal_token_is_reported(principal: LocalIdentity, service: LocalEndpoint) -> None:
    principal.rotate(lifetime_s=-10)
    failed = _failed(diagnose(_settings(service)), "credentials", principal.token)
    assert "token expired" in failed["detail"]
    assert service.requests == []


def test_an_expired_session_says_run_oci_session_refresh(tmp_path: Path, principal: LocalIdentity, service: LocalEndpoint) -> None:
    # given an `oci session authenticate` profile whose token has expired
    config, profile, key, _ = make_api_key_profile(tmp_path / "oci", profile="SESSION")
    token = principal.issue_token(key.public_key(), lifetime_s=-10)
    (tmp_path / "oci" / "token").write_text(token)
    with config.open("a") as f:
        f.write(f"security_token_file={tmp_path / 'oci' / 'token'}\n")
    settings = _settings(service, GENAI_AUTH="session", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile)
    failed = _failed(diagnose(settings), "credentials", token)
    assert "session token" in failed["detail"] and "expired" in failed["detail"]
    assert "oci session refresh --profile SESSION" in failed["fix"]


def test_a_token_from_a_foreign_issuer_is_a_401_with_its_causes(principal: LocalIdentity, tmp_path: Path) -> None:
    # given an endpoint that trusts another identity service (wrong tenancy/realm, or a forged token)
    other = LocalIdentity(tmp_path / "other")
    with LocalEndpoint(trusted_issuer=other.issuer_public_key, project_ocid=PROJECT_OCID) as foreign:
        failed = _failed(diagnose(_settings(foreign)), "call", principal.token)
    assert "HTTP 401 NotAuthenticated" in failed["detail"] and "opc-request-id" in failed["detail"]
    assert "clock" in failed["fix"] and "expired" in failed["fix"]


def test_an_unknown_api_key_fingerprint_is_a_401_naming_the_uploaded_key(tmp_path: Path, service: LocalEndpoint) -> None:
    config, profile, _, _ = make_api_key_profile(tmp_path / "oci")  # never registered with the endpoint
    settings = _settings(service, GENAI_AUTH="user_principal", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile)
    failed = _failed(diagnose(settings), "call", _pem(tmp_path / "oci" / "oci_api_key.pem"))
    assert "401" in failed["detail"] and "uploaded to the user" in failed["fix"]


def test_a_registered_api_key_profile_passes(tmp_path: Path, service: LocalEndpoint) -> None:
    config, profile, key, key_id = make_api_key_profile(tmp_path / "oci")
    service.register_key(key_id, key.public_key())
    settings = _settings(service, GENAI_AUTH="user_principal", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile)
    report = diagnose(settings)
    assert report["ok"] is True and "key loads" in report["checks"][1]["detail"]
    _assert_no_secrets(report, _pem(tmp_path / "oci" / "oci_api_key.pem"))


def test_a_generative_ai_api_key_is_checked_without_showing_it(service: LocalEndpoint) -> None:
    secret = "sk-oci-genai-test-secret-value"
    service.register_bearer(secret)
    report = diagnose(_settings(service, GENAI_AUTH="api_key", GENAI_API_KEY=secret))
    assert report["ok"] is True and "value not shown" in report["checks"][1]["detail"]
    _assert_no_secrets(report, secret)
    wrong = _failed(diagnose(_settings(service, GENAI_AUTH="api_key", GENAI_API_KEY="sk-wrong")), "call", "sk-wrong")
    assert "401" in wrong["detail"] and "GENAI_API_KEY" in wrong["fix"]


def test_a_wrong_project_is_a_404_pointing_at_iam_region_and_project(principal: LocalIdentity, service: LocalEndpoint) -> None:
    wrong = PROJECT_OCID.replace("aaaalocalproject", "aaaaotherproject")
    failed = _failed(diagnose(_settings(service, GENAI_PROJECT_OCID=wrong)), "call", principal.token)
    assert "HTTP 404 NotAuthorizedOrNotFound" in failed["detail"]
    assert "dynamic group" in failed["fix"] and "policy" in failed["fix"] and "GENAI_REGION" in failed["fix"]
    assert "few minutes" in failed["fix"]


def test_a_model_the_region_does_not_offer_is_named_with_what_it_offers(principal: LocalIdentity) -> None:
    with LocalEndpoint(trusted_issuer=principal.issuer_public_key, project_ocid=PROJECT_OCID,
                       models=("openai.gpt-oss-120b",)) as region:
        failed = _failed(diagnose(_settings(region)), "call", principal.token)
    assert "model xai.grok-4-1-fast-reasoning not offered in this region" in failed["detail"]
    assert "openai.gpt-oss-120b" in failed["fix"]


def test_a_refused_connection_is_an_endpoint_failure(principal: LocalIdentity) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    failed = _failed(diagnose(_settings(GENAI_BASE_URL=f"http://127.0.0.1:{port}/openai/v1")), "endpoint", principal.token)
    assert f"cannot connect to 127.0.0.1:{port}" in failed["detail"] and "refused" in failed["detail"]
    assert "service gateway" in failed["fix"]


def test_a_name_that_does_not_resolve_is_a_dns_failure(principal: LocalIdentity) -> None:
    failed = _failed(diagnose(_settings(GENAI_BASE_URL="https://genai.example.invalid/openai/v1")), "endpoint")
    assert failed["detail"] == "DNS cannot resolve genai.example.invalid"
    assert "GENAI_REGION" in failed["fix"]


def test_the_cli_prints_one_line_per_check_and_exits_1_on_failure(tmp_path: Path, service: LocalEndpoint, principal: LocalIdentity) -> None:
    principal.rotate(lifetime_s=-10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    env.update(_settings(service), PYTHONPATH=str(REPO_ROOT))
    human = subprocess.run([sys.executable, "-m", "genai_handler.doctor"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert human.returncode == 1
    lines = human.stdout.splitlines()
    assert lines[0].startswith("✓ settings:") and lines[1].startswith("✗ credentials:") and "token expired" in lines[1]
    assert lines[2].startswith("  fix: ") and principal.token not in human.stdout + human.stderr
    principal.rotate()
    machine = subprocess.run([sys.executable, "-m", "genai_handler.doctor", "--json"], env=env, cwd=tmp_path,
                             capture_output=True, text=True)
    assert machine.returncode == 0 and json.loads(machine.stdout)["ok"] is True


def test_a_direct_fn_invoke_runs_the_doctor_as_the_function(function: FunctionProcess, upstream: LocalEndpoint, identity: LocalIdentity) -> None:
    # `fn invoke <app> genai` with {"doctor": true}: IAM-authorised, never through API Gateway
    answer = function.invoke({"doctor": True}, gateway=False)
    report = answer.json()
    assert answer.status == 200 and report["ok"] is True and [c["name"] for c in report["checks"]] == CHECKS
    assert upstream.requests[-1].key_id == f"ST${identity.token}"  # signed as the function's own identity
    _assert_no_secrets(report, identity.token, _pem(identity.key_path))


def test_through_api_gateway_the_doctor_is_just_an_invalid_request(
    identity: LocalIdentity, upstream: LocalEndpoint, tmp_path: Path
) -> None:
    with LocalGateway(function_env(identity, upstream), console=io.StringIO(), function_log=subprocess.DEVNULL) as gw:  # type: ignore[arg-type]
        answer = httpx2.post(f"{gw.url}/genai/chat", content=b'{"doctor": true}')
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request"
    assert "checks" not in answer.text and upstream.requests == []


def test_a_misconfigured_function_still_runs_the_doctor_on_direct_invoke(
    misconfigured_function: FunctionProcess, tmp_path: Path
) -> None:
    # given a deployed function whose project setting is missing
    report = misconfigured_function.invoke(b'{"doctor": true}', gateway=False).json()
    # then the doctor says which setting, instead of the function's generic 500
    assert report["ok"] is False and report["checks"][0]["name"] == "settings"
    assert "GENAI_PROJECT_OCID" in report["checks"][0]["detail"]
    assert '"doctor": true' in (tmp_path / "log").read_text()
