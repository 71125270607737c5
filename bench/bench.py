"""`make bench`: this function vs the documented way (oci-genai-auth + oci SDK), side by side.

Each runner (see `runners`) runs under the real fdk from its own virtualenv, with the same local
identity and against the same signature-verifying local endpoint, taking turns so that machine noise
hits all alike. Each runs from a staged copy of its image's /function (`stage_function_dir`) with no
bytecode written, as a container does. bench/README.md says what each figure means, and the caveats.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run as `python bench/bench.py`: import the local tooling

from genai_handler.local.agent import FunctionProcess, image_entrypoint  # noqa: E402  (after the path above)
from genai_handler.local.endpoint import LocalEndpoint  # noqa: E402  (after the path above)
from genai_handler.local.identity import LocalIdentity  # noqa: E402  (after the path above)
from genai_handler.settings import DEFAULT_MODEL  # noqa: E402  (after the path above)

PROJECT_OCID = "ocid1.generativeaiproject.oc1.us-chicago-1.aaaabenchproject"
PROMPT_BODY = {"prompt": "Say hello from OCI Functions"}
OPENAI_ROUTE = "/genai/v1/responses"
_TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
_CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
# Calls on the OpenAI-compatible route, alternated in one warm container: a plain call, the same call
# streamed, and an agent's tool round trip (the model calls the tool; its output goes back).
ROUTE_BODIES: dict[str, dict[str, Any]] = {
    "plain": {"input": "Say hello"},
    "stream": {"input": "Say hello", "stream": True},
    "tool_call": {"input": "Weather in Paris?", "tools": [_TOOL], "tool_choice": "required"},
    "tool_output": {
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            _CALL,
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        "tools": [_TOOL],
    },
    "continued": {"input": "And then?"},  # previous_response_id: the plain call's, so the owner check runs first
}
CACHE_DIR = BENCH_DIR / ".venv-cache"  # git-ignored with the venvs (bench/.venv*/)
MB = 1024 * 1024
COLD_GOAL = 0.74  # cold start, wall and CPU time, against the baseline (issue 21)
PRESTARTED_EXCESS_MS = 5.0  # a pre-started container's first answer "within a few ms of a warm call" (issue 21)


@dataclass(frozen=True)
class Plan:
    """How much to measure: a full run fits in ~10 minutes on 2 cores; --quick is a smoke run."""

    cold_rounds: int = 15
    warm_calls: int = 2000
    warmup_calls: int = 10
    rss_mark: int = 200  # RSS is read after this call and after the last one
    block: int = 50  # warm calls per turn before the next runner's turn
    conn_calls: int = 10  # on each side of the pause
    pause_s: float = 6.0  # longer than httpx's 5 s keep-alive expiry
    import_runs: int = 5
    prestart_pause_s: float = 1.0  # a pre-started container idles this long after listening, then gets its call
    breakdown_runs: int = 5  # fresh processes timing the first call's parts


QUICK = Plan(
    cold_rounds=2,
    warm_calls=300,
    rss_mark=50,
    block=25,
    conn_calls=5,
    pause_s=0.0,
    import_runs=2,
    prestart_pause_s=0.0,
    breakdown_runs=2,
)


@dataclass(frozen=True)
class Runner:
    """One way of running the function: its code, its virtualenv, its settings."""

    name: str
    function_dir: Path
    requirements: Path
    venv: Path
    settings: Mapping[str, str] = field(default_factory=dict)
    compiled: bool = True  # run its Dockerfile's compileall line when staging (if it has one)
    cold_only: bool = False  # a variant of another runner's layout: cold starts and import only

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


# ---------------------------------------------------------------- statistics and the table


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), so p50 of two is their mean."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(this: float | None, baseline: float | None) -> float | None:
    if this is None or baseline is None or baseline == 0:
        return None
    return this / baseline


@dataclass
class Row:
    """One line of the table: a figure for each runner and the goal it is held to, if any."""

    figure: str
    this: float | None
    baseline: float | None
    floor: float | None = None
    goal: str = ""
    met: bool | None = None
    digits: int = 1

    @property
    def ratio(self) -> float | None:
        return ratio(self.this, self.baseline)


def _cell(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table; `met` shows as yes/NO so a missed goal stands out."""
    lines = [
        "| figure | this | baseline | this/baseline | floor (api key) | goal | met |",
        "|---|--:|--:|--:|--:|---|:-:|",
    ]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        ratio_cell = "—" if row.ratio is None else f"{row.ratio:.2f}x"
        lines.append(
            f"| {row.figure} | {_cell(row.this, row.digits)} | {_cell(row.baseline, row.digits)} | {ratio_cell} "
            f"| {_cell(row.floor, row.digits)} | {row.goal} | {met} |"
        )
    return "\n".join(lines)


def importtime_offenders(stderr: str, top: int = 10) -> dict[str, list[tuple[str, float]]]:
    """Summarise `python -X importtime` output: self time per top-level package, and slowest modules.

    Self times add up without double counting, so the per-package sums show where import time goes.
    """
    by_package: dict[str, float] = {}
    by_module: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if not self_us.isdigit():
            continue  # the header line
        ms = int(self_us) / 1000
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0.0) + ms
        by_module.append((name, ms))
    packages = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    modules = sorted(by_module, key=lambda item: -item[1])[:top]
    return {
        "packages_ms": [(n, round(ms, 1)) for n, ms in packages],
        "modules_ms": [(n, round(ms, 1)) for n, ms in modules],
    }


# ---------------------------------------------------------------- environments


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _requirements_digest(requirements: Path, python: str) -> str:
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, check=True).stdout
    return _digest(requirements.read_bytes(), version)


def _run_logged(command: Sequence[str], log: Path) -> None:
    """pip is chatty (warnings about this machine's extra indexes); keep its output for failures."""
    with open(log, "ab") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed; see {log}")


def ensure_venv(runner: Runner, base_python: str, say: Callable[[str], None]) -> None:
    """Build the runner's virtualenv unless the stamp says it matches its requirements already."""
    stamp = runner.venv / ".bench-stamp"
    digest = _requirements_digest(runner.requirements, base_python)
    if stamp.exists() and stamp.read_text() == digest and runner.python.exists():
        return
    say(f"building {runner.venv.relative_to(REPO_ROOT)} from {runner.requirements.relative_to(REPO_ROOT)} ...")
    shutil.rmtree(runner.venv, ignore_errors=True)
    log = BENCH_DIR / "out" / f"pip-{runner.venv.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _run_logged([base_python, "-m", "venv", str(runner.venv)], log)
    _run_logged([str(runner.python), "-m", "pip", "install", "--quiet", "-r", str(runner.requirements)], log)
    stamp.write_text(digest)


def payload_mb(runner: Runner, say: Callable[[str], None], *, no_deps: bool = False) -> float:
    """What the image's /python would hold: `pip install --target` of the requirements, by du.

    `no_deps`: as Dockerfile.slim installs it. Cached by the requirements' hash: the install
    takes a minute for the baseline.
    """
    digest = _requirements_digest(runner.requirements, str(runner.python)) + ("-no-deps" if no_deps else "")
    cache = CACHE_DIR / f"payload-{digest}.json"
    if cache.exists():
        return float(json.loads(cache.read_text())["mb"])
    say(f"measuring the installed size of {runner.requirements.relative_to(REPO_ROOT)} ...")
    with tempfile.TemporaryDirectory(prefix="bench-payload-") as target:
        log = BENCH_DIR / "out" / f"pip-payload-{runner.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(runner.python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            target,
            "-r",
            str(runner.requirements),
        ]
        command += ["--no-deps"] if no_deps else []
        _run_logged(command, log)
        du = subprocess.run(
            ["du", "-sk", target],  # noqa: S607  (coreutils, from PATH)
            capture_output=True,
            text=True,
            check=True,
        )
        kb = int(du.stdout.split()[0])
    mb = kb * 1024 / MB
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"mb": mb, "requirements": str(runner.requirements.relative_to(REPO_ROOT))}))
    return mb


# ---------------------------------------------------------------- the image's /function, staged

IMAGE_FUNCTION_DIR = "/function"


def dockerignore_patterns(source: Path) -> list[str]:
    """The build context's exclusions, one a line; `#` lines are comments, as Docker reads them."""
    path = source / ".dockerignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _segments_match(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_segments_match(pattern[1:], parts[skip:]) for skip in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _segments_match(pattern[1:], parts[1:])


def ignored(relative: str, patterns: Sequence[str]) -> bool:
    """Whether Docker leaves `relative` (a path in the context, `/`-separated) out of the build context:
    a pattern excludes a path or any directory above it, `*` stays within a segment, `**` spans any
    number, and the last pattern that matches decides (`!` lets a path back in)."""
    parts = relative.split("/")
    verdict = False
    for pattern in patterns:
        segments = pattern.removeprefix("!").strip("/").split("/")
        if any(_segments_match(segments, parts[:depth]) for depth in range(1, len(parts) + 1)):
            verdict = not pattern.startswith("!")
    return verdict


def _dockerfile_commands(source: Path) -> list[list[str]]:
    """Each shell command of the Dockerfile's RUN lines (continuations joined, split at `&&`), as words."""
    path = source / "Dockerfile"
    text = path.read_text(encoding="utf-8").replace("\\\n", " ") if path.exists() else ""
    commands = []
    for line in text.splitlines():
        if line.startswith("RUN "):
            commands += [shlex.split(part) for part in line.removeprefix("RUN ").split("&&") if part.strip()]
    return commands


def _in_stage(word: str, stage: Path) -> str:
    """The Dockerfile's /function paths, pointed at the stage."""
    if word == IMAGE_FUNCTION_DIR or word.startswith(IMAGE_FUNCTION_DIR + "/"):
        return str(stage / word.removeprefix(IMAGE_FUNCTION_DIR).lstrip("/"))
    return word


def stage_function_dir(source: Path, stage: Path, python: Path, *, compiled: bool = True) -> Path:
    """`stage` laid out as the image's /function: the build context (`.dockerignore` applied, and never
    a `__pycache__` or `.pyc`: a source tree's leftover bytecode must not count), then what the
    Dockerfile's RUN lines remove from /function, then its compileall line run with `python` (bytecode
    is per Python version) unless `compiled` is false. The Dockerfile itself is put back, so that
    FunctionProcess starts its ENTRYPOINT. Without a Dockerfile (the fn CLI generates one that compiles
    nothing of /function) only the copy is made."""
    patterns = dockerignore_patterns(source)
    prune = not any(pattern.startswith("!") for pattern in patterns)
    for folder, dirs, files in os.walk(source):
        here = Path(folder).relative_to(source)
        dirs[:] = [
            name
            for name in dirs
            if name != "__pycache__" and not (prune and ignored((here / name).as_posix(), patterns))
        ]
        for name in files:
            relative = (here / name).as_posix()
            if name.endswith(".pyc") or ignored(relative, patterns):
                continue
            (stage / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, stage / relative)
    stage.mkdir(parents=True, exist_ok=True)
    commands = _dockerfile_commands(source)
    for command in commands:
        if command[0] == "rm":
            for word in command[1:]:
                if word.startswith(IMAGE_FUNCTION_DIR + "/"):
                    for path in stage.glob(word.removeprefix(IMAGE_FUNCTION_DIR + "/")):
                        if path.is_dir():
                            shutil.rmtree(path)
                        else:
                            path.unlink()
    if compiled:
        for command in commands:
            if "compileall" in command:
                argv = [str(python) if command[0].startswith("python") else command[0]]
                subprocess.run(argv + [_in_stage(word, stage) for word in command[1:]], check=True)
    if (source / "Dockerfile").exists():
        shutil.copy2(source / "Dockerfile", stage / "Dockerfile")
    return stage


def layout(stage: Path) -> dict[str, int]:
    """What a staged /function holds: its Python sources, and how many have a .pyc beside them."""
    sources = [path for path in stage.rglob("*.py") if "__pycache__" not in path.parts]
    compiled = [path for path in sources if any((path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"))]
    return {"py_files": len(sources), "py_files_compiled": len(compiled)}


def stage_runners(runners: Sequence[Runner], root: Path) -> list[Runner]:
    """Each runner pointed at its staged /function under `root`; runners with the same code and
    compile step share one."""
    staged: dict[tuple[Path, bool], Path] = {}
    result = []
    for runner in runners:
        key = (runner.function_dir, runner.compiled)
        if key not in staged:
            destination = root / f"function-{runner.name}"
            staged[key] = stage_function_dir(runner.function_dir, destination, runner.python, compiled=runner.compiled)
        result.append(replace(runner, function_dir=staged[key]))
    return result


# ---------------------------------------------------------------- measurements


def _rss(pid: int) -> int:
    process = psutil.Process(pid)
    return process.memory_info().rss + sum(child.memory_info().rss for child in process.children(recursive=True))


def _cpu_ms(pid: int) -> float:
    """CPU time (user + sys) the process has used so far: steadier than wall time on a busy machine."""
    times = psutil.Process(pid).cpu_times()
    return (times.user + times.system) * 1000


_WARMING_CALLS = 10  # calls that make the pre-started container warm before its control call
PRESTARTED = ("this", "baseline")  # runners whose pre-started container's first answer is timed


class Bench:
    """The shared identity and endpoint, and the runners measured against them."""

    def __init__(self, runners: Sequence[Runner], plan: Plan, workdir: Path, say: Callable[[str], None]) -> None:
        self.runners = list(runners)
        self.long_running = [runner for runner in self.runners if not runner.cold_only]
        self.plan = plan
        self.workdir = workdir
        self.say = say
        self.identity = LocalIdentity(workdir / "identity")
        self.endpoint = LocalEndpoint(trusted_issuer=self.identity.issuer_public_key, project_ocid=PROJECT_OCID)
        self.api_key = secrets.token_urlsafe(24)
        self.endpoint.register_bearer(self.api_key)

    def env(self, runner: Runner) -> dict[str, str]:
        settings = {key: value.replace("{api_key}", self.api_key) for key, value in runner.settings.items()}
        return {
            **self.identity.env(),
            "GENAI_PROJECT_OCID": PROJECT_OCID,
            "GENAI_BASE_URL": self.endpoint.base_url,
            "GENAI_MODEL": DEFAULT_MODEL,  # the baseline has no default of its own
            "PYTHONDONTWRITEBYTECODE": "1",  # a function container can write only /tmp
            **settings,
        }

    def _log_path(self, runner: Runner) -> Path:
        return self.workdir / f"{runner.name}.log"

    @contextmanager
    def function(self, runner: Runner) -> Iterator[FunctionProcess]:
        with open(self._log_path(runner), "ab") as log:
            process = FunctionProcess(
                self.env(runner), function_dir=runner.function_dir, python=str(runner.python), log=log
            )
            try:
                yield process
            finally:
                process.stop()

    def _call(self, process: FunctionProcess, runner: Runner) -> float:
        """One invocation as API Gateway sends it; its latency in ms, seen from the agent."""
        started = time.perf_counter()
        answer = process.invoke(PROMPT_BODY)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.http_status != 200:
            raise RuntimeError(f"{runner.name}: HTTP {answer.http_status}: {answer.body[:500]!r}")
        return elapsed

    def _turns(self, round_: int, runners: Sequence[Runner] | None = None) -> list[Runner]:
        """Each round starts with the next runner, so none always goes first (or last)."""
        runners = list(self.long_running if runners is None else runners)
        shift = round_ % len(runners)
        return runners[shift:] + runners[:shift]

    def _probe_env(self, runner: Runner) -> dict[str, str]:
        """A fresh process's environment in the runner's staged /function, as the image sets it."""
        return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(runner.function_dir), **self.env(runner)}

    def import_times(self, runner: Runner) -> dict[str, Any]:
        """`import func` in the runner's venv, as the fdk does on the first call: PYTHONPATH and the working
        directory as in the image (`python -c` puts the working directory first on sys.path), no bytecode
        written. One run first, untimed, so the page cache is warm for all."""
        env = self._probe_env(runner)
        timed = "import time; t = time.perf_counter(); import func; print((time.perf_counter() - t) * 1000)"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            command = [str(runner.python), *args]
            return subprocess.run(command, env=env, cwd=runner.function_dir, check=True, capture_output=True, text=True)

        run("-c", "import func")
        walls = [float(run("-c", timed).stdout.strip().splitlines()[-1]) for _ in range(self.plan.import_runs)]
        traced = run("-X", "importtime", "-c", "import func")
        return {"wall_ms": walls, "median_ms": percentile(walls, 50), **importtime_offenders(traced.stderr)}

    def first_call_parts(self, runner: Runner) -> dict[str, Any]:
        """The first call's work, timed in parts in a fresh process (see _FIRST_CALL); median of
        `breakdown_runs` after one untimed run. Building the client is timed only where the image's
        entrypoint does it before listening (genai_handler.warm); the baseline builds its client at import."""
        builds_client = "genai_handler.warm" in image_entrypoint(runner.function_dir)
        script = _FIRST_CALL.replace("BODY", repr(json.dumps(PROMPT_BODY).encode()))
        command = [str(runner.python), "-c", script, str(runner.function_dir / "func.py"), str(int(builds_client))]
        runs = []
        for _ in range(self.plan.breakdown_runs + 1):
            env, cwd = self._probe_env(runner), runner.function_dir
            out = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
            marked = [line for line in out.stdout.splitlines() if line.startswith(_MARK)]
            if out.returncode != 0 or not marked:
                raise RuntimeError(f"{runner.name}: the first-call probe failed: {(out.stdout + out.stderr)[-2000:]}")
            runs.append(json.loads(marked[-1].removeprefix(_MARK)))
        timed = runs[1:]
        return {
            **{key: None if timed[0][key] is None else percentile([r[key] for r in timed], 50) for key in timed[0]},
            "builds_client_before_listening": builds_client,
            "runs": timed,
        }

    def cold_starts(self) -> dict[str, list[dict[str, float]]]:
        """Process start to the first 200, per round, and the CPU time the function's process used by
        then; for PRESTARTED runners also a second container that idles `prestart_pause_s` after it
        listens before its first call. Round 0 warms the page cache and is dropped."""
        results: dict[str, list[dict[str, float]]] = {r.name: [] for r in self.runners}
        for round_ in range(self.plan.cold_rounds + 1):
            for runner in self._turns(round_, self.runners):
                figures = self._cold_start(runner)
                if runner.name in PRESTARTED:
                    figures |= self._prestarted(runner)
                if round_ > 0:
                    results[runner.name].append(figures)
            self.say(f"  cold start round {round_}/{self.plan.cold_rounds} done")
        return results

    def _cold_start(self, runner: Runner) -> dict[str, float]:
        with self.function(runner) as process:
            started = time.perf_counter()
            process.start()
            ready = time.perf_counter()
            self._call(process, runner)
            done = time.perf_counter()
            cpu_ms = _cpu_ms(process.pid)
            rss = _rss(process.pid)
        return {
            "total_ms": (done - started) * 1000,
            "fdk_ready_ms": (ready - started) * 1000,
            "first_call_ms": (done - ready) * 1000,
            "cpu_ms": cpu_ms,
            "rss_mb": rss / MB,
        }

    def _prestarted(self, runner: Runner) -> dict[str, float]:
        """A container the platform started ahead of traffic: listening, idle a moment, then its first call.
        The control: the same container, warm, idle as long, then one more call (a call after idling pays
        for cold caches and a sleeping loop too, which back-to-back warm calls never do)."""
        with self.function(runner) as process:
            process.start()
            time.sleep(self.plan.prestart_pause_s)
            first_ms = self._call(process, runner)
            for _ in range(_WARMING_CALLS):
                self._call(process, runner)
            time.sleep(self.plan.prestart_pause_s)
            return {"prestarted_first_call_ms": first_ms, "warm_after_pause_ms": self._call(process, runner)}

    def warm(self) -> dict[str, dict[str, Any]]:
        """All runners warm at once; blocks of calls take turns. RSS at the mark and at the end."""
        plan = self.plan
        latencies: dict[str, list[float]] = {r.name: [] for r in self.long_running}
        rss: dict[str, dict[str, int]] = {r.name: {} for r in self.long_running}
        log_sizes: dict[str, int] = {}
        with ExitStack() as stack:
            processes = {r.name: stack.enter_context(self.function(r)) for r in self.long_running}
            for process in processes.values():
                process.start()
            done = 0
            while done < plan.warm_calls:
                block = min(plan.block, plan.warm_calls - done)
                for runner in self._turns(done // plan.block):
                    process = processes[runner.name]
                    for index in range(done + 1, done + block + 1):
                        if index == 1:
                            log_sizes[runner.name] = self._log_path(runner).stat().st_size
                        elapsed = self._call(process, runner)
                        if index > plan.warmup_calls:
                            latencies[runner.name].append(elapsed)
                        if index in (plan.rss_mark, plan.warm_calls):
                            rss[runner.name][str(index)] = _rss(process.pid)
                done += block
                if done % 500 == 0 or done == plan.warm_calls:
                    self.say(f"  warm calls {done}/{plan.warm_calls} per runner")
            calls_logged = {
                r.name: (self._log_path(r).stat().st_size - log_sizes[r.name]) / plan.warm_calls
                for r in self.long_running
            }
        return {
            r.name: {
                "p50_ms": percentile(latencies[r.name], 50),
                "p90_ms": percentile(latencies[r.name], 90),
                "p99_ms": percentile(latencies[r.name], 99),
                "max_ms": max(latencies[r.name]),
                "calls_timed": len(latencies[r.name]),
                "rss_mb_at_mark": rss[r.name][str(plan.rss_mark)] / MB,
                "rss_mb_at_end": rss[r.name][str(plan.warm_calls)] / MB,
                "rss_growth_mb": (rss[r.name][str(plan.warm_calls)] - rss[r.name][str(plan.rss_mark)]) / MB,
                "log_bytes_per_call": calls_logged[r.name],
            }
            for r in self.long_running
        }

    def openai_route(self, runner: Runner) -> dict[str, Any]:
        """ROUTE_BODIES alternating in one warm container: p50 latency and body bytes of each, so a relayed
        stream (docs/streaming.md) and a tool round trip (docs/agents.md) compare with a plain call."""
        latencies: dict[str, list[float]] = {name: [] for name in ROUTE_BODIES}
        sizes: dict[str, int] = {}
        with self.function(runner) as process:
            process.start()
            for index in range(self.plan.warmup_calls + self.plan.warm_calls // 10):
                last_id = None
                for name, body in ROUTE_BODIES.items():
                    sent = {**body, "previous_response_id": last_id} if name == "continued" else body
                    started = time.perf_counter()
                    answer = process.invoke(sent, path=OPENAI_ROUTE)
                    elapsed = (time.perf_counter() - started) * 1000
                    if answer.http_status != 200:
                        raise RuntimeError(f"{name}: HTTP {answer.http_status}: {answer.body[:500]!r}")
                    if index >= self.plan.warmup_calls:
                        latencies[name].append(elapsed)
                    sizes[name] = len(answer.body)
                    if name == "plain":
                        last_id = answer.json()["id"]
        return {
            **{f"{name}_p50_ms": percentile(values, 50) for name, values in latencies.items()},
            **{f"{name}_bytes": size for name, size in sizes.items()},
        }

    def connections(self) -> dict[str, dict[str, Any]]:
        """Upstream TCP connections a fresh warm container opens for calls on both sides of a pause."""
        results: dict[str, dict[str, Any]] = {}
        for runner in self.long_running:
            with self.function(runner) as process:
                process.start()
                self.endpoint.reset()
                for _ in range(self.plan.conn_calls):
                    self._call(process, runner)
                before_pause = self.endpoint.connections_opened
                time.sleep(self.plan.pause_s)
                for _ in range(self.plan.conn_calls):
                    self._call(process, runner)
                calls = 2 * self.plan.conn_calls
                results[runner.name] = {
                    "calls": calls,
                    "pause_s": self.plan.pause_s,
                    "connections_before_pause": before_pause,
                    "connections": self.endpoint.connections_opened,
                    "upstream_requests": len(self.endpoint.requests),
                    "rejected_401": sum(1 for r in self.endpoint.requests if r.status == 401),
                }
        self.endpoint.reset()
        return results


_MARK = "bench-first-call: "
# Run in the runner's staged /function: what the first call does, in the order a container does it.
# The fdk is imported before timing (it is running by then); func.py is loaded through the fdk's own loader.
_FIRST_CALL = r"""
import io, json, sys, time
from fdk import customer_code
from fdk.context import InvokeContext
func_py, builds_client = sys.argv[1], sys.argv[2] == "1"
began = time.perf_counter()
handler = customer_code.Function(func_py, "handler").handler()
imported = time.perf_counter()
if builds_client:
    from genai_handler.handler import prepare
    prepare()
built = time.perf_counter()
headers = {"fn-intent": "httprequest", "fn-http-method": "POST", "fn-http-request-url": "/genai/chat",
           "fn-http-h-x-genai-caller": "bench", "fn-http-h-content-type": "application/json"}

def call():
    ctx = InvokeContext("app", "app", "fn", "fn", "call", content_type="application/json", headers=headers,
                        method="POST", request_url="/genai/chat", fn_format="http-stream")
    began = time.perf_counter()
    reply = handler(ctx, io.BytesIO(BODY))
    elapsed = (time.perf_counter() - began) * 1000
    status = int(reply.context().GetResponseHeaders().get("fn-http-status", reply.status()))
    if status != 200:
        sys.exit(f"HTTP {status}: {reply.body()[:500]!r}")
    return elapsed

first = call()
second = call()
print("MARK" + json.dumps({"import_ms": (imported - began) * 1000,
                           "client_ms": (built - imported) * 1000 if builds_client else None,
                           "first_request_ms": first, "second_request_ms": second}))
""".replace("MARK", _MARK)

_MICRO = r"""
import json, statistics, sys, time
import openai, pydantic  # already on the cold path: not the contract's cost
began = time.perf_counter()
import genai_handler.contract
built_ms = (time.perf_counter() - began) * 1000
from genai_handler import guardrails, request
from genai_handler.contract import texts
from genai_handler.settings import Settings
settings = Settings(project_ocid="PROJECT", base_url="http://127.0.0.1:9/openai/v1")
body = json.dumps({"input": [{"role": "user", "content": "Say hello"}], "instructions": "Be brief",
                   "text": {"format": {"type": "json_schema", "name": "reply", "schema": {"type": "object"}}}}).encode()
parse_us = []
for _ in range(3000):
    began = time.perf_counter()
    request.parse(body, settings)
    parse_us.append((time.perf_counter() - began) * 1e6)
prompt = "😀 " + "a@b.co " * 4500
parsed = request.parse(json.dumps({"prompt": prompt}).encode(), settings)
found = texts(parsed)
findings = [guardrails._Finding(3 + 7 * i, 6, "a@b.co", "EMAIL") for i in range(4500)]  # UTF-16 offsets
began = time.perf_counter()
guardrails._redacted(parsed, found, prompt, findings, guardrails._Clock(float("inf"), None))
redact_ms = (time.perf_counter() - began) * 1000
print(json.dumps({"contract_built_ms": built_ms, "parse_us": statistics.median(parse_us), "redact_4500_ms": redact_ms}))
"""


def micro(runner: Runner) -> dict[str, float]:
    """In-process costs too small for the fdk runs: the request contract (classes built at import,
    one request parsed and capped) and redacting 4,500 PII findings after an emoji, without the service."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}
    script = _MICRO.replace("PROJECT", PROJECT_OCID)
    out = subprocess.run([str(runner.python), "-c", script], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the run


def build_rows(results: dict[str, Any]) -> list[Row]:
    """The table, with each goal from the issue held against the figures of this run."""
    this, base, floor = (results["runners"].get(name, {}) for name in ("this", "baseline", "floor"))

    def get(runner: dict[str, Any], *path: str) -> float | None:
        value: Any = runner
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def at_most(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    plan = results["plan"]
    uncompiled = results["runners"].get("this_uncompiled", {})
    cold, base_cold = get(this, "cold", "total_ms"), get(base, "cold", "total_ms")
    cpu, base_cpu = get(this, "cold", "cpu_ms"), get(base, "cold", "cpu_ms")
    rows = [
        Row(
            "payload: pip install --target (MB)",
            get(this, "payload_mb"),
            get(base, "payload_mb"),
            None,
            "≤0.25x",
            at_most(ratio(get(this, "payload_mb"), get(base, "payload_mb")), 0.25),
        ),
        Row(
            "payload with Dockerfile.slim (--no-deps) (MB)",
            get(this, "payload_slim_mb"),
            get(base, "payload_mb"),
            None,
            "",
            None,
        ),
        Row(
            "import func (ms, median)",
            get(this, "import", "median_ms"),
            get(base, "import", "median_ms"),
            None,
            "",
            None,
        ),
        Row(
            "  import func, own code not compiled (ms, median)",
            get(uncompiled, "import", "median_ms"),
            get(base, "import", "median_ms"),
            None,
            "",
            None,
        ),
        Row(
            "cold start: start → first 200 (ms, median)",
            cold,
            base_cold,
            get(floor, "cold", "total_ms"),
            f"≤{COLD_GOAL}x",
            at_most(ratio(cold, base_cold), COLD_GOAL),
            0,
        ),
        Row(
            "  of which start → listening (ms, median)",
            get(this, "cold", "fdk_ready_ms"),
            get(base, "cold", "fdk_ready_ms"),
            get(floor, "cold", "fdk_ready_ms"),
            "",
            None,
            0,
        ),
        Row(
            "  of which the first call (ms, median)",
            get(this, "cold", "first_call_ms"),
            get(base, "cold", "first_call_ms"),
            get(floor, "cold", "first_call_ms"),
            "",
            None,
            0,
        ),
        Row(
            "cold start: CPU time of the function process to first 200 (ms, median)",
            cpu,
            base_cpu,
            get(floor, "cold", "cpu_ms"),
            f"≤{COLD_GOAL}x",
            at_most(ratio(cpu, base_cpu), COLD_GOAL),
            0,
        ),
        Row(
            "cold start, own code not compiled: start → first 200 (ms, median)",
            get(uncompiled, "cold", "total_ms"),
            base_cold,
            None,
            "",
            None,
            0,
        ),
        Row(
            "  its CPU time to first 200 (ms, median)",
            get(uncompiled, "cold", "cpu_ms"),
            base_cpu,
            None,
            "",
            None,
            0,
        ),
        Row(
            "first call's parts, fresh process: import func.py (ms, median)",
            get(this, "first_call", "import_ms"),
            get(base, "first_call", "import_ms"),
            None,
            "",
            None,
        ),
        Row(
            "  build the client: prepare() (baseline: in its import) (ms, median)",
            get(this, "first_call", "client_ms"),
            get(base, "first_call", "client_ms"),
            None,
            "",
            None,
        ),
        Row(
            "  first request (ms, median)",
            get(this, "first_call", "first_request_ms"),
            get(base, "first_call", "first_request_ms"),
            None,
            "",
            None,
        ),
        Row(
            "  second request (ms, median)",
            get(this, "first_call", "second_request_ms"),
            get(base, "first_call", "second_request_ms"),
            None,
            "",
            None,
        ),
    ]
    p50, b50, f50 = get(this, "warm", "p50_ms"), get(base, "warm", "p50_ms"), get(floor, "warm", "p50_ms")
    p50_met = None if p50 is None or b50 is None or f50 is None else (p50 <= b50 and p50 - f50 <= 1.0)
    pre, base_pre = get(this, "cold", "prestarted_first_call_ms"), get(base, "cold", "prestarted_first_call_ms")
    after, base_after = get(this, "cold", "warm_after_pause_ms"), get(base, "cold", "warm_after_pause_ms")
    pause = "?" if plan.get("prestart_pause_s") is None else f"{plan['prestart_pause_s']:g}"

    def over(first: float | None, warm: float | None) -> float | None:
        return None if first is None or warm is None else first - warm

    rows += [
        Row("warm latency p50 (ms)", p50, b50, f50, "≤1.0x and ≤ floor + 1 ms", p50_met, 2),
        Row(
            f"pre-started container: first answer, {pause} s after listening (ms, median)",
            pre,
            base_pre,
            None,
            "",
            None,
            2,
        ),
        Row("  its excess over warm p50 (ms)", over(pre, p50), over(base_pre, b50), None, "", None, 2),
        Row(
            f"  the same container warm, a call {pause} s after the last (ms, median)",
            after,
            base_after,
            None,
            "",
            None,
            2,
        ),
        Row(
            "  the first answer's excess over that warm call (ms)",
            over(pre, after),
            over(base_pre, base_after),
            None,
            f"≤{PRESTARTED_EXCESS_MS:g} ms (a few)",
            at_most(over(pre, after), PRESTARTED_EXCESS_MS),
            2,
        ),
        Row(
            "warm latency p99 (ms)",
            get(this, "warm", "p99_ms"),
            get(base, "warm", "p99_ms"),
            get(floor, "warm", "p99_ms"),
            "",
            None,
            2,
        ),
        Row(
            f"RSS after {plan['rss_mark']} calls (MB)",
            get(this, "warm", "rss_mb_at_mark"),
            get(base, "warm", "rss_mb_at_mark"),
            get(floor, "warm", "rss_mb_at_mark"),
            "≤0.8x (shape: 128 MB)",
            at_most(ratio(get(this, "warm", "rss_mb_at_mark"), get(base, "warm", "rss_mb_at_mark")), 0.8),
        ),
        Row(
            f"RSS growth, call {plan['rss_mark']} → {plan['warm_calls']} (MB)",
            get(this, "warm", "rss_growth_mb"),
            get(base, "warm", "rss_growth_mb"),
            get(floor, "warm", "rss_growth_mb"),
            "≤1 MB (noise)",
            at_most(get(this, "warm", "rss_growth_mb"), 1.0),
            2,
        ),
        Row(
            f"upstream connections, {2 * plan['conn_calls']} calls, {plan['pause_s']:g} s pause",
            get(this, "connections", "connections"),
            get(base, "connections", "connections"),
            get(floor, "connections", "connections"),
            "1",
            at_most(get(this, "connections", "connections"), 1),
            0,
        ),
        Row(
            "log bytes per warm call",
            get(this, "warm", "log_bytes_per_call"),
            get(base, "warm", "log_bytes_per_call"),
            get(floor, "warm", "log_bytes_per_call"),
            "",
            None,
            0,
        ),
    ]
    guarded = results["runners"].get("guardrails", {})

    def cost(*path: str) -> float | None:
        on, off = get(guarded, *path), get(this, *path)
        return None if on is None or off is None else on - off

    streamed, plain = get(this, "route", "stream_p50_ms"), get(this, "route", "plain_p50_ms")
    stream_cost = None if streamed is None or plain is None else streamed - plain
    stream_bytes, plain_bytes = get(this, "route", "stream_bytes"), get(this, "route", "plain_bytes")
    turns = [get(this, "route", f"tool_{turn}_p50_ms") for turn in ("call", "output")]
    round_trip = None if None in turns else sum(t for t in turns if t is not None)
    tool_cost = None if round_trip is None or plain is None else round_trip - 2 * plain
    continued = get(this, "route", "continued_p50_ms")
    owner_cost = None if continued is None or plain is None else continued - plain
    size_ratio = None if not stream_bytes or not plain_bytes else stream_bytes / plain_bytes
    rows += [
        Row("GENAI_GUARDRAILS=block: warm latency p50 (ms)", get(guarded, "warm", "p50_ms"), None, None, "", None, 2),
        Row(
            "  guardrails' cost, warm p50 on − off (ms)",  # noqa: RUF001  (a minus sign, as printed)
            cost("warm", "p50_ms"),
            None,
            None,
            "one extra call",
            None,
            2,
        ),
        Row(
            "  guardrails' cost, warm p99 on − off (ms)",  # noqa: RUF001  (a minus sign, as printed)
            cost("warm", "p99_ms"),
            None,
            None,
            "",
            None,
            2,
        ),
        Row(
            "  guardrails' cost, cold start on − off (ms)",  # noqa: RUF001  (a minus sign, as printed)
            cost("cold", "total_ms"),
            None,
            None,
            "",
            None,
            0,
        ),
        Row(
            "  upstream connections with guardrails on",
            get(guarded, "connections", "connections"),
            None,
            None,
            "1 (one pool)",
            at_most(get(guarded, "connections", "connections"), 1),
            0,
        ),
        Row(
            "stream: true on /v1/responses, warm p50 (ms)",
            get(this, "route", "stream_p50_ms"),
            None,
            None,
            "",
            None,
            2,
        ),
        Row(
            "  the relay's cost, warm p50 stream − plain (ms)",  # noqa: RUF001  (a minus sign, as printed)
            stream_cost,
            None,
            None,
            "",
            None,
            2,
        ),
        Row(
            "  body bytes, stream / plain",
            size_ratio,
            None,
            None,
            "",
            None,
            1,
        ),
        Row(
            "function tool round trip (2 calls), warm p50 sum (ms)",
            round_trip,
            None,
            None,
            "call, then output",
            None,
            2,
        ),
        Row(
            "  its cost over two plain calls (ms)",
            tool_cost,
            None,
            None,
            "",
            None,
            2,
        ),
        Row(
            "previous_response_id (owner check, then the call), warm p50 (ms)",
            continued,
            None,
            None,
            "one extra read",
            None,
            2,
        ),
        Row(
            "  the owner check's cost over a plain call (ms)",
            owner_cost,
            None,
            None,
            "",
            None,
            2,
        ),
        Row(
            "request contract: classes built at import (ms)",
            get(this, "micro", "contract_built_ms"),
            None,
            None,
            "",
            None,
            1,
        ),
        Row(
            "request contract: one request parsed and capped (µs, median)",
            get(this, "micro", "parse_us"),
            None,
            None,
            "",
            None,
            0,
        ),
        Row(
            "redaction: 4,500 PII findings after an emoji (ms)",
            get(this, "micro", "redact_4500_ms"),
            None,
            None,
            "< 1000",
            at_most(get(this, "micro", "redact_4500_ms"), 1000.0),
            0,
        ),
    ]
    return rows


def _summarise_cold(rounds: list[dict[str, float]]) -> dict[str, Any]:
    return {key: percentile([r[key] for r in rounds], 50) for key in rounds[0]} | {"rounds": rounds}


def runners() -> list[Runner]:
    """The BASELINE, this function, the FLOOR (an API key: the same call with nothing to sign, to see
    what signing costs), GUARDRAILS (GENAI_GUARDRAILS=block: one ApplyGuardrails call first), and
    THIS_UNCOMPILED (this function's image without its compile step: cold starts and import only)."""
    this_venv = BENCH_DIR / ".venv-this"
    return [
        Runner(
            "baseline",
            BENCH_DIR / "baseline",
            BENCH_DIR / "baseline" / "requirements.txt",
            BENCH_DIR / ".venv-baseline",
        ),
        Runner("this", REPO_ROOT, REPO_ROOT / "requirements.txt", this_venv),
        Runner(
            "floor",
            REPO_ROOT,
            REPO_ROOT / "requirements.txt",
            this_venv,
            {"GENAI_AUTH": "api_key", "GENAI_API_KEY": "{api_key}"},
        ),
        Runner("guardrails", REPO_ROOT, REPO_ROOT / "requirements.txt", this_venv, {"GENAI_GUARDRAILS": "block"}),
        Runner("this_uncompiled", REPO_ROOT, REPO_ROOT / "requirements.txt", this_venv, compiled=False, cold_only=True),
    ]


SAME_CODE = ("floor", "guardrails")  # `this` with other settings: no payload or import of their own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds and calls, no pause")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "results.json", help="where to write the JSON")
    parser.add_argument("--python", default=sys.executable, help="the interpreter the venvs are made from")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    began = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]

    def say(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {message}", file=sys.stderr, flush=True)

    all_runners = runners()
    built: set[Path] = set()
    for runner in all_runners:
        if runner.venv not in built:
            ensure_venv(runner, args.python, say)
            built.add(runner.venv)
    figures: dict[str, dict[str, Any]] = {r.name: {} for r in all_runners}
    for runner in all_runners:
        if runner.name not in SAME_CODE and not runner.cold_only:
            figures[runner.name]["payload_mb"] = payload_mb(runner, say)
    by_name = {runner.name: runner for runner in all_runners}
    figures["this"]["payload_slim_mb"] = payload_mb(by_name["this"], say, no_deps=True)

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        say("staging each image's /function (compiled as its Dockerfile says, with the runner's Python) ...")
        staged = stage_runners(all_runners, Path(workdir) / "stage")
        by_name = {runner.name: runner for runner in staged}
        for runner in staged:
            figures[runner.name]["layout"] = layout(runner.function_dir)
        bench = Bench(staged, plan, Path(workdir), say)
        with bench.endpoint:
            say("import time of func.py ...")
            for runner in staged:
                if runner.name not in SAME_CODE:
                    figures[runner.name]["import"] = bench.import_times(runner)
            say("the first call's parts, in fresh processes ...")
            for name in PRESTARTED:
                figures[name]["first_call"] = bench.first_call_parts(by_name[name])
            say("the request contract and redaction, in-process ...")
            figures["this"]["micro"] = micro(by_name["this"])
            say("cold starts ...")
            for name, rounds in bench.cold_starts().items():
                figures[name]["cold"] = _summarise_cold(rounds)
            say("warm calls ...")
            for name, warm in bench.warm().items():
                figures[name]["warm"] = warm
            say("a relayed stream and a tool round trip against a plain call ...")
            figures["this"]["route"] = bench.openai_route(by_name["this"])
            say(f"upstream connections ({plan.pause_s:g} s pause) ...")
            for name, conns in bench.connections().items():
                figures[name]["connections"] = conns

    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
        },
        "mode": "quick" if args.quick else "full",
        "plan": plan.__dict__,
        "duration_s": round(time.monotonic() - began, 1),
        "runners": figures,
    }
    rows = build_rows(results)
    results["table"] = [row.__dict__ | {"ratio": row.ratio} for row in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(format_table(rows))
    print(f"\nthis func.py's slowest imports (self ms, by package): {figures['this']['import']['packages_ms']}")
    print(f"load average (1, 5, 15 min) before → after: {load_before} → {[round(x, 2) for x in os.getloadavg()]}")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
