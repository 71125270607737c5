"""Function processes forked from a template: each sees what a new interpreter would, or is not forked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from genai_handler.local.agent import FunctionProcess
from genai_handler.local.spawn import Forked, Template

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd and prctl(2) are Linux's")

# Answers with what a process can tell about how it was started.
PROBE_FUNCTION = """\
import json, os, sys

from fdk import response


def handler(ctx, data=None):
    seen = {
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "path": sys.path,
        "main": sys.modules["__main__"].__file__,
        "stdout": [sys.stdout.line_buffering, sys.stdout.write_through, sys.stdout.encoding],
        "stdin": os.path.realpath(f"/proc/self/fd/0"),
        "session": os.getsid(0) == os.getpid(),
        "bytecode": sys.dont_write_bytecode,
    }
    print("probe answered", flush=True)
    return response.Response(ctx, response_data=json.dumps(seen), headers={"Content-Type": "application/json"})
"""
# The same function behind the image's kind of ENTRYPOINT: `python -m <module> <func.py> handler`.
PROBE_MAIN = "from fdk.scripts.fdk import main\n\nmain()\n"
MODULE_DOCKERFILE = 'FROM scratch\nENTRYPOINT ["python3.12", "-m", "probe_main", "/function/func.py", "handler"]\n'


@pytest.fixture(scope="module")
def template() -> Iterator[Template]:
    shared = Template()
    yield shared
    shared.close()


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "func.py").write_text(PROBE_FUNCTION)
    return tmp_path


def _seen(function_dir: Path, log: Path, template: Template | None) -> tuple[dict[str, Any], int]:
    """What the probe function saw, and the pid of the process that started it."""
    with (
        log.open("ab") as out,
        FunctionProcess({"GENAI_PROBE": "x"}, function_dir=function_dir, log=out, template=template) as function,
    ):
        answer = function.invoke({"prompt": "who am I"})
        assert answer.http_status == 200, answer.body
        return answer.json(), psutil.Process(function.pid).ppid()


@pytest.mark.parametrize("entrypoint", ["console script", "python -m"])
def test_given_a_template_when_a_function_starts_from_it_then_it_sees_what_a_new_interpreter_sees(
    template: Template, probe_dir: Path, entrypoint: str
) -> None:
    # given a function started the usual way, with its ENTRYPOINT of either kind
    if entrypoint == "python -m":
        (probe_dir / "Dockerfile").write_text(MODULE_DOCKERFILE)
        (probe_dir / "probe_main.py").write_text(PROBE_MAIN)
    new, parent = _seen(probe_dir, probe_dir / "new.log", None)
    assert parent == os.getpid()
    # when the same function is started from a template
    forked, parent = _seen(probe_dir, probe_dir / "forked.log", template)
    # then the template forked it
    assert parent == template.pid
    # and it sees the same environment, directory, arguments, path, streams and session
    assert forked["environ"].pop("FN_LISTENER") != new["environ"].pop("FN_LISTENER")  # each start its own socket
    assert forked == new
    assert forked["session"]
    # and its output went to its own log
    assert (probe_dir / "forked.log").read_text().count("probe answered") == 1


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("FN_LOGFRAME_NAME", "framed"),  # read by the fdk while it is imported (fdk/event_handler.py)
        ("PYTHONUNBUFFERED", "1"),  # read by the interpreter as it starts
    ],
)
def test_given_a_setting_read_before_any_code_when_it_differs_from_the_templates_then_the_start_is_not_forked(
    template: Template, probe_dir: Path, setting: str, value: str
) -> None:
    # given a start whose environment differs from the template's where the libraries or the interpreter
    # read it before func.py runs
    with FunctionProcess({setting: value}, function_dir=probe_dir, log=subprocess.DEVNULL, template=template) as fn:
        # when it starts, then it is a new interpreter, which reads that setting itself
        assert isinstance(fn.process, subprocess.Popen)
        assert psutil.Process(fn.pid).ppid() == os.getpid()
        assert fn.invoke({"prompt": "hi"}).http_status == 200
    # and a start that agrees with the template is forked
    with FunctionProcess({}, function_dir=probe_dir, log=subprocess.DEVNULL, template=template) as fn:
        assert isinstance(fn.process, Forked)


def test_given_the_images_package_layout_when_started_with_a_template_then_it_is_not_forked(
    template: Template, probe_dir: Path
) -> None:
    # given a start from a pip --target folder, the interpreter's own site-packages off (-S)
    (probe_dir / "python").mkdir()
    function = FunctionProcess({}, function_dir=probe_dir, packages=probe_dir / "python", template=template)
    # when / then: the template's libraries are not that folder's, so it is not forked
    assert template.spawn(function._command(), env={}, cwd=probe_dir) is None


def _ended(function_dir: Path, template: Template | None, stop: str) -> tuple[int | None, str]:
    """The status a function process ends with, and what it wrote, for each way of ending."""
    log = function_dir / f"{stop}-{template is not None}.log"
    with log.open("ab") as out:
        function = FunctionProcess({}, function_dir=function_dir, log=out, template=template)
        if stop == "no func.py":
            (function_dir / "func.py").rename(function_dir / "gone.py")
            with pytest.raises(RuntimeError, match="the fdk exited with status"):
                function.start()
            (function_dir / "gone.py").rename(function_dir / "func.py")
        else:
            function.start()
            assert function.process is not None
            function.process.send_signal(signal.SIGTERM if stop == "SIGTERM" else signal.SIGKILL)
            function.process.wait(timeout=10)
        assert function.process is not None
        status = function.process.poll()
        function.stop()
    return status, log.read_text()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL", "no func.py"])
def test_given_a_forked_function_when_it_ends_then_its_status_and_output_are_a_new_interpreters(
    template: Template, probe_dir: Path, stop: str
) -> None:
    # given / when a function that ends, started anew and from the template
    new = _ended(probe_dir, None, stop)
    forked = _ended(probe_dir, template, stop)
    # then each ends with the same status and wrote the same
    assert forked == new
    assert new[0] is not None


def test_given_a_template_when_closed_then_its_function_processes_end(probe_dir: Path) -> None:
    # given a function forked from a template of its own
    own = Template()
    function = FunctionProcess({}, function_dir=probe_dir, log=subprocess.DEVNULL, template=own).start()
    assert isinstance(function.process, Forked)
    # when the template is closed
    own.close()
    # then the function process has gone too, and the agent knows it
    assert function.process.wait(timeout=10) == -signal.SIGKILL
    assert not psutil.pid_exists(function.pid) or psutil.Process(function.pid).status() == psutil.STATUS_ZOMBIE
    assert not function.alive()
    function.stop()


def test_given_an_agent_process_with_a_template_when_it_is_killed_then_the_template_and_its_functions_die(
    probe_dir: Path,
) -> None:
    # given a process that forked a function from its template and cannot clean up: it gets SIGKILL
    parent_code = textwrap.dedent(f"""
        import subprocess, threading
        from genai_handler.local.agent import FunctionProcess
        from genai_handler.local.spawn import Template
        template = Template()
        function = FunctionProcess({{}}, function_dir={str(probe_dir)!r}, log=subprocess.DEVNULL, template=template)
        function.start()
        print(template.pid, function.pid, flush=True)
        threading.Event().wait()
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        template_pid, function_pid = (int(pid) for pid in parent.stdout.readline().split())
        processes = [psutil.Process(template_pid), psutil.Process(function_pid)]
        assert processes[1].ppid() == template_pid
        # when the agent process is killed
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        # then the template goes, and the function with it, within a few seconds
        _, alive = psutil.wait_procs(processes, timeout=5)
        assert alive == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_given_a_template_that_died_when_the_next_function_starts_then_a_new_template_forks_it(
    probe_dir: Path,
) -> None:
    # given a template killed under a function it forked
    own = Template()
    try:
        first = FunctionProcess({}, function_dir=probe_dir, log=subprocess.DEVNULL, template=own).start()
        dead = own.pid
        assert dead is not None
        os.kill(dead, signal.SIGKILL)
        # when the agent sees the function gone and starts another
        assert first.process is not None and first.process.wait(timeout=10) == -signal.SIGKILL
        first.stop()
        with FunctionProcess({}, function_dir=probe_dir, log=subprocess.DEVNULL, template=own) as second:
            # then a new template forked it, and it answers
            assert isinstance(second.process, Forked)
            assert own.pid not in (None, dead) and psutil.Process(second.pid).ppid() == own.pid
            assert second.invoke({"prompt": "again"}).http_status == 200
    finally:
        own.close()
