"""The function image: requirements.txt is complete and minimal, and the build context is lean."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from genai_handler.local.agent import FunctionProcess
from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.identity import LocalIdentity

from .conftest import PROJECT_OCID, bench_module

ROOT = Path(__file__).parents[1]
IMAGE_PYTHON = "3.12"  # FROM fnproject/python:3.12 in the Dockerfile (checked below)
_PROBE = r"""
import io, json, sys
from importlib.metadata import packages_distributions
from fdk.context import InvokeContext
import func
ctx = InvokeContext("app", "app", "fn", "fn", "call", headers={}, fn_format="http-stream")
reply = func.handler(ctx, io.BytesIO(b'{"prompt": "which packages?"}'))
owners = packages_distributions()
used = sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})
print(json.dumps({"status": reply.status(), "body": json.loads(reply.body()), "distributions": used}))
"""


def _pinned(requirements: str = "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in (ROOT / requirements).read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def _version_of(python: str) -> str | None:
    try:
        run = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def _image_interpreter() -> str | None:
    """A working Python of the image's version: where pyenv installs it (CI machines have one), or
    on PATH. A pyenv shim for a version that isn't selected exits 127, so each is tried."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [str(p) for p in sorted(pyenv.glob(f"{IMAGE_PYTHON}.*/bin/python{IMAGE_PYTHON}"), reverse=True)]
    candidates += [found for found in [shutil.which(f"python{IMAGE_PYTHON}")] if found]
    return next((python for python in candidates if _version_of(python) == IMAGE_PYTHON), None)


def _install_image_packages(python: str, target: Path) -> Path:
    """/python as Dockerfile.slim builds it: requirements.txt with --no-deps, wheels only, by `python`'s
    own pip, so a pin without a wheel for that Python fails here rather than in `fn build`. Without
    bytecode, which is the build's business, not what is checked here: it halves the install."""
    pip = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--no-compile",
            "--target",
            str(target),
            "-r",
            str(ROOT / "requirements.txt"),
        ],
        timeout=600,
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        errors = [line for line in pip.stderr.splitlines() if "ERROR" in line] or pip.stderr.splitlines()[-5:]
        pytest.fail(f"requirements.txt does not install for {python}: " + "\n".join(errors))
    return target


@pytest.fixture(scope="module")
def image_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's package set for the interpreter the tests run on."""
    return _install_image_packages(sys.executable, tmp_path_factory.mktemp("python"))


@pytest.fixture(scope="module")
def image_python() -> str:
    python = _image_interpreter()
    if python is None:
        pytest.skip(
            f"no Python {IMAGE_PYTHON} interpreter (python{IMAGE_PYTHON} on PATH or under ~/.pyenv/versions): "
            f"the run image's Python is not checked on this machine"
        )
    return python


@pytest.fixture(scope="module")
def image_packages_for_image_python(image_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's package set installed for the image's Python by that Python's own pip."""
    return _install_image_packages(image_python, tmp_path_factory.mktemp(f"python{IMAGE_PYTHON}"))


def test_given_the_slim_package_set_when_the_real_fdk_serves_an_invocation_then_it_answers(
    image_packages: Path, tmp_path: Path
) -> None:
    # given only requirements.txt, installed without the fdk's undeclared extras, as /python
    identity = LocalIdentity(tmp_path)
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=PROJECT_OCID) as endpoint:
        env = {**identity.env(), "GENAI_PROJECT_OCID": PROJECT_OCID, "GENAI_BASE_URL": endpoint.base_url}
        # when the fdk serves an invocation from that layout
        with FunctionProcess(env, packages=image_packages) as function:
            answer = function.invoke({"prompt": "from the slim image"})
    # then it answers
    assert answer.http_status == 200, answer.body
    assert answer.json()["output_text"] == "Local answer to: from the slim image"


def test_given_the_image_python_when_the_pins_install_then_the_real_fdk_serves_an_invocation(
    image_python: str,
    image_packages_for_image_python: Path,
    tmp_path: Path,
) -> None:
    # given requirements.txt installed for the image's Python (wheels only), as /python
    assert _version_of(image_python) == IMAGE_PYTHON
    identity = LocalIdentity(tmp_path)
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=PROJECT_OCID) as endpoint:
        env = {**identity.env(), "GENAI_PROJECT_OCID": PROJECT_OCID, "GENAI_BASE_URL": endpoint.base_url}
        # when the fdk, run by that interpreter, serves an invocation through API Gateway's path
        with FunctionProcess(env, python=image_python, packages=image_packages_for_image_python) as function:
            answer = function.invoke({"prompt": "from Python 3.12"})
    # then it answers as on the test interpreter
    assert answer.http_status == 200, answer.body
    assert answer.json()["output_text"] == "Local answer to: from Python 3.12"


def test_given_the_image_layout_when_a_real_invocation_runs_then_it_imports_only_pinned_distributions(
    image_packages: Path, tmp_path: Path
) -> None:
    # given the function's environment, the local endpoint and the image's package layout
    identity = LocalIdentity(tmp_path)
    with LocalEndpoint(trusted_issuer=identity.issuer_public_key, project_ocid=PROJECT_OCID) as endpoint:
        env = {
            **identity.env(),
            "GENAI_PROJECT_OCID": PROJECT_OCID,
            "GENAI_BASE_URL": endpoint.base_url,
            "PYTHONPATH": f"{ROOT}:{image_packages}",
            "PATH": "/usr/bin:/bin",
        }
        # when one invocation runs in a fresh interpreter without the dev environment
        probe = subprocess.run(
            [sys.executable, "-S", "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, check=True
        )
    # then it answers
    result = json.loads(probe.stdout.splitlines()[-1])
    assert result["status"] == 200, result["body"]
    used = {re.sub(r"[-_.]+", "-", d).lower() for d in result["distributions"]}
    pinned = _pinned()
    # and every distribution it imported is pinned, and every pin is imported but two that are
    # only imported on other paths (jiter: openai's structured-output parsing; pycparser: cffi builds)
    assert used <= set(pinned), used - set(pinned)
    assert set(pinned) - used == {"jiter", "pycparser"}
    # and nothing the fdk drags in without importing it is needed
    assert not used & {"pytest", "pytest-asyncio", "cython", "wheel", "pbr", "iso8601", "oci", "httpx", "requests"}


def test_given_requirements_txt_when_compared_with_the_test_environment_then_the_pins_match() -> None:
    # when / then
    for name, pinned in _pinned().items():
        assert version(name) == pinned, name


def test_given_the_dockerignore_when_read_then_tests_and_local_tooling_stay_out_of_the_build_context() -> None:
    # when
    ignored = (ROOT / ".dockerignore").read_text().split()
    # then
    for path in (
        "tests",
        "bench",
        "docs",
        "genai_handler/local",
        "requirements-dev.txt",
        "requirements-local.txt",
        ".venv",
        ".env",
    ):
        assert path in ignored, path


def test_given_the_local_tools_requirements_when_compared_with_the_image_then_they_stay_out_of_it() -> None:
    # given what make run, serve and doctor install besides the function's requirements
    local = _pinned("requirements-local.txt")
    # then python-dotenv (the .env reader) is among them, pinned as the tests run it, and none is in the image's
    assert local["python-dotenv"] == version("python-dotenv")
    assert not local.keys() & _pinned().keys(), local.keys() & _pinned().keys()
    assert "dotenv" not in (ROOT / "requirements.txt").read_text().lower()
    # and the image's build context leaves the file out (fn build installs requirements.txt alone)
    assert "requirements-local.txt" in (ROOT / ".dockerignore").read_text().split()


_COMPILED_AT_START = r"""
import importlib.machinery, json, pkgutil, sys
compiled = []
source_to_code = importlib.machinery.SourceFileLoader.source_to_code

def recording(self, data, path, *args, **kwargs):
    compiled.append(path)
    return source_to_code(self, data, path, *args, **kwargs)

importlib.machinery.SourceFileLoader.source_to_code = recording
from fdk import customer_code
customer_code.Function(sys.argv[1] + "/func.py", entrypoint="handler").handler()  # as the fdk imports it
import genai_handler
for module in pkgutil.walk_packages(genai_handler.__path__, "genai_handler."):
    __import__(module.name)
print(json.dumps([path for path in compiled if path.startswith(sys.argv[1])]))
"""


@pytest.mark.parametrize("compiled", [True, False], ids=["as the Dockerfile builds it", "without its compile step"])
def test_given_the_images_function_dir_when_imported_without_writing_bytecode_then_only_a_compiled_one_skips_compiling(
    compiled: bool, image_packages: Path, tmp_path: Path
) -> None:
    # given /function built from the build context, with or without the Dockerfile's compile step, which
    # compiles /function with the image's Python
    [line] = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if "compileall" in line]
    command = shlex.split(line.removeprefix("RUN "))
    assert command[0] == f"python{IMAGE_PYTHON}" and command[-1] == "/function", line
    stage = bench_module().stage_function_dir
    function_dir = stage(ROOT, tmp_path / "function", Path(sys.executable), compiled=compiled)
    env = {"PYTHONPATH": f"{function_dir}:{image_packages}", "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"}
    # when func.py and every module of the package are imported as a container would (read-only /function)
    probe = subprocess.run(
        [sys.executable, "-S", "-c", _COMPILED_AT_START, str(function_dir)],
        cwd=function_dir,  # WORKDIR /function: python -c puts the working directory first on sys.path
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    compiled_at_start = {Path(path).relative_to(function_dir).as_posix() for path in json.loads(probe.stdout)}
    # then the built image compiles nothing of its own at start; without the step, every module every time
    if compiled:
        assert compiled_at_start == set()
    else:
        assert {"func.py", "genai_handler/handler.py", "genai_handler/warm.py"} <= compiled_at_start
    assert not any(path.startswith(("genai_handler/local/", "tests/")) for path in compiled_at_start)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.slim"])
def test_given_a_dockerfile_when_read_then_it_builds_and_runs_on_the_images_own_python(dockerfile: str) -> None:
    # given
    lines = (ROOT / dockerfile).read_text().splitlines()
    # when
    images = [line.split()[1] for line in lines if line.startswith("FROM ")]
    python_lines = [line for line in lines if "compileall" in line or line.startswith("ENTRYPOINT")]
    # then both stages are the image's Python, and the bytecode and the entrypoint use that interpreter by
    # name: in fnproject/python images `python3` can be the base system's (the fn CLI runs python3.12 too)
    assert images == [f"fnproject/python:{IMAGE_PYTHON}-dev", f"fnproject/python:{IMAGE_PYTHON}"]
    assert len(python_lines) == 2
    assert all(f"python{IMAGE_PYTHON} -m" in line or f'"python{IMAGE_PYTHON}", "-m"' in line for line in python_lines)
