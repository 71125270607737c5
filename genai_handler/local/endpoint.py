"""A loopback stand-in for the OCI Generative AI OpenAI-compatible endpoint (and ApplyGuardrails).

It verifies OCI request signatures for real, answers deterministically, and misbehaves on request
(`Fault`) with the error bodies OCI really sends (oci_errors.json), so tests prove the client copes
with what a real network and service do. OCI's protocol is spelled out here, not imported from the
function's code, so each checks the other.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import email.utils
import functools
import hashlib
import heapq
import itertools
import json
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers
from pydantic import ValidationError

from ..contract import Request, Text, texts
from ..settings import DEFAULT_MODEL, NOT_ON_RESPONSES_API
from .identity import _b64url_decode

_PREFIX = "/openai/v1"
_FAULT_KINDS = (
    "status",
    "delay",
    "drop",
    "reset",
    "truncated",
    "non_json",
    "wrong_shape",
    "drip",
    "oci_error",
    "patched",
    "trickle_headers",
    "trickle_body",
)
_OCI_ERRORS = Path(__file__).with_name("oci_errors.json")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_BODY_HEADERS = ("content-length", "content-type", "x-content-sha256")
_DRIP_BYTES = 16
_STREAM_FAULTS = ("patched", "drip", "reset", "truncated", "trickle_headers", "trickle_body")
# The Responses API's closing event for each final status of a response.
_FINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}
_ARGUMENT_CHUNK_CHARS = 8  # a function call's arguments arrive in pieces this long
_SESSION_KEY_ID = "ST$"  # a session token signs as keyId "ST$<token>"
_RESPONSE = r"/responses/(?P<response_id>[^/]+)"
_CONVERSATION = r"/conversations/(?P<conversation_id>[^/]+)"
# Every model route, by name: what OCI's OpenAI-compatible endpoint serves here (shared/FIELD-NOTES.md,
# "Checked for the agents and conversations work"), at the paths the openai SDK's resources call.
_ROUTES = tuple(
    (name, method, re.compile(f"{re.escape(_PREFIX)}{pattern}"))
    for name, method, pattern in (
        ("create_response", "POST", "/responses"),
        ("models", "GET", "/models"),
        ("retrieve_response", "GET", _RESPONSE),
        ("delete_response", "DELETE", _RESPONSE),
        ("list_input_items", "GET", f"{_RESPONSE}/input_items"),
        ("cancel_response", "POST", f"{_RESPONSE}/cancel"),
        ("create_conversation", "POST", "/conversations"),
        ("retrieve_conversation", "GET", _CONVERSATION),
        ("update_conversation", "POST", _CONVERSATION),
        ("delete_conversation", "DELETE", _CONVERSATION),
        ("list_items", "GET", f"{_CONVERSATION}/items"),
        ("create_items", "POST", f"{_CONVERSATION}/items"),
        ("retrieve_item", "GET", f"{_CONVERSATION}/items/(?P<item_id>[^/]+)"),
        ("delete_item", "DELETE", f"{_CONVERSATION}/items/(?P<item_id>[^/]+)"),
    )
)
# Fields this endpoint handles itself, left out of the function's contract walk (_texts).
_STATE_FIELDS = ("background", "conversation", "metadata", "previous_response_id", "store")
# openai SDK: the `metadata` docstring (Response, ConversationCreateParams): 16 pairs, keys up to 64 characters,
# values up to 512.
_METADATA_PAIRS, _METADATA_KEY_CHARS, _METADATA_VALUE_CHARS = 16, 64, 512
_MAX_ADDED_ITEMS = 20  # openai SDK: ConversationCreateParams, ItemCreateParams: "up to 20 items at a time"
# openai SDK: InputItemListParams, ItemListParams: limit 1 to 100, default 20; order asc or desc, default desc.
_LIST_LIMIT_MIN, _LIST_LIMIT_MAX, _LIST_LIMIT_DEFAULT = 1, 100, 20
# How long a background response sent with store=false stays to be polled: OCI's release note says only
# "temporary"; OpenAI's background guide says roughly 10 minutes.
_UNSTORED_BACKGROUND_S = 600.0
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
GUARDRAILS_PATH = "/20231130/actions/applyGuardrails"  # oci SDK: base_path /20231130 + /actions/applyGuardrails
GUARDRAILS_MARKER = "BADWORD"  # flagged by content moderation (OVERALL)
_INJECTION = re.compile(r"ignore\s+(?:all\s+)?previous\s+instructions", re.IGNORECASE)
# Labels as Oracle's release note names them (PERSON, EMAIL, TELEPHONE_NUMBER); PERSON is not detected here.
_PII_PATTERNS = {
    "EMAIL": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    "TELEPHONE_NUMBER": re.compile(r"\+?\d[\d ().-]{6,}\d"),
}
OFFSET_UNITS = ("utf16", "codepoint", "utf8")


@functools.cache
def oci_errors() -> dict[str, dict[str, Any]]:
    """The error answers OCI really sends, by name, each with its status, body and source."""
    entries = json.loads(_OCI_ERRORS.read_text())
    return {name: entry for name, entry in entries.items() if not name.startswith("_")}


@dataclass
class Fault:
    """One injected upstream misbehaviour, consumed by one request to a model route (or, with
    `path`, only by one to the route whose path ends with it, e.g. GUARDRAILS_PATH).

    status: answer `status` with an OCI-shaped body naming `code`.
    oci_error: answer OCI's real error `name` from oci_errors.json, byte for byte.
    patched: the normal answer with its top-level `fields` replaced (a 200 OCI may send).
    delay, drip (16 bytes every delay_s), trickle_headers / trickle_body (one byte every
    delay_s of the status line and headers, or of the body), drop, reset, truncated, non_json,
    wrong_shape: what a network or an overloaded service does.

    A streamed answer (`stream: true`) takes them as a stream would: drip sends an event every
    delay_s; reset (a TCP reset) and truncated (a clean close, the chunked body unfinished) cut the
    stream after `after_events` events (default: half of them); patched changes the final response,
    whose status names the last event (response.completed, response.incomplete or response.failed);
    the others strike before any event, as for an answer sent whole.
    """

    kind: str
    status: int = 500
    code: str = "InternalServerError"
    retry_after: str | None = None
    delay_s: float = 0.0
    name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    after_events: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {_FAULT_KINDS}")
        if self.kind == "oci_error" and self.name not in oci_errors():
            raise ValueError(f"unknown OCI error {self.name!r}; expected one of {tuple(oci_errors())}")


@dataclass
class RecordedRequest:
    """What the endpoint saw, so tests can assert on what the client really sent.

    `key_id` is the keyId the signature claimed, accepted or not; `status` is 0 when the
    connection was dropped without an answer.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    key_id: str | None
    status: int
    connection_id: int
    request_id: str


class _AuthError(Exception):
    pass


@contextlib.contextmanager
def blackhole(host: str = "127.0.0.1") -> Iterator[str]:
    """A base URL whose connection attempts hang, as on a route with no NAT or service gateway.

    A listener with a backlog of 0 that never accepts: once its queue is full, Linux drops
    further SYNs (net.ipv4.tcp_abort_on_overflow=0, the default), so connect() waits.
    """
    with socket.socket() as listener, contextlib.ExitStack() as fillers:
        listener.bind((host, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = fillers.enter_context(socket.socket())
            filler.settimeout(0.2)
            try:
                filler.connect((host, port))
            except OSError:
                break  # the queue is full: this SYN was dropped
        else:
            raise RuntimeError("the listen queue never filled: connections would not hang")
        yield f"http://{host}:{port}{_PREFIX}"


class LocalEndpoint:
    """The OCI Generative AI OpenAI-compatible endpoint on 127.0.0.1, strict about auth.

    Any model is answered, except `unavailable_models` (and, when `models` is given, any model
    not in it), for which it answers what OCI does for a model not deployed in the region:
    oci_errors.json's `model_not_found`, with `region` filled in. `GET /models` lists `models`.

    Responses (unless `store: false`) and conversations are kept per Generative AI project (the
    `OpenAI-Project` header), as OCI keeps them: responses for `responses_retention_hours` after their
    creation, conversations for `conversations_retention_hours` after their last update (OCI sets both
    per project and publishes no default; 720 hours is OpenAI's 30 days). A `background: true`
    response is queued, then in progress, then done, spending `background_steps_s` seconds in the
    first two. `clock` (time.time's stand-in) is what all of these read, so tests move time on.
    """

    def __init__(  # noqa: PLR0913  (keyword options, as tests call it)
        self,
        *,
        trusted_issuer: RSAPublicKey | None = None,
        project_ocid: str | None = None,
        models: Sequence[str] | None = None,
        unavailable_models: Sequence[str] = (),
        region: str = "us-chicago-1",
        guardrails_offset_unit: str = "utf16",
        host: str = "127.0.0.1",
        port: int = 0,
        max_skew_s: int = 300,
        idle_timeout_s: float | None = None,
        responses_retention_hours: float = 720,
        conversations_retention_hours: float = 720,
        background_steps_s: tuple[float, float] = (0.05, 0.05),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trusted_issuer = trusted_issuer
        self.project_ocid = project_ocid
        self.models = tuple(models) if models is not None else (DEFAULT_MODEL,)
        self._only_models = models is not None
        self.unavailable_models = tuple(unavailable_models)
        self.region = region
        if guardrails_offset_unit not in OFFSET_UNITS:
            raise ValueError(f"guardrails_offset_unit must be one of {OFFSET_UNITS}")
        self.guardrails_offset_unit = guardrails_offset_unit
        self.host = host
        self.port = port
        self.max_skew_s = max_skew_s
        self.idle_timeout_s = idle_timeout_s
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self._keys: dict[str, RSAPublicKey] = {}
        self._bearers: set[str] = set()
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._connections_opened = 0
        self._connection_ids = itertools.count(1)
        self._open_sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._storage = _Storage(
            clock, responses_retention_hours * 3600, conversations_retention_hours * 3600, background_steps_s
        )

    def start(self) -> LocalEndpoint:
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}{_PREFIX}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections, so clients see the server gone."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def register_key(self, key_id: str, public_key: RSAPublicKey) -> None:
        """Trust an API-key (user) principal, as uploading its public key to IAM does."""
        self._keys[key_id] = public_key

    def register_bearer(self, secret: str) -> None:
        """Accept an OCI Generative AI API key sent as `Authorization: Bearer <secret>`."""
        self._bearers.add(secret)

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is used up by the next authenticated request to a model route."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def connections_opened(self) -> int:
        return self._connections_opened

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self._connections_opened = 0

    # --- what its request handler calls ---

    def open_connection(self, sock: socket.socket) -> int:
        with self._lock:
            self._connections_opened += 1
            self._open_sockets.add(sock)
            return next(self._connection_ids)

    def close_connection(self, sock: socket.socket) -> None:
        with self._lock:
            self._open_sockets.discard(sock)

    def deployed(self, model: object) -> bool:
        """Served on the Responses API, the only model route here (never a Meta or Cohere model)."""
        if not isinstance(model, str) or model in self.unavailable_models or model.startswith(NOT_ON_RESPONSES_API):
            return False
        return not self._only_models or model in self.models

    def next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or path.endswith(fault.path):
                    self._faults.remove(fault)
                    return fault
            return None

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def respond(self, request: dict[str, Any], read: list[Text], project: str) -> dict[str, Any]:
        """Answer a valid POST /responses for `project`: with the history its previous response or
        conversation holds, kept unless `store` is false (raising _Refused for what OCI refuses)."""
        background, store = _flag(request, "background", False), _flag(request, "store", True)
        if background and request.get("stream") is True:
            raise _Refused(400, _error("InvalidParameter", "background streaming is not served by the local endpoint"))
        previous, conversation = request.get("previous_response_id"), _conversation_id(request.get("conversation"))
        if previous is not None and conversation is not None:
            # openai SDK: `previous_response_id` "Cannot be used in conjunction with `conversation`."
            raise _invalid(
                "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or"
                " 'conversation'.",
                None,
                "mutually_exclusive_parameters",
            )
        if previous is not None:
            history = self._storage.history(project, _id_text(previous, "previous_response_id"))
        elif conversation is not None:
            history = self._storage.items(project, conversation)
        else:
            history = []
        answer, now = _response(request, read), self._storage.now()
        heard = sum(_item_words(item) for item in history)
        answer["usage"]["input_tokens"] += heard
        answer["usage"]["total_tokens"] += heard
        answer.update(
            created_at=int(now),
            metadata=request.get("metadata") or {},
            store=store,
            background=background,
            previous_response_id=previous,
            conversation={"id": conversation} if conversation is not None else None,
        )
        added = _stored_items(request["input"])
        if not store and not background:
            self._storage.add_to_conversation(project, conversation, [*added, *answer["output"]])
            return answer
        items = [*history, *added]
        return self._storage.keep(_Kept(project, answer, items, added, store, background, conversation, now))

    def stored_answer(self, call: _Call) -> dict[str, Any]:
        """The answer of a route on stored responses or conversations, raising _Refused otherwise."""
        storage, ids = self._storage, call.ids
        if call.name == "retrieve_response":
            if _one(call.query, "stream") not in (None, "false"):
                raise _Refused(
                    400, _error("InvalidParameter", "resumable streaming is not served by the local endpoint")
                )
            return storage.response(call.project, ids["response_id"])
        if call.name == "delete_response":
            return storage.delete_response(call.project, ids["response_id"])
        if call.name == "list_input_items":
            return _page(storage.input_items(call.project, ids["response_id"]), call.query)
        if call.name == "cancel_response":
            return storage.cancel(call.project, ids["response_id"])
        if call.name == "list_items":
            return _page(storage.items(call.project, ids["conversation_id"]), call.query)
        if call.name == "retrieve_conversation":
            return storage.conversation(call.project, ids["conversation_id"])
        if call.name == "delete_conversation":
            return storage.delete_conversation(call.project, ids["conversation_id"])
        if call.name == "retrieve_item":
            return storage.item(call.project, ids["conversation_id"], ids["item_id"])
        if call.name == "delete_item":
            return storage.delete_item(call.project, ids["conversation_id"], ids["item_id"])
        fields = _json_object(call.body)
        if call.name == "create_conversation":
            _check_metadata(fields.get("metadata"))
            items = _checked_items(fields.get("items") or [])
            return storage.create_conversation(call.project, items, fields.get("metadata") or {})
        if call.name == "update_conversation":
            if "metadata" not in fields:
                raise _invalid("Missing required parameter: 'metadata'.", "metadata", "missing_required_parameter")
            _check_metadata(fields["metadata"])
            return storage.update_conversation(call.project, ids["conversation_id"], fields["metadata"] or {})
        if "items" not in fields:  # create_items
            raise _invalid("Missing required parameter: 'items'.", "items", "missing_required_parameter")
        return _list_object(storage.add_items(call.project, ids["conversation_id"], _checked_items(fields["items"])))

    def authenticate(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        """Check credentials as OCI does, raising _AuthError with the reason on any failure."""
        authorization = headers.get("authorization")
        if authorization is None:
            raise _AuthError("missing authorization header")
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() == "bearer":
            if rest.strip() not in self._bearers:
                raise _AuthError("unknown API key")
        elif scheme.lower() == "signature":
            self._verify_signature(_signature_params(rest), method, target, headers, body)
        else:
            raise _AuthError(f"unsupported authorization scheme {scheme!r}")

    def _verify_signature(
        self, params: dict[str, str], method: str, target: str, headers: dict[str, str], body: bytes
    ) -> None:
        for name in ("version", "keyId", "algorithm", "headers", "signature"):
            if name not in params:
                raise _AuthError(f"missing signature parameter {name}")
        if params["version"] != "1":
            raise _AuthError("unsupported signature version")
        if params["algorithm"] != "rsa-sha256":
            raise _AuthError("unsupported signature algorithm")
        signed = params["headers"].lower().split()
        required = ["(request-target)", "host"] + (list(_BODY_HEADERS) if method in _BODY_METHODS else [])
        if "date" not in signed and "x-date" not in signed:
            raise _AuthError("missing signed header date")
        for name in required:
            if name not in signed:
                raise _AuthError(f"missing signed header {name}")
        for name in signed:
            if name != "(request-target)" and name not in headers:
                raise _AuthError(f"missing header {name}")

        date = headers["x-date" if "x-date" in signed else "date"]
        try:
            sent_at = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise _AuthError("unparseable date") from None
        if abs(time.time() - sent_at) > self.max_skew_s:
            raise _AuthError("date skew")
        body_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if "x-content-sha256" in signed and headers["x-content-sha256"] != body_hash:
            raise _AuthError("body hash mismatch")
        if "content-length" in signed and headers["content-length"] != str(len(body)):
            raise _AuthError("content-length mismatch")

        public_key = self._public_key(params["keyId"])
        values = {**headers, "(request-target)": f"{method.lower()} {target}"}
        signing_string = "\n".join(f"{name}: {values[name]}" for name in signed)
        try:
            signature = base64.b64decode(params["signature"], validate=True)
            public_key.verify(signature, signing_string.encode(), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise _AuthError("signature mismatch") from None

    def _public_key(self, key_id: str) -> RSAPublicKey:
        """The key a keyId stands for: a session token's own `jwk`, or a registered API key."""
        if not key_id.startswith(_SESSION_KEY_ID):
            if key_id not in self._keys:
                raise _AuthError("unknown key")
            return self._keys[key_id]
        if self.trusted_issuer is None:
            raise _AuthError("unknown key: no trusted token issuer")
        try:
            header_b64, claims_b64, signature_b64 = key_id.removeprefix(_SESSION_KEY_ID).split(".")
            header = json.loads(_b64url_decode(header_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except ValueError:
            raise _AuthError("malformed token") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise _AuthError("malformed token")
        if header.get("alg") != "RS256":
            raise _AuthError("token algorithm not RS256")
        try:
            self.trusted_issuer.verify(
                signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise _AuthError("token signature mismatch: not issued by the trusted issuer") from None
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < time.time():
            raise _AuthError("token expired")
        jwk = claims.get("jwk") or {}
        if isinstance(jwk, str):  # real OCI tokens carry it as a JSON string (auth.py says where that is seen)
            try:
                jwk = json.loads(jwk)
            except ValueError:
                raise _AuthError("token has no usable jwk") from None
        try:
            n = int.from_bytes(_b64url_decode(jwk["n"]), "big")
            e = int.from_bytes(_b64url_decode(jwk["e"]), "big")
        except (KeyError, TypeError, ValueError):
            raise _AuthError("token has no usable jwk") from None
        return RSAPublicNumbers(e, n).public_key()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN  # Python's default of 5 drops a burst of callers, who retry 1 s later

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], endpoint: LocalEndpoint):
        self.endpoint = endpoint
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-request is routine here (faults, timeouts); real bugs still print."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms delayed-ACK stall
    server: _Server
    endpoint: LocalEndpoint
    connection_id: int
    request_id: str
    record: RecordedRequest

    def setup(self) -> None:
        self.endpoint = self.server.endpoint
        if self.endpoint.idle_timeout_s is not None:  # as StreamRequestHandler.setup does with `timeout`
            self.request.settimeout(self.endpoint.idle_timeout_s)
        self.connection_id = self.endpoint.open_connection(self.request)
        super().setup()

    def finish(self) -> None:
        self.endpoint.close_connection(self.request)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = self.path.partition("?")[0]
        self.request_id = uuid.uuid4().hex.upper()
        key_id = _signature_params(headers.get("authorization", "")).get("keyId")
        self.record = RecordedRequest(
            self.command, self.path, headers, body, key_id, 0, self.connection_id, self.request_id
        )
        try:
            self.endpoint.authenticate(self.command, self.path, headers, body)
        except _AuthError as error:
            self._send(401, _error("NotAuthenticated", str(error)))
            return
        if _route(self.command, path) is None and (self.command, path) != ("POST", GUARDRAILS_PATH):
            self._send(404, _error("NotFound", f"No route for {self.command} {path}"))
        elif path != GUARDRAILS_PATH and self.endpoint.project_ocid not in (None, headers.get("openai-project")):
            message = "Authorization failed or requested resource not found (wrong project or missing policy)"
            self._send(404, _error("NotAuthorizedOrNotFound", message))
        else:
            self._serve_model_route(path, body)

    def _serve_model_route(self, path: str, body: bytes) -> None:
        fault = self.endpoint.next_fault(path)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_s)
            fault = None
        if _asks_to_stream(path, body) and (fault is None or fault.kind in _STREAM_FAULTS):
            self._stream(fault, *self._answer(path, body))
        elif fault is None:
            self._send(*self._answer(path, body))
        elif fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(fault.status, _error(fault.code, f"Injected fault {fault.status}"), extra)
        elif fault.kind == "oci_error":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(*self._oci_error(str(fault.name), _requested_model(body)), extra)
        elif fault.kind == "patched":
            status, answer = self._answer(path, body)
            self._send(status, _json({**json.loads(answer), **fault.fields}) if status == 200 else answer)
        elif fault.kind == "non_json":
            self._send(200, b"<html><body>upstream hiccup</body></html>")
        elif fault.kind == "wrong_shape":
            self._send(200, _json({"unexpected": True}))
        elif fault.kind == "drop":
            self.endpoint.record(self.record)
            self.close_connection = True
        else:
            self._misdeliver(fault, *self._answer(path, body))

    def _answer(self, path: str, body: bytes) -> tuple[int, bytes]:
        if path == GUARDRAILS_PATH:
            return _guardrails_answer(body, self.endpoint.guardrails_offset_unit)
        name, ids = _route(self.command, path) or ("", {})
        if name == "models":
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "oci"} for m in self.endpoint.models]
            return 200, _json({"object": "list", "data": models})
        project = self.headers.get("OpenAI-Project") or ""
        try:
            if name != "create_response":
                query = urllib.parse.parse_qs(self.path.partition("?")[2], keep_blank_values=True)
                return 200, _json(self.endpoint.stored_answer(_Call(name, ids, query, body, project)))
            return self._create_response(body, project)
        except _Refused as refusal:
            return refusal.status, refusal.body

    def _create_response(self, body: bytes, project: str) -> tuple[int, bytes]:
        try:
            request = json.loads(body)
        except ValueError:
            return 400, _error("InvalidParameter", "Request body is not valid JSON")
        if not isinstance(request, dict) or not isinstance(request.get("model"), str):
            return 400, _error("InvalidParameter", "Request body has no model")
        _check_metadata(request.get("metadata"))
        read = _texts({name: value for name, value in request.items() if name not in _STATE_FIELDS})
        if read is None:
            return 400, _error("InvalidParameter", "Request body is not a valid Responses API request")
        if not self.endpoint.deployed(request["model"]):
            return self._oci_error("model_not_found", request["model"])
        return 200, _json(self.endpoint.respond(request, read, project))

    def _oci_error(self, name: str, model: str) -> tuple[int, bytes]:
        """OCI's real answer `name`, with the model and region it names filled in."""
        entry = oci_errors()[name]
        text = json.dumps(entry["body"]).replace("{model}", _json_text(model)).replace("{region}", self.endpoint.region)
        return entry["status"], text.encode()

    def _send(self, status: int, body: bytes, extra_headers: dict[str, str] | None = None) -> None:
        self._start(status, len(body), extra_headers)
        self.wfile.write(body)

    def _start(self, status: int, content_length: int, extra_headers: dict[str, str] | None = None) -> None:
        """Record, then send the status line and headers: a test reading `requests` after its
        response arrives must find the request there."""
        self._record_answer(status)
        self.send_response(status)
        for name, value in self._headers(content_length, extra_headers):
            self.send_header(name, value)
        self.end_headers()

    def _record_answer(self, status: int) -> None:
        self.record.status = status
        self.endpoint.record(self.record)

    def _headers(self, content_length: int, extra_headers: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """Every answer's headers, as OCI sends them."""
        headers = {"Content-Type": "application/json", "Content-Length": str(content_length)}
        return [*headers.items(), ("opc-request-id", self.request_id), *(extra_headers or {}).items()]

    def _stream(self, fault: Fault | None, status: int, body: bytes) -> None:
        """A streamed answer: OCI's events, one chunk each (chunked transfer coding), delivered
        as `fault` says; an error is OCI's JSON error, sent before any event."""
        if status != 200:
            self._send(status, body)
            return
        response = json.loads(body)
        if fault is not None and fault.kind == "patched":
            response.update(fault.fields)
        chunks = [_chunk(event) for event in stream_events(response)]
        self._record_answer(status)
        head = [f"HTTP/1.1 200 {self.responses[200][0]}", "Content-Type: text/event-stream"]
        head += ["Transfer-Encoding: chunked", f"opc-request-id: {self.request_id}"]
        head_bytes = "".join(f"{line}\r\n" for line in [*head, ""]).encode()
        kind = fault.kind if fault is not None else None
        if kind == "trickle_headers":
            _trickle(self.wfile, head_bytes, fault.delay_s if fault else 0.0)
        else:
            self.wfile.write(head_bytes)
        if kind in ("reset", "truncated"):
            cut = fault.after_events if fault and fault.after_events is not None else len(chunks) // 2
            self.wfile.write(b"".join(chunks[:cut]))
            self.wfile.flush()
            self.close_connection = True
            if kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.connection.close()
            return
        if kind == "trickle_body":
            _trickle(self.wfile, b"".join([*chunks, _LAST_CHUNK]), fault.delay_s if fault else 0.0)
            return
        for chunk in chunks:
            self.wfile.write(chunk)
            self.wfile.flush()
            if kind == "drip" and fault is not None:
                time.sleep(fault.delay_s)
        self.wfile.write(_LAST_CHUNK)

    def _misdeliver(self, fault: Fault, status: int, body: bytes) -> None:
        """Deliver an answer the broken ways a network or an overloaded service does."""
        if fault.kind == "trickle_headers":
            self._record_answer(status)
            lines = [f"HTTP/1.1 {status} {self.responses[status][0]}"]
            lines += [f"{name}: {value}" for name, value in self._headers(len(body))]
            head = "".join(f"{line}\r\n" for line in [*lines, ""]).encode()
            _trickle(self.wfile, head, fault.delay_s)
            self.wfile.write(body)
            return
        if fault.kind == "trickle_body":
            self._start(status, len(body))
            _trickle(self.wfile, body, fault.delay_s)
            return
        if fault.kind == "drip":
            self._start(status, len(body))
            for offset in range(0, len(body), _DRIP_BYTES):
                self.wfile.write(body[offset : offset + _DRIP_BYTES])
                time.sleep(fault.delay_s)
            return
        self._start(status, len(body) + 100 if fault.kind == "truncated" else len(body))
        self.wfile.write(body[: len(body) // 2] if fault.kind == "reset" else body)
        self.close_connection = True
        if fault.kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()


# --- stored responses and conversations ---


class _Refused(Exception):
    """An answer other than 200 (its status and body), raised where the reason is found."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _not_found() -> _Refused:
    """OCI's 404 for an id it does not know, has deleted or expired, or keeps for another project."""
    entry = oci_errors()["not_authorized_or_not_found"]
    return _Refused(entry["status"], _json(entry["body"]))


def _invalid(message: str, param: str | None, code: str | None) -> _Refused:
    """A 400 in OpenAI's error shape (openai SDK: the body its BadRequestError carries: message, type,
    param, code), which OCI's OpenAI-compatible endpoint also answers (oci_errors.json: openai_invalid_request)."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return _Refused(400, _json({"error": error}))


def _wrong_type(param: str, expected: str, got: str) -> _Refused:
    """OpenAI's answer for a value of the wrong JSON type, e.g. expected "an array", got "a string"."""
    return _invalid(f"Invalid type for '{param}': expected {expected}, but got {got} instead.", param, "invalid_type")


@dataclass(frozen=True)
class _Call:
    """One request to a route on stored objects: the route's name, the ids in its path, its query, its body
    and the project (OpenAI-Project header) it asks in."""

    name: str
    ids: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    project: str


@dataclass
class _Kept:
    """A response as kept: its answer once done (what a foreground call answers at once), its input items
    (history first) and the items it adds to its conversation."""

    project: str
    answer: dict[str, Any]
    items: list[dict[str, Any]]
    added: list[dict[str, Any]]
    stored: bool
    background: bool
    conversation: str | None
    created: float  # the clock's time, unrounded (the answer's created_at is whole seconds)
    cancelled: bool = False
    settled: bool = False  # done (or cancelled), its items added to its conversation


@dataclass
class _Conversation:
    """A conversation as kept (openai SDK: Conversation, with its items as ConversationItem)."""

    project: str
    id: str
    created_at: int
    metadata: dict[str, Any]
    items: list[dict[str, Any]]
    updated: float


class _Storage:
    """Responses and conversations of every project, as OCI keeps them: each visible only to the project
    that made it, gone after the project's retention, a background response moving on with the clock.

    Every method takes the lock, settles what finished and forgets what expired first; what it returns
    is a copy, and an id it cannot serve raises OCI's not-found answer."""

    def __init__(
        self, clock: Callable[[], float], responses_s: float, conversations_s: float, steps_s: tuple[float, float]
    ) -> None:
        self.now = clock
        self._responses_s, self._conversations_s = responses_s, conversations_s
        self._queued_s, self._in_progress_s = steps_s
        self._responses: dict[str, _Kept] = {}
        self._conversations: dict[str, _Conversation] = {}
        self._pending: set[str] = set()  # background responses not yet settled
        self._expiries: list[tuple[float, str]] = []  # a heap of (when, id), one per creation or update
        self._lock = threading.Lock()

    # responses

    def keep(self, kept: _Kept) -> dict[str, Any]:
        with self._lock:
            now = self._tidy()
            self._responses[kept.answer["id"]] = kept
            kept_s = self._responses_s if kept.stored else _UNSTORED_BACKGROUND_S
            heapq.heappush(self._expiries, (kept.created + kept_s, kept.answer["id"]))
            if kept.background:
                self._pending.add(kept.answer["id"])
            else:
                self._settle(kept, now)
            return copy.deepcopy(self._view(kept, now))

    def response(self, project: str, response_id: str) -> dict[str, Any]:
        with self._lock:
            now = self._tidy()
            return copy.deepcopy(self._view(self._response(project, response_id), now))

    def history(self, project: str, response_id: str) -> list[dict[str, Any]]:
        """What a response continuing this one reads first: its input items, then its output."""
        with self._lock:
            now = self._tidy()
            kept = self._response(project, response_id, stored=True)
            return copy.deepcopy([*kept.items, *self._view(kept, now)["output"]])

    def input_items(self, project: str, response_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._tidy()
            return copy.deepcopy(self._response(project, response_id, stored=True).items)

    def delete_response(self, project: str, response_id: str) -> dict[str, Any]:
        with self._lock:
            self._tidy()
            self._response(project, response_id)
            del self._responses[response_id]
        # The openai SDK reads no body (responses.delete returns None); OpenAI's API reference answers this.
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    def cancel(self, project: str, response_id: str) -> dict[str, Any]:
        """openai SDK (responses.cancel): "Only responses created with the `background` parameter set to
        `true` can be cancelled"; OpenAI's background guide: cancelling again, or once finished, returns
        the response as it is."""
        with self._lock:
            now = self._tidy()
            kept = self._response(project, response_id)
            if not kept.background:
                raise _invalid(
                    "Only responses created with the `background` parameter set to `true` can be cancelled.",
                    None,
                    None,
                )
            if not kept.settled:
                kept.cancelled = kept.settled = True
            return copy.deepcopy(self._view(kept, now))

    # conversations

    def create_conversation(
        self, project: str, items: list[dict[str, Any]], metadata: dict[str, Any]
    ) -> dict[str, Any]:
        with self._lock:
            now = self._tidy()
            conversation = _Conversation(project, f"conv_{uuid.uuid4().hex}", int(now), metadata, items, now)
            self._conversations[conversation.id] = conversation
            self._touch(conversation, now)
            return _conversation_view(conversation)

    def conversation(self, project: str, conversation_id: str) -> dict[str, Any]:
        with self._lock:
            self._tidy()
            return _conversation_view(self._conversation(project, conversation_id))

    def update_conversation(self, project: str, conversation_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            now = self._tidy()
            conversation = self._conversation(project, conversation_id)
            conversation.metadata = metadata
            self._touch(conversation, now)
            return _conversation_view(conversation)

    def delete_conversation(self, project: str, conversation_id: str) -> dict[str, Any]:
        with self._lock:
            self._tidy()
            self._conversation(project, conversation_id)
            del self._conversations[conversation_id]
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}  # ConversationDeletedResource

    def items(self, project: str, conversation_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._tidy()
            return copy.deepcopy(self._conversation(project, conversation_id).items)

    def add_items(self, project: str, conversation_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self._lock:
            now = self._tidy()
            conversation = self._conversation(project, conversation_id)
            conversation.items.extend(copy.deepcopy(items))
            self._touch(conversation, now)
            return copy.deepcopy(items)

    def add_to_conversation(self, project: str, conversation_id: str | None, items: list[dict[str, Any]]) -> None:
        """A response not kept still adds its items to its conversation."""
        if conversation_id is not None:
            self.add_items(project, conversation_id, items)

    def item(self, project: str, conversation_id: str, item_id: str) -> dict[str, Any]:
        with self._lock:
            self._tidy()
            conversation = self._conversation(project, conversation_id)
            return copy.deepcopy(conversation.items[_index(conversation.items, item_id)])

    def delete_item(self, project: str, conversation_id: str, item_id: str) -> dict[str, Any]:
        """openai SDK: conversations.items.delete answers the Conversation."""
        with self._lock:
            now = self._tidy()
            conversation = self._conversation(project, conversation_id)
            del conversation.items[_index(conversation.items, item_id)]
            self._touch(conversation, now)
            return _conversation_view(conversation)

    # under the lock

    def _response(self, project: str, response_id: str, *, stored: bool = False) -> _Kept:
        """The response `project` kept; with `stored`, only one kept for good (store was not false)."""
        kept = self._responses.get(response_id)
        if kept is None or kept.project != project or (stored and not kept.stored):
            raise _not_found()
        return kept

    def _conversation(self, project: str, conversation_id: str) -> _Conversation:
        conversation = self._conversations.get(conversation_id)
        if conversation is None or conversation.project != project:
            raise _not_found()
        return conversation

    def _done_at(self, kept: _Kept) -> float:
        return kept.created + (self._queued_s + self._in_progress_s if kept.background else 0)

    def _tidy(self) -> float:
        """Settle the background responses done by now (in the order they finished), then forget what
        expired; returns now."""
        now = self.now()
        waiting = [self._responses[i] for i in self._pending if i in self._responses and not self._responses[i].settled]
        for kept in sorted(waiting, key=self._done_at):
            if self._done_at(kept) <= now:
                self._settle(kept, self._done_at(kept))
        self._pending = {kept.answer["id"] for kept in waiting if not kept.settled}
        while self._expiries and self._expiries[0][0] <= now:
            _, object_id = heapq.heappop(self._expiries)
            conversation = self._conversations.get(object_id)
            if conversation is None:
                self._responses.pop(object_id, None)
            elif now >= conversation.updated + self._conversations_s:  # not updated since
                del self._conversations[object_id]
        return now

    def _touch(self, conversation: _Conversation, at: float) -> None:
        """The conversation was updated `at`: its retention starts again."""
        conversation.updated = max(conversation.updated, at)
        heapq.heappush(self._expiries, (conversation.updated + self._conversations_s, conversation.id))

    def _settle(self, kept: _Kept, at: float) -> None:
        """A response done at `at` adds its input and output items to its conversation (openai SDK: the
        `conversation` parameter: "after this response completes"), unless that had expired by then."""
        kept.settled = True
        conversation = self._conversations.get(kept.conversation or "")
        if conversation is not None and at < conversation.updated + self._conversations_s:
            conversation.items.extend(copy.deepcopy([*kept.added, *kept.answer["output"]]))
            self._touch(conversation, at)

    def _view(self, kept: _Kept, now: float) -> dict[str, Any]:
        """The response as it is at `now`: a background one is queued, then in progress, then its answer
        (or cancelled), with no output until then (openai SDK: Response, ResponseStatus)."""
        if not kept.background:
            return kept.answer
        done_at = self._done_at(kept)
        if not kept.cancelled and now >= done_at:
            completed = done_at if kept.answer["status"] == "completed" else None
            return {**kept.answer, "completed_at": completed}
        status = "cancelled" if kept.cancelled else "queued"
        if status == "queued" and now >= kept.created + self._queued_s:
            status = "in_progress"
        waiting: dict[str, Any] = {
            "status": status,
            "output": [],
            "usage": None,
            "incomplete_details": None,
            "completed_at": None,
        }
        return {**kept.answer, **waiting}


def _conversation_view(conversation: _Conversation) -> dict[str, Any]:
    """openai SDK: Conversation."""
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": conversation.created_at,
        "metadata": copy.deepcopy(conversation.metadata),
    }


def _index(items: list[dict[str, Any]], item_id: str) -> int:
    for index, item in enumerate(items):
        if item["id"] == item_id:
            return index
    raise _not_found()


def _stored_items(value: Any) -> list[dict[str, Any]]:
    """A request's `input` (or a conversation's `items`) as stored items, each with an id: openai SDK
    ResponseItem for input items, ConversationItem for a conversation's (a user, system or developer message
    as ResponseInputMessageItem / Message with input_text parts; an assistant's as ResponseOutputMessage with
    output_text parts; function calls, their outputs and reasoning as sent, with an id and a status)."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for item in value:
        kind = item.get("type", "message")
        stored: dict[str, Any] = {
            **copy.deepcopy(item),
            "id": item.get("id") or f"{_ID_PREFIXES.get(kind, 'item')}_{uuid.uuid4().hex}",
        }
        if kind == "message":
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            content = item.get("content")
            parts: list[dict[str, Any]] = (
                [{"type": part, "text": content}] if isinstance(content, str) else stored["content"]
            )
            for each in parts:
                if each.get("type") == "output_text":
                    each.setdefault("annotations", [])
            stored.update(type="message", content=parts)
        if kind != "reasoning":
            stored.setdefault("status", "completed")
        items.append(stored)
    return items


def _item_words(item: dict[str, Any]) -> int:
    """A history item's tokens, a word each, as _response counts the texts the model reads."""
    if item.get("type") == "function_call_output":
        return len(str(item.get("output", "")).split())
    if item.get("type") != "message":
        return 0
    return sum(len(str(part.get("text", "")).split()) for part in item.get("content") or [])


def _checked_items(items: Any) -> list[dict[str, Any]]:
    """Items to add to a conversation, refused as OpenAI refuses more than 20 and as this endpoint
    refuses a request's input it does not take (the function's contract walk, _texts)."""
    if not isinstance(items, list):
        raise _wrong_type("items", "an array", _json_type(items))
    if len(items) > _MAX_ADDED_ITEMS:
        raise _invalid(
            f"Invalid 'items': array too long. Expected an array with maximum length {_MAX_ADDED_ITEMS}, but got an"
            f" array with length {len(items)} instead.",
            "items",
            "array_above_max_length",
        )
    if items and _texts({"input": items}) is None:
        raise _Refused(400, _error("InvalidParameter", "Request body has items that are not valid Responses API items"))
    return _stored_items(items)


def _check_metadata(metadata: Any) -> None:
    """Refuse metadata beyond OpenAI's limits, with OpenAI's answers. The too-many-pairs, value-too-long
    and type answers are as public issue threads quote OpenAI's; its key-too-long wording is not public,
    so that one follows the others."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise _wrong_type("metadata", "an object", _json_type(metadata))
    if len(metadata) > _METADATA_PAIRS:
        raise _invalid(
            f"Invalid 'metadata': too many properties. Expected an object with at most {_METADATA_PAIRS} properties,"
            f" but got an object with {len(metadata)} properties instead.",
            "metadata",
            "object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > _METADATA_KEY_CHARS:
            raise _invalid(
                f"Invalid 'metadata': key too long. Expected a key with maximum length {_METADATA_KEY_CHARS}, but got"
                f" a key with length {len(key)} instead.",
                "metadata",
                "string_above_max_length",
            )
        if not isinstance(value, str):
            raise _wrong_type(f"metadata.{key}", "a string", _json_type(value))
        if len(value) > _METADATA_VALUE_CHARS:
            raise _invalid(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length"
                f" {_METADATA_VALUE_CHARS}, but got a string with length {len(value)} instead.",
                f"metadata.{key}",
                "string_above_max_length",
            )


def _json_type(value: Any) -> str:
    """How OpenAI's errors name a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    kinds = {float: "a decimal", str: "a string", list: "an array", dict: "an object"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), "a value")


def _flag(request: dict[str, Any], name: str, default: bool) -> bool:
    value = request.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong_type(name, "a boolean", _json_type(value))
    return value


def _id_text(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _wrong_type(param, "a string", _json_type(value))
    return value


def _conversation_id(value: Any) -> str | None:
    """openai SDK: ResponseCreateParams.conversation, a conversation id or {"id": ...}."""
    if value is None:
        return None
    return _id_text(value.get("id") if isinstance(value, dict) else value, "conversation")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body) if body.strip() else {}
    except ValueError:
        raise _Refused(400, _error("InvalidParameter", "Request body is not valid JSON")) from None
    if not isinstance(fields, dict):
        raise _Refused(400, _error("InvalidParameter", "Request body is not a JSON object"))
    return fields


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    """One page of `items` (oldest first) as `limit`, `order` and `after` ask (openai SDK: InputItemListParams,
    ItemListParams), refused with OpenAI's answers outside their ranges; an `after` not listed is not found."""
    limit = _LIST_LIMIT_DEFAULT
    if (text := _one(query, "limit")) is not None:
        if not re.fullmatch(r"-?\d+", text):
            raise _wrong_type("limit", "an integer", "a string")
        limit = int(text)
        if limit < _LIST_LIMIT_MIN:
            raise _invalid(
                f"Invalid 'limit': integer below minimum value. Expected a value >= {_LIST_LIMIT_MIN}, but got {limit}"
                " instead.",
                "limit",
                "integer_below_min_value",
            )
        if limit > _LIST_LIMIT_MAX:
            raise _invalid(
                f"Invalid 'limit': integer above maximum value. Expected a value <= {_LIST_LIMIT_MAX}, but got {limit}"
                " instead.",
                "limit",
                "integer_above_max_value",
            )
    order = _one(query, "order") or "desc"
    if order not in ("asc", "desc"):
        raise _invalid(f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", "order", "invalid_value")
    ordered = items if order == "asc" else items[::-1]
    if (after := _one(query, "after")) is not None:
        ordered = ordered[_index(ordered, after) + 1 :]
    return _list_object(ordered[:limit], has_more=len(ordered) > limit)


def _list_object(items: list[dict[str, Any]], *, has_more: bool = False) -> dict[str, Any]:
    """openai SDK: ResponseItemList / ConversationItemList (first_id and last_id null when empty)."""
    first, last = (items[0]["id"], items[-1]["id"]) if items else (None, None)
    return {"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more}


def _route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The model route `method` and `path` name, and the ids in the path."""
    for name, route_method, pattern in _ROUTES:
        if method == route_method and (match := pattern.fullmatch(path)):
            return name, {key: urllib.parse.unquote(value) for key, value in match.groupdict().items()}
    return None


def _texts(request: dict[str, Any]) -> list[Text] | None:
    """Every text the model would read, by the function's own walk (contract.texts); None for a
    request the Responses API would refuse (`prompt` is the function's field, never OCI's)."""
    if "prompt" in request:
        return None
    try:
        return texts(Request.model_validate(request))
    except ValidationError:
        return None


def _response(request: dict[str, Any], read: list[Text]) -> dict[str, Any]:
    """A Responses API object the openai SDK parses, derived only from the request: a call to a
    declared function while the model may call one and no function output has come back, else an
    answer to the last input item's text; a token per word of every text the model reads."""
    call = _function_call(request)
    inputs = [text for text in read if text.at.startswith("input")]
    last = inputs[-1].at.partition("]")[0] if inputs else ""  # "input[3" for the fourth item, "input" for a string
    asked = " ".join(text.text for text in inputs if text.at.partition("]")[0] == last)
    schema = _answer_schema(request)
    if call:
        text = call["arguments"]
    elif schema is not None:  # structured output: JSON the schema accepts, as a model bound by it answers
        text = json.dumps(_sample(schema))
    else:
        text = f"Local answer to: {asked}"
    words = text.split()
    limit = request.get("max_output_tokens")
    status, incomplete = "completed", None
    if isinstance(limit, int) and len(words) > limit and not call and schema is None:
        words = words[:limit]
        text = " ".join(words)
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    input_tokens = sum(len(t.text.split()) for t in read)
    message = {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex}",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "model": request["model"],
        "output": [call or message],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": len(words),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + len(words),
        },
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools", []),
        "store": request.get("store", True),
        "max_output_tokens": limit,
        "instructions": request.get("instructions"),
        "metadata": request.get("metadata", {}),
    }


def stream_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The server-sent events that stream `response`, in the Responses API's order (openai SDK:
    ResponseStreamEvent), each with its `sequence_number`: created, in_progress, then per output item
    its added, content or argument deltas and done events, then the closing event its status names."""
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, **fields, "sequence_number": len(events)})

    started = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    started["error"] = None
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    output = response.get("output")
    for index, item in enumerate(output if isinstance(output, list) else []):
        where = {"item_id": item.get("id"), "output_index": index} if isinstance(item, dict) else {}
        if not isinstance(item, dict) or item.get("type") not in ("message", "function_call"):
            emit("response.output_item.added", output_index=index, item=item)
        elif item["type"] == "message":
            emit(
                "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []}
            )
            for part_index, part in enumerate(item.get("content") or []):
                at = {**where, "content_index": part_index}
                text = part.get("text", "")
                emit("response.content_part.added", **at, part={**part, "text": ""})
                for delta in _pieces(text, r"\S+\s*|\s+"):
                    emit("response.output_text.delta", **at, delta=delta, logprobs=[])
                emit("response.output_text.done", **at, text=text, logprobs=[])
                emit("response.content_part.done", **at, part=part)
        else:
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            arguments = item.get("arguments", "")
            for delta in _pieces(arguments, f".{{1,{_ARGUMENT_CHUNK_CHARS}}}"):
                emit("response.function_call_arguments.delta", **where, delta=delta)
            emit("response.function_call_arguments.done", **where, name=item.get("name"), arguments=arguments)
        emit("response.output_item.done", output_index=index, item=item)
    emit(_FINAL_EVENTS.get(str(response.get("status")), "response.completed"), response=response)
    return events


def _pieces(text: str, pattern: str) -> list[str]:
    """`text` in the pieces a model streams it in; one empty piece for an empty text."""
    return re.findall(pattern, text, flags=re.S) or [""]


def _chunk(event: dict[str, Any]) -> bytes:
    """One server-sent event as one HTTP chunk."""
    data = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_LAST_CHUNK = b"0\r\n\r\n"


def _asks_to_stream(path: str, body: bytes) -> bool:
    if not path.endswith("/responses"):
        return False
    try:
        request = json.loads(body)
    except ValueError:
        return False
    return isinstance(request, dict) and request.get("stream") is True


def _guardrails_answer(body: bytes, unit: str) -> tuple[int, bytes]:
    """400 InvalidParameter for what ApplyGuardrailsDetails would refuse (its required fields), else 200."""
    try:
        details = json.loads(body)
        compartment, text_input, configs = details["compartmentId"], details["input"], details["guardrailConfigs"]
        content = text_input["content"]
        if not (
            isinstance(compartment, str)
            and compartment
            and text_input.get("type") == "TEXT"
            and isinstance(content, str)
            and isinstance(configs, dict)
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        return 400, _error("InvalidParameter", "Invalid ApplyGuardrailsDetails")
    return 200, _json(guardrails_result(content, configs, unit))


def guardrails_result(content: str, configs: dict[str, Any], unit: str = "utf16") -> dict[str, Any]:
    """An ApplyGuardrailsResult (as the oci SDK deserialises it) for the checks `configs` asks for: an
    email address or telephone number is PII, "ignore previous instructions" is a prompt injection,
    and the marker word BADWORD is flagged content.

    PII offsets and lengths count `unit`s: UTF-16 code units by default (what a Java service's
    String.length counts; OCI does not document the unit), or code points, or UTF-8 bytes.
    """
    results: dict[str, Any] = {}
    moderation = configs.get("contentModerationConfig")
    if isinstance(moderation, dict):
        flagged = GUARDRAILS_MARKER in content
        results["contentModeration"] = {
            "categories": [
                {"name": name, "score": 1.0 if flagged and name == "OVERALL" else 0.0}
                for name in moderation.get("categories") or ("OVERALL", "BLOCKLIST")
            ]
        }
    if isinstance(configs.get("promptInjectionConfig"), dict):
        results["promptInjection"] = {"score": 1.0 if _INJECTION.search(content) else 0.0}
    pii = configs.get("personallyIdentifiableInformationConfig")
    if isinstance(pii, dict):
        found = []
        for label in pii.get("types") or _PII_PATTERNS:
            at, units = 0, 0  # counted as the matches go, so a text with many findings stays linear
            for match in _PII_PATTERNS.get(label, re.compile(r"(?!)")).finditer(content):
                units += _units(content[at : match.start()], unit)
                at, length = match.start(), _units(match.group(), unit)
                found.append({"length": length, "offset": units, "text": match.group(), "label": label, "score": 0.99})
        results["personallyIdentifiableInformation"] = sorted(found, key=lambda f: f["offset"])
    return {"results": results, "guardrailVersion": {"version": "1.0.1"}}


def _units(text: str, unit: str) -> int:
    if unit == "codepoint":
        return len(text)
    return len(text.encode("utf-16-le")) // 2 if unit == "utf16" else len(text.encode("utf-8"))


def _trickle(out: Any, data: bytes, delay_s: float) -> None:
    for offset in range(len(data)):
        out.write(data[offset : offset + 1])
        out.flush()
        time.sleep(delay_s)


def _requested_model(body: bytes) -> str:
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return ""
    return model if isinstance(model, str) else ""


def _json_text(text: str) -> str:
    """`text` as it goes inside a JSON string."""
    return json.dumps(text)[1:-1]


def _signature_params(authorization: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', authorization))


def _error(code: str, message: str) -> bytes:
    return _json({"code": code, "message": message})


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _function_call(request: dict[str, Any]) -> dict[str, Any] | None:
    """The model's call (openai SDK: ResponseFunctionToolCall) to the chosen tool, or the first, with
    arguments built from its schema; None when it may not call one or a function output came back."""
    tools = [tool for tool in request.get("tools") or [] if tool.get("type") == "function"]  # hosted ones: OCI's
    choice = request.get("tool_choice", "auto")
    items = request["input"] if isinstance(request.get("input"), list) else []
    if not tools or choice == "none" or (items and items[-1].get("type") == "function_call_output"):
        return None
    name = choice["name"] if isinstance(choice, dict) else tools[0]["name"]
    [tool] = [tool for tool in tools if tool["name"] == name]
    return {
        "type": "function_call",
        "id": f"fc_{uuid.uuid4().hex}",
        "call_id": f"call_{uuid.uuid4().hex}",
        "name": name,
        "arguments": json.dumps(_sample(tool.get("parameters") or {"type": "object"})),
        "status": "completed",
    }


def _answer_schema(request: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the answer must conform to (text.format json_schema), if any."""
    fmt = (request.get("text") or {}).get("format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" else None


def _sample(schema: dict[str, Any]) -> Any:
    """The plainest value a JSON schema accepts, for the schemas function tools declare."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _sample(schema["anyOf"][0])
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _sample(properties[name]) for name in schema.get("required", []) if name in properties}
    return {"string": "local", "integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(kind)
