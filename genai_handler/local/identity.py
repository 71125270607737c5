"""Credentials like the ones OCI hands out, made locally so nothing here needs a tenancy.

`LocalIdentity` is a resource principal v2.2 as OCI Functions provides it: a session token (RPST)
and a session key in files, named by environment variables, replaced in place when they rotate.
`make_api_key_profile` is a user principal as the OCI CLI config describes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

_ISSUER = "authService.oracle.com"


class LocalIdentity:
    """A resource-principal v2.2 identity as OCI Functions provides it, made locally.

    A local "identity service" key signs the session tokens, so a verifier that trusts
    `issuer_public_key` (see `LocalEndpoint`) checks them the way OCI would.
    """

    issuer_public_key: RSAPublicKey
    token_path: Path
    key_path: Path
    passphrase_path: Path | None
    token: str
    private_key: RSAPrivateKey

    def __init__(  # noqa: PLR0913  (keyword options, as tests call it)
        self,
        directory: str | os.PathLike[str],
        *,
        region: str = "us-chicago-1",
        tenancy_ocid: str = "ocid1.tenancy.oc1..aaaalocal",
        compartment_ocid: str = "ocid1.compartment.oc1..aaaalocal",
        lifetime_s: int = 3600,
        passphrase: str | None = None,
        jwk_as_string: bool = False,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.region = region
        self.tenancy_ocid = tenancy_ocid
        self.compartment_ocid = compartment_ocid
        self.function_ocid = f"ocid1.fnfunc.oc1.{region}.aaaalocal{secrets.token_hex(12)}"
        self.lifetime_s = lifetime_s
        self.jwk_as_string = jwk_as_string
        self._issuer_key = new_key()
        self.issuer_public_key = self._issuer_key.public_key()
        self.token_path = self.directory / "rpst"
        self.key_path = self.directory / "private.pem"
        self._passphrase = passphrase
        self.passphrase_path = None
        if passphrase is not None:
            self.passphrase_path = self.directory / "passphrase"
            _write_atomically(self.passphrase_path, passphrase.encode())
        self.rotate()

    def env(self) -> dict[str, str]:
        """The variables OCI Functions sets, so code under test finds its identity the same way."""
        env = {
            "OCI_RESOURCE_PRINCIPAL_VERSION": "2.2",
            "OCI_RESOURCE_PRINCIPAL_RPST": str(self.token_path),
            "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": str(self.key_path),
            "OCI_RESOURCE_PRINCIPAL_REGION": self.region,
        }
        if self.passphrase_path is not None:
            env["OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE"] = str(self.passphrase_path)
        return env

    def rotate(self, *, lifetime_s: int | None = None) -> None:
        """Swap in a new session key and token the way the platform does: each file replaced whole.

        The two files are replaced one after the other, so a reader between the two replacements
        gets a key and a token that don't match; a client has to survive that.
        """
        self.replace_key()
        self.replace_token(lifetime_s=lifetime_s)

    def replace_key(self) -> None:
        """The first half of a rotation: a new session key file beside the old token file.

        `private_key` is the new key at once; `token` stays the old one until `replace_token`.
        """
        private_key = new_key()
        _write_atomically(self.key_path, _pkcs8_pem(private_key, self._passphrase))
        self.private_key = private_key

    def replace_token(self, *, lifetime_s: int | None = None) -> None:
        """The second half of a rotation: a token file binding the key file's current key."""
        token = self.issue_token(self.private_key.public_key(), self.lifetime_s if lifetime_s is None else lifetime_s)
        _write_atomically(self.token_path, token.encode())
        self.token = token

    def issue_token(self, public_key: RSAPublicKey, lifetime_s: int) -> str:
        """Sign an RPST binding `public_key`; public so tests can mint expired or foreign tokens."""
        now = int(time.time())
        claims = {
            "sub": self.function_ocid,
            "iss": _ISSUER,
            "iat": now,
            "exp": now + lifetime_s,
            "res_tenant": self.tenancy_ocid,
            "res_compartment": self.compartment_ocid,
            "res_type": "fnfunc",
            "res_id": self.function_ocid,
            "ttype": "res",
            "jwk": _jwk_string(public_key) if self.jwk_as_string else _jwk(public_key),
        }
        return _sign_jwt(claims, self._issuer_key)


def make_api_key_profile(
    directory: str | os.PathLike[str],
    *,
    profile: str = "DEFAULT",
    region: str = "us-chicago-1",
    tenancy: str = "ocid1.tenancy.oc1..aaaalocal",
    user: str = "ocid1.user.oc1..aaaalocal",
) -> tuple[Path, str, RSAPrivateKey, str]:
    """Write an OCI CLI config and key for a user principal, for code that signs with API keys.

    Returns (config_path, profile, private_key, key_id); register key_id with the endpoint.
    The config file is overwritten, so give each profile its own directory.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    private_key = new_key()
    key_path = directory / "oci_api_key.pem"
    _write_atomically(key_path, _pkcs8_pem(private_key, None))
    fingerprint = key_fingerprint(private_key.public_key())
    config_path = directory / "config"
    config_path.write_text(
        f"[{profile}]\n"
        f"user={user}\n"
        f"fingerprint={fingerprint}\n"
        f"tenancy={tenancy}\n"
        f"region={region}\n"
        f"key_file={key_path}\n"
    )
    return config_path, profile, private_key, f"{tenancy}/{user}/{fingerprint}"


def key_fingerprint(public_key: RSAPublicKey) -> str:
    """The fingerprint OCI shows for an API key: MD5 of the DER SubjectPublicKeyInfo, hex pairs."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.md5(der, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class _KeyStock:
    """New 2048-bit keys for the stand-ins at a fraction of a prime search each.

    A key generation is almost all the search for its two 1024-bit primes (about 60 ms here, the
    largest CPU cost of the test suite). The stock keeps the primes of every key it generated and
    makes each new key from a pair of them not used before: n primes give n(n-1)/2 keys, so a
    hundred keys cost eight generations. Keys share primes, so one key's factors break another:
    fine for credentials that only this machine's stand-ins trust, never for anything else.
    """

    _E = 65537

    def __init__(self) -> None:
        self._primes: list[int] = []
        self._pairs: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def take(self) -> RSAPrivateKey:
        with self._lock:
            while not self._pairs:
                self._restock()
            p, q = self._pairs.pop()
        d = pow(self._E, -1, math.lcm(p - 1, q - 1))
        public = rsa.RSAPublicNumbers(self._E, p * q)
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
        )
        return numbers.private_key(unsafe_skip_rsa_key_validation=True)  # built from a valid key's primes

    def _restock(self) -> None:
        fresh = rsa.generate_private_key(public_exponent=self._E, key_size=2048).private_numbers()
        crossed = [(old, new) for new in (fresh.p, fresh.q) for old in self._primes]
        self._pairs += [pair for pair in crossed if (pair[0] * pair[1]).bit_length() == 2048] + [(fresh.p, fresh.q)]
        self._primes += [fresh.p, fresh.q]


_keys = _KeyStock()


def new_key() -> RSAPrivateKey:
    """A 2048-bit RSA key no earlier call returned (e = 65537), for the local stand-ins."""
    return _keys.take()


def _pkcs8_pem(private_key: RSAPrivateKey, passphrase: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if passphrase is not None:
        encryption = serialization.BestAvailableEncryption(passphrase.encode())
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    """JWTs drop base64's padding; Python's decoder wants it back."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _jwk(public_key: RSAPublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "kty": "RSA",
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
        "kid": hashlib.sha256(der).hexdigest()[:16],
    }


def _jwk_string(public_key: RSAPublicKey) -> str:
    """The `jwk` claim as OCI's tokens carry it: a string holding the JSON key, `n` and `e` in
    standard base64 without padding, `kid` a SHA-1 fingerprint (a real token's is its certificate's).
    Source: the oci Java SDK, bmc-common JwtClaimsSetTest (a real token's claim) and
    SecurityTokenAdapter (reads it with `getStringClaim("jwk")`)."""
    numbers = public_key.public_numbers()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    sha1 = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    return json.dumps(
        {
            "kid": ":".join(sha1[i : i + 2] for i in range(0, len(sha1), 2)),
            "n": _b64_uint(numbers.n),
            "e": _b64_uint(numbers.e),
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
        },
        separators=(",", ":"),
    )


def _b64_uint(value: int) -> str:
    return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def _sign_jwt(claims: dict[str, object], key: RSAPrivateKey) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": "local-issuer"}
    signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
