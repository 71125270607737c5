"""How the local agent starts a function process: a new interpreter, or a fork of a template.

A new interpreter spends a second of CPU importing the OpenAI SDK before func.py runs, and a test suite
starts dozens. A `Template` is one interpreter that imports those libraries once and forks a child per
start; the child takes the start's environment, directory, arguments, sys.path and log, and runs the
ENTRYPOINT (`python -m <module> ...` or a console script) as a new interpreter would. Only the libraries
are shared: func.py and genai_handler are imported by the child, from its own directory.

What could differ from a new interpreter is guarded, not assumed: the environment variables the
libraries read while being imported are recorded, and a start whose environment differs in one of them,
or in what the interpreter reads as it starts (HOME, LANG, LC_*, PYTHON*), is not forked (`spawn`
returns None and the caller starts a new interpreter). The image's own start is tested without a
template (test_image, the bench), and `make run` and `make serve` never use one.

Top-level imports are the standard library's only: the template runs this file by path, so that it
never imports genai_handler itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import json
import os
import queue
import runpy
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

# What importing func.py spends its second on (python -X importtime): the SDK, the fdk, the signer.
PRELOAD = ("openai", "fdk", "cryptography.hazmat.primitives.asymmetric.rsa")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_READ_AT_START = ("HOME", "LANG", "LC_", "PYTHON")  # prefixes the interpreter reads before any code runs
_MESSAGE_BYTES = 1 << 20
_START_TIMEOUT_S = 60.0
# Run by the template interpreter: this file by path, then the forked child's entry if it is one. The
# template itself ends with os._exit: it wrote nothing, and tearing its imports down took 0.3-0.5 s.
_BOOT = (
    "import os, runpy, sys; run = runpy.run_path(sys.argv[1])['serve'](int(sys.argv[2]), sys.argv[3:]); "
    "run() if run else os._exit(0)"
)


def parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child when its parent goes, however it goes
    (SIGKILL, a closed terminal): nothing else can clean up after a parent that was killed.
    Linux only (prctl(2) PR_SET_PDEATHSIG); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return die_with_parent


class _Spawner:
    """Forks every new interpreter from one thread that lives as long as this process.

    Linux sends the parent-death signal when the *thread* that forked the child ends, not the
    process: a function restarted from a request thread would die with that thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[dict[str, Any], Future[subprocess.Popen[bytes]]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, **popen_args: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fn-agent-spawner", daemon=True)
                self._thread.start()
        if threading.current_thread() is self._thread:
            return subprocess.Popen(**popen_args)
        spawned: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((popen_args, spawned))
        return spawned.result()

    def _run(self) -> None:
        while True:
            popen_args, spawned = self._jobs.get()
            try:
                spawned.set_result(subprocess.Popen(**popen_args))
            except BaseException as exc:  # handed to the waiting caller, raised there
                spawned.set_exception(exc)


popen = _Spawner().popen


def _send(channel: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    socket.send_fds(channel, [json.dumps(message).encode()], list(fds))


def _receive(channel: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors sent with it; None when the other end has closed."""
    data, fds, _flags, _address = socket.recv_fds(channel, _MESSAGE_BYTES, 4)
    return (json.loads(data) if data else None), fds


@contextlib.contextmanager
def _descriptor(stdout: IO[bytes] | int | None) -> Iterator[int | None]:
    """The descriptor behind a Popen-style `stdout` (None: this process's own)."""
    if stdout != subprocess.DEVNULL:
        yield stdout if stdout is None or isinstance(stdout, int) else stdout.fileno()
        return
    with open(os.devnull, "wb") as devnull:
        yield devnull.fileno()


class _ReadRecorder(MutableMapping[str, str]):
    """os.environ while the libraries are imported, noting each variable they look at."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self.environ = environ
        self.read: set[str] = set()
        self.listed = False  # iterated or copied: everything counts as read

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.environ[key]

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return key in self.environ

    def __setitem__(self, key: str, value: str) -> None:
        self.read.add(key)
        self.environ[key] = value

    def __delitem__(self, key: str) -> None:
        self.read.add(key)
        del self.environ[key]

    def __iter__(self) -> Iterator[str]:
        self.listed = True
        return iter(self.environ)

    def __len__(self) -> int:
        self.listed = True
        return len(self.environ)

    def copy(self) -> dict[str, str]:
        self.listed = True
        return dict(self.environ)


def _preload(names: Sequence[str]) -> dict[str, str | None]:
    """Imports `names` and returns each variable they read, with the value it had."""
    recorder = _ReadRecorder(os.environ)
    os.environ = recorder  # type: ignore[assignment]  # noqa: B003  (swapped, not cleared; os.getenv reads it too)
    try:
        for name in names:
            with contextlib.suppress(ImportError):  # a library the function no longer uses: nothing to share
                importlib.import_module(name)
    finally:
        os.environ = recorder.environ  # type: ignore[assignment]  # noqa: B003  (the real one, back)
    read = set(os.environ) if recorder.listed else recorder.read
    return {name: os.environ.get(name) for name in read}


def serve(channel_fd: int, preload: Sequence[str]) -> Callable[[], None] | None:
    """The template's loop: fork a child per message, report each child's exit. Returns, in a forked
    child, the child's entry (run at top level by _BOOT, so that the interpreter ends as the child's own
    would); None once the agent has closed the channel."""
    channel = socket.socket(fileno=channel_fd)
    _send(channel, {"environ": dict(os.environ), "read": _preload(preload), "path": sys.path[1:]})
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    die_with_template = parent_death_signal()
    children: dict[int, int] = {}  # pidfd -> pid
    while True:
        for key, _events in selector.select():
            if key.fileobj is not channel:
                pidfd = int(key.fd)
                selector.unregister(pidfd)
                os.close(pidfd)
                _pid, status = os.waitpid(children.pop(pidfd), 0)
                _send(channel, {"exited": _pid, "returncode": os.waitstatus_to_exitcode(status)})
                continue
            start, fds = _receive(channel)
            if start is None:
                return None  # the agent has gone: the children die with this process
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                selector.close()
                channel.close()
                for pidfd in children:
                    os.close(pidfd)
                return lambda: _become(start, fds, die_with_template)
            for fd in fds:
                os.close(fd)
            pidfd = os.pidfd_open(pid)
            children[pidfd] = pid
            selector.register(pidfd, selectors.EVENT_READ)
            _send(channel, {"spawned": start["id"], "pid": pid}, [pidfd])


def _become(start: dict[str, Any], fds: list[int], die_with_template: Callable[[], None] | None) -> None:
    """In the forked child: take the start's session, log, directory, environment, path and arguments,
    then run its entry point as `python -m` or a console script would."""
    if start["new_session"]:
        os.setsid()
    if die_with_template is not None:
        die_with_template()
    for number, fd in enumerate(fds):  # stdin, stdout, stderr
        os.dup2(fd, number)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    if isinstance(sys.stdout, io.TextIOWrapper) and not sys.stdout.write_through:  # as a new interpreter buffers
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
    os.chdir(start["cwd"])
    os.environ.clear()
    os.environ.update(start["env"])
    sys.path[:] = start["path"]
    sys.argv[:] = start["argv"]
    if start["module"]:
        runpy.run_module(start["module"], run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(start["argv"][0], run_name="__main__")


class Forked:
    """A function process forked by a template: as much of subprocess.Popen as the agent uses."""

    def __init__(self, template: Template, pid: int, pidfd: int, args: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._template = template
        self._pidfd = pidfd  # signals reach this process even if its pid were reused

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        returncode = self._template.wait_for(self, timeout)
        if returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return returncode

    def send_signal(self, sig: int) -> None:
        with self._template.exits:
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # exited, its exit not yet reported
                    signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def exited(self, returncode: int, wait_s: float = 0.0) -> None:
        """Called by the template, holding `exits`, once it has reaped this process, or when the template
        has gone (then this waits up to `wait_s` for the process to end: its pidfd turns readable)."""
        select.select([self._pidfd], [], [], wait_s)
        self.returncode = returncode
        os.close(self._pidfd)


class Template:
    """One interpreter that imported `preload`, forking function processes on request (Linux).

    Started at the first `spawn`; the children die with it, and it dies with this process."""

    def __init__(self, preload: Sequence[str] = PRELOAD, *, python: str = sys.executable) -> None:
        self.python = python
        self.exits = threading.Condition()
        self._preload = list(preload)
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._added: dict[str, str] = {}  # what the interpreter added to the environment it was given (LC_CTYPE)
        self._read: dict[str, str | None] = {}
        self._path: list[str] = []
        self._given: dict[str, str] = {}
        self._pending: dict[int, tuple[Future[Forked], list[str]]] = {}
        self._children: dict[int, Forked] = {}
        self._next_id = 0

    @property
    def pid(self) -> int | None:
        """The template interpreter's, once started."""
        return self._process.pid if self._process is not None else None

    def spawn(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | os.PathLike[str],
        stdout: IO[bytes] | int | None = None,
        new_session: bool = False,
    ) -> Forked | None:
        """`args` forked from the template, stdout and stderr to `stdout` (else the template's, which
        are this process's); None when a fork would not be what a new interpreter does."""
        entry = self._entry(args, Path(cwd))
        if entry is None or stdout in (subprocess.PIPE, subprocess.STDOUT) or not sys.platform.startswith("linux"):
            return None
        with self._lock:
            channel = self._channel or self._start()
            if not self._same_start(env):
                return None
            self._next_id += 1
            spawned: Future[Forked] = Future()
            self._pending[self._next_id] = (spawned, list(args))
            pythonpath = [folder for folder in env.get("PYTHONPATH", "").split(os.pathsep) if folder]
            start = {
                **entry,
                "id": self._next_id,
                "cwd": str(cwd),
                "env": {**self._added, **env},
                "path": [entry["path0"], *pythonpath, *self._path],
                "new_session": new_session,
            }
            with _descriptor(stdout) as out:  # stdin, stdout and stderr as a new interpreter would have them
                _send(channel, start, [0, 1, 2] if out is None else [0, out, out])  # OSError: the template died
        return spawned.result(timeout=_START_TIMEOUT_S)

    def _entry(self, args: Sequence[str], cwd: Path) -> dict[str, Any] | None:
        """What the child runs, as the interpreter would: `python -m module ...` (sys.path[0] the
        directory) or a console script whose first line names this interpreter (sys.path[0] its folder)."""
        if not args:
            return None
        if len(args) >= 3 and args[0] == self.python and args[1] == "-m":
            return {"module": args[2], "argv": ["-m", *args[3:]], "path0": str(cwd.resolve())}
        script = Path(args[0])
        if args[0] != self.python and script.is_file():
            with script.open("rb") as file:
                if file.readline().strip() == f"#!{self.python}".encode():
                    return {"module": None, "argv": list(args), "path0": str(script.resolve().parent)}
        return None

    def _same_start(self, env: Mapping[str, str]) -> bool:
        """Whether a new interpreter with `env` would have imported the libraries as the template did."""
        started = {k for k in {*env, *self._given} if k.startswith(_READ_AT_START) and k != "PYTHONPATH"}
        return all(env.get(k) == self._given.get(k) for k in started) and all(
            env.get(k) == value for k, value in self._read.items()
        )

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._given = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
        try:
            self._process = popen(
                args=[self.python, "-c", _BOOT, __file__, str(theirs.fileno()), *self._preload],
                env=self._given,
                stdin=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # Ctrl-C is for the agent, which stops the children
                preexec_fn=parent_death_signal(),
            )
        finally:
            theirs.close()
        ours.settimeout(_START_TIMEOUT_S)
        ready, _fds = _receive(ours)
        if ready is None:
            status = self._process.wait()
            raise RuntimeError(f"the template interpreter exited with status {status} before it was ready")
        ours.settimeout(None)
        self._added = {k: v for k, v in ready["environ"].items() if k not in self._given}
        self._read, self._path = ready["read"], ready["path"]
        self._channel = ours
        threading.Thread(target=self._listen, args=(ours,), name="fn-template", daemon=True).start()
        return ours

    def _listen(self, channel: socket.socket) -> None:
        while True:
            try:
                message, fds = _receive(channel)
            except OSError:  # closed by close()
                message, fds = None, []
            if message is None:
                break
            if "spawned" in message:
                spawned, args = self._pending.pop(message["spawned"])
                forked = Forked(self, message["pid"], fds[0], args)
                with self.exits:
                    self._children[forked.pid] = forked
                spawned.set_result(forked)
            else:
                with self.exits:
                    self._children.pop(message["exited"]).exited(message["returncode"])
                    self.exits.notify_all()
        with self.exits:  # the template has gone: its children get the parent-death signal
            for forked in self._children.values():
                forked.exited(-signal.SIGKILL, wait_s=_START_TIMEOUT_S)
            self._children.clear()
            self.exits.notify_all()
        with self._lock:  # unless closed, the next spawn starts a new template
            for spawned, _args in self._pending.values():
                spawned.set_exception(RuntimeError("the template interpreter exited before it forked"))
            self._pending.clear()
            if self._channel is channel and self._process is not None:
                self._channel = None
                self._process.wait()
                channel.close()

    def wait_for(self, forked: Forked, timeout: float | None) -> int | None:
        with self.exits:
            self.exits.wait_for(lambda: forked.returncode is not None, timeout)
            return forked.returncode

    def close(self) -> None:
        """Stops the template; a child still running is killed with it."""
        with self._lock:
            channel, self._channel = self._channel, None
            if channel is not None:
                channel.shutdown(socket.SHUT_RDWR)
                channel.close()
            if self._process is not None:
                self._process.wait(timeout=10)
                self._process = None
