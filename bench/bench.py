"""`make bench`: this function vs the documented way (oci-genai-auth + oci SDK), side by side.

Each runner (see `runners`) runs under the real fdk from its own virtualenv, with the same local
identity and against the same signature-verifying local endpoint, taking turns so that machine noise
hits all alike. bench/README.md says what each figure means, and the caveats.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run as `python bench/bench.py`: import the local tooling

from genai_handler.local.agent import FunctionProcess  # noqa: E402  (after the path above)
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


QUICK = Plan(cold_rounds=2, warm_calls=300, rss_mark=50, block=25, conn_calls=5, pause_s=0.0, import_runs=2)


@dataclass(frozen=True)
class Runner:
    """One way of running the function: its code, its virtualenv, its settings."""

    name: str
    function_dir: Path
    requirements: Path
    venv: Path
    settings: Mapping[str, str] = field(default_factory=dict)

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


# ---------------------------------------------------------------- measurements


def _rss(pid: int) -> int:
    process = psutil.Process(pid)
    return process.memory_info().rss + sum(child.memory_info().rss for child in process.children(recursive=True))


class Bench:
    """The shared identity and endpoint, and the runners measured against them."""

    def __init__(self, runners: Sequence[Runner], plan: Plan, workdir: Path, say: Callable[[str], None]) -> None:
        self.runners = list(runners)
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

    def _turns(self, round_: int) -> list[Runner]:
        """Each round starts with the next runner, so none always goes first (or last)."""
        shift = round_ % len(self.runners)
        return self.runners[shift:] + self.runners[:shift]

    def import_times(self, runner: Runner) -> dict[str, Any]:
        """`import func` in the runner's venv, as the fdk does on the first call (PYTHONPATH as in the image)."""
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(runner.function_dir), **self.env(runner)}
        timed = "import time; t = time.perf_counter(); import func; print((time.perf_counter() - t) * 1000)"
        subprocess.run([str(runner.python), "-c", "import func"], env=env, check=True, capture_output=True)  # .pyc
        walls = []
        for _ in range(self.plan.import_runs):
            out = subprocess.run([str(runner.python), "-c", timed], env=env, check=True, capture_output=True, text=True)
            walls.append(float(out.stdout.strip().splitlines()[-1]))
        traced = subprocess.run(
            [str(runner.python), "-X", "importtime", "-c", "import func"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return {"wall_ms": walls, "median_ms": percentile(walls, 50), **importtime_offenders(traced.stderr)}

    def cold_starts(self) -> dict[str, list[dict[str, float]]]:
        """Process start to the first 200, per round; round 0 warms the page cache and is dropped."""
        results: dict[str, list[dict[str, float]]] = {r.name: [] for r in self.runners}
        for round_ in range(self.plan.cold_rounds + 1):
            for runner in self._turns(round_):
                with self.function(runner) as process:
                    started = time.perf_counter()
                    process.start()
                    ready = time.perf_counter()
                    self._call(process, runner)
                    done = time.perf_counter()
                    rss = _rss(process.pid)
                if round_ > 0:
                    results[runner.name].append(
                        {
                            "total_ms": (done - started) * 1000,
                            "fdk_ready_ms": (ready - started) * 1000,
                            "first_call_ms": (done - ready) * 1000,
                            "rss_mb": rss / MB,
                        }
                    )
            self.say(f"  cold start round {round_}/{self.plan.cold_rounds} done")
        return results

    def warm(self) -> dict[str, dict[str, Any]]:
        """All runners warm at once; blocks of calls take turns. RSS at the mark and at the end."""
        plan = self.plan
        latencies: dict[str, list[float]] = {r.name: [] for r in self.runners}
        rss: dict[str, dict[str, int]] = {r.name: {} for r in self.runners}
        log_sizes: dict[str, int] = {}
        with ExitStack() as stack:
            processes = {r.name: stack.enter_context(self.function(r)) for r in self.runners}
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
                r.name: (self._log_path(r).stat().st_size - log_sizes[r.name]) / plan.warm_calls for r in self.runners
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
            for r in self.runners
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
        for runner in self.runners:
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
            "cold start: start → first 200 (ms, median)",
            get(this, "cold", "total_ms"),
            get(base, "cold", "total_ms"),
            get(floor, "cold", "total_ms"),
            "≤0.8x",
            at_most(ratio(get(this, "cold", "total_ms"), get(base, "cold", "total_ms")), 0.8),
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
    ]
    p50, b50, f50 = get(this, "warm", "p50_ms"), get(base, "warm", "p50_ms"), get(floor, "warm", "p50_ms")
    p50_met = None if p50 is None or b50 is None or f50 is None else (p50 <= b50 and p50 - f50 <= 1.0)
    rows += [
        Row("warm latency p50 (ms)", p50, b50, f50, "≤1.0x and ≤ floor + 1 ms", p50_met, 2),
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
    what signing costs) and GUARDRAILS (GENAI_GUARDRAILS=block: one ApplyGuardrails call first)."""
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
        if runner.name not in SAME_CODE:
            figures[runner.name]["payload_mb"] = payload_mb(runner, say)
    figures["this"]["payload_slim_mb"] = payload_mb(all_runners[1], say, no_deps=True)

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        bench = Bench(all_runners, plan, Path(workdir), say)
        with bench.endpoint:
            say("import time of func.py ...")
            for runner in all_runners:
                if runner.name not in SAME_CODE:
                    figures[runner.name]["import"] = bench.import_times(runner)
            say("the request contract and redaction, in-process ...")
            figures["this"]["micro"] = micro(all_runners[1])
            say("cold starts ...")
            for name, rounds in bench.cold_starts().items():
                figures[name]["cold"] = _summarise_cold(rounds)
            say("warm calls ...")
            for name, warm in bench.warm().items():
                figures[name]["warm"] = warm
            say("a relayed stream and a tool round trip against a plain call ...")
            figures["this"]["route"] = bench.openai_route(all_runners[1])
            say(f"upstream connections ({plan.pause_s:g} s pause) ...")
            for name, conns in bench.connections().items():
                figures[name]["connections"] = conns

    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
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
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
