"""Soak: 2000 invocations of one warm container under the real fdk, valid, invalid and faulted.

A warm container lives for many calls, so anything kept per call (memory, sockets, files) adds up
until OCI kills it. Run alone with `pytest -m soak`, or leave it out with `-m "not soak"`.
"""

from __future__ import annotations

import random
import time

import psutil
import pytest

from genai_handler.local.agent import FunctionProcess
from genai_handler.local.endpoint import Fault, LocalEndpoint

pytestmark = [pytest.mark.soak, pytest.mark.timeout(180)]

WARM_UP, MIXED, STEADY = 200, 1600, 200
RSS_GROWTH_LIMIT = 3 * 1024 * 1024  # measured ~0.4 MB of allocator noise; a 2 KB-per-call leak would add 3.5 MB
VALID = {"prompt": "soak", "max_output_tokens": 16}
INVALID: list[bytes | dict[str, object]] = [
    b"{not json",
    {"prompt": ""},
    {"prompt": "a", "colour": 1},
    {"prompt": "a", "temperature": 9},
    b"[]",
]
# (faults, caller status); Retry-After 0 keeps the retries immediate
FAULTS: list[tuple[list[Fault], int]] = [
    ([Fault(kind="status", status=503, code="ServiceUnavailable", retry_after="0")], 200),
    ([Fault(kind="status", status=429, code="TooManyRequests", retry_after="0")], 200),
    ([Fault(kind="status", status=401, code="NotAuthenticated")], 200),
    ([Fault(kind="status", status=400, code="InvalidParameter")], 400),
    ([Fault(kind="status", status=500, retry_after="0")] * 3, 502),
    ([Fault(kind="non_json")], 502),
    ([Fault(kind="wrong_shape")], 502),
]
CONNECTION_FAULTS: list[tuple[list[Fault], int]] = [([Fault(kind="reset")], 200), ([Fault(kind="truncated")], 200)]


def _one(function: FunctionProcess, endpoint: LocalEndpoint, rng: random.Random, *, mixed: bool) -> None:
    roll = rng.random() if mixed else 0.0
    endpoint.reset()  # keeps the endpoint's record (in this process) small
    body: bytes | dict[str, object]
    if roll < 0.70:
        body, expected = VALID, 200
    elif roll < 0.90:
        body, expected = rng.choice(INVALID), 400
    else:
        # connection faults cost a backoff sleep each: keep them to about 1 in 200 calls
        faults, expected = rng.choice(CONNECTION_FAULTS if roll > 0.995 else FAULTS)
        endpoint.inject(*faults)
        body = VALID
    answer = function.invoke(body)
    assert answer.http_status == expected, answer.body


def _usage(function: FunctionProcess) -> tuple[int, int]:
    process = psutil.Process(function.pid)
    return process.memory_info().rss, process.num_fds()


def test_given_a_warm_container_when_two_thousand_mixed_calls_run_then_no_memory_sockets_or_files_leak(
    function: FunctionProcess, endpoint: LocalEndpoint
) -> None:
    rng = random.Random(20240607)
    started = time.monotonic()
    # given a container warmed up by 200 mixed calls (imports, client, pool, caches all built)
    for _ in range(WARM_UP):
        _one(function, endpoint, rng, mixed=True)
    rss_before, fds_before = _usage(function)
    # when 1600 more mixed calls and 200 plain ones go through it
    for _ in range(MIXED):
        _one(function, endpoint, rng, mixed=True)
    endpoint.reset()
    opened_before_steady = endpoint.connections_opened
    connections = set()
    for _ in range(STEADY):
        assert function.invoke(VALID).http_status == 200
        connections.add(endpoint.requests[-1].connection_id)
    rss_after, fds_after = _usage(function)
    # then memory and descriptors are where they were after the warm-up
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, f"RSS grew {(rss_after - rss_before) / 2**20:.1f} MB"
    assert fds_after <= fds_before + 1, f"file descriptors {fds_before} -> {fds_after}"
    # and while OCI keeps the connection alive, one connection carries every call
    assert len(connections) == 1 and endpoint.connections_opened - opened_before_steady <= 1
    assert time.monotonic() - started < 90
