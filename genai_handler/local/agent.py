"""A stand-in for the Fn agent: run func.py under the real fdk and invoke it over its unix socket.

It starts the function the way OCI Functions does (`fdk /function/func.py handler` with
FN_FORMAT=http-stream and FN_LISTENER=unix:...) and speaks the same HTTP: `POST /call` with
Fn-Call-Id and Fn-Deadline, plus Fn-Intent/Fn-Http-* for calls that come through API Gateway.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Invocation:
    """What the agent got back: the socket status and headers, and the gateway's view of them."""

    status: int
    headers: dict[str, str]
    body: bytes
    gateway: bool = True
    http_headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        prefix = "fn-http-h-"
        self.http_headers = {k[len(prefix):]: v for k, v in self.headers.items() if k.startswith(prefix)}

    @property
    def http_status(self) -> int:
        """The status a caller of API Gateway sees (Fn-Http-Status), else the socket status."""
        return int(self.headers.get("fn-http-status", self.status)) if self.gateway else self.status

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


class FunctionProcess:
    """func.py running under the fdk in a child process, with the environment OCI Functions gives."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        function_dir: str | os.PathLike[str] = REPO_ROOT,
        python: str = sys.executable,
        log: IO[bytes] | int | None = None,
        packages: str | os.PathLike[str] | None = None,
    ) -> None:
        """`packages`: a `pip install --target` folder to run from, as the image's /python, with
        the interpreter's own site-packages switched off; else `python`'s environment."""
        self._function_dir = Path(function_dir).resolve()
        self._python = python
        self._packages = Path(packages).resolve() if packages else None
        self._env = dict(env)
        self._log = log
        self._socket_dir = Path(tempfile.mkdtemp(prefix="fn-iofs-"))
        self.socket_path = self._socket_dir / "lsnr.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self._connection: _UnixConnection | None = None

    def start(self, timeout_s: float = 30.0) -> FunctionProcess:
        fdk_script = Path(self._python).parent / "fdk"
        run_fdk = "from fdk.scripts.fdk import main; main()"
        if self._packages is not None:
            command = [self._python, "-S", "-c", run_fdk]  # like /python/bin/fdk in the image
        else:
            command = [str(fdk_script)] if fdk_script.exists() else [self._python, "-c", run_fdk]
        path = [str(self._function_dir)] + ([str(self._packages)] if self._packages else [])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
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
        self.process = subprocess.Popen(
            [*command, str(self._function_dir / "func.py"), "handler"],
            env=env,
            cwd=self._function_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log is not None else None,
            start_new_session=True,
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

    def invoke(
        self,
        body: bytes | str | Mapping[str, Any] = b"",
        *,
        gateway: bool = True,
        method: str = "POST",
        path: str = "/genai",
        headers: Mapping[str, str] | None = None,
        deadline_s: float = 60.0,
        call_id: str | None = None,
    ) -> Invocation:
        """One invocation; through API Gateway by default, else as a direct `fn invoke`."""
        if isinstance(body, Mapping):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        deadline = datetime.now(timezone.utc) + timedelta(seconds=deadline_s)
        sent = {
            "Fn-Call-Id": call_id or uuid.uuid4().hex,
            "Fn-Deadline": deadline.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "Content-Type": (headers or {}).get("Content-Type", "application/json"),
        }
        if gateway:
            sent.update({"Fn-Intent": "httprequest", "Fn-Http-Method": method, "Fn-Http-Request-Url": path})
            caller = {"Content-Type": "application/json", **(headers or {})}
            sent.update({f"Fn-Http-H-{name}": value for name, value in caller.items()})
        for attempt in (1, 2):
            connection = self._connection or _UnixConnection(str(self.socket_path), timeout=deadline_s + 30)
            try:
                connection.request("POST", "/call", body=data, headers=sent)
                reply = connection.getresponse()
                content = reply.read()
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                self._connection = None
                if attempt == 2:
                    raise
                continue
            self._connection = connection
            received = {name.lower(): value for name, value in reply.getheaders()}
            return Invocation(reply.status, received, content, gateway)
        raise AssertionError("unreachable")

    @property
    def pid(self) -> int:
        assert self.process is not None
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
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> FunctionProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
