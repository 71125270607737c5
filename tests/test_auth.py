"""genai_handler.auth: OCI request signing, checked against OCI's test vector and the oci SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import httpx2
import oci
import openai
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import genai_handler.auth
from genai_handler.auth import (
    OciResourcePrincipalAuth,
    OciSessionAuth,
    OciUserPrincipalAuth,
    _OciSdkSource,
)
from genai_handler.errors import MisconfiguredError
from genai_handler.local.endpoint import Fault, LocalEndpoint, RecordedRequest
from genai_handler.local.identity import LocalIdentity, make_api_key_profile
from genai_handler.settings import DEFAULT_MODEL

from .conftest import PROJECT_OCID

VECTOR = json.loads((Path(__file__).parent / "data" / "oci_signing_vector.json").read_text())
DATE = "Thu, 05 Jan 2014 21:31:40 GMT"


def _signed(auth: httpx2.Auth, request: httpx2.Request) -> httpx2.Request:
    """The request as the auth flow first sends it."""
    return next(auth.sync_auth_flow(request))


def _params(authorization: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', authorization))


def _write_session_profile(config: Path, identity: LocalIdentity, profile: str = "dev") -> None:
    """An OCI CLI config after `oci session authenticate`: `profile` names the identity's token and key files."""
    config.write_text(
        f"[{profile}]\nsecurity_token_file={identity.token_path}\nkey_file={identity.key_path}\n"
        "tenancy=ocid1.tenancy.oc1..aaaalocal\nregion=us-chicago-1\nfingerprint=00:00\n"
    )


@pytest.fixture
def vector_profile(tmp_path: Path) -> Path:
    key_file = tmp_path / "vector.pem"
    key_file.write_text(VECTOR["private_key"])
    config = tmp_path / "config"
    config.write_text(
        "[DEFAULT]\n"
        f"tenancy={VECTOR['tenancy']}\nuser={VECTOR['user']}\nfingerprint={VECTOR['fingerprint']}\n"
        f"key_file={key_file}\nregion=us-phoenix-1\n"
    )
    return config


def test_given_the_published_get_vector_when_a_user_principal_signs_then_it_is_reproduced(vector_profile: Path) -> None:
    # given OCI's published key and GET request
    auth = OciUserPrincipalAuth(config_file=str(vector_profile))
    request = httpx2.Request("GET", VECTOR["get"]["url"], headers={"date": DATE})
    # when signed, then the header matches byte for byte
    assert _signed(auth, request).headers["authorization"] == VECTOR["get"]["authorization"]


def test_given_the_published_post_vector_when_a_user_principal_signs_then_it_is_reproduced(
    vector_profile: Path,
) -> None:
    # given
    auth = OciUserPrincipalAuth(config_file=str(vector_profile))
    request = httpx2.Request(
        "POST",
        VECTOR["post"]["url"],
        content=VECTOR["post"]["body"].encode(),
        headers={"date": DATE, "content-type": "application/json"},
    )
    # when
    signed = _signed(auth, request)
    # then
    assert signed.headers["x-content-sha256"] == VECTOR["post"]["x_content_sha256"]
    assert signed.headers["content-length"] == "316"
    assert signed.headers["authorization"] == VECTOR["post"]["authorization"]


ODD_REQUESTS = [
    ("GET", "/openai/v1/models", b""),
    ("GET", "/openai/v1/models?limit=10&after=a%20b&empty=&x=%E2%9C%93", b""),
    ("HEAD", "/openai/v1/models?q=1", b""),
    ("DELETE", "/openai/v1/responses/resp_123?force=true", b""),
    ("POST", "/openai/v1/responses", b'{"model": "m", "input": "hello"}'),
    ("POST", "/openai/v1/responses", b""),
    (
        "POST",
        "/openai/v1/responses?api-version=1&b=%2F",
        '{"input": "h\u00e9llo \u2713 \u4f60\u597d \U0001f600"}'.encode(),
    ),
    ("PUT", "/openai/v1/files/f1", bytes(range(256))),
    ("PUT", "/openai/v1/files/f2", b""),
    ("PATCH", "/openai/v1/things/1?a=1&a=2", b'{"a": [1, 2, 3]}'),
]


@pytest.mark.parametrize(("method", "target", "body"), ODD_REQUESTS)
def test_given_an_odd_request_when_a_resource_principal_signs_then_it_equals_the_oci_sdk(
    rp_identity: LocalIdentity, method: str, target: str, body: bytes
) -> None:
    # given the same request and date for both signers
    url = f"https://inference.generativeai.us-chicago-1.oci.oraclecloud.com{target}"
    headers = {"date": DATE, "content-type": "application/json"}
    reference = requests.Request(method, url, data=body or None, headers=headers).prepare()
    oci.auth.signers.get_resource_principals_signer()(reference)
    # when
    ours = _signed(OciResourcePrincipalAuth(), httpx2.Request(method, url, content=body, headers=headers))
    # then the signature, the signed headers and the key id are the same
    authorization = reference.headers["authorization"]
    assert isinstance(authorization, str)
    expected, actual = _params(authorization), _params(ours.headers["authorization"])
    for name in ("signature", "headers", "keyId", "algorithm", "version"):
        assert actual[name] == expected[name], name
    for name in ("x-content-sha256", "content-length"):
        assert ours.headers.get(name) == reference.headers.get(name) or name not in expected["headers"]


def test_given_the_oci_sdk_source_when_loaded_then_it_yields_the_credentials_of_our_v22_reader(
    rp_identity: LocalIdentity,
) -> None:
    # given the oci SDK's own resource-principal signer (the path for other RP versions)
    sdk = _OciSdkSource(lambda sdk_module: sdk_module.auth.signers.get_resource_principals_signer())
    ours = OciResourcePrincipalAuth().credentials()
    # when
    loaded = sdk.load(None, after_rejection=False)
    # then
    assert loaded.key_id == ours.key_id == f"ST${rp_identity.token}"
    assert loaded.expires_at == ours.expires_at


def test_given_rotated_files_when_the_next_request_signs_then_it_uses_them_without_a_rejection(
    rp_identity: LocalIdentity,
) -> None:
    # given
    auth = OciResourcePrincipalAuth()
    first = _signed(auth, httpx2.Request("GET", "https://example.test/a"))
    # when the platform replaces the token and key files
    rp_identity.rotate()
    second = _signed(auth, httpx2.Request("GET", "https://example.test/a"))
    # then the next request already carries the new token
    assert _params(first.headers["authorization"])["keyId"] != _params(second.headers["authorization"])["keyId"]
    assert _params(second.headers["authorization"])["keyId"] == f"ST${rp_identity.token}"


def test_given_a_token_near_expiry_when_credentials_are_read_then_it_is_reread_from_disk(
    rp_identity: LocalIdentity,
) -> None:
    # given a token that expires within the safety margin
    rp_identity.rotate(lifetime_s=30)
    auth = OciResourcePrincipalAuth()
    assert auth.credentials().key_id == f"ST${rp_identity.token}"
    # when the platform has written a fresh one, then it is picked up without a 401
    rp_identity.rotate()
    assert auth.credentials().key_id == f"ST${rp_identity.token}"


@pytest.fixture
def rp_endpoint(rp_identity: LocalIdentity) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trusted_issuer=rp_identity.issuer_public_key) as server:
        yield server


def test_given_a_401_when_calling_then_it_reloads_once_and_retries_once_with_a_fresh_date(
    rp_endpoint: LocalEndpoint,
) -> None:
    # given the service rejects the first request
    rp_endpoint.inject(Fault(kind="status", status=401, code="NotAuthenticated"))
    # when
    with httpx2.Client(auth=OciResourcePrincipalAuth()) as client:
        response = client.get(f"{rp_endpoint.base_url}/models")
    # then one retry succeeds
    assert response.status_code == 200
    assert [r.status for r in rp_endpoint.requests] == [401, 200]


def test_given_a_second_401_when_calling_then_it_is_returned_not_retried_forever(rp_endpoint: LocalEndpoint) -> None:
    # given
    rp_endpoint.inject(*[Fault(kind="status", status=401, code="NotAuthenticated")] * 3)
    # when
    with httpx2.Client(auth=OciResourcePrincipalAuth()) as client:
        response = client.get(f"{rp_endpoint.base_url}/models")
    # then
    assert response.status_code == 401
    assert len(rp_endpoint.requests) == 2


def test_given_the_documented_legacy_httpx_client_when_the_openai_sdk_calls_then_it_works(
    rp_endpoint: LocalEndpoint,
) -> None:
    # given the way Oracle's documentation wires it: OpenAI(http_client=httpx.Client(auth=...))
    client = openai.OpenAI(
        api_key="not-used",
        base_url=rp_endpoint.base_url,
        project=PROJECT_OCID,
        http_client=httpx.Client(auth=OciResourcePrincipalAuth()),  # type: ignore[arg-type]  # what the test proves
    )
    # when
    answer = client.responses.create(model=DEFAULT_MODEL, input="hi there")
    # then it answers, and the placeholder bearer token never reaches OCI
    assert answer.output_text == "Local answer to: hi there"
    assert rp_endpoint.requests[-1].headers["authorization"].startswith("Signature ")


def test_given_a_native_httpx2_client_when_the_openai_sdk_calls_then_its_requests_are_signed(
    rp_endpoint: LocalEndpoint,
) -> None:
    # given
    client = openai.OpenAI(
        api_key="not-used",
        base_url=rp_endpoint.base_url,
        project=PROJECT_OCID,
        http_client=httpx2.Client(auth=OciResourcePrincipalAuth()),
    )
    # when / then
    assert client.responses.create(model=DEFAULT_MODEL, input="ok").status == "completed"
    assert [r.status for r in rp_endpoint.requests] == [200]


def test_given_a_passphrase_protected_key_file_when_calling_then_it_signs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    identity = LocalIdentity(tmp_path / "pp", passphrase="s3cret phrase")
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)
    # when / then
    with (
        LocalEndpoint(trusted_issuer=identity.issuer_public_key) as server,
        httpx2.Client(auth=OciResourcePrincipalAuth()) as client,
    ):
        assert client.get(f"{server.base_url}/models").status_code == 200


def test_given_literal_token_and_key_values_when_read_then_they_are_accepted(
    rp_identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the variables hold the values themselves rather than file paths
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_RPST", rp_identity.token)
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM", rp_identity.key_path.read_text())
    # when / then
    assert OciResourcePrincipalAuth().credentials().key_id == f"ST${rp_identity.token}"


def test_given_no_resource_principal_when_auth_is_made_then_it_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2")
    monkeypatch.delenv("OCI_RESOURCE_PRINCIPAL_RPST", raising=False)
    # when / then
    with pytest.raises(MisconfiguredError, match="OCI_RESOURCE_PRINCIPAL_RPST"):
        OciResourcePrincipalAuth()


def test_given_an_unreadable_key_when_read_then_it_is_reported_without_its_path(rp_identity: LocalIdentity) -> None:
    # given
    auth = OciResourcePrincipalAuth()
    rp_identity.key_path.unlink()
    # when
    with pytest.raises(MisconfiguredError) as caught:
        auth.credentials()
    # then
    assert str(rp_identity.key_path) not in caught.value.message


def test_given_a_garbage_key_when_read_then_it_is_reported_as_misconfigured(rp_identity: LocalIdentity) -> None:
    # given
    rp_identity.key_path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    # when / then
    with pytest.raises(MisconfiguredError, match="private key"):
        OciResourcePrincipalAuth().credentials()


def test_given_a_user_principal_profile_when_calling_then_the_endpoint_accepts_it(tmp_path: Path) -> None:
    # given
    config, profile, private_key, key_id = make_api_key_profile(tmp_path)
    with LocalEndpoint() as server:
        server.register_key(key_id, private_key.public_key())
        # when / then
        with httpx2.Client(auth=OciUserPrincipalAuth(str(config), profile)) as client:
            assert client.get(f"{server.base_url}/models").status_code == 200
        assert server.requests[-1].key_id == key_id


def test_given_a_session_profile_when_calling_then_it_signs_with_its_token_and_follows_refresh(tmp_path: Path) -> None:
    # given an `oci session authenticate` profile (token file + key file)
    identity = LocalIdentity(tmp_path / "session")
    config = tmp_path / "config"
    _write_session_profile(config, identity)
    auth = OciSessionAuth(str(config), "dev")
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key) as server, httpx2.Client(auth=auth) as client:
        # when / then
        assert client.get(f"{server.base_url}/models").status_code == 200
        # when `oci session refresh` rewrites the files, then the next call uses them
        identity.rotate()
        assert client.get(f"{server.base_url}/models").status_code == 200
        assert [r.status for r in server.requests] == [200, 200]
        assert server.requests[-1].key_id == f"ST${identity.token}"


def test_given_a_missing_profile_when_auth_is_made_then_it_names_the_profile_not_the_error_text(tmp_path: Path) -> None:
    # given
    config = tmp_path / "config"
    config.write_text("[DEFAULT]\nregion=us-chicago-1\n")
    # when / then
    with pytest.raises(MisconfiguredError, match="'nope'"):
        OciUserPrincipalAuth(str(config), "nope")


def test_given_credentials_when_shown_then_their_repr_hides_the_token(rp_identity: LocalIdentity) -> None:
    # when
    text = repr(OciResourcePrincipalAuth().credentials())
    # then
    assert rp_identity.token not in text
    assert base64.b64encode(rp_identity.token.encode()).decode()[:20] not in text


def test_given_no_oci_sdk_when_another_principal_is_made_then_it_names_the_extra_requirements(
    monkeypatch: pytest.MonkeyPatch, vector_profile: Path
) -> None:
    # given an image without the oci SDK (sys.modules entry None makes the import fail)
    monkeypatch.setitem(__import__("sys").modules, "oci", None)
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_VERSION", "2.1")
    # when / then
    for make in (OciResourcePrincipalAuth, lambda: OciUserPrincipalAuth(str(vector_profile))):
        with pytest.raises(MisconfiguredError, match=r"requirements-oci\.txt"):
            make()


def test_given_a_token_that_never_matches_its_key_when_read_then_it_is_a_configuration_error(
    rp_identity: LocalIdentity,
) -> None:
    # given
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rp_identity.token_path.write_text(rp_identity.issue_token(stranger.public_key(), 3600))
    # when / then
    with pytest.raises(MisconfiguredError, match="does not match"):
        OciResourcePrincipalAuth().credentials()


# Mid-rotation reads (issue 11, items 8 and 15): the platform replaces the key file, then the token
# file; a reader may also meet an empty or truncated file. The previous credentials stay in use while
# valid; without them the read is retried for a bounded time, then named in a MisconfiguredError.


@pytest.fixture
def key_parses(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per private-key parse (the step the rotation path must not repeat)."""
    parses: list[None] = []
    parse = genai_handler.auth._private_key

    def counting(*args: object, **kwargs: object) -> object:
        parses.append(None)
        return parse(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(genai_handler.auth, "_private_key", counting)
    return parses


def _public_n(credentials: genai_handler.auth.Credentials) -> int:
    return credentials.private_key.public_key().public_numbers().n


def test_given_the_key_replaced_and_the_token_not_yet_when_signing_then_the_previous_pair_is_used(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint, key_parses: list[None]
) -> None:
    url = f"{rp_endpoint.base_url}/models"
    with httpx2.Client(auth=OciResourcePrincipalAuth()) as client:
        assert client.get(url).status_code == 200
        old_key_id = f"ST${rp_identity.token}"
        # given the platform has replaced the key file but not yet the token file
        rp_identity.replace_key()
        key_parses.clear()
        # when
        started = time.monotonic()
        statuses = [client.get(url).status_code for _ in range(20)]
        elapsed = time.monotonic() - started
        # then every request is accepted, signed with the previous pair, without waiting
        assert statuses == [200] * 20
        assert {r.key_id for r in rp_endpoint.requests} == {old_key_id}
        assert elapsed < 2.0  # 20 round trips; before the fix each one took ~2.5 s, then failed
        # and the new key was parsed once, not once per request
        assert len(key_parses) == 1
        # when the matching token arrives, then the next request uses the new pair
        rp_identity.replace_token()
        assert client.get(url).status_code == 200
    assert rp_endpoint.requests[-1].key_id == f"ST${rp_identity.token}" != old_key_id
    assert [r.status for r in rp_endpoint.requests] == [200] * 22


def test_given_a_token_whose_jwk_is_a_json_string_when_read_then_it_is_matched_against_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given tokens carrying `jwk` as OCI's do: a string holding the JSON key
    identity = LocalIdentity(tmp_path / "rp", jwk_as_string=True)
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)
    auth = OciResourcePrincipalAuth()
    before = auth.credentials()
    # when the key file is replaced but the token is not yet
    identity.replace_key()
    during = auth.credentials()
    # then the mismatch is seen: the previous pair, not the old token with the new key
    assert (during.key_id, _public_n(during)) == (before.key_id, _public_n(before))
    identity.replace_token()
    after = auth.credentials()
    new_n = identity.private_key.public_key().public_numbers().n
    assert (after.key_id, _public_n(after)) == (f"ST${identity.token}", new_n)


def test_given_a_string_jwk_token_bound_to_another_key_when_read_then_it_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    identity = LocalIdentity(tmp_path / "rp", jwk_as_string=True)
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    identity.token_path.write_text(identity.issue_token(stranger.public_key(), 3600))
    # when / then
    with pytest.raises(MisconfiguredError, match="does not match"):
        OciResourcePrincipalAuth().credentials()


def test_given_no_previous_pair_when_read_between_the_two_replacements_then_it_waits_for_the_token(
    rp_identity: LocalIdentity,
) -> None:
    # given a process that has read nothing yet, and only the key file replaced
    rp_identity.replace_key()
    later = threading.Timer(0.1, rp_identity.replace_token)
    later.start()
    # when it signs meanwhile, then it waits for the token that matches the new key
    credentials = OciResourcePrincipalAuth().credentials()
    later.join()
    assert (credentials.key_id, _public_n(credentials)) == (
        f"ST${rp_identity.token}",
        rp_identity.private_key.public_key().public_numbers().n,
    )


def test_given_a_mismatched_pair_and_no_fallback_when_read_then_it_fails_in_bounded_time_parsing_once(
    rp_identity: LocalIdentity, key_parses: list[None]
) -> None:
    # given only the key file replaced, for good, and no previous pair in this process
    rp_identity.replace_key()
    auth = OciResourcePrincipalAuth()
    # when
    started = time.monotonic()
    with pytest.raises(MisconfiguredError, match="does not match"):
        auth.credentials()
    first = time.monotonic() - started
    # then the wait is bounded by time and the unchanged files are not parsed again meanwhile
    assert first < 5.0
    assert len(key_parses) == 1
    # and once the wait is spent, the next request fails at once
    started = time.monotonic()
    with pytest.raises(MisconfiguredError, match="does not match"):
        auth.credentials()
    assert time.monotonic() - started < first


def test_given_a_previous_pair_within_the_expiry_margin_when_the_key_is_replaced_then_it_is_not_kept(
    rp_identity: LocalIdentity,
) -> None:
    # given credentials that expire within the safety margin
    rp_identity.rotate(lifetime_s=30)
    auth = OciResourcePrincipalAuth()
    auth.credentials()
    # when the key file is replaced, and its token follows shortly
    rp_identity.replace_key()
    later = threading.Timer(0.1, rp_identity.replace_token)
    later.start()
    credentials = auth.credentials()
    later.join()
    # then the request waited for the new pair rather than sign with nearly expired credentials
    assert credentials.key_id == f"ST${rp_identity.token}"


def test_given_a_401_mid_rotation_when_retrying_then_the_previous_pair_is_not_reused(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint
) -> None:
    url = f"{rp_endpoint.base_url}/models"
    with httpx2.Client(auth=OciResourcePrincipalAuth()) as client:
        assert client.get(url).status_code == 200
        old_key_id = f"ST${rp_identity.token}"
        # given the key file replaced, and OCI rejecting the previous pair
        rp_identity.replace_key()
        rp_endpoint.inject(Fault(kind="status", status=401, code="NotAuthenticated"))
        later = threading.Timer(0.1, rp_identity.replace_token)
        later.start()
        # when
        response = client.get(url)
        later.join()
    # then the retry waited for the new pair instead of resending the rejected one
    assert response.status_code == 200
    assert [(r.status, r.key_id) for r in rp_endpoint.requests[1:]] == [
        (401, old_key_id),
        (200, f"ST${rp_identity.token}"),
    ]


def test_given_an_empty_token_file_when_signing_then_the_previous_pair_is_kept(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint
) -> None:
    url = f"{rp_endpoint.base_url}/models"
    with httpx2.Client(auth=OciResourcePrincipalAuth()) as client:
        assert client.get(url).status_code == 200
        # given the token file read while empty (truncated before being rewritten)
        rp_identity.token_path.write_bytes(b"")
        # when
        response = client.get(url)
    # then the request is signed with the previous token, not "ST$", and needs no retry
    assert response.status_code == 200
    assert [(r.status, r.key_id) for r in rp_endpoint.requests] == [(200, f"ST${rp_identity.token}")] * 2


def test_given_a_truncated_key_file_when_signing_then_the_previous_pair_is_kept(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint
) -> None:
    url = f"{rp_endpoint.base_url}/models"
    with httpx2.Client(auth=OciResourcePrincipalAuth()) as client:
        assert client.get(url).status_code == 200
        # given
        pem = rp_identity.key_path.read_bytes()
        rp_identity.key_path.write_bytes(pem[: len(pem) // 2])
        # when / then
        assert client.get(url).status_code == 200
    assert [r.status for r in rp_endpoint.requests] == [200, 200]


def test_given_a_truncated_key_completed_shortly_after_when_read_then_it_is_waited_for(
    rp_identity: LocalIdentity,
) -> None:
    # given a key file caught half written, with no previous pair to fall back on
    pem = rp_identity.key_path.read_bytes()
    rp_identity.key_path.write_bytes(pem[: len(pem) // 2])
    later = threading.Timer(0.1, rp_identity.key_path.write_bytes, args=(pem,))
    later.start()
    # when
    credentials = OciResourcePrincipalAuth().credentials()
    later.join()
    # then
    assert credentials.key_id == f"ST${rp_identity.token}"


_RPST, _PEM = "OCI_RESOURCE_PRINCIPAL_RPST", "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM"


@pytest.mark.parametrize(
    ("damage", "named", "problem"),
    [
        (lambda i: i.token_path.write_bytes(b""), _RPST, "empty file"),
        (lambda i: i.token_path.write_bytes(b"\n \n"), _RPST, "empty file"),
        (lambda i: i.token_path.write_bytes(i.token.encode()[:40]), _RPST, "not a session token"),
        (lambda i: i.key_path.write_bytes(b""), _PEM, "empty file"),
        (lambda i: i.key_path.write_bytes(i.key_path.read_bytes()[:300]), _PEM, "private key"),
        (lambda i: i.key_path.unlink(), _PEM, "unreadable file"),
    ],
    ids=["empty-token", "blank-token", "truncated-token", "empty-key", "truncated-key", "missing-key"],
)
def test_given_a_file_that_stays_unusable_when_read_then_it_is_named_never_shown(
    rp_identity: LocalIdentity, damage: Callable[[LocalIdentity], object], named: str, problem: str
) -> None:
    # given a damaged credential file and no previous pair
    secret_parts = (rp_identity.token, rp_identity.key_path.read_text())
    damage(rp_identity)
    # when
    with pytest.raises(MisconfiguredError) as caught:
        OciResourcePrincipalAuth().credentials()
    # then the message names the variable and the problem, never a path or content
    message = caught.value.message
    assert named in message and problem in message
    assert str(rp_identity.directory) not in message
    assert not any(part[:24] in message or part[-24:] in message for part in secret_parts)


def test_given_a_session_profile_with_an_empty_token_file_when_read_then_the_profile_key_is_named(
    tmp_path: Path,
) -> None:
    # given
    identity = LocalIdentity(tmp_path / "session")
    config = tmp_path / "config"
    _write_session_profile(config, identity)
    identity.token_path.write_bytes(b"")
    # when / then
    with pytest.raises(MisconfiguredError, match="security_token_file of profile 'dev': empty file"):
        OciSessionAuth(str(config), "dev").credentials()


# Streamed bodies (issue 11, item 10): the body is read whole to sign it, so it must be framed by
# Content-Length alone; the local endpoint reads by Content-Length and checks the signed hash.


def _generator_body() -> tuple[bytes, Iterator[bytes]]:
    body = json.dumps({"model": DEFAULT_MODEL, "input": "streamed"}).encode()
    return body, iter([body[:7], body[7:20], body[20:]])


def _assert_framed_by_length(recorded: RecordedRequest, body: bytes) -> None:
    assert recorded.status == 200, "the endpoint refused the signature or the body"
    assert "transfer-encoding" not in recorded.headers
    assert recorded.headers["content-length"] == str(len(body))
    assert recorded.body == body


@pytest.mark.parametrize("client_class", [httpx2.Client, httpx.Client], ids=["httpx2", "httpx"])
def test_given_a_generator_body_when_posted_then_it_has_one_framing_header_and_a_valid_signature(
    rp_endpoint: LocalEndpoint, client_class: type[httpx2.Client] | type[httpx.Client]
) -> None:
    # given a client posting a body it can only iterate (chunked framing by default)
    body, chunks = _generator_body()
    # when
    with client_class(auth=OciResourcePrincipalAuth()) as client:
        response = client.post(
            f"{rp_endpoint.base_url}/responses", content=chunks, headers={"content-type": "application/json"}
        )
    # then it reaches the endpoint framed by Content-Length alone, and the signature verifies
    assert response.status_code == 200
    assert [r.status for r in rp_endpoint.requests] == [200]
    _assert_framed_by_length(rp_endpoint.requests[0], body)


def test_given_an_async_generator_body_when_posted_then_it_has_one_framing_header_and_a_valid_signature(
    rp_endpoint: LocalEndpoint,
) -> None:
    # given
    body, chunks = _generator_body()

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def post() -> int:
        async with httpx2.AsyncClient(auth=OciResourcePrincipalAuth()) as client:
            response = await client.post(
                f"{rp_endpoint.base_url}/responses", content=stream(), headers={"content-type": "application/json"}
            )
            return response.status_code

    # when / then
    assert asyncio.run(post()) == 200
    _assert_framed_by_length(rp_endpoint.requests[0], body)


def _inconsistent_pem(key: rsa.RSAPrivateKey) -> str:
    """The key with a wrong CRT coefficient: same modulus, but OpenSSL's key check refuses it."""
    numbers = key.private_numbers()
    broken = rsa.RSAPrivateNumbers(
        numbers.p, numbers.q, numbers.d, numbers.dmp1, numbers.dmq1, numbers.iqmp + 1, numbers.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    pem = broken.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def test_given_the_platforms_key_when_read_then_it_is_not_validated_again(rp_identity: LocalIdentity) -> None:
    # given a key OpenSSL's check would refuse, from the platform (trusted: its token binds the modulus)
    rp_identity.key_path.write_text(_inconsistent_pem(rp_identity.private_key))
    # when
    credentials = OciResourcePrincipalAuth().credentials()
    # then it loads without the check (about 36 ms of the first call)
    loaded = credentials.private_key.public_key().public_numbers()
    assert loaded == rp_identity.private_key.public_key().public_numbers()


def test_given_a_users_own_key_file_when_read_then_it_is_validated(tmp_path: Path) -> None:
    # given the same kind of broken key in a user's key file
    config, profile, private_key, _ = make_api_key_profile(tmp_path)
    (tmp_path / "oci_api_key.pem").write_text(_inconsistent_pem(private_key))
    # when / then
    with pytest.raises(MisconfiguredError, match="not an RSA PEM private key"):
        OciUserPrincipalAuth(str(config), profile).credentials()


# Drop-in constructors (issue 22): every class takes what its oci-genai-auth 1.1.1 counterpart takes,
# with the same meaning, so code written for Oracle's library runs with an import line changed.

# The source page's two examples (shared/seed-oci-genai-iam-auth.txt, OCI's "Generative AI IAM-Based
# Authentication" page), as published but for the import line.
PAGE_EXAMPLE_SESSION = """
from openai import OpenAI
from genai_handler import OciSessionAuth
import httpx
client = OpenAI(
base_url="https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1", # update region if needed
api_key="not-used",
project="ocid1.generativeaiproject.oc1.us-chicago-1.xxxxxxxx", # project OCID created earlier
http_client=httpx.Client(auth=OciSessionAuth(profile_name="DEFAULT")) # update profile if needed
)
response = client.responses.create(
model="xai.grok-4-1-fast-reasoning",
input="Write a one-sentence explanation of what a database is."
)
print(response.output_text)
"""
PAGE_EXAMPLE_RESOURCE_PRINCIPAL = """
from openai import OpenAI
from genai_handler import OciResourcePrincipalAuth
import httpx
client = OpenAI(
base_url="https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1", # update region if needed
api_key="not-used",
project="ocid1.generativeaiproject.oc1.us-chicago-1.xxxxxxxx", # project OCID created earlier
http_client=httpx.Client(auth=OciResourcePrincipalAuth()),
)
"""


@pytest.fixture
def oci_region_on_loopback(monkeypatch: pytest.MonkeyPatch) -> Callable[[LocalEndpoint], None]:
    """Legacy httpx connections to the page's real OCI URL go to `endpoint` instead; the request,
    its Host header and its signature stay as the example made them."""

    def route(endpoint: LocalEndpoint) -> None:
        local = httpx.URL(endpoint.base_url)
        send = httpx.HTTPTransport.handle_request

        def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            request.url = request.url.copy_with(scheme=local.scheme, host=local.host, port=local.port)
            return send(self, request)

        monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)

    return route


def test_given_the_pages_session_example_when_run_unchanged_then_it_prints_the_answer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    oci_region_on_loopback: Callable[[LocalEndpoint], None],
) -> None:
    # given a laptop after `oci session authenticate` (~/.oci/config, profile DEFAULT)
    identity = LocalIdentity(tmp_path / "session")
    (tmp_path / ".oci").mkdir()
    _write_session_profile(tmp_path / ".oci" / "config", identity, "DEFAULT")
    monkeypatch.setenv("HOME", str(tmp_path))
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key) as server:
        oci_region_on_loopback(server)
        # when
        exec(PAGE_EXAMPLE_SESSION, {})  # noqa: S102  (the published example, verbatim)
        # then
        assert [r.status for r in server.requests] == [200]
        assert server.requests[-1].key_id == f"ST${identity.token}"
        assert server.requests[-1].headers["host"] == "inference.generativeai.us-chicago-1.oci.oraclecloud.com"
    assert capsys.readouterr().out == "Local answer to: Write a one-sentence explanation of what a database is.\n"


def test_given_the_pages_resource_principal_example_when_run_unchanged_then_its_client_is_accepted(
    rp_identity: LocalIdentity, oci_region_on_loopback: Callable[[LocalEndpoint], None]
) -> None:
    # given the function's environment
    namespace: dict[str, object] = {}
    with LocalEndpoint(trusted_issuer=rp_identity.issuer_public_key) as server:
        oci_region_on_loopback(server)
        # when the example builds its client, and it calls
        exec(PAGE_EXAMPLE_RESOURCE_PRINCIPAL, namespace)  # noqa: S102  (the published example, verbatim)
        client = namespace["client"]
        assert isinstance(client, openai.OpenAI)
        answer = client.responses.create(model=DEFAULT_MODEL, input="hi")
        # then
        assert answer.status == "completed"
        assert server.requests[-1].key_id == f"ST${rp_identity.token}"


def test_given_oracles_keyword_arguments_when_each_class_is_made_then_none_raises(
    rp_identity: LocalIdentity, tmp_path: Path, vector_profile: Path
) -> None:
    # given the session profile and the function's identity
    config = tmp_path / "session-config"
    _write_session_profile(config, rp_identity)
    # when / then: oci-genai-auth 1.1.1's signatures, by keyword and by position
    made = [
        OciSessionAuth(config_file=str(config), profile_name="dev", refresh_interval=600, generic_headers=None),
        OciSessionAuth(str(config), "dev", 600),
        OciUserPrincipalAuth(config_file=str(vector_profile), profile_name="DEFAULT", refresh_interval=600),
        OciUserPrincipalAuth(str(vector_profile), "DEFAULT", 600),
        OciResourcePrincipalAuth(refresh_interval=600, resource_principal_token_path_provider=None),
        OciResourcePrincipalAuth(600),
    ]
    assert [auth.refresh_interval for auth in made] == [600] * 6
    assert all(auth.credentials().key_id for auth in made)


def test_given_kwargs_when_sdk_principals_are_made_then_they_reach_the_sdks_signer_factory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the SDK's factories, recording what they get
    seen: list[tuple[str, dict[str, object]]] = []

    def factory(name: str) -> Callable[..., object]:
        def make(**kwargs: object) -> object:
            seen.append((name, kwargs))
            return object()

        return make

    monkeypatch.setattr(oci.auth.signers, "InstancePrincipalsSecurityTokenSigner", factory("instance"))
    monkeypatch.setattr(oci.auth.signers, "get_resource_principals_signer", factory("resource"))
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_VERSION", "2.1")
    # when
    genai_handler.auth.OciInstancePrincipalAuth(refresh_interval=60, federation_endpoint="https://auth.example")
    OciResourcePrincipalAuth(60, resource_principal_token_path_provider="provider")
    # then
    assert seen == [
        ("instance", {"federation_endpoint": "https://auth.example"}),
        ("resource", {"resource_principal_token_path_provider": "provider"}),
    ]


def test_given_a_refresh_interval_when_it_passes_then_the_credentials_are_renewed(
    rp_identity: LocalIdentity, key_parses: list[None]
) -> None:
    # given
    auth = OciResourcePrincipalAuth(refresh_interval=0.2)
    first = auth.credentials()
    assert auth.credentials() is first and len(key_parses) == 1
    # when the interval passes, then the files are read again (at least that often)
    time.sleep(0.25)
    renewed = auth.credentials()
    assert renewed is not first and renewed.key_id == first.key_id and len(key_parses) == 2
    assert auth.credentials() is renewed


def test_given_an_sdk_principal_when_its_refresh_interval_passes_then_the_sdk_refreshes_its_token(
    rp_identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the SDK path (a resource principal other than v2.2), counting the SDK's refreshes
    signer = oci.auth.signers.get_resource_principals_signer()
    refreshes: list[None] = []
    monkeypatch.setattr(signer, "refresh_security_token", lambda: refreshes.append(None))
    monkeypatch.setattr(oci.auth.signers, "get_resource_principals_signer", lambda: signer)
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_VERSION", "2.1")
    auth = OciResourcePrincipalAuth(refresh_interval=0.2)
    auth.credentials()
    # when / then
    assert refreshes == []
    time.sleep(0.25)
    auth.credentials()
    assert refreshes == [None]


def test_given_oracles_header_options_when_a_session_signs_then_it_equals_the_sdks_signer(tmp_path: Path) -> None:
    # given custom signed headers, passed as oci-genai-auth passes them to the SDK's SecurityTokenSigner
    identity = LocalIdentity(tmp_path / "session")
    config = tmp_path / "config"
    _write_session_profile(config, identity, "DEFAULT")
    generic, body = ["date", "(request-target)", "host"], ["content-length", "x-content-sha256"]
    url = "https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1/responses"
    headers = {"date": DATE, "content-type": "application/json"}
    reference = requests.Request("POST", url, data=b'{"a": 1}', headers=headers).prepare()
    oci.auth.signers.SecurityTokenSigner(
        identity.token, identity.private_key, generic_headers=generic, body_headers=body
    )(reference)
    # when
    auth = OciSessionAuth(str(config), generic_headers=generic, body_headers=body)
    ours = _signed(auth, httpx2.Request("POST", url, content=b'{"a": 1}', headers=headers))
    # then
    authorization = reference.headers["authorization"]
    assert isinstance(authorization, str)
    assert _params(ours.headers["authorization"]) == _params(authorization)


def test_given_a_new_auth_when_warmed_then_its_credentials_are_loaded_before_any_request(
    rp_identity: LocalIdentity,
) -> None:
    # given
    auth = OciResourcePrincipalAuth()
    assert auth._credentials is None
    # when the container's entrypoint warms it (genai_handler/warm.py)
    auth.warm()
    # then the first request signs with what was loaded, without reading the files again
    assert auth._credentials is not None and auth.credentials() is auth._credentials
