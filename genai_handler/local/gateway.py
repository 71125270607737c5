"""`make serve`: a local stand-in for OCI API Gateway in front of the function.

So curl or an OpenAI SDK on a laptop sees what it would see in OCI (docs/local-development.md). It owns the
HTTP side (routes, Fn-Http-* translation, the caller header, token, Host, Origin and CORS checks) and
upstream(): where the calls of `make run` and `make serve` go, real OCI or the local endpoint.
"""

from __future__ import annotations

import argparse
import hmac
import http.client
import io
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import IO, Any

from dotenv import dotenv_values

from ..logs import CALLER_HEADER
from ..policies import ORIGIN  # the deploy kit's rule for CORS_ALLOWED_ORIGIN, applied here to the local one
from ..settings import MAX_INVOKE_PAYLOAD_BYTES
from .agent import DEFAULT_SUBJECT, DEPLOYMENT_SPEC, HTTP_STATUS_HEADER, PATH_PREFIX, REPO_ROOT, FunctionProcess, routes
from .endpoint import LocalEndpoint
from .identity import LocalIdentity
from .spawn import Template
from .stack import StackError, read_func_yaml

DEFAULT_PORT = 8080
TOKEN_SETTING = "LOCAL_GATEWAY_TOKEN"  # noqa: S105  (the setting's name, not a secret)
SUBJECT_SETTING = "LOCAL_GATEWAY_SUBJECT"
ORIGIN_SETTING = "LOCAL_GATEWAY_ALLOWED_ORIGIN"
_MAKE_A_TOKEN = f"{TOKEN_SETTING}=$(python3 -c 'import secrets; print(secrets.token_hex(16))') make serve"
DOTENV = REPO_ROOT / ".env"
LOCAL_PROJECT_OCID = "ocid1.generativeaiproject.oc1.us-chicago-1.aaaalocalproject"
_DEFAULT_TIMEOUT_S = 30.0  # OCI Functions' default when func.yaml sets none
_MAX_LINE_BYTES = 8192  # a chunk-size or trailer line
_MAX_TRAILER_LINES = 100
_REAL_AUTH_MODES = ("session", "user_principal", "api_key")
# A route's path parameter as OCI API Gateway writes it: a name of letters, digits and _ in braces, one whole segment.
_PATH_PARAMETER = re.compile(r"\{[A-Za-z0-9_]+\}")
# Settings that say where the function's calls go; the local endpoint sets its own.
_UPSTREAM_SETTINGS = frozenset(
    {
        "GENAI_PROJECT_OCID",
        "GENAI_REGION",
        "GENAI_BASE_URL",
        "GENAI_AUTH",
        "GENAI_API_KEY",
        "GENAI_COMPARTMENT_OCID",
        "GENAI_OCI_CONFIG_FILE",
        "GENAI_OCI_PROFILE",
    }
)
# A laptop behind a proxy or a TLS-inspecting firewall needs these to reach OCI.
_NETWORK_VARS = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
        "authorization",  # the gateway consumes the caller's token
    }
)


def function_timeout(func_yaml: Path) -> float:
    """`timeout:` from func.yaml (seconds); OCI Functions' default (30) without the file or a whole-number timeout."""
    try:
        timeout = read_func_yaml(func_yaml).timeout_s
    except (OSError, StackError):
        return _DEFAULT_TIMEOUT_S
    return _DEFAULT_TIMEOUT_S if timeout is None else float(timeout)


def parse_dotenv(text: str) -> dict[str, str]:
    """A .env text read by python-dotenv, so a file that works with other tools works here; `${VAR}` is
    left as written (no interpolation), and a key without `=` is left out."""
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {key: value for key, value in values.items() if value is not None}


def read_dotenv(path: Path = DOTENV) -> dict[str, str]:
    """The .env file's settings, none if there is no such file."""
    try:
        return parse_dotenv(path.read_text(encoding="utf-8"))
    except OSError:
        return {}


def function_settings(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> dict[str, str]:
    """The GENAI_* settings `make run` and `make serve` hand the function: the environment wins over .env."""
    return {key: value for key, value in {**dotenv, **environ}.items() if key.startswith("GENAI_")}


def real_oci_settings(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> dict[str, str] | None:
    """The function's environment for real OCI Generative AI, or None to use the local endpoint."""
    settings = function_settings(environ, dotenv)
    auth = settings.get("GENAI_AUTH", "").strip()
    if auth not in _REAL_AUTH_MODES and not (settings.get("GENAI_PROJECT_OCID") and settings.get("GENAI_REGION")):
        return None
    network = {k: v for k, v in {**dotenv, **environ}.items() if k in _NETWORK_VARS}
    env = {**network, **settings}
    env.setdefault("GENAI_AUTH", "session")  # a laptop has no resource principal
    return env


@contextmanager
def local_upstream(
    settings: Mapping[str, str] | None = None,
) -> Iterator[tuple[LocalIdentity, LocalEndpoint, dict[str, str]]]:
    """A generated identity, the local endpoint trusting it, and the function environment for both."""
    with tempfile.TemporaryDirectory(prefix="genai-local-") as workdir:
        identity = LocalIdentity(workdir)
        with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=LOCAL_PROJECT_OCID) as endpoint:
            env = {
                **identity.env(),
                "GENAI_PROJECT_OCID": LOCAL_PROJECT_OCID,
                "GENAI_BASE_URL": endpoint.base_url,
                **(settings or {}),
            }
            yield identity, endpoint, env


@contextmanager
def upstream(
    environ: Mapping[str, str] | None = None, dotenv_path: Path = DOTENV
) -> Iterator[tuple[dict[str, str], str]]:
    """The function's environment and where its calls go: real OCI, or the local endpoint.
    `make run` and `make serve` both start here, so the same settings mean the same thing."""
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(dotenv_path)
    real = real_oci_settings(environ, dotenv)
    if real is not None:
        where = real.get("GENAI_BASE_URL") or f"OCI Generative AI in {real.get('GENAI_REGION') or '?'}"
        yield real, f"{where} (GENAI_AUTH={real['GENAI_AUTH']})"
        return
    behaviour = {k: v for k, v in function_settings(environ, dotenv).items() if k not in _UPSTREAM_SETTINGS}
    with local_upstream(behaviour) as (_, endpoint, env):
        yield env, f"the local endpoint {endpoint.base_url} (no cloud account)"


def parse_origin(text: str) -> str:
    """The one browser origin LOCAL_GATEWAY_ALLOWED_ORIGIN may allow, by the deploy kit's rule for the
    deployed CORS_ALLOWED_ORIGIN; lower case, as a browser serialises it. ValueError otherwise."""
    if text.strip() == "*":
        raise ValueError("'*' would let every web page call it; give one origin, scheme://host[:port]")
    if not ORIGIN.fullmatch(text):
        raise ValueError(f"one origin is scheme://host[:port], e.g. http://localhost:3000, not {text!r}")
    return text.lower()


@dataclass(frozen=True)
class CorsPolicy:
    """The deployment's `cors` request policy for one origin, as API Gateway sends it; each field's
    header is named by oci.apigateway.models.CorsPolicy's documentation."""

    origin: str
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    exposed: tuple[str, ...]
    max_age_s: int
    credentials: bool

    @classmethod
    def deployed(cls, origin: str, spec_path: Path = DEPLOYMENT_SPEC) -> CorsPolicy:
        """Read from the deployment specification, so local and cloud CORS never drift."""
        cors = json.loads(spec_path.read_text(encoding="utf-8"))["requestPolicies"]["cors"]
        return cls(
            origin,
            tuple(cors["allowedMethods"]),
            tuple(cors["allowedHeaders"]),
            tuple(cors["exposedHeaders"]),
            int(cors["maxAgeInSeconds"]),
            bool(cors["isAllowCredentialsEnabled"]),
        )

    def response_headers(self) -> dict[str, str]:
        headers = {"Access-Control-Allow-Origin": self.origin, "Access-Control-Expose-Headers": ", ".join(self.exposed)}
        return {**headers, "Access-Control-Allow-Credentials": "true"} if self.credentials else headers

    def preflight_headers(self) -> dict[str, str]:
        return {
            **self.response_headers(),
            "Access-Control-Allow-Methods": ", ".join(self.methods),
            "Access-Control-Allow-Headers": ", ".join(self.headers),
            "Access-Control-Max-Age": str(self.max_age_s),
        }


def route_pattern(template: str) -> re.Pattern[str]:
    """A route's path as API Gateway matches it: each {name} stands for one whole, non-empty segment.
    ValueError for what this stand-in cannot route the same way ({name*} wildcards, a parameter within a segment)."""
    segments = []
    for segment in template.split("/"):
        if _PATH_PARAMETER.fullmatch(segment):
            segments.append("[^/]+")
        elif "{" in segment or "}" in segment:
            raise ValueError(f"the local gateway routes only whole-segment {{name}} parameters, not {template!r}")
        else:
            segments.append(re.escape(segment))
    return re.compile("/".join(segments))


def _callers(token: str | None, subject: str, tokens: Mapping[str, str] | None) -> dict[str, str]:
    """Each accepted token and the subject it stands for; none: every caller is `subject`. An empty token
    would admit anyone, a blank subject would name no one: both are refused."""
    callers = {token: subject} if token else {}
    for key, name in (tokens or {}).items():
        if not key or not name.strip():
            raise ValueError("tokens: each token and its subject must be non-empty")
        callers[key] = name
    return callers


def own_hosts(host: str, port: int) -> tuple[str, ...]:
    """The Host values that name a gateway listening on host:port, as a browser or curl sends them:
    the address, and `localhost` when the address is loopback; without the port when it is 80."""
    names = [f"[{host}]" if ":" in host else host]
    try:
        if ip_address(host).is_loopback:
            names.append("localhost")
    except ValueError:
        pass
    return tuple(f"{name}:{port}" for name in names) + (tuple(names) if port == 80 else ())


class LocalGateway:
    """HTTP on 127.0.0.1 in front of func.py under the fdk, restarted if it dies.

    Invocations are serialised, like one warm container: the fdk serves one call at a time. `template`:
    fork each function process from it (spawn.py), as the tests do; `make serve` starts a new interpreter.
    """

    def __init__(  # noqa: PLR0913  (keyword-only settings, each with a default)
        self,
        function_env: Mapping[str, str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        token: str | None = None,
        subject: str = DEFAULT_SUBJECT,
        tokens: Mapping[str, str] | None = None,
        allowed_origin: str | None = None,
        timeout_s: float | None = None,
        function_dir: Path = REPO_ROOT,
        python: str = sys.executable,
        function_log: IO[bytes] | int | None = None,
        console: IO[str] | None = None,
        template: Template | None = None,
    ) -> None:
        self._function_env = dict(function_env)
        self._host = host
        self._port = port
        self._callers = _callers(token, subject, tokens)  # as the deployed gateway reads each JWT's subject
        self.subject = subject
        self._cors = CorsPolicy.deployed(parse_origin(allowed_origin)) if allowed_origin else None
        self._function_dir = Path(function_dir)
        self.timeout_s = timeout_s if timeout_s is not None else function_timeout(self._function_dir / "func.yaml")
        self._python = python
        self._function_log = function_log
        self._template = template
        self._console = console or sys.stderr
        self.routes = routes()
        self._patterns = [(route_pattern(template), template) for template in self.routes]
        self.restarts = 0
        self.function: FunctionProcess | None = None
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def hosts(self) -> tuple[str, ...]:
        """The only Host values answered: the gateway's own address (its port is known once started)."""
        return own_hosts(self._host, self._port)

    @property
    def allowed_origin(self) -> str | None:
        return self._cors.origin if self._cors else None

    def admit(self, headers: list[tuple[str, str]]) -> _Answer | None:
        """The refusal for a request a web page could have sent, decided before its body is read;
        None if it may go on. Messages never echo the caller's Host or Origin."""
        hosts = [value.strip().lower() for name, value in headers if name.lower() == "host"]
        if len(hosts) != 1:  # RFC 9112 section 3.2: a server MUST answer 400
            return _gateway_error(400, "Bad Request: a request needs exactly one Host header")
        if hosts[0] not in self.hosts:
            # 421 Misdirected Request (RFC 9110 section 15.5.20): the request names another authority,
            # as DNS rebinding does; 403 stays the Origin rule's, so the two refusals are told apart.
            return _gateway_error(421, f"Misdirected Request: Host must be {' or '.join(self.hosts)}")
        origins = [value.strip().lower() for name, value in headers if name.lower() == "origin"]
        if origins and not (len(origins) == 1 and self._origin_allowed(origins[0])):
            return _gateway_error(403, f"Forbidden: other web pages may not call; {ORIGIN_SETTING} allows one origin")
        return None

    def _origin_allowed(self, origin: str) -> bool:
        """Its own origin (same-origin), or the one LOCAL_GATEWAY_ALLOWED_ORIGIN allows."""
        return origin == self.allowed_origin or origin in {f"http://{host}" for host in self.hosts}

    def _cross_origin(self, headers: list[tuple[str, str]]) -> CorsPolicy | None:
        """The CORS policy when the (admitted) request comes from the allowed browser origin."""
        origin = _header(headers, "origin")
        if self._cors is None or origin is None or origin.strip().lower() != self._cors.origin:
            return None
        return self._cors

    def start(self) -> LocalGateway:
        self.function = self._new_function()
        try:
            self._server = _Server((self._host, self._port), _Handler, self)
        except OSError:
            self.function.stop()
            raise
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.function is not None:
            self.function.stop()
            self.function = None

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _new_function(self) -> FunctionProcess:
        function = FunctionProcess(
            self._function_env,
            function_dir=self._function_dir,
            python=self._python,
            log=self._function_log,
            template=self._template,
        )
        return function.start()

    def _running(self) -> FunctionProcess:
        """The function process; requests are served only between start() and stop()."""
        if self.function is None:
            raise RuntimeError("the local gateway is not started")
        return self.function

    def _restart(self, why: str) -> None:
        function = self._running()
        pid = function.pid
        function.stop()
        status = function.process.returncode if function.process else "?"
        self._say(f"function process {pid} {why} (exit status {status}); restarting")
        function.restart()
        self._restarted()

    def _restarted(self) -> None:
        self.restarts += 1
        self._say(f"function restarted (pid {self._running().pid})")

    def _say(self, line: str) -> None:
        print(line, file=self._console, flush=True)

    def methods(self, path: str) -> tuple[str, ...] | None:
        """The methods of the route `path` matches, None if none does; the most literal route wins."""
        matched = [template for pattern, template in self._patterns if pattern.fullmatch(path)]
        return self.routes[min(matched, key=lambda template: template.count("{"))] if matched else None

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str) -> _Answer:
        """One admitted caller request, answered as API Gateway would; the target, query string included,
        goes to the function as it came (Fn-Http-Request-Url)."""
        path = target.partition("?")[0].rstrip("/") or "/"
        methods = self.methods(path)
        if methods is None:
            return _gateway_error(404, "Not Found")
        cors = self._cross_origin(headers)
        if cors is not None and method == "OPTIONS" and _header(headers, "access-control-request-method") is not None:
            return _Answer(200, cors.preflight_headers(), b"")  # a preflight never carries the token
        if method in methods or "ANY" in methods:
            answer = self._invoke(method, target, headers, body, client)
        else:
            answer = _gateway_error(405, "Method Not Allowed", {"Allow": ", ".join(methods)})
        if cors is not None:
            answer.headers.update(cors.response_headers())
        return answer

    def _caller(self, headers: list[tuple[str, str]]) -> str | None:
        """The subject of the caller's token (every caller's, when no token is asked for); None: refused."""
        if not self._callers:
            return self.subject
        credential = _bearer_credential(headers)
        if credential is None:
            return None
        found = [name for token, name in self._callers.items() if hmac.compare_digest(credential, token.encode())]
        return found[0] if found else None

    def _invoke(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str) -> _Answer:
        caller = self._caller(headers)
        if caller is None:
            return _gateway_error(401, "Unauthorized", {"WWW-Authenticate": "Bearer"})
        forwarded = _forwarded_headers(headers, client)
        forwarded[_canonical(CALLER_HEADER)] = caller  # as `ifExists: OVERWRITE`: a caller cannot forge it
        with self._lock:
            function = self._running()
            if not function.alive():
                self._restart("had died")
                return _gateway_error(502, "Bad Gateway: the function process had died; it was restarted")
            pid = function.pid
            try:
                answer = function.invoke(body, method=method, path=target, headers=forwarded, deadline_s=self.timeout_s)
            except TimeoutError:  # the agent has cut the call and replaced the container, as Fn does
                self._say(f"function process {pid} ran past its {self.timeout_s:g} s timeout; killed and replaced")
                self._restarted()
                return _gateway_error(504, "Gateway Timeout: the function did not answer within its timeout")
            except (OSError, http.client.HTTPException):
                self._restart("died during the call")
                return _gateway_error(502, "Bad Gateway: the function process died; it was restarted")
        if HTTP_STATUS_HEADER not in answer.headers and answer.status in (502, 504):  # the container failed
            return _gateway_error(answer.status, "Bad Gateway" if answer.status == 502 else "Gateway Timeout")
        out = {_canonical(k): v for k, v in answer.http_headers.items() if k not in _NOT_FORWARDED}
        if "content-type" in answer.headers:
            out["Content-Type"] = answer.headers["content-type"]
        return _Answer(answer.http_status, out, answer.body)

    def log(self, method: str, target: str, status: int, started: float, request_id: str | None) -> None:
        latency_ms = (time.monotonic() - started) * 1000
        self._say(
            f"{method} {target.partition('?')[0]} {status} {latency_ms:.0f} ms opc-request-id={request_id or '-'}"
        )


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _gateway_error(status: int, message: str, headers: dict[str, str] | None = None) -> _Answer:
    """An error the gateway makes itself, in OCI API Gateway's shape: {"code", "message"}."""
    body = json.dumps({"code": status, "message": message}).encode()
    return _Answer(status, {"Content-Type": "application/json", **(headers or {})}, body)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _bearer_credential(headers: list[tuple[str, str]]) -> bytes | None:
    """The credential of the one `Authorization: Bearer` header, None without exactly one."""
    values = [v for k, v in headers if k.lower() == "authorization"]
    if len(values) != 1:
        return None
    scheme, _, credential = values[0].strip().partition(" ")
    return credential.strip().encode() if scheme.lower() == "bearer" else None


def _canonical(name: str) -> str:
    """Go's canonical header form (the Fn agent is Go): content-type -> Content-Type."""
    return "-".join(part.capitalize() for part in name.split("-"))


def _forwarded_headers(headers: list[tuple[str, str]], client: str) -> dict[str, str]:
    forwarded: dict[str, str] = {}
    for name, value in headers:
        if name.lower() in _NOT_FORWARDED:
            continue
        key = _canonical(name)
        forwarded[key] = f"{forwarded[key]}, {value}" if key in forwarded else value
    forwarded["X-Forwarded-For"] = client
    return forwarded


class _Refusal(Exception):
    """A request API Gateway would refuse before the function sees it; the connection is then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.answer = _gateway_error(status, message)


def _read_body(headers: Message, rfile: io.BufferedIOBase) -> bytes:
    """The request body, framed by Content-Length or chunked, capped at the invoke payload limit.

    Framing that cannot be trusted is refused as RFC 9112 section 6.3 asks: Transfer-Encoding with
    Content-Length, a Content-Length that is not one number, a transfer coding other than chunked."""
    encodings = [
        coding.strip().lower() for value in headers.get_all("Transfer-Encoding", []) for coding in value.split(",")
    ]
    lengths = {length.strip() for value in headers.get_all("Content-Length", []) for length in value.split(",")}
    if encodings:
        if lengths:
            raise _Refusal(400, "Bad Request: Content-Length and Transfer-Encoding together")
        if encodings != ["chunked"]:
            raise _Refusal(400, "Bad Request: the only transfer coding accepted is chunked")
        return _read_chunked(rfile)
    if not lengths:
        return b""
    if len(lengths) > 1:
        raise _Refusal(400, "Bad Request: conflicting Content-Length headers")
    (length,) = lengths
    if not (length.isascii() and length.isdigit()):
        raise _Refusal(400, "Bad Request: Content-Length is not a number of bytes")
    if len(length) > 18 or int(length) > MAX_INVOKE_PAYLOAD_BYTES:
        raise _Refusal(413, "Payload Too Large")
    return _read_exactly(rfile, int(length))


def _read_chunked(rfile: io.BufferedIOBase) -> bytes:
    """RFC 9112 section 7.1: hex size lines (extensions ignored), data, CRLF; a zero size; trailers."""
    body = bytearray()
    while True:
        size = _read_line(rfile).partition(b";")[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise _Refusal(400, "Bad Request: malformed chunked body")
        if len(size) > 16 or len(body) + int(size, 16) > MAX_INVOKE_PAYLOAD_BYTES:
            raise _Refusal(413, "Payload Too Large")
        if int(size, 16) == 0:
            break
        body += _read_exactly(rfile, int(size, 16))
        if _read_line(rfile):
            raise _Refusal(400, "Bad Request: malformed chunked body")
    for _ in range(_MAX_TRAILER_LINES):
        if not _read_line(rfile):
            return bytes(body)
    raise _Refusal(400, "Bad Request: malformed chunked body")


def _read_line(rfile: io.BufferedIOBase) -> bytes:
    line = rfile.readline(_MAX_LINE_BYTES + 1)
    if len(line) > _MAX_LINE_BYTES or not line.endswith(b"\n"):
        raise _Refusal(400, "Bad Request: malformed chunked body")
    return line.rstrip(b"\r\n")


def _read_exactly(rfile: io.BufferedIOBase, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise _Refusal(400, "Bad Request: the body ended early")
    return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN  # Python's default of 5 refuses a burst of callers

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], gateway: LocalGateway) -> None:
        self.gateway = gateway
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # callers hanging up is routine
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the gateway prints its own line per request

    def do_POST(self) -> None:
        started = time.monotonic()
        gateway = self.server.gateway
        headers = list(self.headers.items())
        answer = gateway.admit(headers)
        if answer is not None:
            self.close_connection = True  # its body is left unread: it would be taken for the next request
        else:
            try:
                body = _read_body(self.headers, self.rfile)
            except _Refusal as refusal:
                answer = refusal.answer
                self.close_connection = True  # what is left of the body would be taken for the next request
            else:
                answer = gateway.handle(self.command, self.path, headers, body, self.client_address[0])
        # the console line first: a caller that has its answer finds the line already there
        gateway.log(self.command, self.path, answer.status, started, answer.headers.get("Opc-Request-Id"))
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST


def parse_port(text: str) -> int:
    """A TCP port number (0: any free port); ValueError with a message for anything else."""
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise ValueError(f"a port is a number from 0 to 65535, not {text!r}")
    return int(text)


def _port_argument(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class ServeSettings:
    """`make serve`'s own settings (LOCAL_GATEWAY_*), read like the function's: the environment over .env."""

    token: str | None
    subject: str
    origin: str | None

    @classmethod
    def read(cls, environ: Mapping[str, str], dotenv: Mapping[str, str]) -> ServeSettings:
        """ValueError with one line saying what to fix when `make serve` must not start with them."""

        def setting(name: str) -> str | None:
            value = environ.get(name) or dotenv.get(name) or ""
            return value if value.strip() else None

        token, origin = setting(TOKEN_SETTING), setting(ORIGIN_SETTING)
        if origin is not None:
            try:
                origin = parse_origin(origin)
            except ValueError as exc:
                raise ValueError(f"{ORIGIN_SETTING}: {exc}") from None
        if token is None and real_oci_settings(environ, dotenv) is not None:
            raise ValueError(
                f"{TOKEN_SETTING} is required when make serve calls real OCI Generative AI (else any "
                f"program on this machine could call it as your OCI identity): {_MAKE_A_TOKEN}"
            )
        return cls(token, setting(SUBJECT_SETTING) or DEFAULT_SUBJECT, origin)


def _banner(gateway: LocalGateway, where: str, token: str | None) -> None:
    auth = f' -H "Authorization: Bearer ${TOKEN_SETTING}"' if token else ""
    allowed = gateway.allowed_origin
    origins = f"its own and {allowed} ({ORIGIN_SETTING})" if allowed else f"its own ({ORIGIN_SETTING} adds one)"
    for line in (
        f"Local API Gateway on {gateway.url}, routing:",
        *(f"  {', '.join(methods)} {path}" for path, methods in gateway.routes.items()),
        f"  → func.py under the fdk (timeout {gateway.timeout_s:.0f} s) → {where}",
        f"  {CALLER_HEADER}: {gateway.subject} ({SUBJECT_SETTING}), as the JWT subject when deployed",
        f"  Host: {' or '.join(gateway.hosts)} only; browser Origin: {origins}",
        f'  try: curl -sS {gateway.url}{PATH_PREFIX}/chat{auth} -d \'{{"prompt": "Hello"}}\'',
        "Ctrl-C to stop.",
    ):
        print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, dotenv_path: Path = DOTENV) -> int:
    """`make serve`; environ and dotenv_path stand in for os.environ and the repo's .env."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=_port_argument, default=None, help=f"port on 127.0.0.1 (default: $PORT or {DEFAULT_PORT})"
    )
    args = parser.parse_args(argv)
    port = args.port
    if port is None:
        try:
            port = parse_port(environ.get("PORT") or str(DEFAULT_PORT))
        except ValueError as exc:
            print(f"PORT: {exc}", file=sys.stderr)
            return 2
    try:
        serve = ServeSettings.read(environ, read_dotenv(dotenv_path))
    except ValueError as exc:  # before anything is started
        print(exc, file=sys.stderr)
        return 2
    for stop in (signal.SIGTERM, signal.SIGHUP):  # unwind, so the function process is stopped too
        signal.signal(stop, lambda *_: sys.exit(0))
    with upstream(environ, dotenv_path) as (env, where):
        try:
            gateway = LocalGateway(
                env, port=port, token=serve.token, subject=serve.subject, allowed_origin=serve.origin
            ).start()
        except OSError as exc:
            print(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); set PORT or pass --port", file=sys.stderr)
            return 1
        try:
            _banner(gateway, where, serve.token)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
