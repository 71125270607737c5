"""OCI request signing as `httpx2.Auth` (and `httpx.Auth`) objects, named as in Oracle's `oci-genai-auth`.

Our own code because the default path, resource principal v2.2 inside OCI Functions, needs only
`cryptography`, while the oci SDK is ~500 MB installed. The SDK stays the reference (tests compare
signatures byte for byte) and is imported lazily for other principals and for OCI CLI config files.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import importlib.util
import json
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Generator, MutableMapping, Sequence
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
    "OciOkeWorkloadIdentityAuth",
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
REFRESH_INTERVAL_S = 3600.0  # oci-genai-auth 1.1.1's default

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
    loaded_at: float = field(default_factory=time.monotonic, compare=False)  # for refresh_interval

    def __repr__(self) -> str:  # never print a token
        return f"Credentials(key_id=<{len(self.key_id)} chars>, expires_at={self.expires_at})"


def sign_request(  # noqa: PLR0913  (the SDK signer's two header lists, keyword-only)
    method: str,
    target: str,
    headers: MutableMapping[str, str],
    body: bytes,
    credentials: Credentials,
    *,
    generic_headers: Sequence[str] = _ALWAYS_SIGNED,
    body_headers: Sequence[str] = _BODY_SIGNED,
) -> None:
    """Add OCI signature headers (version 1, rsa-sha256) to `headers` in place.

    `target` is the path and query exactly as sent; `headers` must hold `host` and be
    case-insensitive. Missing `date`, `content-type`, `content-length` are filled in as the
    oci SDK does. `generic_headers` and `body_headers` are the oci SDK signer's arguments of
    those names: the headers signed on every request, and also on POST, PUT and PATCH.
    """
    method = method.upper()
    headers.setdefault("date", email.utils.formatdate(usegmt=True))
    names = tuple(generic_headers)
    if method in _BODY_METHODS:
        names += tuple(body_headers)
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

    `refresh_interval` (seconds, oci-genai-auth's argument and default) bounds the credentials' age:
    they are renewed at least that often, as Oracle's classes do on their fixed interval, and sooner
    whenever they are stale. A renewal that fails keeps credentials that are still valid, as Oracle's
    does, and is tried again one interval later. None or 0 renews only when stale.
    """

    requires_request_body = True

    def __init__(
        self,
        source: _FileSource | _OciSdkSource | _ProxymuxSource,
        *,
        refresh_interval: float | None = REFRESH_INTERVAL_S,
        generic_headers: Sequence[str] | None = None,
        body_headers: Sequence[str] | None = None,
    ) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self.refresh_interval = refresh_interval
        self._generic_headers = tuple(generic_headers) if generic_headers else _ALWAYS_SIGNED
        self._body_headers = tuple(body_headers) if body_headers else _BODY_SIGNED

    def warm(self) -> None:
        """Load the credentials and sign once (OpenSSL's first RSA signature costs ~1 ms more than the
        next), so a container's first request is signed as fast as any (genai_handler/warm.py)."""
        sign_request("GET", "/", {"host": "localhost"}, b"", self.credentials())

    def credentials(self) -> Credentials:
        """The credentials the next request will be signed with, reloaded first if stale."""
        current = self._credentials
        if current is None or self._source.is_stale(current):
            return self._replace(current, after_rejection=False)
        if self.refresh_interval and time.monotonic() - current.loaded_at >= self.refresh_interval:
            return self._replace(current, after_rejection=False, renew=True)
        return current

    def _replace(self, seen: Credentials | None, *, after_rejection: bool, renew: bool = False) -> Credentials:
        fresh = self._source.load(seen, after_rejection=after_rejection, renew=renew)  # outside the lock: may do I/O
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
        sign_request(
            request.method,
            request.url.raw_path.decode("ascii"),
            headers,
            request.content,
            credentials,
            generic_headers=self._generic_headers,
            body_headers=self._body_headers,
        )

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

    def load(self, previous: Credentials | None, *, after_rejection: bool, renew: bool = False) -> Credentials:
        fresh_read = after_rejection or renew  # a 401 may follow a rewrite the file state did not show
        while True:
            try:
                credentials = self._read_once(fresh_read)
            except _Unusable as exc:
                reason = exc.reason
            else:
                self._failing_since = None
                return credentials
            if previous is not None and not after_rejection and not _expiring(previous):
                return replace(previous, loaded_at=time.monotonic()) if renew else previous
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

    def load(self, previous: Credentials | None, *, after_rejection: bool, renew: bool = False) -> Credentials:
        try:
            if after_rejection or renew:
                self._holder.refresh_security_token()
            token = self._holder.get_security_token()
            key = self._holder.session_key_supplier.get_key_pair()["private"]
        except Exception as exc:
            if renew and previous is not None and not _expiring(previous):
                return replace(previous, loaded_at=time.monotonic())  # tried again one interval later
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


@dataclass(frozen=True)
class _ProfileKey:
    """A config profile's key_file and pass_phrase, named in messages as the profile's."""

    path: Path
    label: str
    passphrase: str | None

    @classmethod
    def of(cls, profile: dict[str, Any], profile_name: str) -> _ProfileKey:
        label = f"key_file of profile {profile_name!r}"
        return cls(Path(profile["key_file"]).expanduser(), label, profile.get("pass_phrase"))

    def read(self) -> rsa.RSAPrivateKey:
        return _private_key(_file_text(self.path, self.label), self.passphrase, self.label)


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
    other versions fetch tokens from endpoints and are handed to the oci SDK, whose
    `get_resource_principals_signer(**kwargs)` gets `kwargs` (as in oci-genai-auth). Version 2.2
    accepts them and, like the SDK's own v2.2 path, has no use for them. Not for OKE pods: see
    `OciOkeWorkloadIdentityAuth`.
    """

    def __init__(self, refresh_interval: float | None = REFRESH_INTERVAL_S, **kwargs: Any) -> None:
        if os.environ.get("OCI_RESOURCE_PRINCIPAL_VERSION") == "2.2":
            source: _FileSource | _OciSdkSource = _resource_principal_v22()
        else:
            source = _OciSdkSource(lambda oci: oci.auth.signers.get_resource_principals_signer(**kwargs))
        super().__init__(source, refresh_interval=refresh_interval)


class OciInstancePrincipalAuth(_OciAuth):
    """A compute instance's identity, fetched from the instance metadata service by the oci SDK;
    `kwargs` go to its `InstancePrincipalsSecurityTokenSigner`, as in oci-genai-auth."""

    def __init__(self, refresh_interval: float | None = REFRESH_INTERVAL_S, **kwargs: Any) -> None:
        source = _OciSdkSource(lambda oci: oci.auth.signers.InstancePrincipalsSecurityTokenSigner(**kwargs))
        super().__init__(source, refresh_interval=refresh_interval)


class OciUserPrincipalAuth(_OciAuth):
    """A user's API key from an OCI CLI config profile (tenancy, user, fingerprint, key_file)."""

    def __init__(
        self,
        config_file: str = "~/.oci/config",
        profile_name: str = "DEFAULT",
        refresh_interval: float | None = REFRESH_INTERVAL_S,
    ) -> None:
        profile = _oci_profile(config_file, profile_name)
        key_id = f"{profile['tenancy']}/{profile['user']}/{profile['fingerprint']}"
        key = _ProfileKey.of(profile, profile_name)
        source = _FileSource(lambda: Credentials(key_id, key.read()), (key.path,))
        super().__init__(source, refresh_interval=refresh_interval)


class OciSessionAuth(_OciAuth):
    """A session from `oci session authenticate`; `oci session refresh` is picked up at once.

    `generic_headers` and `body_headers` among `kwargs` choose the signed headers, as they do in
    oci-genai-auth (which hands them to the SDK's SecurityTokenSigner); other keywords are ignored there
    and here.
    """

    def __init__(
        self,
        config_file: str = "~/.oci/config",
        profile_name: str = "DEFAULT",
        refresh_interval: float | None = REFRESH_INTERVAL_S,
        **kwargs: Any,
    ) -> None:
        profile = _oci_profile(config_file, profile_name)
        if "security_token_file" not in profile:
            raise MisconfiguredError(f"OCI config profile {profile_name!r} has no security_token_file")
        token_file = Path(profile["security_token_file"]).expanduser()
        token_label = f"security_token_file of profile {profile_name!r}"
        key = _ProfileKey.of(profile, profile_name)

        def read() -> Credentials:
            token = _file_text(token_file, token_label)
            return _token_credentials(token, key.read(), token_label, key.label)

        super().__init__(
            _FileSource(read, (token_file, key.path)),
            refresh_interval=refresh_interval,
            generic_headers=kwargs.get("generic_headers"),
            body_headers=kwargs.get("body_headers"),
        )


# OKE workload identity, as the oci SDK 2.189.0 does it (oci/auth/signers/resource_principals_signer.py,
# get_oke_workload_identity_resource_principal_signer; oke_workload_identity_resource_principal_signer.py).
SERVICE_ACCOUNT_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105  (a path)
SERVICE_ACCOUNT_CA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
_SA_CA_VARIABLE = "OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH"
_K8S_HOST_VARIABLE = "KUBERNETES_SERVICE_HOST"
PROXYMUX_PORT = 12250
PROXYMUX_PATH = "/resourcePrincipalSessionTokens"
_PROXYMUX_TIMEOUT = httpx2.Timeout(60.0, connect=10.0)  # the SDK's (10, 60)
_PROXYMUX_WAIT_S = 75.0  # a caller waiting for another thread's exchange: one exchange's timeouts, and some
_BACKGROUND_RETRY_S = 5.0
_TOKEN_MARGIN_SHARE = 0.25  # short-lived tokens: stop using one this share of its lifetime before it expires
_OKE_PODS = (
    "OKE sets it in every pod; elsewhere use another GENAI_AUTH (on a laptop: session after `oci session authenticate`)"
)
_MOUNT_HINT = "the pod mounts it when its spec has `automountServiceAccountToken: true` (docs/oke.md)"


@dataclass(frozen=True)
class _TokenTimes:
    """When to fetch the next token (half its lifetime, as the SDK's `valid_with_half_expiration_time`)
    and when to stop signing with this one."""

    refresh_at: float
    use_until: float


class _ProxymuxSource:
    """Session tokens from OKE's proxymux, exchanged for the pod's service account token.

    One exchange at a time: callers with credentials still usable keep signing with them while a
    background thread fetches the next (from half the token's lifetime on); callers without wait for
    the exchange in flight. No lock is held across the exchange.
    """

    def __init__(self, url: str, ca_path: str, service_account_token: Callable[[], str]) -> None:
        self._url = url
        self._ca_path = ca_path
        self._service_account_token = service_account_token
        self._lock = threading.Lock()
        self._latest: Credentials | None = None
        self._error: MisconfiguredError | None = None
        self._in_flight: threading.Event | None = None
        self._background_after = 0.0

    def is_stale(self, credentials: Credentials) -> bool:
        return _due(credentials) or self._latest is not credentials

    def load(self, previous: Credentials | None, *, after_rejection: bool, renew: bool = False) -> Credentials:
        with self._lock:
            latest = self._latest
            if latest is not None and latest is not previous and _usable(latest) and not _due(latest):
                return latest  # another caller already fetched a newer one
            if previous is not None and not after_rejection and _usable(previous):
                if renew or _due(previous):
                    self._refresh_in_background()
                return previous
            event, fetching = self._in_flight, self._in_flight is None
            if event is None:
                event = self._in_flight = threading.Event()
        if fetching:
            return self._exchange(event)
        if not event.wait(_PROXYMUX_WAIT_S):
            raise MisconfiguredError(
                f"no session token from the OKE proxymux at {self._url} in {_PROXYMUX_WAIT_S:.0f} s"
            )
        with self._lock:
            if self._latest is not None and self._latest is not previous:
                return self._latest
            raise self._error or MisconfiguredError(f"no session token from the OKE proxymux at {self._url}")

    def _refresh_in_background(self) -> None:
        """Under the lock: starts one exchange unless one is running or the last failed moments ago."""
        if self._in_flight is not None or time.monotonic() < self._background_after:
            return
        event = self._in_flight = threading.Event()
        self._background_after = time.monotonic() + _BACKGROUND_RETRY_S

        def run() -> None:
            with contextlib.suppress(MisconfiguredError):  # the current token serves meanwhile; the next caller retries
                self._exchange(event)

        threading.Thread(target=run, name="oke-proxymux-refresh", daemon=True).start()

    def _exchange(self, event: threading.Event) -> Credentials:
        try:
            credentials = self._fetch()
        except Exception as exc:  # whatever happens, waiters are released and the next exchange may start
            error = exc if isinstance(exc, MisconfiguredError) else None
            error = error or MisconfiguredError(f"cannot use the OKE proxymux's answer ({type(exc).__name__})")
            with self._lock:
                self._error, self._in_flight = error, None
            event.set()
            raise error from None
        with self._lock:
            self._latest, self._error, self._in_flight = credentials, None, None
        event.set()
        return credentials

    def _fetch(self) -> Credentials:
        """One exchange, as the SDK's `_get_resource_principal_session_token` makes it."""
        sa_token = self._service_account_token()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        headers = {
            "Authorization": f"Bearer {sa_token}",
            "Content-Type": "application/json",
            "opc-request-id": "/".join(secrets.token_hex(16) for _ in range(3)),
        }
        body = json.dumps({"podKey": base64.b64encode(spki).decode()}).encode()
        try:
            tls = ssl.create_default_context(cafile=self._ca_path)
        except (OSError, ssl.SSLError):
            raise MisconfiguredError(
                f"the service account CA certificate ({_SA_CA_VARIABLE} or {SERVICE_ACCOUNT_CA_PATH}) "
                "is unreadable or not a PEM certificate"
            ) from None
        try:
            # trust_env off: the proxymux is on the cluster network, never behind an egress proxy
            with httpx2.Client(verify=tls, trust_env=False, timeout=_PROXYMUX_TIMEOUT) as client:
                response = client.post(self._url, content=body, headers=headers)
        except httpx2.HTTPError as exc:
            raise MisconfiguredError(
                f"cannot reach the OKE proxymux at {self._url} ({type(exc).__name__}): OKE serves it to pods of "
                "enhanced clusters only; check that this runs in such a pod and the network policy allows it"
            ) from None
        _raise_for_proxymux_status(response, self._url)
        token = _proxymux_token(response.content)
        if token is None:
            raise MisconfiguredError(f"the OKE proxymux at {self._url} answered without a session token")
        try:
            credentials = _token_credentials(token, key, "the proxymux's session token", "the session key")
        except _Unusable as exc:
            raise MisconfiguredError(f"cannot use the OKE proxymux's answer: {exc.reason}") from None
        return replace(credentials, source_state=_token_times(token))


def _raise_for_proxymux_status(response: httpx2.Response, url: str) -> None:
    """The SDK's refusals (ServiceError): 403 "Please ensure the cluster type is enhanced", any other
    status "Failed to get RPST token from proxymux"; its body is not read, nor shown here."""
    status = response.status_code
    if 200 <= status < 300:
        return
    seen = f"HTTP {status}, opc-request-id {response.headers.get('opc-request-id', '-')}"
    if status == 403:
        raise MisconfiguredError(
            f"the OKE proxymux at {url} refused the workload ({seen}): not an enhanced cluster? OKE workload "
            "identity needs an enhanced cluster (docs/oke.md)"
        )
    if status == 401:
        raise MisconfiguredError(
            f"the OKE proxymux at {url} did not accept the service account token ({seen}): mount the pod's own "
            "token (automountServiceAccountToken: true) or pass a current one"
        )
    raise MisconfiguredError(f"the OKE proxymux at {url} gave no session token ({seen})")


def _proxymux_token(content: bytes) -> str | None:
    """The answer is base64 of JSON `{"token": "ST$<jwt>"}`; the SDK drops the first three characters."""
    try:
        answer = json.loads(base64.b64decode(content, validate=True))
    except ValueError:
        return None
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token.startswith(SESSION_KEY_ID):
        return None
    jwt = token.removeprefix(SESSION_KEY_ID)
    return jwt if _claims(jwt) is not None else None


def _token_times(token: str) -> _TokenTimes:
    claims = _claims(token) or {}
    expires = float(claims.get("exp", 0))
    issued = float(claims.get("iat", time.time()))
    lifetime = max(expires - issued, 0.0)
    return _TokenTimes(issued + lifetime / 2, expires - min(_EXPIRY_MARGIN_S, lifetime * _TOKEN_MARGIN_SHARE))


def _usable(credentials: Credentials) -> bool:
    times = credentials.source_state
    return isinstance(times, _TokenTimes) and time.time() < times.use_until


def _due(credentials: Credentials) -> bool:
    times = credentials.source_state
    return not isinstance(times, _TokenTimes) or time.time() >= times.refresh_at


def _service_account_token_reader(path: str | None, literal: str | None) -> Callable[[], str]:
    """The SDK's service account token providers: a literal token as given, else the file, read anew for
    each exchange (the kubelet rotates it); either must be a JWT whose `exp` has not passed."""
    label = "the service_account_token argument" if literal is not None else "the service account token file"
    if literal is None:
        file = Path(path or SERVICE_ACCOUNT_TOKEN_PATH).expanduser()
        where = "service_account_token_path" if path else SERVICE_ACCOUNT_TOKEN_PATH
        if not os.access(file, os.R_OK):
            hint = "" if path else f": {_MOUNT_HINT}"
            raise MisconfiguredError(f"no readable service account token file ({where}){hint}")

    def read() -> str:
        if literal is not None:
            token = literal.strip()
        else:
            try:
                token = _file_text(file, f"the service account token file ({where})")
            except _Unusable as exc:
                raise MisconfiguredError(exc.reason) from None
        claims = _claims(token)
        if claims is None:
            raise MisconfiguredError(f"{label} is not a service account token (JWT)")
        expires = token_expiry(token)
        if expires is None:
            raise MisconfiguredError(f"{label} has no 'exp' claim")
        if expires <= time.time():
            raise MisconfiguredError(f"{label} has expired")
        return token

    return read


class OciOkeWorkloadIdentityAuth(_OciAuth):
    """A pod's identity on OKE (Kubernetes Engine) through workload identity, enhanced clusters only.

    The pod's service account token is exchanged at the node's proxymux
    (`https://$KUBERNETES_SERVICE_HOST:12250/resourcePrincipalSessionTokens`, TLS checked against the
    service account CA, `OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH` or the mounted `ca.crt`) for a session
    token bound to a key made here; the next token is fetched from half the token's lifetime on, in the
    background, so renewal costs no rejected request. Arguments as the oci SDK's
    `get_oke_workload_identity_resource_principal_signer`: `service_account_token_path` (default the
    mounted token) or `service_account_token` (the token itself); its other keywords (`log_requests`,
    `retry_strategy`, `generic_headers`) tune the SDK's own signer and are accepted and ignored here.
    `refresh_interval` as for the other classes. The region, when the SDK would read
    OCI_RESOURCE_PRINCIPAL_REGION, is Settings' business (GENAI_REGION falls back to it).

    Native rather than the SDK's signer, by measurement (docs/oke.md): the oci SDK is 499 MB installed and
    ~0.35 s to import, while this is one HTTPS call with httpx2 and cryptography, which the image already
    has. Unlike the SDK it does not retry an exchange for up to 10 minutes inside a request: the current
    token serves while a background exchange fails, and a failure without one is reported at once.
    An async client waits on the first exchange (and on one after a 401) in its event loop's thread.
    """

    def __init__(
        self,
        service_account_token_path: str | None = None,
        service_account_token: str | None = None,
        refresh_interval: float | None = REFRESH_INTERVAL_S,
        *,
        proxymux_port: int | None = None,
        **kwargs: Any,  # noqa: ARG002  (the SDK signer's options: accepted for drop-in use, see above)
    ) -> None:
        host = os.environ.get(_K8S_HOST_VARIABLE, "").strip()
        if not host:
            raise MisconfiguredError(f"{_K8S_HOST_VARIABLE} is not set: not running in a Kubernetes pod ({_OKE_PODS})")
        ca_path = os.environ.get(_SA_CA_VARIABLE) or SERVICE_ACCOUNT_CA_PATH
        if not os.access(ca_path, os.R_OK):
            where = _SA_CA_VARIABLE if os.environ.get(_SA_CA_VARIABLE) else f"{SERVICE_ACCOUNT_CA_PATH}: {_MOUNT_HINT}"
            raise MisconfiguredError(f"no readable service account CA certificate ({where})")
        reader = _service_account_token_reader(service_account_token_path, service_account_token)
        netloc = f"[{host}]" if ":" in host else host  # an IPv6 service address
        url = f"https://{netloc}:{proxymux_port or PROXYMUX_PORT}{PROXYMUX_PATH}"
        super().__init__(_ProxymuxSource(url, ca_path, reader), refresh_interval=refresh_interval)
