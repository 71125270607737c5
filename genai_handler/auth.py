"""OCI request signing as `httpx2.Auth` (and `httpx.Auth`) objects, named as in Oracle's `oci-genai-auth`.

Our own code because the default path, resource principal v2.2 inside OCI Functions, needs only
`cryptography`, while the oci SDK is ~500 MB installed. The SDK stays the reference (tests compare
signatures byte for byte) and is imported lazily for other principals and for OCI CLI config files.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Generator, MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import MisconfiguredError

__all__ = [
    "Credentials",
    "OciInstancePrincipalAuth",
    "OciResourcePrincipalAuth",
    "OciSessionAuth",
    "OciUserPrincipalAuth",
    "sign_request",
]

_ALWAYS_SIGNED = ("date", "(request-target)", "host")
_BODY_SIGNED = ("content-length", "content-type", "x-content-sha256")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_EXPIRY_MARGIN_S = 60.0
_RECHECK_EXPIRING_EVERY_S = 5.0
_ROTATION_WAIT_S = 1.0  # the platform replaces the two files milliseconds apart
_ROTATION_POLL_S = 0.01
_RPST, _RP_PEM = "OCI_RESOURCE_PRINCIPAL_RPST", "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM"
_RP_PASSPHRASE = "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE"  # noqa: S105  (a variable's name)
SESSION_KEY_ID = "ST$"  # a session token signs as keyId "ST$<token>"
_OCI_EXTRA = "the oci SDK is not installed: pip install -r requirements-oci.txt"

# Legacy httpx checks isinstance(auth, httpx.Auth); subclass it too when it is installed.
# The function image does not install it, so this costs nothing there.
_AUTH_BASES: tuple[type, ...] = (httpx2.Auth,)
if importlib.util.find_spec("httpx") is not None:
    import httpx

    _AUTH_BASES = (httpx2.Auth, httpx.Auth)


@dataclass(frozen=True)
class Credentials:
    """A key id and the private key that signs for it; `expires_at` for token principals."""

    key_id: str
    private_key: rsa.RSAPrivateKey
    expires_at: float | None = None
    source_state: object = field(default=None, compare=False)  # what the source looked like when read

    def __repr__(self) -> str:  # never print a token
        return f"Credentials(key_id=<{len(self.key_id)} chars>, expires_at={self.expires_at})"


def sign_request(
    method: str,
    target: str,
    headers: MutableMapping[str, str],
    body: bytes,
    credentials: Credentials,
) -> None:
    """Add OCI signature headers (version 1, rsa-sha256) to `headers` in place.

    `target` is the path and query exactly as sent; `headers` must hold `host` and be
    case-insensitive. Missing `date`, `content-type`, `content-length` are filled in as the
    oci SDK does.
    """
    method = method.upper()
    headers.setdefault("date", email.utils.formatdate(usegmt=True))
    names: tuple[str, ...] = _ALWAYS_SIGNED
    if method in _BODY_METHODS:
        names += _BODY_SIGNED
        headers.setdefault("content-type", "application/json")
        headers["content-length"] = str(len(body))
        headers["x-content-sha256"] = base64.b64encode(hashlib.sha256(body).digest()).decode()
    lines = [
        f"(request-target): {method.lower()} {target}" if name == "(request-target)" else f"{name}: {headers[name]}"
        for name in names
    ]
    signature = credentials.private_key.sign("\n".join(lines).encode(), padding.PKCS1v15(), hashes.SHA256())
    headers["authorization"] = (
        f'Signature version="1",headers="{" ".join(names)}",keyId="{credentials.key_id}",'
        f'algorithm="rsa-sha256",signature="{base64.b64encode(signature).decode()}"'
    )


class _OciAuth(*_AUTH_BASES):  # type: ignore[misc]  # (bases chosen at import time)
    """Signs every request: `OpenAI(api_key="not-used", ..., http_client=httpx2.Client(auth=...))`.

    Credentials are reloaded when stale (files rotated, token near expiry), so rotation costs no
    rejected request, and once after a 401, with one retry. The lock guards only the swap of the
    credentials, never network I/O.
    """

    requires_request_body = True

    def __init__(self, source: _FileSource | _OciSdkSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None

    def credentials(self) -> Credentials:
        """The credentials the next request will be signed with, reloaded first if stale."""
        current = self._credentials
        if current is None or self._source.is_stale(current):
            return self._replace(current, after_rejection=False)
        return current

    def _replace(self, seen: Credentials | None, *, after_rejection: bool) -> Credentials:
        fresh = self._source.load(seen, after_rejection=after_rejection)  # outside the lock: may do I/O
        with self._lock:
            current = self._credentials
            if current is None or current is seen:  # else another thread already replaced them
                current = self._credentials = fresh
            return current

    def _sign(self, request: Any, credentials: Credentials, *, retry: bool = False) -> None:
        headers = request.headers
        headers.pop("authorization", None)  # the SDK's placeholder "Bearer not-used"
        if retry:
            headers.pop("date", None)  # a retry is a new request: a new date
        if "host" not in headers:
            headers["host"] = request.url.netloc.decode("ascii")
        if "transfer-encoding" in headers:  # a streamed body was read whole to sign it: frame it by length
            del headers["transfer-encoding"]
            headers["content-length"] = str(len(request.content))
        sign_request(request.method, request.url.raw_path.decode("ascii"), headers, request.content, credentials)

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        used = self.credentials()
        self._sign(request, used)
        response = yield request
        if response.status_code == 401:
            self._sign(request, self._replace(used, after_rejection=True), retry=True)
            yield request


def _b64url_decode(text: str) -> bytes:
    """JWTs drop base64's padding; Python's decoder wants it back."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(token: str) -> dict[str, Any] | None:
    """A JWT's claims, read without verifying it (OCI verifies it); None if it is not one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(_b64url_decode(payload))
    except (IndexError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, or None."""
    try:
        return float((_claims(token) or {})["exp"])
    except (KeyError, TypeError, ValueError):
        return None


def _token_credentials(token: str, key: rsa.RSAPrivateKey, token_label: str, key_label: str) -> Credentials:
    """Credentials for a session token; refuses a token bound to another key (`jwk` claim), which
    means the token and key files were read between the platform replacing one and the other."""
    claims = _claims(token)
    if claims is None:
        raise _Unusable(f"{token_label}: not a session token (JWT)")
    modulus = _jwk_modulus(claims.get("jwk"))
    if modulus is not None and modulus != key.public_key().public_numbers().n:
        raise _Unusable(f"the session token ({token_label}) does not match the private key ({key_label})")
    return Credentials(f"{SESSION_KEY_ID}{token}", key, token_expiry(token))


def _jwk_modulus(jwk: object) -> int | None:
    """The RSA modulus a token's `jwk` claim binds, or None if it names none.

    OCI's tokens carry the claim as a string holding the JSON key, `n` in standard base64
    without padding; our local tokens carry an object. Source: the oci Java SDK, whose
    SecurityTokenAdapter reads it with `getStringClaim("jwk")` and whose JwtClaimsSetTest holds
    a real token's claim. The oci Python SDK does not read the claim at all.
    """
    if isinstance(jwk, str):
        try:
            jwk = json.loads(jwk)
        except ValueError:
            return None
    if not isinstance(jwk, dict) or not isinstance(jwk.get("n"), str):
        return None
    try:
        return int.from_bytes(_b64url_decode(jwk["n"]), "big")  # also takes `+` and `/`
    except ValueError:
        return None


class _Unusable(Exception):
    """The credential files can't be used as read: `reason` names the file, never its content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _expiring(credentials: Credentials) -> bool:
    return credentials.expires_at is not None and credentials.expires_at - time.time() < _EXPIRY_MARGIN_S


def _value_or_file(value: str, variable: str) -> str:
    """OCI's convention: an absolute path names a file holding the value; anything else is it."""
    if os.path.isabs(value):
        return _file_text(Path(value), variable)
    if not value.strip():
        raise _Unusable(f"{variable}: empty value")
    return value.strip()


def _file_text(path: Path, label: str) -> str:
    """A credential file's text; an empty or unreadable one may be mid-rotation, so it is _Unusable."""
    try:
        text = path.read_bytes().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise _Unusable(f"{label}: unreadable file") from None
    if not text:
        raise _Unusable(f"{label}: empty file")
    return text


def _private_key(pem: str, passphrase: str | None, label: str, *, trusted: bool = False) -> rsa.RSAPrivateKey:
    """`trusted` skips OpenSSL's RSA key check (~36 ms): cryptography allows it for keys from a trusted
    source, as the platform's is (its token binds the modulus, _token_credentials checks that)."""
    secret = passphrase.encode() if passphrase else None
    try:
        key = serialization.load_pem_private_key(pem.encode(), secret, unsafe_skip_rsa_key_validation=trusted)
    except (ValueError, TypeError):  # truncated, not PEM, or a wrong or missing passphrase
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _Unusable(f"{label}: not an RSA PEM private key, or a wrong passphrase")
    return key


_FileState = tuple[tuple[int, int, int] | None, ...]


class _FileSource:
    """Credentials read from files, re-read as soon as any watched file changes on disk.

    A read that finds the files unusable (mid-rotation, or broken) keeps the previous credentials
    while they are valid; without them it polls the files for `_ROTATION_WAIT_S`, counted from the
    first failed read, then reports the reason. The verdict on one file state is remembered, so
    the key is not parsed again until a file changes.
    """

    def __init__(self, read: Callable[[], Credentials], watched: tuple[Path, ...]) -> None:
        self._read = read
        self._watched = watched
        self._expiry_checked_at = 0.0
        self._unusable: tuple[_FileState, str] | None = None  # one tuple: swapped atomically
        self._failing_since: float | None = None

    def _file_state(self) -> _FileState:
        return tuple(map(_stat, self._watched))

    def load(self, previous: Credentials | None, *, after_rejection: bool) -> Credentials:
        fresh_read = after_rejection  # a 401 may follow a rewrite the file state did not show
        while True:
            try:
                credentials = self._read_once(fresh_read)
            except _Unusable as exc:
                reason = exc.reason
            else:
                self._failing_since = None
                return credentials
            if previous is not None and not after_rejection and not _expiring(previous):
                return previous
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
            if now - self._failing_since >= _ROTATION_WAIT_S:
                raise MisconfiguredError(f"cannot load OCI credentials: {reason}")
            time.sleep(_ROTATION_POLL_S)
            fresh_read = False

    def _read_once(self, fresh_read: bool) -> Credentials:
        state = self._file_state()
        known = self._unusable
        if known is not None and known[0] == state and not fresh_read:
            raise _Unusable(known[1])
        try:
            credentials = self._read()
        except _Unusable as exc:
            if self._file_state() == state:  # unchanged while read: the verdict belongs to this state
                self._unusable = (state, exc.reason)
            raise
        return replace(credentials, source_state=state)

    def is_stale(self, credentials: Credentials) -> bool:
        if self._file_state() != credentials.source_state:  # per credentials: no shared state to race on
            return True
        if _expiring(credentials) and time.monotonic() - self._expiry_checked_at > _RECHECK_EXPIRING_EVERY_S:
            self._expiry_checked_at = time.monotonic()
            return True
        return False


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # mid-rotation or gone: the read says which
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class _OciSdkSource:
    """Credentials held by an oci SDK token signer, which knows how to fetch and refresh them."""

    def __init__(self, make_signer: Callable[[Any], Any]) -> None:
        oci = _import_oci()
        try:
            signer = make_signer(oci)
        except Exception as exc:  # the SDK raises many kinds; name the kind, never the text
            raise MisconfiguredError(f"cannot load OCI credentials ({type(exc).__name__})") from None
        self._holder = getattr(signer, "federation_client", signer)

    def load(
        self,
        previous: Credentials | None,  # noqa: ARG002  (the sources' shared signature)
        *,
        after_rejection: bool,
    ) -> Credentials:
        try:
            if after_rejection:
                self._holder.refresh_security_token()
            token = self._holder.get_security_token()
            key = self._holder.session_key_supplier.get_key_pair()["private"]
        except Exception as exc:
            raise MisconfiguredError(f"cannot refresh OCI credentials ({type(exc).__name__})") from None
        return Credentials(f"{SESSION_KEY_ID}{token}", key, token_expiry(token))

    def is_stale(self, credentials: Credentials) -> bool:
        return _expiring(credentials)


def _import_oci() -> Any:
    try:
        import oci  # noqa: PLC0415  (lazy: ~500 MB, not in the function image)
    except ImportError:
        raise MisconfiguredError(_OCI_EXTRA) from None
    return oci


def _oci_profile(config_file: str, profile_name: str) -> dict[str, Any]:
    oci = _import_oci()
    try:
        return dict(oci.config.from_file(file_location=config_file, profile_name=profile_name))
    except Exception as exc:  # ConfigFileNotFound, ProfileNotFound, InvalidConfig...
        raise MisconfiguredError(f"cannot use OCI config profile {profile_name!r} ({type(exc).__name__})") from None


def _resource_principal_v22() -> _FileSource:
    token = os.environ.get(_RPST, "")
    pem = os.environ.get(_RP_PEM, "")
    passphrase = os.environ.get(_RP_PASSPHRASE)
    if not token or not pem:
        raise MisconfiguredError(f"{_RPST} and {_RP_PEM} must be set")

    def read() -> Credentials:
        rpst = _value_or_file(token, _RPST)
        secret = _value_or_file(passphrase, _RP_PASSPHRASE) if passphrase else None
        key = _private_key(_value_or_file(pem, _RP_PEM), secret, _RP_PEM, trusted=True)
        return _token_credentials(rpst, key, _RPST, _RP_PEM)

    return _FileSource(read, tuple(Path(v) for v in (token, pem, passphrase or "") if os.path.isabs(v)))


class OciResourcePrincipalAuth(_OciAuth):
    """The function's own identity in OCI Functions (and other resource principals).

    Version 2.2, which OCI Functions provides, is read from the files the platform maintains;
    other versions fetch tokens from endpoints and are handed to the oci SDK.
    """

    def __init__(self) -> None:
        if os.environ.get("OCI_RESOURCE_PRINCIPAL_VERSION") == "2.2":
            super().__init__(_resource_principal_v22())
        else:
            super().__init__(_OciSdkSource(lambda oci: oci.auth.signers.get_resource_principals_signer()))


class OciInstancePrincipalAuth(_OciAuth):
    """A compute instance's identity, fetched from the instance metadata service by the oci SDK."""

    def __init__(self) -> None:
        super().__init__(_OciSdkSource(lambda oci: oci.auth.signers.InstancePrincipalsSecurityTokenSigner()))


class OciUserPrincipalAuth(_OciAuth):
    """A user's API key from an OCI CLI config profile (tenancy, user, fingerprint, key_file)."""

    def __init__(self, config_file: str = "~/.oci/config", profile_name: str = "DEFAULT") -> None:
        profile = _oci_profile(config_file, profile_name)
        key_id = f"{profile['tenancy']}/{profile['user']}/{profile['fingerprint']}"
        key_file = Path(profile["key_file"]).expanduser()
        key_label = f"key_file of profile {profile_name!r}"

        def read() -> Credentials:
            pem = _file_text(key_file, key_label)
            return Credentials(key_id, _private_key(pem, profile.get("pass_phrase"), key_label))

        super().__init__(_FileSource(read, (key_file,)))


class OciSessionAuth(_OciAuth):
    """A session from `oci session authenticate`; `oci session refresh` is picked up at once."""

    def __init__(self, config_file: str = "~/.oci/config", profile_name: str = "DEFAULT") -> None:
        profile = _oci_profile(config_file, profile_name)
        if "security_token_file" not in profile:
            raise MisconfiguredError(f"OCI config profile {profile_name!r} has no security_token_file")
        token_file = Path(profile["security_token_file"]).expanduser()
        key_file = Path(profile["key_file"]).expanduser()
        token_label = f"security_token_file of profile {profile_name!r}"
        key_label = f"key_file of profile {profile_name!r}"

        def read() -> Credentials:
            token = _file_text(token_file, token_label)
            key = _private_key(_file_text(key_file, key_label), profile.get("pass_phrase"), key_label)
            return _token_credentials(token, key, token_label, key_label)

        super().__init__(_FileSource(read, (token_file, key_file)))
