"""OCI request signing as `httpx2.Auth` (and `httpx.Auth`) objects for the OpenAI SDK.

The class names follow Oracle's `oci-genai-auth` so its documentation reads the same here:

    OpenAI(api_key="not-used", base_url=..., project=...,
           http_client=httpx2.Client(auth=OciResourcePrincipalAuth()))

Why our own code: the default path, resource principal v2.2 inside OCI Functions, needs only
`cryptography`; the oci SDK is ~500 MB installed, six times the rest of the function. The oci SDK
stays the reference: tests prove our signatures equal its signers' byte for byte, and it is
imported lazily for the principals whose credentials come from elsewhere (instance metadata,
other resource-principal versions) and for reading OCI CLI config files.

Credentials are re-read when their files change on disk (the platform rotates them) or their
token nears expiry, so rotation costs no rejected request; a 401 still triggers one reload and
one retry. The lock guards only the swap of the credentials, never network I/O.
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
_ROTATION_READS = 50
_ROTATION_PAUSE_S = 0.01
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
    names = _ALWAYS_SIGNED
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


class _OciAuth(*_AUTH_BASES):  # type: ignore[misc]
    """Signs every request; reloads credentials when stale and once after a 401."""

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
        fresh = self._source.load(after_rejection=after_rejection)  # outside the lock: may do I/O
        with self._lock:
            if self._credentials is seen:  # else another thread already replaced them
                self._credentials = fresh
            return self._credentials  # type: ignore[return-value]

    def _sign(self, request: Any, credentials: Credentials, *, retry: bool = False) -> None:
        headers = request.headers
        headers.pop("authorization", None)  # the SDK's placeholder "Bearer not-used"
        if retry:
            headers.pop("date", None)  # a retry is a new request: a new date
        if "host" not in headers:
            headers["host"] = request.url.netloc.decode("ascii")
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


def _claims(token: str) -> dict[str, Any]:
    """A JWT's claims, read without verifying it (OCI verifies it); {} if it is not one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(_b64url_decode(payload))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, or None."""
    try:
        return float(_claims(token)["exp"])
    except (KeyError, TypeError, ValueError):
        return None


def _token_credentials(token: str, key: rsa.RSAPrivateKey) -> Credentials:
    """Credentials for a session token; refuses a token bound to another key (`jwk` claim), which
    means the token and key files were read between the platform replacing one and the other."""
    jwk = _claims(token).get("jwk")
    if isinstance(jwk, dict) and isinstance(jwk.get("n"), str):
        try:
            modulus = int.from_bytes(_b64url_decode(jwk["n"]), "big")
        except ValueError:
            modulus = None
        if modulus is not None and modulus != key.public_key().public_numbers().n:
            raise _MidRotation
    return Credentials(f"ST${token}", key, token_expiry(token))


class _MidRotation(Exception):
    pass


def _expiring(credentials: Credentials) -> bool:
    return credentials.expires_at is not None and credentials.expires_at - time.time() < _EXPIRY_MARGIN_S


def _value_or_file(value: str) -> str:
    """OCI's convention: an absolute path names a file holding the value; anything else is it."""
    return Path(value).read_text(encoding="utf-8").strip() if os.path.isabs(value) else value.strip()


def _private_key(pem: str | bytes, passphrase: str | None) -> rsa.RSAPrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, passphrase.encode() if passphrase else None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return key


class _FileSource:
    """Credentials read from files, re-read as soon as any watched file changes on disk."""

    def __init__(self, read: Callable[[], Credentials], watched: tuple[Path, ...]) -> None:
        self._read = read
        self._watched = watched
        self._expiry_checked_at = 0.0

    def _file_state(self) -> tuple[tuple[int, int, int], ...]:
        return tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in map(os.stat, self._watched))

    def load(self, *, after_rejection: bool) -> Credentials:
        try:
            for _ in range(_ROTATION_READS):
                state = self._file_state()
                try:
                    credentials = replace(self._read(), source_state=state)
                    break
                except _MidRotation:
                    time.sleep(_ROTATION_PAUSE_S)  # the platform is replacing the files: read again
            else:
                raise MisconfiguredError("the OCI session token does not match the private key")
        except OSError as exc:
            raise MisconfiguredError(f"cannot read OCI credentials: {exc.strerror or 'unreadable file'}") from None
        except (ValueError, TypeError):
            raise MisconfiguredError("cannot load the OCI private key (not an RSA PEM key, or wrong passphrase)") from None
        return credentials

    def is_stale(self, credentials: Credentials) -> bool:
        try:
            if self._file_state() != credentials.source_state:  # per credentials: no shared state to race on
                return True
        except OSError:
            return True  # mid-rotation: the reload reports it if it persists
        if _expiring(credentials) and time.monotonic() - self._expiry_checked_at > _RECHECK_EXPIRING_EVERY_S:
            self._expiry_checked_at = time.monotonic()
            return True
        return False


class _OciSdkSource:
    """Credentials held by an oci SDK token signer, which knows how to fetch and refresh them."""

    def __init__(self, make_signer: Callable[[Any], Any]) -> None:
        oci = _import_oci()
        try:
            signer = make_signer(oci)
        except Exception as exc:  # the SDK raises many kinds; name the kind, never the text
            raise MisconfiguredError(f"cannot load OCI credentials ({type(exc).__name__})") from None
        self._holder = getattr(signer, "federation_client", signer)

    def load(self, *, after_rejection: bool) -> Credentials:
        try:
            if after_rejection:
                self._holder.refresh_security_token()
            token = self._holder.get_security_token()
            key = self._holder.session_key_supplier.get_key_pair()["private"]
        except Exception as exc:
            raise MisconfiguredError(f"cannot refresh OCI credentials ({type(exc).__name__})") from None
        return Credentials(f"ST${token}", key, token_expiry(token))

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
    token = os.environ.get("OCI_RESOURCE_PRINCIPAL_RPST", "")
    pem = os.environ.get("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM", "")
    passphrase = os.environ.get("OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE")
    if not token or not pem:
        raise MisconfiguredError("OCI_RESOURCE_PRINCIPAL_RPST and OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM must be set")

    def read() -> Credentials:
        rpst = _value_or_file(token)
        return _token_credentials(rpst, _private_key(_value_or_file(pem), _value_or_file(passphrase) if passphrase else None))

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

        def read() -> Credentials:
            return Credentials(key_id, _private_key(key_file.read_bytes(), profile.get("pass_phrase")))

        super().__init__(_FileSource(read, (key_file,)))


class OciSessionAuth(_OciAuth):
    """A session from `oci session authenticate`; `oci session refresh` is picked up at once."""

    def __init__(self, config_file: str = "~/.oci/config", profile_name: str = "DEFAULT") -> None:
        profile = _oci_profile(config_file, profile_name)
        if "security_token_file" not in profile:
            raise MisconfiguredError(f"OCI config profile {profile_name!r} has no security_token_file")
        token_file = Path(profile["security_token_file"]).expanduser()
        key_file = Path(profile["key_file"]).expanduser()

        def read() -> Credentials:
            token = token_file.read_text(encoding="utf-8").strip()
            return _token_credentials(token, _private_key(key_file.read_bytes(), profile.get("pass_phrase")))

        super().__init__(_FileSource(read, (token_file, key_file)))
