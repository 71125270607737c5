"""The local identity must look to OCI's own SDK exactly like the one OCI Functions provides."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import jwt
import oci
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from genai_handler.local import identity as identity_module
from genai_handler.local.identity import LocalIdentity, _pkcs8_pem, make_api_key_profile, new_key

RP_VARIABLES = {
    "OCI_RESOURCE_PRINCIPAL_VERSION",
    "OCI_RESOURCE_PRINCIPAL_RPST",
    "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM",
    "OCI_RESOURCE_PRINCIPAL_REGION",
}


@pytest.fixture
def identity(tmp_path: Path) -> LocalIdentity:
    return LocalIdentity(tmp_path / "creds", region="eu-frankfurt-1", lifetime_s=1200)


def _public_der(key: RSAPrivateKey | RSAPublicKey) -> bytes:
    public = key.public_key() if isinstance(key, RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_given_an_identity_when_reading_env_then_it_names_absolute_files_like_oci_functions(
    identity: LocalIdentity,
) -> None:
    # when
    env = identity.env()

    # then
    assert set(env) == RP_VARIABLES
    assert env["OCI_RESOURCE_PRINCIPAL_VERSION"] == "2.2"
    assert env["OCI_RESOURCE_PRINCIPAL_REGION"] == "eu-frankfurt-1"
    assert Path(env["OCI_RESOURCE_PRINCIPAL_RPST"]) == identity.token_path
    assert Path(env["OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM"]) == identity.key_path
    assert identity.token_path.is_absolute() and identity.key_path.is_absolute()


def test_given_files_when_read_then_token_has_no_trailing_newline_and_key_is_unencrypted_pkcs8(
    identity: LocalIdentity,
) -> None:
    # when / then
    assert identity.token_path.read_text() == identity.token

    pem = identity.key_path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, RSAPrivateKey) and key.key_size == 2048
    assert _public_der(key) == _public_der(identity.private_key)


def test_given_a_passphrase_when_made_then_pem_is_encrypted_and_env_names_the_passphrase_file(
    tmp_path: Path,
) -> None:
    # given
    identity = LocalIdentity(tmp_path, passphrase="correct horse")

    # when / then
    env = identity.env()
    passphrase_path = Path(env["OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE"])
    assert set(env) == RP_VARIABLES | {"OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE"}
    assert passphrase_path.is_absolute() and passphrase_path.read_text() == "correct horse"
    pem = identity.key_path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    key = oci.signer.load_private_key_from_file(str(identity.key_path), passphrase_path.read_bytes())
    assert _public_der(key) == _public_der(identity.private_key)


def test_given_the_token_when_verified_with_pyjwt_then_issuer_signature_and_claims_hold(
    identity: LocalIdentity,
) -> None:
    # when
    claims = jwt.decode(identity.token, identity.issuer_public_key, algorithms=["RS256"])

    # then
    assert claims["iss"] == "authService.oracle.com"
    assert claims["sub"].startswith("ocid1.fnfunc.oc1.")
    assert claims["res_id"] == claims["sub"]
    assert claims["res_type"] == "fnfunc"
    assert claims["ttype"] == "res"
    assert claims["res_tenant"] == "ocid1.tenancy.oc1..aaaalocal"
    assert claims["res_compartment"] == "ocid1.compartment.oc1..aaaalocal"
    assert claims["exp"] - claims["iat"] == 1200


def test_given_the_token_when_reading_its_jwk_then_it_is_the_session_public_key(identity: LocalIdentity) -> None:
    # when
    claims = jwt.decode(identity.token, options={"verify_signature": False})

    # then
    jwk = claims["jwk"]
    assert jwk["kty"] == "RSA" and jwk["kid"]
    assert "=" not in jwk["n"] + jwk["e"]
    session_key = jwt.PyJWK(jwk).key
    assert _public_der(session_key) == _public_der(identity.private_key)


def test_given_the_token_when_split_then_it_is_compact_rs256_base64url_without_padding(
    identity: LocalIdentity,
) -> None:
    # when
    header_b64, claims_b64, signature_b64 = identity.token.split(".")

    # then
    assert "=" not in identity.token
    assert json.loads(base64.urlsafe_b64decode(header_b64 + "==="))["alg"] == "RS256"
    signature = base64.urlsafe_b64decode(signature_b64 + "===")
    identity.issuer_public_key.verify(
        signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_given_an_identity_when_rotated_then_both_files_are_replaced_with_a_new_key_and_token(
    identity: LocalIdentity,
) -> None:
    # given
    old_token, old_key = identity.token, identity.private_key
    old_inodes = (identity.token_path.stat().st_ino, identity.key_path.stat().st_ino)

    # when
    identity.rotate(lifetime_s=60)

    # then
    assert identity.token != old_token
    assert _public_der(identity.private_key) != _public_der(old_key)
    assert identity.token_path.stat().st_ino != old_inodes[0]
    assert identity.key_path.stat().st_ino != old_inodes[1]
    assert identity.token_path.read_text() == identity.token
    loaded = serialization.load_pem_private_key(identity.key_path.read_bytes(), password=None)
    assert isinstance(loaded, RSAPrivateKey)
    assert _public_der(loaded) == _public_der(identity.private_key)
    claims = jwt.decode(identity.token, identity.issuer_public_key, algorithms=["RS256"])
    assert claims["exp"] - claims["iat"] == 60
    assert sorted(p.name for p in identity.directory.iterdir()) == ["private.pem", "rpst"]


def test_given_the_env_when_the_oci_sdk_loads_it_then_its_signer_sees_our_identity(
    identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)

    # when
    signer = oci.auth.signers.get_resource_principals_signer()

    # then
    assert signer.tenancy_id == identity.tenancy_ocid
    assert signer.compartment_id == identity.compartment_ocid
    assert signer.region == "eu-frankfurt-1"
    assert signer.get_security_token() == identity.token


def test_given_an_sdk_signer_when_the_identity_rotates_then_a_refresh_reads_the_new_files(
    identity: LocalIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)
    signer = oci.auth.signers.get_resource_principals_signer()

    # when
    identity.rotate()

    # then
    assert signer.refresh_security_token() == identity.token
    assert _public_der(signer.private_key) == _public_der(identity.private_key)


def test_given_an_api_key_profile_when_the_oci_sdk_loads_it_then_its_key_id_matches(tmp_path: Path) -> None:
    # given
    config_path, profile, private_key, key_id = make_api_key_profile(
        tmp_path, profile="LOCAL", tenancy="ocid1.tenancy.oc1..aaaat", user="ocid1.user.oc1..aaaau"
    )

    # when
    config = oci.config.from_file(str(config_path), profile)
    signer = oci.signer.Signer.from_config(config)

    # then
    digest = hashlib.md5(_public_der(private_key), usedforsecurity=False).hexdigest()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
    assert profile == "LOCAL"
    assert key_id == f"ocid1.tenancy.oc1..aaaat/ocid1.user.oc1..aaaau/{fingerprint}"
    assert signer.api_key == key_id
    assert config["region"] == "us-chicago-1"
    assert _public_der(signer.private_key) == _public_der(private_key)


def test_given_an_identity_when_rotated_in_two_steps_then_the_files_disagree_in_between(
    identity: LocalIdentity,
) -> None:
    # given
    old_token = identity.token

    # when the key is replaced
    identity.replace_key()

    # then the key file already holds the new key; the token file still the old token, bound to the old key
    assert identity.token == old_token == identity.token_path.read_text()
    on_disk = serialization.load_pem_private_key(identity.key_path.read_bytes(), password=None)
    assert isinstance(on_disk, RSAPrivateKey)
    assert _public_der(on_disk) == _public_der(identity.private_key)
    bound = jwt.PyJWK(jwt.decode(old_token, options={"verify_signature": False})["jwk"]).key
    assert _public_der(bound) != _public_der(identity.private_key)

    # when the token follows
    identity.replace_token(lifetime_s=90)

    # then
    claims = jwt.decode(identity.token, identity.issuer_public_key, algorithms=["RS256"])
    assert identity.token_path.read_text() == identity.token != old_token
    assert _public_der(jwt.PyJWK(claims["jwk"]).key) == _public_der(identity.private_key)
    assert claims["exp"] - claims["iat"] == 90


def test_given_jwk_as_string_when_read_then_the_claim_is_json_text_in_oci_shape(tmp_path: Path) -> None:
    # given
    identity = LocalIdentity(tmp_path, jwk_as_string=True)

    # when
    claims = jwt.decode(identity.token, identity.issuer_public_key, algorithms=["RS256"])

    # then it has the shape of a real OCI token's claim (oci Java SDK, JwtClaimsSetTest): a string of JSON,
    # standard base64 without padding, the key's SHA-1 fingerprint as kid
    assert isinstance(claims["jwk"], str)
    jwk = json.loads(claims["jwk"])
    assert list(jwk) == ["kid", "n", "e", "kty", "alg", "use"]
    assert "=" not in jwk["n"] and "-" not in jwk["n"] and "_" not in jwk["n"]
    n = int.from_bytes(base64.b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4)), "big")
    assert n == identity.private_key.public_key().public_numbers().n
    assert jwk["kid"] == ":".join(
        f"{b:02X}" for b in hashlib.sha1(_public_der(identity.private_key), usedforsecurity=False).digest()
    )


def test_given_many_local_keys_when_made_then_each_is_a_new_valid_2048_bit_key_and_few_are_generated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a count of the slow prime searches (one full key generation each)
    generated: list[int] = []
    generate = rsa.generate_private_key

    def counting(public_exponent: int, key_size: int) -> RSAPrivateKey:
        generated.append(key_size)
        return generate(public_exponent=public_exponent, key_size=key_size)

    monkeypatch.setattr(identity_module.rsa, "generate_private_key", counting)
    # when a hundred keys are made, as a test run makes them
    keys = [new_key() for _ in range(100)]
    # then every key is new, 2048 bits, e = 65537, and passes OpenSSL's full key check when loaded
    assert len({key.public_key().public_numbers().n for key in keys}) == 100
    for key in keys:
        assert key.key_size == 2048 and key.public_key().public_numbers().e == 65537
        pem = _pkcs8_pem(key, None)
        loaded = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(loaded, RSAPrivateKey) and loaded.private_numbers() == key.private_numbers()
    # and they cost about a tenth of the prime searches a key each would
    assert len(generated) <= 10 and set(generated) <= {2048}
