"""A stand-in for the Fn agent: run func.py under the real fdk and invoke it over its unix socket.

It starts the function as OCI Functions does (the image's ENTRYPOINT, FN_FORMAT=http-stream,
FN_LISTENER=unix:...) and speaks the same HTTP: `POST /call` with Fn-Call-Id and Fn-Deadline, plus
Fn-Intent and Fn-Http-* for API Gateway calls. Like the Fn agent it cuts a call at Fn-Deadline and
replaces the container that ran past it.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, NoReturn

from ..logs import CALLER_HEADER
from .spawn import Forked, Template, parent_death_signal, popen

REPO_ROOT = Path(__file__).resolve().parents[2]
PATH_PREFIX = "/genai"  # the deployment's --path-prefix (docs/deploy.md)
DEPLOYMENT_SPEC = REPO_ROOT / "policies" / "apigateway-deployment.json"
_BACKSTOP_S = 5.0  # a socket timeout past Fn-Deadline, in case the cut-off timer never runs
DEFAULT_SUBJECT = "local-user"  # the caller the local gateway names unless told another (X-Genai-Caller)
_GATEWAY_HEADER = "Fn-Http-H-"  # the prefix of each caller's header on an API Gateway call
_IMAGE_DIR = "/function/"  # where the image keeps func.py and the package
_FDK_SCRIPT = "/python/bin/fdk"  # the fdk's console script in the image
_RUN_FDK = "from fdk.scripts.fdk import main; main()"  # what that script runs
HTTP_STATUS_HEADER = "fn-http-status"  # the caller's status on an API Gateway call (headers read lower-case)


def routes(spec_path: Path = DEPLOYMENT_SPEC, prefix: str = PATH_PREFIX) -> dict[str, tuple[str, ...]]:
    """Each routed path template ({id} a path parameter) and the methods it takes, read from the deployment
    specification so local and cloud never drift; a path in two routes takes the methods of both."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    found: dict[str, tuple[str, ...]] = {}
    for route in spec["routes"]:
        path = prefix + route["path"]
        found[path] = tuple(dict.fromkeys([*found.get(path, ()), *route["methods"]]))
    return found


@functools.cache
def chat_route() -> str:
    """The deployment's route for plain prompts (/genai/chat), where calls go unless told otherwise."""
    return next(route for route in routes() if route.endswith("/chat"))


@dataclass
class Invocation:
    """What the agent got back: the socket status and headers, and the gateway's view of them."""

    status: int
    headers: dict[str, str]
    body: bytes
    gateway: bool = True
    http_headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        prefix = _GATEWAY_HEADER.lower()
        self.http_headers = {k[len(prefix) :]: v for k, v in self.headers.items() if k.startswith(prefix)}

    @property
    def http_status(self) -> int:
        """The status a caller of API Gateway sees (Fn-Http-Status), else the socket status."""
        return int(self.headers.get(HTTP_STATUS_HEADER, self.status)) if self.gateway else self.status

    def json(self) -> Any:
        return json.loads(self.body)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _CutOff:
    """Shuts the connection down at Fn-Deadline, as the Fn agent cancels the call's context: an
    answer still on its way is lost, however the function trickles it."""

    def __init__(self, connection: _UnixConnection, seconds: float) -> None:
        self.fired = threading.Event()
        self._connection = connection
        self._timer = threading.Timer(max(seconds, 0.0), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.fired.set()
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def image_entrypoint(function_dir: Path) -> list[str]:
    """The ENTRYPOINT of the Dockerfile in `function_dir` (exec form), else the one the fn CLI writes
    for `runtime: python` (fnproject/cli langs/python.go): what OCI Functions starts in the container."""
    dockerfile = function_dir / "Dockerfile"
    lines = dockerfile.read_text(encoding="utf-8").splitlines() if dockerfile.exists() else []
    found = [line.removeprefix("ENTRYPOINT").strip() for line in lines if line.startswith("ENTRYPOINT ")]
    return list(json.loads(found[-1])) if found else [_FDK_SCRIPT, f"{_IMAGE_DIR}func.py", "handler"]


class FunctionProcess:
    """func.py running under the fdk in a child process, with the environment OCI Functions gives."""

    def __init__(  # noqa: PLR0913  (keyword options, each with a default)
        self,
        env: Mapping[str, str],
        *,
        function_dir: str | os.PathLike[str] = REPO_ROOT,
        python: str = sys.executable,
        log: IO[bytes] | int | None = None,
        packages: str | os.PathLike[str] | None = None,
        template: Template | None = None,
    ) -> None:
        """`packages`: a `pip install --target` folder to run from, as the image's /python, with
        the interpreter's own site-packages switched off; else `python`'s environment. `template`:
        fork the process from it where that is what a new interpreter would do (spawn.py)."""
        self._function_dir = Path(function_dir).resolve()
        self._python = python
        self._packages = Path(packages).resolve() if packages else None
        self._env = dict(env)
        self._log = log
        self._socket_dir: Path | None = None
        self.socket_path = Path()
        self._template = template
        self.process: subprocess.Popen[bytes] | Forked | None = None
        self._connection: _UnixConnection | None = None

    def _command(self) -> list[str]:
        """The image's ENTRYPOINT, with this machine's interpreter, fdk and function directory."""
        interpreter = [self._python, "-S"] if self._packages is not None else [self._python]  # -S: only /python
        fdk_script = Path(self._python).parent / "fdk"
        fdk = [str(fdk_script)] if self._packages is None and fdk_script.exists() else [*interpreter, "-c", _RUN_FDK]
        command: list[str] = []
        for number, arg in enumerate(image_entrypoint(self._function_dir)):
            if arg == _FDK_SCRIPT:
                command += fdk
            elif number == 0 and arg.startswith("python"):  # the image's python3.12
                command += interpreter
            else:
                command.append(
                    str(self._function_dir / arg.removeprefix(_IMAGE_DIR)) if arg.startswith(_IMAGE_DIR) else arg
                )
        return command

    def start(self, timeout_s: float = 30.0) -> FunctionProcess:
        """Start the container; returns once the fdk listens, as the Fn agent sends no call before
        (a pre-started container: what the entrypoint builds before listening is built by then)."""
        path = [str(self._function_dir)] + ([str(self._packages)] if self._packages else [])
        self._socket_dir = Path(tempfile.mkdtemp(prefix="fn-iofs-"))
        self.socket_path = self._socket_dir / "lsnr.sock"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", tempfile.gettempdir()),
            "PYTHONPATH": os.pathsep.join(path),
            "FN_FORMAT": "http-stream",
            "FN_LISTENER": f"unix:{self.socket_path}",
            "FN_APP_ID": "ocid1.fnapp.oc1..local",
            "FN_FN_ID": "ocid1.fnfunc.oc1..local",
            "FN_APP_NAME": "local-app",
            "FN_FN_NAME": "genai",
            "FN_MEMORY": "256",
            "FN_TYPE": "sync",
            **self._env,
        }
        command = self._command()
        forked = self._template and self._template.spawn(
            command, env=env, cwd=self._function_dir, stdout=self._log, new_session=True
        )
        self.process = forked or popen(
            args=command,
            env=env,
            cwd=self._function_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log is not None else None,
            start_new_session=True,  # Ctrl-C in a terminal is for the parent, which stops this
            preexec_fn=parent_death_signal(),
        )
        until = time.monotonic() + timeout_s
        while not self.socket_path.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the fdk exited with status {self.process.returncode} before listening")
            if time.monotonic() > until:
                self.stop()
                raise RuntimeError("the fdk did not create its socket in time")
            time.sleep(0.01)
        return self

    def restart(self) -> FunctionProcess:
        """A new container in place of this one, as the platform starts one after a failure."""
        self.stop()
        return self.start()

    def invoke(  # noqa: PLR0913  (keyword options, as tests call it)
        self,
        body: bytes | str | Mapping[str, Any] = b"",
        *,
        gateway: bool = True,
        method: str = "POST",
        path: str | None = None,
        headers: Mapping[str, str | bytes] | None = None,
        platform_headers: Mapping[str, str | bytes] | None = None,
        deadline_s: float = 60.0,
        call_id: str | None = None,
        subject: str | None = DEFAULT_SUBJECT,
    ) -> Invocation:
        """One invocation; through API Gateway by default (to the chat route), else as a direct
        `fn invoke`. `headers` are the caller's (sent as Fn-Http-H-* on a gateway call);
        `platform_headers` go at the top level, as the platform sends x-b3-* trace ids. `subject` is
        the X-Genai-Caller the deployed gateway writes (unless `headers` name one; None: a gateway
        that sets none).
        At Fn-Deadline the call is cut and the container replaced, as the Fn agent does
        (fnproject/fn api/agent/agent.go, hotSlot.dispatch): that raises TimeoutError."""
        if isinstance(body, Mapping):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        deadline = time.monotonic() + deadline_s
        fn_deadline = datetime.now(UTC) + timedelta(seconds=deadline_s)
        caller = {"Content-Type": "application/json", **(headers or {})}
        sent: dict[str, str | bytes] = {
            "Fn-Call-Id": call_id or uuid.uuid4().hex,
            "Fn-Deadline": fn_deadline.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "Content-Type": caller["Content-Type"],
            **(platform_headers or {}),
        }
        if gateway:
            url = path if path is not None else chat_route()
            sent.update({"Fn-Intent": "httprequest", "Fn-Http-Method": method, "Fn-Http-Request-Url": url})
            named = {name.lower() for name in caller}
            written = {} if subject is None or CALLER_HEADER.lower() in named else {CALLER_HEADER: subject}
            sent.update({f"{_GATEWAY_HEADER}{name}": value for name, value in {**caller, **written}.items()})
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connection or _UnixConnection(str(self.socket_path), timeout=deadline_s + _BACKSTOP_S)
            self._connection = None
            if connection.sock is not None:
                connection.sock.settimeout(max(deadline - time.monotonic(), 0.0) + _BACKSTOP_S)
            cut_off = _CutOff(connection, deadline - time.monotonic())
            try:
                connection.request("POST", "/call", body=data, headers=sent)
                reply = connection.getresponse()
                content = reply.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if cut_off.fired.is_set() or isinstance(exc, TimeoutError):
                    self._shut_down_after_timeout(deadline_s)
                if not isinstance(exc, (ConnectionError, http.client.HTTPException)) or attempt == 2 or not reused:
                    raise
                continue  # a kept-alive connection the fdk had closed
            finally:
                cut_off.cancel()
            if cut_off.fired.is_set():
                connection.close()
                self._shut_down_after_timeout(deadline_s)
            self._connection = connection
            received = {name.lower(): value for name, value in reply.getheaders()}
            return Invocation(reply.status, received, content, gateway)
        raise AssertionError("unreachable")

    def _shut_down_after_timeout(self, deadline_s: float) -> NoReturn:
        """The Fn agent's container contract: a container that ran past the deadline cannot
        continue; the next call gets a new one."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # no graceful stop: the fdk would finish the call first
            self.process.wait()
        self.restart()
        raise TimeoutError(f"the function did not answer within its {deadline_s:g} s deadline")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the function process has not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def __enter__(self) -> FunctionProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
