"""The Makefile, run for real: its install steps with real interpreters, `make run`'s PROMPT, `make lint`.

Each install test copies the Makefile into an empty folder with its own small requirements files, so a
test builds a tiny .venv of its own (never the project's) and pip reads no index: a requirement
that can't be met fails at once, offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from genai_handler.local.run import DEFAULT_PROMPT

ROOT = Path(__file__).resolve().parents[1]
PYTHON_3_10 = Path.home() / ".pyenv" / "versions" / "3.10.13" / "bin" / "python3.10"
UNMET = "no-such-distribution-for-this-test==1.0\n"
# What `make run`, `make serve` and `make doctor` run, replaced by modules that say they ran.
_MODULES = ("genai_handler/local/run.py", "genai_handler/local/gateway.py", "genai_handler/doctor.py")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The Makefile with runtime and local requirements that install nothing, and dev requirements that can't be met."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text("# nothing to install\n")
    (tmp_path / "requirements-local.txt").write_text("# nothing to install\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n" + UNMET)
    for module in _MODULES:
        path = tmp_path / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"print('ran {module}')\n")
    return tmp_path


def make(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "VIRTUAL_ENV")
    }
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(project / "no-wheels"), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


# A .env at the repo root would choose where make run's calls go.
no_dotenv = pytest.mark.skipif((ROOT / ".env").exists(), reason="a .env at the repo root chooses the upstream")


def make_run(folder: Path, *args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real Makefile's `make run` with the real run module, on the interpreter running the tests (no install)."""
    shutil.copy(ROOT / "Makefile", folder / "Makefile")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENAI_", "MAKE", "MFLAGS")) and k != "PROMPT"}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", **(environ or {}))
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.runtime-installed", "run", f"BIN={bin_dir}", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def venv_version(project: Path) -> str:
    run = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.strip()


@pytest.mark.skipif(not PYTHON_3_10.exists(), reason=f"no Python 3.10 at {PYTHON_3_10} to play the wrong Python")
def test_given_a_wrong_python_when_make_run_then_it_is_refused_before_anything_is_built(project: Path) -> None:
    # when make run is asked to use Python 3.10
    result = make(project, "run", f"PYTHON={PYTHON_3_10}")
    # then it stops with a message that says what is needed and how to pick another interpreter
    assert result.returncode != 0
    assert "Python 3.11 or newer is needed" in result.stderr and "Python 3.10.13" in result.stderr
    assert "make run PYTHON=python3.12" in result.stderr
    # and nothing was built or installed
    assert not (project / ".venv").exists()
    assert "pip" not in result.stdout + result.stderr.replace("PYTHON=", "")


def test_given_a_missing_python_when_make_serve_then_it_is_named(project: Path) -> None:
    # when
    result = make(project, "serve", "PYTHON=python3.99-not-installed")
    # then
    assert result.returncode != 0
    assert "PYTHON=python3.99-not-installed is not found" in result.stderr
    assert "make serve PYTHON=python3.12" in result.stderr
    assert not (project / ".venv").exists()


def test_given_a_failing_install_when_make_run_then_no_venv_is_left_behind(project: Path) -> None:
    # given a requirement that cannot be installed
    (project / "requirements.txt").write_text(UNMET)
    # when make run builds .venv
    result = make(project, "run", f"PYTHON={sys.executable}")
    # then it fails, says so, and removes the half-built .venv so no later run reuses it
    assert result.returncode != 0
    assert "installing requirements.txt failed; removed .venv" in result.stderr
    assert not (project / ".venv").exists()


@pytest.mark.skipif(not PYTHON_3_10.exists(), reason=f"no Python 3.10 at {PYTHON_3_10} to play the wrong Python")
def test_given_a_venv_made_by_a_wrong_python_when_make_run_then_it_is_rebuilt(project: Path) -> None:
    # given a .venv that Python 3.10 left behind, as an older Makefile did when pip then failed
    subprocess.run([str(PYTHON_3_10), "-m", "venv", "--without-pip", str(project / ".venv")], check=True)
    assert venv_version(project) == "(3, 10)"
    # when make run runs with a supported Python
    result = make(project, "run", f"PYTHON={sys.executable}")
    # then .venv is rebuilt by that Python and the command runs
    assert result.returncode == 0, result.stderr
    assert venv_version(project) == str(sys.version_info[:2])
    assert "ran genai_handler/local/run.py" in result.stdout


def test_given_a_failing_local_tools_install_when_make_serve_then_no_venv_is_left_behind(project: Path) -> None:
    # given a local-tools requirement that cannot be installed
    (project / "requirements-local.txt").write_text(UNMET)
    # when make serve builds .venv
    result = make(project, "serve", f"PYTHON={sys.executable}")
    # then it fails, names the file, and removes the half-built .venv
    assert result.returncode != 0
    assert "installing requirements-local.txt failed; removed .venv" in result.stderr
    assert not (project / ".venv").exists()


def test_given_a_changed_local_tools_file_when_the_next_local_command_runs_then_it_reinstalls_first(
    project: Path,
) -> None:
    # given a .venv the local commands have built, newer than requirements.txt
    assert make(project, "serve", f"PYTHON={sys.executable}").returncode == 0
    assert make(project, "--question", ".venv/.runtime-installed").returncode == 0
    # when requirements-local.txt alone changes after that install
    (project / "requirements-local.txt").write_text(UNMET)
    now = (project / "requirements-local.txt").stat().st_mtime
    os.utime(project / "requirements.txt", (now - 100, now - 100))
    os.utime(project / ".venv" / ".runtime-installed", (now - 50, now - 50))
    # then make takes the install for out of date, and the next make serve installs that file again
    assert make(project, "--question", ".venv/.runtime-installed").returncode != 0
    result = make(project, "serve", f"PYTHON={sys.executable}")
    assert result.returncode != 0 and "installing requirements-local.txt failed" in result.stderr


def test_given_dev_requirements_when_run_serve_and_doctor_install_then_only_make_test_adds_them(project: Path) -> None:
    # given dev requirements that cannot be installed
    # when the local commands run
    for target, module in zip(("run", "serve", "doctor"), _MODULES, strict=True):
        result = make(project, target, f"PYTHON={sys.executable}")
        # then each runs without the dev requirements
        assert result.returncode == 0, (target, result.stderr)
        assert f"ran {module}" in result.stdout
    assert not (project / ".venv" / ".dev-installed").exists()
    # when make test runs after them
    result = make(project, "test", f"PYTHON={sys.executable}")
    # then it installs the dev requirements (which fail here)
    assert result.returncode != 0
    assert "installing requirements-dev.txt failed" in result.stderr
    assert "no-such-distribution-for-this-test" in result.stderr


def test_given_a_venv_when_make_clean_then_it_is_removed(project: Path) -> None:
    # given
    (project / ".venv" / "bin").mkdir(parents=True)
    # when
    assert make(project, "clean").returncode == 0
    # then
    assert not (project / ".venv").exists()


def _normal(distribution: str) -> str:
    return distribution.strip().lower().replace("-", "_").replace(".", "_")


def _pinned(requirements: str) -> set[str]:
    lines = (ROOT / requirements).read_text(encoding="utf-8").splitlines()
    return {_normal(line.split("==")[0]) for line in lines if "==" in line and not line.startswith("#")}


def _imported_distributions(sources: list[Path]) -> set[str]:
    """The installed distributions that provide the third-party modules the sources import (dotenv: python-dotenv)."""
    owners = packages_distributions()
    found = set()
    for source in sources:
        for line in source.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and not stripped.startswith(("from .", "from __future__")):
                name = stripped.split()[1].split(".")[0]
                if name not in sys.stdlib_module_names:
                    found |= {_normal(d) for d in owners.get(name, [name])}
    return found


def test_given_what_the_local_commands_import_when_matched_to_the_pins_then_it_is_the_image_requirements() -> None:
    """requirements.txt suffices for the package the image holds; make run/serve/doctor's own modules
    (genai_handler/local) add only requirements-local.txt, which the image never gets."""
    # given
    package = _imported_distributions(sorted((ROOT / "genai_handler").glob("*.py")))
    local = _imported_distributions(sorted((ROOT / "genai_handler" / "local").glob("*.py")))
    # when
    image, local_tools = _pinned("requirements.txt"), _pinned("requirements-local.txt")
    # then
    # oci and httpx are imported lazily, only for the principals and clients that need them
    assert package - {"oci", "httpx"} <= image, package - image
    assert local - {"oci", "httpx"} <= image | local_tools, local - image - local_tools
    assert "python_dotenv" in local and not local_tools & image


# Everything a shell or make might take for its own: make's $ and $$, the shell's backticks, quotes, $(...),
# ${...}, and a trailing backslash; %, #, a newline and non-ASCII.
AWKWARD_PROMPT = "It costs $5 and `date`; $$HOME ${HOME} $(shell id) \"double\" 'single' 100% #hash\nline 2: é 中 🙂 \\"


def _answered(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    answer = done.stdout[done.stdout.index("{\n") :]  # after the recipe make echoes
    return json.loads(answer)["output_text"].removeprefix("Local answer to: ")


@no_dotenv
def test_given_an_awkward_prompt_on_the_command_line_when_make_run_then_the_function_gets_it_byte_for_byte(
    tmp_path: Path,
) -> None:
    # when
    done = make_run(tmp_path, f"PROMPT={AWKWARD_PROMPT}")
    # then
    assert _answered(done) == AWKWARD_PROMPT


@no_dotenv
def test_given_an_awkward_prompt_in_the_environment_when_make_run_then_the_function_gets_it_byte_for_byte(
    tmp_path: Path,
) -> None:
    # given leading blanks too, which only the environment keeps (make trims them from command-line values)
    prompt = "  \t" + AWKWARD_PROMPT
    # when
    done = make_run(tmp_path, environ={"PROMPT": prompt})
    # then
    assert _answered(done) == prompt


@no_dotenv
def test_given_no_prompt_when_make_run_then_the_default_prompt_is_sent(tmp_path: Path) -> None:
    # when / then
    assert _answered(make_run(tmp_path)) == DEFAULT_PROMPT


# A file with one of each: an unused import (F401), a noqa and a type: ignore that name no rule that fires (RUF100,
# ignore-without-code), a line ruff format would change, and a wrong return type (mypy's return-value).
_UNLINTED = '''"""A module with one problem for each check."""

import os

x = {'quoted': 1}  # noqa: T201


def f(n: int) -> str:
    return n  # type: ignore
'''
_LINTED = '''"""A module with no problem."""


def f(n: int) -> str:
    return str(n)
'''


def _lint(folder: Path, module: str) -> subprocess.CompletedProcess[str]:
    """`make lint` with the project's Makefile and pyproject.toml over one module, with this venv's tools."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, folder / name)
    for path in ("genai_handler/__init__.py", "func.py", "bench/bench.py", "tests/__init__.py"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text('"""Empty."""\n')
    (folder / "genai_handler" / "module.py").write_text(module)
    stamps = [arg for stamp in (".venv/.runtime-installed", ".venv/.dev-installed") for arg in ("-o", stamp)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", "--no-print-directory", *stamps, "lint", f"BIN={Path(sys.executable).parent}"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_given_a_problem_for_each_check_when_make_lint_then_every_check_reports_and_it_fails(tmp_path: Path) -> None:
    # when
    done = _lint(tmp_path, _UNLINTED)
    out = done.stdout + done.stderr
    # then ruff check, ruff format and mypy each ran and said what is wrong
    assert done.returncode != 0
    assert "F401" in out and "RUF100" in out
    assert "Would reformat: genai_handler/module.py" in out or "1 file would be reformatted" in out
    assert "[ignore-without-code]" in out


def test_given_clean_code_when_make_lint_then_it_passes(tmp_path: Path) -> None:
    # when
    done = _lint(tmp_path, _LINTED)
    # then
    assert done.returncode == 0, done.stdout + done.stderr
