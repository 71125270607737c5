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

from genai_handler import doctor
from genai_handler.doctor import diagnose
from genai_handler.local import gateway
from genai_handler.local.agent import REPO_ROOT, FunctionProcess
from genai_handler.local.endpoint import Fault, LocalEndpoint, oci_errors
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity, make_api_key_profile
from genai_handler.settings import DEFAULT_MODEL

from .conftest import PROJECT_OCID, TEMPLATE, function_env

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


def test_given_a_working_setup_when_diagnosed_then_every_check_passes_in_order(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # when
    report = diagnose(_settings(service))
    # then
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == CHECKS
    credentials, call = report["checks"][1], report["checks"][3]
    assert "resource principal" in credentials["detail"] and "valid for" in credentials["detail"]
    assert service.requests[-1].request_id in call["detail"] and f"{DEFAULT_MODEL} answered" in call["detail"]
    assert service.requests[-1].path.endswith("/responses")  # the function's own call, not an undocumented route
    assert service.requests[-1].status == 200
    _assert_no_secrets(report, principal.token, _pem(principal.key_path))


def test_given_a_missing_setting_when_diagnosed_then_it_is_named_and_nothing_else_runs(
    principal: LocalIdentity,
) -> None:
    # when / then
    failed = _failed(diagnose({"GENAI_REGION": "us-chicago-1"}), "settings")
    assert "GENAI_PROJECT_OCID" in failed["detail"]
    assert "`fn config function <app> genai GENAI_PROJECT_OCID <value>`" in failed["fix"]


def test_given_func_yaml_when_read_then_it_deploys_the_function_the_fix_names() -> None:
    # when / then
    assert f"\nname: {doctor._FUNCTION}\n" in (REPO_ROOT / "func.yaml").read_text()


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"GENAI_PROJECT_OCID": "ocid1.compartment.oc1..aaaaaaaaexample"}, "GENAI_PROJECT_OCID"),  # not a project
        ({"GENAI_COMPARTMENT_OCID": PROJECT_OCID}, "GENAI_COMPARTMENT_OCID"),
        ({"GENAI_MAX_RETRIES": "²"}, "GENAI_MAX_RETRIES"),  # crashed the doctor: str.isdigit() but not int()
        ({"GENAI_BASE_URL": "http://127.0.0.1:abc/openai/v1"}, "GENAI_BASE_URL"),  # crashed the endpoint check
        ({"GENAI_BASE_URL": "http://127.0.0.1:70000/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "http://127.0.0.1:8080/openai/v1?x=1"}, "GENAI_BASE_URL"),
        ({"GENAI_MODEL": "a", "GENAI_ALLOWED_MODELS": "b"}, "GENAI_MODEL"),
    ],
)
def test_given_a_bad_setting_when_diagnosed_then_settings_fails_with_a_fix_naming_it(
    settings: dict[str, str], setting: str
) -> None:
    # given / when
    failed = _failed(diagnose({**_settings(GENAI_BASE_URL="http://127.0.0.1:9/openai/v1"), **settings}), "settings")
    # then
    assert setting in failed["detail"] and f"genai {setting} <value>" in failed["fix"]


def test_given_an_unknown_functions_region_when_diagnosed_then_it_blames_the_variable_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given OCI Functions' region key this version does not know, and no GENAI_REGION or GENAI_BASE_URL
    # when
    failed = _failed(diagnose(_settings(OCI_RESOURCE_PRINCIPAL_REGION="zzz")), "settings")
    # then it names where the value came from, and the setting that overrides it
    assert (
        failed["detail"].startswith("OCI_RESOURCE_PRINCIPAL_REGION ") and "genai GENAI_REGION <value>" in failed["fix"]
    )


def test_given_an_unknown_functions_region_and_a_base_url_when_diagnosed_then_it_does_not_matter(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given OCI Functions hands over a key no table knows (here in the function's own environment too)
    # when
    report = diagnose(_settings(service, OCI_RESOURCE_PRINCIPAL_REGION="zzz"))
    # then nothing uses the region, so nothing fails because of it
    assert report["ok"] is True, report


def test_given_a_base_url_ending_in_a_slash_when_diagnosed_then_it_is_not_blamed_on_iam(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given the base URL as pasted, with a trailing slash (the doctor used to POST //responses: a 404)
    # when
    report = diagnose(_settings(GENAI_BASE_URL=service.base_url + "/"))
    # then the probe goes to the function's own path and passes
    assert report["ok"] is True, report
    assert service.requests[-1].path == "/openai/v1/responses"


def test_given_a_missing_key_file_when_diagnosed_then_the_credentials_check_fails(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given
    principal.key_path.unlink()
    # when / then
    failed = _failed(diagnose(_settings(service)), "credentials", principal.token)
    assert "resource principal" in failed["detail"] and "OCI credentials" in failed["detail"]
    assert service.requests == []


def test_given_an_unparseable_user_key_when_diagnosed_then_the_credentials_check_fails(
    tmp_path: Path, service: LocalEndpoint
) -> None:
    # given
    config, profile, _, _ = make_api_key_profile(tmp_path / "oci")
    (tmp_path / "oci" / "oci_api_key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    )
    settings = _settings(
        service, GENAI_AUTH="user_principal", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile
    )
    # when / then
    failed = _failed(diagnose(settings), "credentials", "not a key")
    assert "OCI credentials" in failed["detail"] and "user principal" in failed["detail"]
    assert "key_file" in failed["fix"] and f"[{profile}]" in failed["fix"]


def test_given_a_resource_principal_outside_a_function_when_diagnosed_then_the_fix_points_to_a_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given
    for name in [n for n in os.environ if n.startswith("OCI_RESOURCE_PRINCIPAL")]:
        monkeypatch.delenv(name)
    # when / then
    failed = _failed(diagnose(_settings(GENAI_REGION="us-chicago-1")), "credentials")
    assert "GENAI_AUTH=session" in failed["fix"] and "oci session authenticate" in failed["fix"]


def test_given_an_expired_resource_principal_token_when_diagnosed_then_it_is_reported(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given
    principal.rotate(lifetime_s=-10)
    # when / then
    failed = _failed(diagnose(_settings(service)), "credentials", principal.token)
    assert "token expired" in failed["detail"]
    assert service.requests == []


def test_given_an_expired_session_when_diagnosed_then_it_says_run_oci_session_refresh(
    tmp_path: Path, principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given an `oci session authenticate` profile whose token has expired
    config, profile, key, _ = make_api_key_profile(tmp_path / "oci", profile="SESSION")
    token = principal.issue_token(key.public_key(), lifetime_s=-10)
    (tmp_path / "oci" / "token").write_text(token)
    with config.open("a") as f:
        f.write(f"security_token_file={tmp_path / 'oci' / 'token'}\n")
    settings = _settings(service, GENAI_AUTH="session", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile)
    # when / then
    failed = _failed(diagnose(settings), "credentials", token)
    assert "session token" in failed["detail"] and "expired" in failed["detail"]
    assert "oci session refresh --profile SESSION" in failed["fix"]


def test_given_a_token_from_a_foreign_issuer_when_diagnosed_then_it_is_a_401_with_its_causes(
    principal: LocalIdentity, tmp_path: Path
) -> None:
    # given an endpoint that trusts another identity service (wrong tenancy/realm, or a forged token)
    other = LocalIdentity(tmp_path / "other")
    with LocalEndpoint(trusted_issuer=other.issuer_public_key, project_ocid=PROJECT_OCID) as foreign:
        # when
        failed = _failed(diagnose(_settings(foreign)), "call", principal.token)
    # then
    assert "HTTP 401 NotAuthenticated" in failed["detail"] and "opc-request-id" in failed["detail"]
    assert "clock" in failed["fix"] and "expired" in failed["fix"]


def test_given_an_unknown_api_key_fingerprint_when_diagnosed_then_it_is_a_401_naming_the_uploaded_key(
    tmp_path: Path, service: LocalEndpoint
) -> None:
    # given
    config, profile, _, _ = make_api_key_profile(tmp_path / "oci")  # never registered with the endpoint
    settings = _settings(
        service, GENAI_AUTH="user_principal", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile
    )
    # when / then
    failed = _failed(diagnose(settings), "call", _pem(tmp_path / "oci" / "oci_api_key.pem"))
    assert "401" in failed["detail"] and "uploaded to the user" in failed["fix"]


def test_given_a_registered_api_key_profile_when_diagnosed_then_it_passes(
    tmp_path: Path, service: LocalEndpoint
) -> None:
    # given
    config, profile, key, key_id = make_api_key_profile(tmp_path / "oci")
    service.register_key(key_id, key.public_key())
    settings = _settings(
        service, GENAI_AUTH="user_principal", GENAI_OCI_CONFIG_FILE=str(config), GENAI_OCI_PROFILE=profile
    )
    # when
    report = diagnose(settings)
    # then
    assert report["ok"] is True and "key loads" in report["checks"][1]["detail"]
    _assert_no_secrets(report, _pem(tmp_path / "oci" / "oci_api_key.pem"))


def test_given_a_generative_ai_api_key_when_diagnosed_then_it_is_checked_without_showing_it(
    service: LocalEndpoint,
) -> None:
    # given
    secret = "sk-oci-genai-test-secret-value"
    service.register_bearer(secret)
    # when / then
    report = diagnose(_settings(service, GENAI_AUTH="api_key", GENAI_API_KEY=secret))
    assert report["ok"] is True and "value not shown" in report["checks"][1]["detail"]
    _assert_no_secrets(report, secret)
    wrong = _failed(diagnose(_settings(service, GENAI_AUTH="api_key", GENAI_API_KEY="sk-wrong")), "call", "sk-wrong")
    assert "401" in wrong["detail"] and "GENAI_API_KEY" in wrong["fix"]


def test_given_a_wrong_project_when_diagnosed_then_it_is_a_404_pointing_at_iam_region_and_project(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given
    wrong = PROJECT_OCID.replace("aaaalocalproject", "aaaaotherproject")
    # when / then
    failed = _failed(diagnose(_settings(service, GENAI_PROJECT_OCID=wrong)), "call", principal.token)
    assert "HTTP 404 NotAuthorizedOrNotFound" in failed["detail"]
    assert "dynamic group" in failed["fix"] and "policy" in failed["fix"] and "GENAI_REGION" in failed["fix"]
    assert "few minutes" in failed["fix"]


def test_given_a_model_the_region_lacks_when_diagnosed_then_it_is_named_with_what_the_region_offers(
    principal: LocalIdentity,
) -> None:
    # given a region that serves another model: OCI answers its 500 "not found or not deployed in region"
    with LocalEndpoint(
        trusted_issuer=principal.issuer_public_key, project_ocid=PROJECT_OCID, models=("openai.gpt-oss-120b",)
    ) as region:
        # when
        failed = _failed(diagnose(_settings(region)), "call", principal.token)
        probes = [r.path for r in region.requests]
    # then it says which model is missing where, and what the region offers
    assert f"model {DEFAULT_MODEL} is not available" in failed["detail"] and "us-chicago-1" in failed["detail"]
    assert "openai.gpt-oss-120b" in failed["fix"] and "GENAI_MODEL" in failed["fix"] and "GENAI_REGION" in failed["fix"]
    assert probes == ["/openai/v1/responses", "/openai/v1/models"]  # asked once: a 500 here is not worth a retry


# Each real OCI error body (local/oci_errors.json) -> what the doctor's call check must say and advise.
RECOGNISED = {
    "model_not_found": (f"model {DEFAULT_MODEL} is not available", "GENAI_MODEL"),
    "not_authenticated": ("OCI did not accept the credentials (HTTP 401 401", "clock"),
    "not_authenticated_oci": ("OCI did not accept the credentials (HTTP 401 NotAuthenticated", "clock"),
    "not_authorized_or_not_found": ("IAM refused this principal", "dynamic group"),
    "too_many_requests": ("throttled (HTTP 429 TooManyRequests", "retry in a minute"),
    "internal_server_error": ("OCI Generative AI failed (HTTP 500 InternalServerError", "service request"),
    "service_unavailable": ("OCI Generative AI failed (HTTP 503 ServiceUnavailable", "service request"),
    "invalid_parameter": (f"OCI refused the call to model {DEFAULT_MODEL} (HTTP 400 InvalidParameter", "GENAI_MODEL"),
    "openai_invalid_request": (f"OCI refused the call to model {DEFAULT_MODEL} (HTTP 400 invalid_value", "GENAI_MODEL"),
}


def test_given_the_real_oci_error_bodies_when_listed_then_each_has_a_diagnosis() -> None:
    # when / then
    assert set(RECOGNISED) == set(oci_errors())


@pytest.mark.parametrize("name", sorted(RECOGNISED))
def test_given_a_real_oci_error_body_when_diagnosed_then_it_is_recognised(
    name: str, principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given the endpoint answers the probe with what OCI really sends (a 401 twice: the signer
    # retries once with reloaded credentials, and OCI refuses the same identity again)
    times = 2 if oci_errors()[name]["status"] == 401 else 1
    service.inject(*[Fault(kind="oci_error", name=name)] * times)
    # when
    failed = _failed(diagnose(_settings(service)), "call", principal.token)
    # then the diagnosis is specific to that body, with the request id to quote
    detail, fix = RECOGNISED[name]
    assert detail in failed["detail"] and fix in failed["fix"]
    assert service.requests[times - 1].request_id in failed["detail"]  # the answer it judged
    body = oci_errors()[name]["body"]
    assert (body.get("message") or body["error"]["message"]) not in failed["detail"]  # OCI's free text is not echoed


def test_given_a_refused_connection_when_diagnosed_then_the_endpoint_check_fails(principal: LocalIdentity) -> None:
    # given
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    # when / then
    failed = _failed(
        diagnose(_settings(GENAI_BASE_URL=f"http://127.0.0.1:{port}/openai/v1")), "endpoint", principal.token
    )
    assert f"cannot connect to 127.0.0.1:{port}" in failed["detail"] and "refused" in failed["detail"]
    assert "service gateway" in failed["fix"]


def test_given_a_name_that_does_not_resolve_when_diagnosed_then_it_is_a_dns_failure(principal: LocalIdentity) -> None:
    # when / then
    failed = _failed(diagnose(_settings(GENAI_BASE_URL="https://genai.example.invalid/openai/v1")), "endpoint")
    assert failed["detail"] == "DNS cannot resolve genai.example.invalid"
    assert "GENAI_REGION" in failed["fix"]


def test_given_the_cli_when_run_then_it_prints_one_line_per_check_and_exits_1_on_failure(
    tmp_path: Path, service: LocalEndpoint, principal: LocalIdentity
) -> None:
    # given
    principal.rotate(lifetime_s=-10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    env.update(_settings(service), PYTHONPATH=str(REPO_ROOT))
    # when
    human = subprocess.run(
        [sys.executable, "-m", "genai_handler.doctor"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    # then
    assert human.returncode == 1
    lines = human.stdout.splitlines()
    assert lines[0].startswith("✓ settings:") and lines[1].startswith("✗ credentials:") and "token expired" in lines[1]
    assert lines[2].startswith("  fix: ") and principal.token not in human.stdout + human.stderr
    # when the identity is renewed
    principal.rotate()
    machine = subprocess.run(
        [sys.executable, "-m", "genai_handler.doctor", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert machine.returncode == 0 and json.loads(machine.stdout)["ok"] is True


def test_given_a_direct_fn_invoke_when_it_asks_for_the_doctor_then_it_runs_as_the_function(
    function: FunctionProcess, upstream: LocalEndpoint, identity: LocalIdentity
) -> None:
    # `fn invoke <app> genai` with {"doctor": true}: IAM-authorised, never through API Gateway
    # when
    answer = function.invoke({"doctor": True}, gateway=False)
    # then
    report = answer.json()
    assert answer.status == 200 and report["ok"] is True and [c["name"] for c in report["checks"]] == CHECKS
    assert upstream.requests[-1].key_id == f"ST${identity.token}"  # signed as the function's own identity
    _assert_no_secrets(report, identity.token, _pem(identity.key_path))


def test_given_api_gateway_when_the_doctor_is_asked_for_then_it_is_just_an_invalid_request(
    identity: LocalIdentity, upstream: LocalEndpoint, tmp_path: Path
) -> None:
    # when
    with LocalGateway(
        function_env(identity, upstream), console=io.StringIO(), function_log=subprocess.DEVNULL, template=TEMPLATE
    ) as gw:
        answer = httpx2.post(f"{gw.url}/genai/chat", content=b'{"doctor": true}')
    # then
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request"
    assert "checks" not in answer.text and upstream.requests == []


def test_given_a_misconfigured_function_when_invoked_directly_then_it_still_runs_the_doctor(
    misconfigured_function: FunctionProcess, tmp_path: Path
) -> None:
    # given a deployed function whose project setting is missing
    # when
    report = misconfigured_function.invoke(b'{"doctor": true}', gateway=False).json()
    # then the doctor says which setting, instead of the function's generic 500
    assert report["ok"] is False and report["checks"][0]["name"] == "settings"
    assert "GENAI_PROJECT_OCID" in report["checks"][0]["detail"]
    assert '"doctor": true' in (tmp_path / "log").read_text()


# --- `make doctor` on a laptop ---------------------------------------------------------------


@pytest.fixture
def laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No cloud setting anywhere: no GENAI_* or OCI_RESOURCE_PRINCIPAL_* variables, an empty .env."""
    for name in [n for n in os.environ if n.startswith(("GENAI_", "OCI_RESOURCE_PRINCIPAL"))]:
        monkeypatch.delenv(name)
    dotenv = tmp_path / ".env"
    monkeypatch.setattr(gateway, "DOTENV", dotenv)
    return dotenv


def test_given_no_cloud_settings_when_make_doctor_runs_then_it_checks_the_local_setup(
    laptop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a fresh clone: no account, nothing configured
    # when
    code = doctor.main([])
    # then it checks the local endpoint, says so first, and says how to point it at OCI
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert lines[0].startswith("note: no cloud settings") and "local endpoint http://127.0.0.1:" in lines[0]
    assert (
        "GENAI_AUTH=session GENAI_PROJECT_OCID=" in lines[0]
        and "GENAI_REGION=" in lines[0]
        and "make doctor" in lines[0]
    )
    assert [line.split(":")[0] for line in lines[1:5]] == [f"✓ {name}" for name in CHECKS]
    assert lines[-1] == "all checks passed"
    assert not [n for n in os.environ if n.startswith("OCI_RESOURCE_PRINCIPAL")]  # the local identity is gone again


def test_given_one_cloud_setting_in_dotenv_when_make_doctor_runs_then_it_diagnoses_that_setup(
    laptop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a half-configured .env: a project but no region
    laptop.write_text(f"GENAI_PROJECT_OCID={PROJECT_OCID}\n")
    # when
    code = doctor.main(["--json"])
    # then it diagnoses that setup (no local fallback) and names what is missing
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and "note" not in report
    assert (
        "GENAI_REGION" in report["checks"][0]["detail"] and "genai GENAI_REGION <value>" in report["checks"][0]["fix"]
    )


def test_given_guardrails_on_when_diagnosed_then_it_makes_the_functions_apply_guardrails_call(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # when
    report = diagnose(_settings(service, GENAI_GUARDRAILS="block"))
    # then
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == [*CHECKS, "guardrails"]
    guardrails = report["checks"][-1]
    assert service.requests[-1].path == "/20231130/actions/applyGuardrails" and service.requests[-1].status == 200
    assert (
        principal.compartment_ocid in guardrails["detail"] and service.requests[-1].request_id in guardrails["detail"]
    )
    _assert_no_secrets(report, principal.token, _pem(principal.key_path))


def test_given_guardrails_refused_by_iam_when_diagnosed_then_the_fix_names_the_policy_and_compartment(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # given
    service.inject(Fault("oci_error", name="not_authorized_or_not_found", path="/actions/applyGuardrails"))
    # when
    report = diagnose(_settings(service, GENAI_GUARDRAILS="inform"))
    # then
    failed = report["checks"][-1]
    assert report["ok"] is False and failed["name"] == "guardrails" and "upstream_auth" in failed["detail"]
    assert "generative-ai-family in the compartment ApplyGuardrails runs in" in failed["fix"]


def test_given_guardrails_off_when_diagnosed_then_no_guardrails_call_is_made(
    principal: LocalIdentity, service: LocalEndpoint
) -> None:
    # when
    report = diagnose(_settings(service))
    # then
    assert report["ok"] is True and all(not r.path.endswith("applyGuardrails") for r in service.requests)
