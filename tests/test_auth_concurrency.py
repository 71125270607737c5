"""OciResourcePrincipalAuth shared by many threads and by an async client, across a key rotation.

The scenario the 401 path exists for: the requests in flight were signed with credentials OCI no
longer accepts, and the platform has already written new ones. A gate in the transport holds the
first attempts until all are signed, then the identity rotates to a new issuer the endpoint alone
trusts, so every first attempt is rejected; each must retry once with the new credentials, with
no deadlock, and everything after is signed with them.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from genai_handler.auth import OciResourcePrincipalAuth
from genai_handler.local.endpoint import Fault, LocalEndpoint, RecordedRequest
from genai_handler.local.identity import LocalIdentity

THREADS, PER_THREAD, ASYNC_REQUESTS = 16, 4, 50
pytestmark = pytest.mark.timeout(60, method="thread")  # a deadlock fails the test, not the run


def _key_id(request: httpx2.Request) -> str:
    return dict(re.findall(r'(\w+)="([^"]*)"', request.headers.get("authorization", ""))).get("keyId", "")


class _Gate:
    """Holds requests signed with `held_key_id` until `release()`; counts how many it holds."""

    def __init__(self, held_key_id: str) -> None:
        self.held_key_id = held_key_id
        self.held = 0
        self._count = threading.Condition()
        self._open = threading.Event()

    def arrive(self, request: httpx2.Request) -> bool:
        """True when the request must wait; counts it."""
        if _key_id(request) != self.held_key_id or self._open.is_set():
            return False
        with self._count:
            self.held += 1
            self._count.notify_all()
        return True

    def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        with self._count:
            assert self._count.wait_for(lambda: self.held >= count, timeout_s), f"only {self.held} arrived"

    def release(self) -> None:
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def wait_open(self, timeout_s: float = 20.0) -> None:
        assert self._open.wait(timeout_s), "the gate was never opened"


class _GatedTransport(httpx2.BaseTransport):
    def __init__(self, gate: _Gate) -> None:
        self._gate, self._inner = gate, httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._gate.arrive(request):
            self._gate.wait_open()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class _AsyncGatedTransport(httpx2.AsyncBaseTransport):
    def __init__(self, gate: _Gate) -> None:
        self._gate, self._inner = gate, httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._gate.arrive(request):
            while not self._gate.is_open:
                await asyncio.sleep(0.005)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
def rp_endpoint(rp_identity: LocalIdentity) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trusted_issuer=rp_identity.issuer_public_key) as server:
        yield server


def _rotate_to_a_new_issuer(identity: LocalIdentity, endpoint: LocalEndpoint) -> str:
    """The platform writes credentials from a new issuer; OCI stops accepting the old ones."""
    fresh = LocalIdentity(identity.directory)  # same files, replaced whole
    endpoint.trusted_issuer = fresh.issuer_public_key
    return f"ST${fresh.token}"


def _by_caller(requests: list[RecordedRequest]) -> dict[str, list[RecordedRequest]]:
    calls: dict[str, list[RecordedRequest]] = defaultdict(list)
    for request in requests:
        calls[request.headers["x-caller"]].append(request)
    return calls


def _assert_each_first_attempt_retried_once(
    requests: list[RecordedRequest], rejected_key: str, fresh_key: str, gated: set[str]
) -> None:
    calls = _by_caller(requests)
    for caller, attempts in calls.items():
        if caller in gated:  # rejected once, then accepted with the new credentials
            assert [(a.status, a.key_id) for a in attempts] == [(401, rejected_key), (200, fresh_key)], caller
        else:  # sent after the refresh: signed with the new credentials at once
            assert [(a.status, a.key_id) for a in attempts] == [(200, fresh_key)], caller


def test_given_threads_sharing_one_auth_when_credentials_rotate_then_each_retries_once(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint
) -> None:
    # given 16 threads sharing one auth and one client, warmed up
    auth = OciResourcePrincipalAuth()
    old_key = auth.credentials().key_id
    gate = _Gate(old_key)
    url = f"{rp_endpoint.base_url}/models"
    with httpx2.Client(auth=auth, timeout=20) as warm:
        assert warm.get(url, headers={"x-caller": "warm-up"}).status_code == 200
    rp_endpoint.reset()
    with httpx2.Client(auth=auth, transport=_GatedTransport(gate), timeout=20) as client:

        def work(thread: int) -> list[int]:
            return [client.get(url, headers={"x-caller": f"{thread}-{n}"}).status_code for n in range(PER_THREAD)]

        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(work, t) for t in range(THREADS)]
            # when every thread's first request is signed with the old credentials and held,
            # and the platform rotates to credentials OCI alone accepts now
            gate.wait_for(THREADS)
            fresh_key = _rotate_to_a_new_issuer(rp_identity, rp_endpoint)
            gate.release()
            # then all finish (no deadlock), every request succeeds
            results = [f.result(timeout=30) for f in futures]
    assert results == [[200] * PER_THREAD] * THREADS
    # and each first attempt was retried exactly once; the rest were signed fresh from the start
    _assert_each_first_attempt_retried_once(
        rp_endpoint.requests, old_key, fresh_key, gated={f"{t}-0" for t in range(THREADS)}
    )
    assert auth.credentials().key_id == fresh_key


def test_given_an_async_client_sharing_the_auth_when_credentials_rotate_then_it_retries_once(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint
) -> None:
    # given
    auth = OciResourcePrincipalAuth()
    old_key = auth.credentials().key_id
    gate = _Gate(old_key)
    url = f"{rp_endpoint.base_url}/models"

    async def scenario() -> tuple[list[int], list[int], str]:
        limits = httpx2.Limits(max_connections=ASYNC_REQUESTS)
        async with httpx2.AsyncClient(
            auth=auth, transport=_AsyncGatedTransport(gate), timeout=20, limits=limits
        ) as client:
            first = asyncio.gather(*(client.get(url, headers={"x-caller": f"a{i}"}) for i in range(ASYNC_REQUESTS)))
            # when all 50 are signed with the old credentials and held, and the identity rotates
            while gate.held < ASYNC_REQUESTS:
                await asyncio.sleep(0.01)
            fresh_key = _rotate_to_a_new_issuer(rp_identity, rp_endpoint)
            gate.release()
            answers = await asyncio.wait_for(first, timeout=30)
            # and more requests follow the refresh
            later = await asyncio.wait_for(
                asyncio.gather(*(client.get(url, headers={"x-caller": f"b{i}"}) for i in range(ASYNC_REQUESTS))), 30
            )
        return [a.status_code for a in answers], [a.status_code for a in later], fresh_key

    first, later, fresh_key = asyncio.run(scenario())
    # then every request succeeds: the rejected ones after exactly one retry, the later ones at once
    assert first == later == [200] * ASYNC_REQUESTS
    _assert_each_first_attempt_retried_once(
        rp_endpoint.requests, old_key, fresh_key, gated={f"a{i}" for i in range(ASYNC_REQUESTS)}
    )


class _SlowCallerTransport(httpx2.BaseTransport):
    """Sets `slow_attempt_sent` when the slow caller's `attempt`-th request leaves the auth flow for
    the network: the one OCI answers slowly, so whatever the auth holds then, it holds throughout."""

    def __init__(self, attempt: int) -> None:
        self.slow_attempt_sent = threading.Event()
        self._attempts_left = attempt
        self._inner = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.headers.get("x-caller") == "slow":
            self._attempts_left -= 1
            if self._attempts_left == 0:
                self.slow_attempt_sent.set()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _run_while_one_request_is_slow(
    auth: OciResourcePrincipalAuth,
    identity: LocalIdentity,
    endpoint: LocalEndpoint,
    others: Callable[[httpx2.Client], None],
    slow_attempt: int = 1,
) -> tuple[float, bool]:
    """Start one request whose `slow_attempt`-th attempt OCI answers slowly; once that attempt is
    on its way, the credentials rotate, so `others` must reload them (taking the lock). Returns
    (their time, slow one still busy)."""
    transport = _SlowCallerTransport(slow_attempt)
    with httpx2.Client(auth=auth, timeout=20, transport=transport) as client:
        slow = threading.Thread(target=lambda: client.get(f"{endpoint.base_url}/models", headers={"x-caller": "slow"}))
        slow.start()
        assert transport.slow_attempt_sent.wait(10), "the slow attempt was never sent"
        identity.rotate()
        started = time.monotonic()
        others(client)
        elapsed = time.monotonic() - started
        still_busy = slow.is_alive()
        slow.join(10)
    return elapsed, still_busy


def _eight_threads_sign_and_send(endpoint: LocalEndpoint) -> Callable[[httpx2.Client], None]:
    def others(client: httpx2.Client) -> None:
        # a route the endpoint authenticates but that takes no fault: pure signing + round trip
        def call(i: int) -> int:
            return client.get(f"{endpoint.base_url}/not-a-model-route", headers={"x-caller": f"o{i}"}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(call, range(8))) == [404] * 8  # 404 after a verified signature, not 401

    return others


def test_given_a_slow_request_when_other_threads_sign_then_they_are_not_blocked(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint
) -> None:
    # given one request whose answer takes 3 s
    rp_endpoint.inject(Fault(kind="delay", delay_s=3))
    # when
    elapsed, still_busy = _run_while_one_request_is_slow(
        OciResourcePrincipalAuth(), rp_identity, rp_endpoint, _eight_threads_sign_and_send(rp_endpoint)
    )
    # then eight other threads reload, sign and finish meanwhile: no lock is held across network I/O
    assert still_busy and elapsed < 1.5
    assert {r.key_id for r in rp_endpoint.requests if r.headers["x-caller"].startswith("o")} == {
        f"ST${rp_identity.token}"
    }


def test_given_a_slow_retry_after_a_401_when_other_threads_sign_then_the_lock_is_not_held(
    rp_identity: LocalIdentity, rp_endpoint: LocalEndpoint
) -> None:
    # given a request rejected once, whose retry (after the reload) OCI answers slowly: the point
    # where oci-genai-auth 1.1.1 keeps its lock across the retried request
    rp_endpoint.inject(Fault(kind="status", status=401, code="NotAuthenticated"), Fault(kind="delay", delay_s=3))
    # when
    elapsed, still_busy = _run_while_one_request_is_slow(
        OciResourcePrincipalAuth(), rp_identity, rp_endpoint, _eight_threads_sign_and_send(rp_endpoint), slow_attempt=2
    )
    # then
    assert still_busy and elapsed < 1.5
    slow = [r.status for r in rp_endpoint.requests if r.headers["x-caller"] == "slow"]
    assert slow == [401, 200]
