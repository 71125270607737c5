"""bench/bench.py's helpers: the statistics, the importtime summary and the table. No venvs, no timing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_BENCH_PATH = Path(__file__).resolve().parents[1] / "bench" / "bench.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_under_test", _BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_given_values_when_taking_percentiles_then_they_interpolate_between_ranks() -> None:
    # given
    values = [4.0, 1.0, 3.0, 2.0]
    # when / then
    assert bench.percentile(values, 50) == 2.5
    assert bench.percentile(values, 0) == 1.0
    assert bench.percentile(values, 100) == 4.0
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)


def test_given_no_values_when_taking_a_percentile_then_it_refuses() -> None:
    # when / then
    with pytest.raises(ValueError, match="no values"):
        bench.percentile([], 50)


def test_given_a_missing_or_zero_baseline_when_taking_the_ratio_then_there_is_none() -> None:
    # when / then
    assert bench.ratio(1.0, 4.0) == 0.25
    assert bench.ratio(1.0, 0.0) is None
    assert bench.ratio(None, 4.0) is None


def test_given_rows_when_formatting_then_each_is_a_markdown_line_with_ratio_and_verdict() -> None:
    # given
    rows = [
        bench.Row("payload (MB)", 100.0, 600.0, None, "≤0.25x", True),
        bench.Row("p50 (ms)", 2.5, 2.0, 1.9, "≤1.0x", False, digits=2),
        bench.Row("import (ms)", 1234.5, None),
    ]
    # when
    lines = bench.format_table(rows).splitlines()
    # then
    assert len(lines) == 2 + len(rows)
    assert lines[2] == "| payload (MB) | 100.0 | 600.0 | 0.17x | — | ≤0.25x | yes |"
    assert lines[3] == "| p50 (ms) | 2.50 | 2.00 | 1.25x | 1.90 | ≤1.0x | NO |"
    assert lines[4] == "| import (ms) | 1,234.5 | — | — | — |  |  |"


def test_given_importtime_output_when_summarised_then_self_times_add_up_per_package() -> None:
    # given
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      1000 |       1000 |   openai.types",
            "import time:      3000 |       4000 | openai",
            "import time:       500 |        500 |   pydantic.main",
            "some other stderr line",
            "import time:      2000 |       2500 | func",
        ]
    )
    # when
    summary = bench.importtime_offenders(stderr, top=2)
    # then
    assert summary["packages_ms"] == [("openai", 4.0), ("func", 2.0)]
    assert summary["modules_ms"] == [("openai", 3.0), ("func", 2.0)]


def test_given_results_when_building_rows_then_goals_are_judged_from_the_figures() -> None:
    # given
    def runner(
        payload: float, cold: float, p50: float, rss: float, growth: float, connections: int
    ) -> dict[str, object]:
        return {
            "payload_mb": payload,
            "import": {"median_ms": 100.0},
            "cold": {"total_ms": cold, "first_call_ms": cold / 2},
            "warm": {
                "p50_ms": p50,
                "p99_ms": p50 * 2,
                "rss_mb_at_mark": rss,
                "rss_growth_mb": growth,
                "log_bytes_per_call": 100.0,
            },
            "connections": {"connections": connections},
        }

    results = {
        "plan": {"rss_mark": 200, "warm_calls": 2000, "conn_calls": 10, "pause_s": 6.0},
        "runners": {
            "this": runner(100.0, 700.0, 2.6, 70.0, 0.2, 1),
            "baseline": runner(600.0, 800.0, 3.0, 100.0, 0.5, 2),
            "floor": runner(100.0, 650.0, 1.5, 68.0, 0.2, 1),
            "guardrails": runner(100.0, 720.0, 3.1, 71.0, 0.2, 1),
        },
    }
    # when
    verdicts = {row.figure: row.met for row in bench.build_rows(results)}
    # then
    assert verdicts["payload: pip install --target (MB)"] is True
    assert verdicts["cold start: start → first 200 (ms, median)"] is False  # 0.875x > 0.8x
    assert verdicts["warm latency p50 (ms)"] is False  # 1.1 ms above the floor
    assert verdicts["RSS after 200 calls (MB)"] is True
    assert verdicts["RSS growth, call 200 → 2000 (MB)"] is True
    assert verdicts["upstream connections, 20 calls, 6 s pause"] is True
    rows = {row.figure: row for row in bench.build_rows(results)}
    assert rows["  guardrails' cost, warm p50 on − off (ms)"].this == pytest.approx(0.5)  # noqa: RUF001 (bench's label)
    assert rows["  guardrails' cost, cold start on − off (ms)"].this == pytest.approx(20.0)  # noqa: RUF001 (bench's label)
    assert verdicts["  upstream connections with guardrails on"] is True


def test_given_openai_route_figures_when_building_rows_then_the_stream_and_tool_round_trip_are_set_against_plain() -> (
    None
):
    # given warm p50s of a plain call, the same call streamed, and the two turns of a tool round trip
    route = {"plain_p50_ms": 3.0, "stream_p50_ms": 3.5, "tool_call_p50_ms": 3.4, "tool_output_p50_ms": 3.2}
    route["continued_p50_ms"] = 4.25
    plan = {"rss_mark": 200, "warm_calls": 2000, "conn_calls": 10, "pause_s": 6.0}
    results = {"plan": plan, "runners": {"this": {"route": {**route, "plain_bytes": 100, "stream_bytes": 450}}}}
    # when
    rows = {row.figure: row.this for row in bench.build_rows(results)}
    # then
    assert rows["  the relay's cost, warm p50 stream − plain (ms)"] == pytest.approx(0.5)  # noqa: RUF001 (bench's label)
    assert rows["function tool round trip (2 calls), warm p50 sum (ms)"] == pytest.approx(6.6)
    assert rows["  its cost over two plain calls (ms)"] == pytest.approx(0.6)
    assert rows["  body bytes, stream / plain"] == pytest.approx(4.5)
    assert rows["  the owner check's cost over a plain call (ms)"] == pytest.approx(1.25)


def test_given_the_runners_when_listed_then_guardrails_on_is_measured_beside_off_with_the_same_code() -> None:
    # when
    by_name = {runner.name: runner for runner in bench.runners()}
    # then
    assert by_name["guardrails"].settings == {"GENAI_GUARDRAILS": "block"}
    assert by_name["guardrails"].venv == by_name["this"].venv and "guardrails" in bench.SAME_CODE
