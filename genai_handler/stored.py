"""Stored responses and conversations, each its caller's own: who owns what, and the routes over them.

OCI keeps them per project, not per caller, so the owner is recorded where a caller cannot set it:
`metadata[OWNER_KEY]`, written by the function on everything it creates, over any value sent. Before
an id is used (continued, read, listed, deleted, cancelled) the object is read and, unless its owner
is the caller, answered exactly as an unknown id (docs/security.md, "What is stored").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import openai

from .contract import ConversationCreate, ConversationItems, ConversationRef, ConversationUpdate, Item, Request
from .errors import InvalidRequest, MethodNotAllowed, MisconfiguredError, NotFound
from .request import STORAGE_OFF, parse_body, validate, validate_as, with_caps
from .settings import Settings
from .upstream import NO_SUCH, StoredResult, stored_call

OWNER_KEY = "genai_owner"
_DIRECT_OWNER = "direct"  # direct `fn invoke` callers: IAM-authorised, with no gateway subject
_NO_CALLER = "the gateway sent no X-Genai-Caller header: stored responses need the caller's identity"
# The routes API Gateway sends here besides POST /chat and POST /v1/responses (policies/apigateway-deployment.json).
ROUTES: dict[str, tuple[str, ...]] = {
    "responses/{id}": ("GET", "DELETE"),
    "responses/{id}/input_items": ("GET",),
    "responses/{id}/cancel": ("POST",),
    "conversations": ("POST",),
    "conversations/{id}": ("GET", "POST", "DELETE"),
    "conversations/{id}/items": ("GET", "POST"),
    "conversations/{id}/items/{item_id}": ("GET", "DELETE"),
}
_ID = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.:-]{1,256}")
_LIST_QUERY = {"limit", "order", "after", "include"}


@dataclass(frozen=True)
class Route:
    """One stored-object route as called: its template, the ids in its path, its query."""

    template: str
    ids: tuple[str, ...]
    query: tuple[tuple[str, str], ...]

    @property
    def methods(self) -> tuple[str, ...]:
        return ROUTES[self.template]


def match(url: str | None) -> Route | None:
    """The stored-object route `url` names (after its `/v1/`), or None for the model's routes."""
    path, _, query = (url or "").partition("?")
    at = path.find("/v1/")
    if at < 0:
        return None
    segments = [unquote(segment) for segment in path[at + 4 :].strip("/").split("/")]
    for template in ROUTES:
        parts = template.split("/")
        if len(parts) != len(segments):
            continue
        pairs = list(zip(parts, segments, strict=True))
        if all(part == segment or part.startswith("{") for part, segment in pairs):
            ids = tuple(segment for part, segment in pairs if part.startswith("{"))
            return Route(template, ids, tuple(parse_qsl(query, keep_blank_values=True)))
    return None


def owner_of(caller: str | None, via_gateway: bool) -> str:
    """The caller's owner value: a digest of the gateway's verified subject (never the subject itself)."""
    if not via_gateway:
        return _DIRECT_OWNER
    if not caller:
        raise MisconfiguredError(_NO_CALLER)
    return "sub-" + hashlib.sha256(b"genai-owner\0" + caller.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def create_arguments(
    client: openai.OpenAI, request: Request, caller: str | None, via_gateway: bool, deadline_mono: float
) -> dict[str, Any]:
    """`responses.create`'s arguments: the caller's own history only, and what is kept marked as theirs.
    A call that keeps nothing and continues nothing needs no owner."""
    arguments = request.arguments()
    kept = bool(arguments.get("store") or arguments.get("background"))
    if not (kept or request.previous_response_id is not None or request.conversation is not None):
        return arguments
    owner = owner_of(caller, via_gateway)
    if request.previous_response_id is not None:
        _owned(client, _path("responses", request.previous_response_id), owner, deadline_mono)
    if request.conversation is not None:
        conversation = request.conversation
        conversation_id = conversation.id if isinstance(conversation, ConversationRef) else conversation
        _owned(client, _path("conversations", conversation_id), owner, deadline_mono)
    if kept:
        arguments["metadata"] = {**arguments.get("metadata", {}), OWNER_KEY: owner}
    return arguments


def serve(  # noqa: PLR0913, PLR0917  (one branch per route and method, as the table above)
    client: openai.OpenAI,
    settings: Settings,
    route: Route,
    method: str,
    body: bytes,
    owner: str,
    deadline_mono: float,
    screen: Callable[[Request], Request],
) -> StoredResult:
    """One call on a stored-object route, for its owner only. `screen` checks items the model will read
    (guardrails, or the identity when they are off)."""
    if not settings.allow_stored_responses:
        raise InvalidRequest(STORAGE_OFF)
    if method not in route.methods:
        raise MethodNotAllowed(f"use {' or '.join(route.methods)} here", allow=route.methods)
    kind = route.template.split("/")[0]
    if route.template == "conversations":
        create = validate_as(ConversationCreate, _body(body, settings, empty_ok=True), settings)
        sent: dict[str, Any] = {"metadata": {**(create.metadata or {}), OWNER_KEY: owner}}
        if create.items:
            sent["items"] = _items(create.items, settings, screen)
        return stored_call(client, "POST", "conversations", deadline_mono, body=sent)
    base = _path(kind, route.ids[0])
    found = _owned(client, base, owner, deadline_mono)
    action = route.template.split("/", 2)[2] if route.template.count("/") >= 2 else ""
    if method == "GET" and not action:
        return found
    if method == "DELETE" and not action:
        return stored_call(client, "DELETE", base, deadline_mono)
    if action == "cancel":
        return stored_call(client, "POST", f"{base}/cancel", deadline_mono)
    if action in ("input_items", "items") and method == "GET":
        return stored_call(client, "GET", f"{base}/{action}", deadline_mono, query=_list_query(route.query))
    if action == "items":
        added = validate_as(ConversationItems, _body(body, settings), settings)
        return stored_call(
            client, "POST", f"{base}/items", deadline_mono, body={"items": _items(added.items, settings, screen)}
        )
    if action.startswith("items/"):
        return stored_call(client, method, f"{base}/items/{_segment(route.ids[1])}", deadline_mono)
    update = validate_as(ConversationUpdate, _body(body, settings), settings)  # POST conversations/{id}
    return stored_call(client, "POST", base, deadline_mono, body={"metadata": {**update.metadata, OWNER_KEY: owner}})


def _owned(client: openai.OpenAI, path: str, owner: str, deadline_mono: float) -> StoredResult:
    """The object at `path` if the caller owns it; otherwise NotFound, as if it did not exist."""
    found = stored_call(client, "GET", path, deadline_mono)
    metadata = found.body.get("metadata")
    if not isinstance(metadata, dict) or metadata.get(OWNER_KEY) != owner:
        raise NotFound(NO_SUCH, request_id=found.request_id)
    return found


def _path(kind: str, object_id: str) -> str:
    return f"{kind}/{_segment(object_id)}"


def _segment(object_id: str) -> str:
    """An id as one path segment; an id no object can have is simply not found."""
    if not _ID.fullmatch(object_id):
        raise NotFound(NO_SUCH)
    return quote(object_id, safe="")


def _body(body: bytes, settings: Settings, *, empty_ok: bool = False) -> dict[str, Any]:
    return {} if empty_ok and not body.strip() else parse_body(body, settings)


def _items(items: list[Item], settings: Settings, screen: Callable[[Request], Request]) -> list[dict[str, Any]]:
    """Conversation items are text the model reads later: capped, screened and redacted as a request's input."""
    dumped = [item.model_dump(by_alias=True, exclude_none=True) for item in items]
    request = screen(with_caps(validate({"input": dumped}, settings), settings))
    assert isinstance(request.input, list)  # noqa: S101  (built from a list just above)
    return [item.model_dump(by_alias=True, exclude_none=True) for item in request.input]


def _list_query(query: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """A list's paging, checked: OCI gets only known parameters, each well-formed."""
    names = [name for name, _ in query]
    if set(names) - _LIST_QUERY:
        raise InvalidRequest(f"unknown query parameter(s); allowed: {', '.join(sorted(_LIST_QUERY))}")
    found: dict[str, Any] = {}
    for name, value in query:
        if name == "include":
            found.setdefault("include", []).append(value)
        elif name in found:
            raise InvalidRequest(f"query parameter {name} repeats")
        elif name == "limit" and not (value.isascii() and value.isdigit() and 1 <= int(value) <= 100):
            raise InvalidRequest("limit must be a whole number from 1 to 100")
        elif name == "order" and value not in ("asc", "desc"):
            raise InvalidRequest("order must be asc or desc")
        elif name == "after" and not _ID.fullmatch(value):
            raise InvalidRequest("after must be an item id")
        else:
            found[name] = value
    if any(not _ID.fullmatch(value) for value in found.get("include", [])):
        raise InvalidRequest("include must name what to include")
    return found
