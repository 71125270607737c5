"""stored.py on its own: which route a URL names, whose an object is, what a list may be asked for.
The whole path, two callers through the gateway, is tests/test_e2e_stored.py."""

from __future__ import annotations

import pytest

from genai_handler import stored
from genai_handler.errors import InvalidRequest, MisconfiguredError, NotFound

from .conftest import DEPLOYED_ROUTES


def test_given_the_deployed_routes_when_compared_then_the_function_serves_each_stored_route_with_its_methods() -> None:
    # given the routes besides the model's two, as API Gateway sends them
    deployed = {path: methods for path, methods in DEPLOYED_ROUTES.items() if path not in ("/chat", "/v1/responses")}
    # when / then the function's own table is the same, so no routed call falls through to the model
    assert {f"/v1/{template}": list(methods) for template, methods in stored.ROUTES.items()} == deployed


@pytest.mark.parametrize(
    ("url", "template", "ids"),
    [
        ("/genai/v1/responses/resp_1", "responses/{id}", ("resp_1",)),
        ("/genai/v1/responses/resp_1/input_items?limit=2", "responses/{id}/input_items", ("resp_1",)),
        ("/genai/v1/responses/resp_1/cancel", "responses/{id}/cancel", ("resp_1",)),
        ("/genai/v1/conversations", "conversations", ()),
        ("/genai/v1/conversations/conv_1/items/msg_1", "conversations/{id}/items/{item_id}", ("conv_1", "msg_1")),
    ],
)
def test_given_a_stored_object_url_when_matched_then_its_route_and_ids_are_found(
    url: str, template: str, ids: tuple[str, ...]
) -> None:
    # when
    route = stored.match(url)
    # then
    assert route is not None and route.template == template and route.ids == ids


@pytest.mark.parametrize("url", [None, "/genai/chat", "/genai/v1/responses", "/genai/v1/files/f_1"])
def test_given_a_model_route_or_another_url_when_matched_then_it_is_not_a_stored_route(url: str | None) -> None:
    # when / then
    assert stored.match(url) is None


def test_given_callers_when_owners_are_derived_then_each_subject_has_its_own_and_none_is_shown() -> None:
    # when
    alice, bob = stored.owner_of("alice@example.com", True), stored.owner_of("bob@example.com", True)
    # then
    assert alice != bob and "alice" not in alice and alice == stored.owner_of("alice@example.com", True)
    assert stored.owner_of(None, via_gateway=False) == "direct"


def test_given_a_gateway_call_without_a_caller_when_an_owner_is_needed_then_it_fails_closed() -> None:
    # when / then
    with pytest.raises(MisconfiguredError, match="X-Genai-Caller"):
        stored.owner_of(None, via_gateway=True)


@pytest.mark.parametrize("object_id", ["..", ".", "a/b", "x" * 257, "née"])
def test_given_an_id_no_object_can_have_when_made_a_path_then_it_is_not_found(object_id: str) -> None:
    # when / then
    with pytest.raises(NotFound):
        stored._path("responses", object_id)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ((("limit", "0"),), "limit must be a whole number from 1 to 100"),
        ((("limit", "²"),), "limit must be a whole number from 1 to 100"),
        ((("order", "up"),), "order must be asc or desc"),
        ((("after", "a b"),), "after must be an item id"),
        ((("limit", "2"), ("limit", "3")), "query parameter limit repeats"),
        ((("secret", "x"),), "unknown query parameter(s); allowed: after, include, limit, order"),
    ],
)
def test_given_a_malformed_list_query_when_checked_then_it_is_refused_naming_the_parameter(
    query: tuple[tuple[str, str], ...], message: str
) -> None:
    # when / then
    with pytest.raises(InvalidRequest) as raised:
        stored._list_query(query)
    assert raised.value.message == message


def test_given_a_list_query_when_checked_then_paging_and_includes_pass() -> None:
    # given
    query = (("limit", "5"), ("order", "asc"), ("after", "msg_1"), ("include", "a.b"), ("include", "c.d"))
    # when / then
    assert stored._list_query(query) == {"limit": "5", "order": "asc", "after": "msg_1", "include": ["a.b", "c.d"]}
