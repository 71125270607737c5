"""The Fn agent stand-in: it cuts a call at Fn-Deadline as the platform does, and its function
processes never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from genai_handler.local.agent import FunctionProcess, chat_route, routes

DEADLINE_S = 2.0

SLEEPY_FUNCTION = """\
import time

from fdk import response


def handler(ctx, data=None):
    body = data.getvalue() if data is not None else b""
    if body.startswith(b"sleep "):
        time.sleep(float(body[len(b"sleep "):]))
    return response.Response(ctx, response_data=ctx.RequestURL() or "-", headers={"Content-Type": "text/plain"})
"""

# Stands in for the fdk (same FN_LISTENER socket, same HTTP): sends its headers at once, then
# trickles the body one byte every half second, so no single socket read ever waits long.
TRICKLING_FDK = """\
#!{python}
import os, socket, time

path = os.environ["FN_LISTENER"].removeprefix("unix:")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path + ".new")
server.listen(1)
os.rename(path + ".new", path)  # like the fdk, appear only once listening
while True:
    connection, _ = server.accept()
    request = b""
    while b"\\r\\n\\r\\n" not in request:
        request += connection.recv(65536)
    body = b"a late answer, one byte at a time, too late"
    connection.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body))
    try:
        for byte in body:
            time.sleep(0.5)
            connection.sendall(bytes([byte]))
    except OSError:
        pass
    connection.close()
"""


@pytest.fixture
def sleepy(tmp_path: Path) -> Iterator[FunctionProcess]:
    (tmp_path / "func.py").write_text(SLEEPY_FUNCTION)
    with FunctionProcess({}, function_dir=tmp_path, log=subprocess.DEVNULL) as function:
        yield function


def test_given_a_call_past_fn_deadline_when_invoked_then_it_is_cut_and_the_container_replaced(
    sleepy: FunctionProcess,
) -> None:
    # given a warm function that answers in time
    assert sleepy.invoke(b"sleep 0", deadline_s=30).status == 200
    old = psutil.Process(sleepy.pid)
    # when a call runs past its Fn-Deadline
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sleepy.invoke(b"sleep 20", deadline_s=DEADLINE_S)
    # then the agent gives up at the deadline, not when the late answer comes
    assert time.monotonic() - started < DEADLINE_S + 6
    # and, as the Fn agent does, the container that ran past it is gone and a new one serves the next call
    assert not old.is_running() or old.status() == psutil.STATUS_ZOMBIE
    assert sleepy.alive() and sleepy.pid != old.pid
    assert sleepy.invoke(b"sleep 0", deadline_s=30).body == chat_route().encode()


def test_given_an_answer_trickling_past_the_deadline_when_invoked_then_it_is_cut_at_the_deadline(
    tmp_path: Path,
) -> None:
    # given a container that starts answering at once but trickles its body past the deadline
    fake_python = tmp_path / "bin" / "python"
    fake_python.parent.mkdir()
    fake_python.write_text(TRICKLING_FDK.format(python=sys.executable))
    fake_python.chmod(0o755)
    (tmp_path / "func.py").write_text("")
    with FunctionProcess({}, function_dir=tmp_path, python=str(fake_python)) as function:
        started = time.monotonic()
        # when it is invoked with a 2 s deadline (the whole answer takes 21 s)
        with pytest.raises(TimeoutError):
            function.invoke(b"hi", deadline_s=DEADLINE_S)
        # then the call is cut at the deadline: no per-read timeout lets a trickle through
        assert time.monotonic() - started < DEADLINE_S + 6


def test_given_a_warm_container_when_calls_answer_in_time_then_it_is_kept(sleepy: FunctionProcess) -> None:
    # given
    pid = sleepy.pid
    # when
    for _ in range(3):
        assert sleepy.invoke(b"sleep 0.1", deadline_s=DEADLINE_S).status == 200
    # then
    assert sleepy.pid == pid


def test_given_no_path_when_invoked_then_the_call_goes_to_the_deployments_chat_route(sleepy: FunctionProcess) -> None:
    # when / then
    assert chat_route() == "/genai/chat" and chat_route() in routes()
    assert sleepy.invoke(b"").body == b"/genai/chat"
    assert sleepy.invoke(b"", path="/genai/v1/responses").body == b"/genai/v1/responses"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl(2)")
def test_given_a_short_lived_thread_when_it_restarts_the_function_then_the_function_outlives_it(
    sleepy: FunctionProcess,
) -> None:
    """Linux sends the parent-death signal when the forking *thread* ends: the gateway restarts
    functions from request threads, so the restarted function must not die with them."""
    # when
    restarter = threading.Thread(target=sleepy.restart)
    restarter.start()
    restarter.join()
    time.sleep(1.0)  # a signal sent when the thread ended would have landed by now
    # then
    assert sleepy.alive()
    assert sleepy.invoke(b"sleep 0").status == 200


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl(2)")
def test_given_a_function_started_by_a_parent_when_the_parent_is_killed_then_the_function_dies(tmp_path: Path) -> None:
    # given a process that started a function and cannot clean up: it gets SIGKILL
    (tmp_path / "func.py").write_text(SLEEPY_FUNCTION)
    parent_code = textwrap.dedent(f"""
        import subprocess, threading
        from genai_handler.local.agent import FunctionProcess
        function = FunctionProcess({{}}, function_dir={str(tmp_path)!r}, log=subprocess.DEVNULL).start()
        print(function.pid, flush=True)
        threading.Event().wait()
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        # when the parent is killed
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        # then the function goes too, within a few seconds
        _, alive = psutil.wait_procs([child], timeout=5)
        assert alive == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
