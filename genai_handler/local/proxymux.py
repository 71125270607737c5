"""A loopback stand-in for OKE's proxymux, which exchanges a pod's service account token for an OCI
resource principal session token (OKE workload identity), so the exchange is tested without a cluster.

What the client sends and how it reads the answer come from the oci SDK 2.189.0, the reference for both
sides: oci/auth/signers/oke_workload_identity_resource_principal_signer.py
(`_get_resource_principal_session_token`) and resource_principals_signer.py
(`get_oke_workload_identity_resource_principal_signer`). OCI does not document the proxymux itself:
where the SDK reveals nothing (refusal bodies, content type), the choice made here is named as such.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.x509.oid import NameOID

from .identity import LocalIdentity, _b64url_decode, _jwk_string, _sign_jwt, _write_atomically, new_key

PATH = "/resourcePrincipalSessionTokens"  # the SDK's proxymux_endpoint path
_SA_ISSUER = "https://kubernetes.default.svc.cluster.local"  # a cluster's default service account issuer
_ISSUER = "authService.oracle.com"


@dataclass
class ProxymuxRequest:
    """What the proxymux saw: the status it answered and the headers the client sent (tokens included:
    tests assert on them), `pod_key` the body's podKey."""

    method: str
    path: str
    headers: dict[str, str]
    pod_key: str | None
    status: int


class LocalProxymux:
    """HTTPS on 127.0.0.1 with its own CA, serving `POST /resourcePrincipalSessionTokens` as OKE does.

    `directory` gets `ca.crt` (what a pod finds beside its token, and what the SDK verifies TLS with) and
    `token`, a service account token for `namespace`/`service_account`, signed by the stand-in's cluster
    key. Session tokens are signed by `identity`'s issuer key when given, so a `LocalEndpoint` trusting
    `identity.issuer_public_key` accepts requests signed with them; else by a key of its own
    (`issuer_public_key`). `port` is what a test passes where OKE's fixed 12250 would be.
    """

    def __init__(  # noqa: PLR0913  (keyword options, as tests call it)
        self,
        directory: str | os.PathLike[str],
        *,
        identity: LocalIdentity | None = None,
        enhanced: bool = True,
        lifetime_s: int = 3600,
        namespace: str = "genai",
        service_account: str = "genai-handler",
    ) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.enhanced = enhanced
        self.lifetime_s = lifetime_s
        self.namespace = namespace
        self.service_account = service_account
        self.cluster_ocid = f"ocid1.cluster.oc1.us-chicago-1.aaaalocal{secrets.token_hex(8)}"
        self.tenancy_ocid = identity.tenancy_ocid if identity else "ocid1.tenancy.oc1..aaaalocal"
        self.compartment_ocid = identity.compartment_ocid if identity else "ocid1.compartment.oc1..aaaalocal"
        self._issuer_key: RSAPrivateKey = (
            identity._issuer_key  # noqa: SLF001  (one local identity service issues both kinds of token)
            if identity
            else new_key()
        )
        self.issuer_public_key: RSAPublicKey = self._issuer_key.public_key()
        self._cluster_key = new_key()  # the API server's service account signing key
        self.requests: list[ProxymuxRequest] = []
        self.issued: list[str] = []  # session tokens, without the "ST$" the answer puts before them
        self._lock = threading.Lock()
        self.ca_path = self.directory / "ca.crt"
        self.token_path = self.directory / "token"
        self._tls = self._make_tls()
        self.write_service_account_token()
        self.host = "127.0.0.1"
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{PATH}"

    def service_account_token(self, *, lifetime_s: int = 3600, key: RSAPrivateKey | None = None) -> str:
        """A projected service account token as the kubelet mounts it: a JWT with `exp` (the SDK refuses
        one without or past it), signed by the cluster's key (or `key`, to make a foreign one)."""
        now = int(time.time())
        claims = {
            "iss": _SA_ISSUER,
            "sub": f"system:serviceaccount:{self.namespace}:{self.service_account}",
            "aud": [_SA_ISSUER],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "kubernetes.io": {"namespace": self.namespace, "serviceaccount": {"name": self.service_account}},
        }
        return _sign_jwt(claims, key or self._cluster_key)

    def write_service_account_token(self, token: str | None = None) -> str:
        """Replace the token file, as the kubelet does when it rotates the projected token."""
        token = token or self.service_account_token()
        _write_atomically(self.token_path, token.encode())
        return token

    def env(self) -> dict[str, str]:
        """What an OKE pod has (OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH standing in for the mounted ca.crt)."""
        return {"KUBERNETES_SERVICE_HOST": self.host, "OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH": str(self.ca_path)}

    def issue_session_token(self, pod_key: RSAPublicKey) -> str:
        """An RPST for this workload binding `pod_key`. Claims as LocalIdentity's (those OCI Functions
        tokens are known to carry), `jwk` a JSON string as OCI's are; `res_type` and the cluster,
        namespace and service account claims are this stand-in's guesses, read by nothing here."""
        now = int(time.time())
        subject = f"ocid1.workload.oc1.us-chicago-1.aaaalocal{secrets.token_hex(8)}"
        claims = {
            "sub": subject,
            "iss": _ISSUER,
            "iat": now,
            "exp": now + self.lifetime_s,
            "res_tenant": self.tenancy_ocid,
            "res_compartment": self.compartment_ocid,
            "res_type": "workload",
            "res_id": subject,
            "ttype": "res",
            "cluster_id": self.cluster_ocid,
            "namespace": self.namespace,
            "service_account": self.service_account,
            "jwk": _jwk_string(pod_key),
        }
        token = _sign_jwt(claims, self._issuer_key)
        with self._lock:
            self.issued.append(token)
        return token

    def start(self) -> LocalProxymux:
        server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        server.daemon_threads = True
        server.socket = self._tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        server.handle_error = lambda *_: None  # type: ignore[method-assign]  # a client that drops TLS is no error here
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="local-proxymux", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalProxymux:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """The status and body for one request, recorded. Refusals carry an OCI-shaped JSON body; the
        SDK never reads it (it raises ServiceError with its own message), so clients must not need it."""
        pod_key = None
        try:
            pod_key = json.loads(body).get("podKey") if body else None
        except (ValueError, AttributeError):
            pod_key = None
        status, content = self._decide(method, path, headers, pod_key)
        with self._lock:
            self.requests.append(ProxymuxRequest(method, path, headers, pod_key, status))
        return status, content

    def _decide(self, method: str, path: str, headers: dict[str, str], pod_key: Any) -> tuple[int, bytes]:
        if path != PATH:
            return _refusal(404, "NotFound", "no such path")
        if method != "POST":
            return _refusal(405, "MethodNotAllowed", "use POST")
        if not self.enhanced:  # the SDK's 403 branch: "Please ensure the cluster type is enhanced"
            return _refusal(403, "NotAuthorized", "workload identity is available on enhanced clusters only")
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not self._valid_service_account_token(authorization[7:]):
            return _refusal(401, "NotAuthenticated", "the service account token was not accepted")
        public_key = _pod_key(pod_key)
        if public_key is None:
            return _refusal(400, "InvalidParameter", "podKey must be a base64 DER public key")
        token = self.issue_session_token(public_key)
        # The SDK base64-decodes the whole body, parses JSON and drops the token's first three characters.
        return 200, base64.b64encode(json.dumps({"token": f"ST${token}"}).encode())

    def _valid_service_account_token(self, token: str) -> bool:
        try:
            header_b64, claims_b64, signature_b64 = token.split(".")
            claims = json.loads(_b64url_decode(claims_b64))
            self._cluster_key.public_key().verify(
                _b64url_decode(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return False
        return isinstance(claims, dict) and isinstance(claims.get("exp"), int) and claims["exp"] > time.time()

    def _make_tls(self) -> ssl.SSLContext:
        """A CA of its own, written to ca.crt, and a server certificate for 127.0.0.1 it signs."""
        ca_key, server_key = new_key(), new_key()
        now = datetime.datetime.now(datetime.UTC)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local proxymux CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_atomically(self.ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
        chain = self.directory / "server.pem"  # cert and key for ssl's loader, which reads files only
        _write_atomically(
            chain,
            server_cert.public_bytes(serialization.Encoding.PEM)
            + server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        return context


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pod_key(value: Any) -> RSAPublicKey | None:
    """The SDK sends the public key's PEM body: base64 DER SubjectPublicKeyInfo, headers and newlines removed."""
    if not isinstance(value, str):
        return None
    try:
        key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except ValueError:
        return None
    return key if isinstance(key, RSAPublicKey) else None


def _refusal(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"code": code, "message": message}).encode()


def _handler(proxymux: LocalProxymux) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, content = proxymux.answer(self.command, self.path, headers, body)
            self.send_response(status)
            # The SDK reads only the body; its content type is not known: text, since it is base64.
            self.send_header("content-type", "text/plain" if status == 200 else "application/json")
            self.send_header("content-length", str(len(content)))
            self.send_header("opc-request-id", headers.get("opc-request-id") or secrets.token_hex(16))
            self.end_headers()
            self.wfile.write(content)

        do_POST = do_GET = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
