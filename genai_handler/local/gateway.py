"""`make serve`: a local stand-in for OCI API Gateway in front of the function.

It does what the deployed gateway does: it routes `POST /genai/chat` and `POST /genai/v1/responses`
(the routes of policies/apigateway-deployment.json under the /genai prefix), turns each request
into an Fn invocation with the Fn-Http-* headers, sends it to func.py running under the real fdk
on its unix socket, and turns the answer back into HTTP. So curl or an OpenAI SDK on a laptop
sees what they would see in OCI.

Where the function's calls go: the local signature-checking endpoint by default (no cloud
account); real OCI Generative AI when GENAI_AUTH is session, user_principal or api_key, or when
GENAI_PROJECT_OCID and GENAI_REGION are set, in the environment or in a `.env` file at the repo root.
"""

from __future__ import annotations

import argparse
import hmac
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from .agent import REPO_ROOT, FunctionProcess
from .run import local_upstream

DEFAULT_PORT = 8080
PATH_PREFIX = "/genai"  # the deployment's --path-prefix (docs/DEPLOY.md)
DEPLOYMENT_SPEC = REPO_ROOT / "policies" / "apigateway-deployment.json"
DOTENV = REPO_ROOT / ".env"
_DEFAULT_TIMEOUT_S = 30.0  # OCI Functions' default when func.yaml sets none
_MAX_BODY_BYTES = 6 * 1024 * 1024  # OCI Functions' invoke payload limit
_REAL_AUTH_MODES = ("session", "user_principal", "api_key")
# Settings that say where the function's calls go; the local endpoint sets its own.
_UPSTREAM_SETTINGS = frozenset({
    "GENAI_PROJECT_OCID", "GENAI_REGION", "GENAI_BASE_URL", "GENAI_AUTH", "GENAI_API_KEY",
    "GENAI_COMPARTMENT_OCID", "GENAI_OCI_CONFIG_FILE", "GENAI_OCI_PROFILE",
})
# A laptop behind a proxy or a TLS-inspecting firewall needs these to reach OCI.
_NETWORK_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
                 "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
_NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
    "host", "content-length", "authorization",  # the gateway consumes the caller's token
})


def routes(spec_path: Path = DEPLOYMENT_SPEC, prefix: str = PATH_PREFIX) -> tuple[str, ...]:
    """The routed paths, read from the deployment specification so local and cloud never drift."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    return tuple(prefix + route["path"] for route in spec["routes"])


def function_timeout(func_yaml: Path) -> float:
    """`timeout:` from func.yaml (seconds), read line by line to need no YAML parser."""
    try:
        lines = func_yaml.read_text(encoding="utf-8").splitlines()
    except OSError:
        return _DEFAULT_TIMEOUT_S
    for line in lines:
        key, _, value = line.partition("#")[0].partition(":")
        if key == "timeout" and value.strip().isdigit():
            return float(value.strip())
    return _DEFAULT_TIMEOUT_S


def read_dotenv(path: Path = DOTENV) -> dict[str, str]:
    """KEY=VALUE lines; blank lines, comments and `export ` prefixes allowed, quotes stripped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def real_oci_settings(environ: Mapping[str, str], dotenv: Mapping[str, str]) -> dict[str, str] | None:
    """The function's environment for real OCI Generative AI, or None to use the local endpoint."""
    merged = {**dotenv, **environ}  # the environment wins over .env
    auth = merged.get("GENAI_AUTH", "").strip()
    if auth not in _REAL_AUTH_MODES and not (merged.get("GENAI_PROJECT_OCID") and merged.get("GENAI_REGION")):
        return None
    env = {k: v for k, v in merged.items() if k.startswith("GENAI_") or k in _NETWORK_VARS}
    env.setdefault("GENAI_AUTH", "session")  # a laptop has no resource principal
    return env


@contextmanager
def upstream(environ: Mapping[str, str] | None = None, dotenv_path: Path = DOTENV) -> Iterator[tuple[dict[str, str], str]]:
    """The function's environment and where its calls go: real OCI, or the local endpoint."""
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv(dotenv_path)
    real = real_oci_settings(environ, dotenv)
    if real is not None:
        where = real.get("GENAI_BASE_URL") or f"OCI Generative AI in {real.get('GENAI_REGION') or '?'}"
        yield real, f"{where} (GENAI_AUTH={real['GENAI_AUTH']})"
        return
    behaviour = {k: v for k, v in {**dotenv, **environ}.items() if k.startswith("GENAI_") and k not in _UPSTREAM_SETTINGS}
    with local_upstream(behaviour) as (_, endpoint, env):
        yield env, f"the local endpoint {endpoint.base_url} (no cloud account)"


class LocalGateway:
    """HTTP on 127.0.0.1 in front of func.py under the fdk, restarted if it dies.

    Invocations are serialised, like one warm container: the fdk serves one call at a time.
    """

    def __init__(
        self,
        function_env: Mapping[str, str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        token: str | None = None,
        timeout_s: float | None = None,
        function_dir: Path = REPO_ROOT,
        python: str = sys.executable,
        function_log: IO[bytes] | None = None,
        console: IO[str] | None = None,
    ) -> None:
        self._function_env = dict(function_env)
        self._host = host
        self._port = port
        self._token = token or None
        self._function_dir = Path(function_dir)
        self.timeout_s = timeout_s if timeout_s is not None else function_timeout(self._function_dir / "func.yaml")
        self._python = python
        self._function_log = function_log
        self._console = console or sys.stderr
        self.routes = routes()
        self.restarts = 0
        self.function: FunctionProcess | None = None
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

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
        function = FunctionProcess(self._function_env, function_dir=self._function_dir, python=self._python, log=self._function_log)
        return function.start()

    def _restart(self, why: str) -> None:
        assert self.function is not None
        old = self.function
        old.stop()
        self._say(f"function process {old.pid} {why} (exit status {old.process.returncode if old.process else '?'}); restarting")
        self.function = self._new_function()
        self.restarts += 1
        self._say(f"function restarted (pid {self.function.pid})")

    def _say(self, line: str) -> None:
        print(line, file=self._console, flush=True)

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str) -> _Answer:
        """One caller request, answered as API Gateway would."""
        path = target.partition("?")[0].rstrip("/") or "/"
        if path not in self.routes:
            return _gateway_error(404, "Not Found")
        if self._token is not None and not _bearer_matches(headers, self._token):
            return _gateway_error(401, "Unauthorized", {"WWW-Authenticate": "Bearer"})
        forwarded = _forwarded_headers(headers, client)
        with self._lock:
            assert self.function is not None
            if not self.function.alive():
                self._restart("had died")
                return _gateway_error(502, "Bad Gateway: the function process had died; it was restarted")
            try:
                answer = self.function.invoke(body, method=method, path=target, headers=forwarded, deadline_s=self.timeout_s)
            except TimeoutError:
                self._restart(f"ran past its {self.timeout_s:.0f} s timeout")
                return _gateway_error(504, "Gateway Timeout: the function did not answer within its timeout")
            except (OSError, http.client.HTTPException):
                self._restart("died during the call")
                return _gateway_error(502, "Bad Gateway: the function process died; it was restarted")
        if "fn-http-status" not in answer.headers and answer.status in (502, 504):  # the container failed
            return _gateway_error(answer.status, "Bad Gateway" if answer.status == 502 else "Gateway Timeout")
        out = {_canonical(k): v for k, v in answer.http_headers.items() if k not in _NOT_FORWARDED}
        if "content-type" in answer.headers:
            out["Content-Type"] = answer.headers["content-type"]
        return _Answer(answer.http_status, out, answer.body)

    def log(self, method: str, target: str, status: int, started: float, request_id: str | None) -> None:
        latency_ms = (time.monotonic() - started) * 1000
        self._say(f"{method} {target.partition('?')[0]} {status} {latency_ms:.0f} ms opc-request-id={request_id or '-'}")


@dataclass
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _gateway_error(status: int, message: str, headers: dict[str, str] | None = None) -> _Answer:
    """An error the gateway makes itself, in OCI API Gateway's shape: {"code", "message"}."""
    body = json.dumps({"code": status, "message": message}).encode()
    return _Answer(status, {"Content-Type": "application/json", **(headers or {})}, body)


def _bearer_matches(headers: list[tuple[str, str]], token: str) -> bool:
    values = [v for k, v in headers if k.lower() == "authorization"]
    if len(values) != 1:
        return False
    scheme, _, credential = values[0].strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token.encode())


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True

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
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            answer = _gateway_error(411, "Length Required: send Content-Length")
            self.close_connection = True
        elif int(self.headers.get("Content-Length") or 0) > _MAX_BODY_BYTES:
            answer = _gateway_error(413, "Payload Too Large")
            self.close_connection = True  # the unread body would be taken for the next request
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = gateway.handle(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        gateway.log(self.command, self.path, answer.status, started, answer.headers.get("Opc-Request-Id"))

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help=f"port on 127.0.0.1 (default: $PORT or {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else int(os.environ.get("PORT") or DEFAULT_PORT)
    token = os.environ.get("LOCAL_GATEWAY_TOKEN") or read_dotenv().get("LOCAL_GATEWAY_TOKEN")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind, so the function process is stopped too
    with upstream() as (env, where):
        try:
            gateway = LocalGateway(env, port=port, token=token).start()
        except OSError as exc:
            print(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); set PORT or pass --port", file=sys.stderr)
            return 1
        try:
            auth = ' -H "Authorization: Bearer $LOCAL_GATEWAY_TOKEN"' if token else ""
            print(f"Local API Gateway on {gateway.url}: {', '.join('POST ' + r for r in gateway.routes)}", file=sys.stderr)
            print(f"  → func.py under the fdk (timeout {gateway.timeout_s:.0f} s) → {where}", file=sys.stderr)
            print(f"  try: curl -sS {gateway.url}{PATH_PREFIX}/chat{auth} -d '{{\"prompt\": \"Hello\"}}'", file=sys.stderr)
            print("Ctrl-C to stop.", file=sys.stderr, flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
