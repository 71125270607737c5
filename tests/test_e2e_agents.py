"""Agent and chat clients through the local API Gateway, as a user points them at `make serve`: the OpenAI
Agents SDK (tools, replayed history) and the OpenAI SDK with images."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import openai
import pytest
from openai.types.responses import EasyInputMessageParam, ResponseInputItemParam, ResponseReasoningItemParam

from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL

from .conftest import function_env, start_function, token_gateway

if TYPE_CHECKING:
    from agents import OpenAIResponsesModel

REPO_ROOT = Path(__file__).resolve().parents[1]

TOKEN = "agents-test-token"


@pytest.fixture(scope="module")
def gateway(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalGateway]:
    with token_gateway(identity, endpoint, tmp_path_factory.mktemp("agents"), TOKEN) as gw:
        yield gw


def _model(agents: ModuleType, gateway: LocalGateway) -> OpenAIResponsesModel:
    """The Agents SDK's Responses model on an AsyncOpenAI client pointed at the gateway, tracing off
    (its exporter would call api.openai.com)."""
    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0, timeout=30)
    return agents.OpenAIResponsesModel(model=DEFAULT_MODEL, openai_client=client)


def test_given_an_agents_sdk_agent_without_tools_when_run_then_it_answers_through_the_gateway(
    agents_sdk: ModuleType, gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given an Agent whose Responses model is an AsyncOpenAI client pointed at the gateway
    model = _model(agents_sdk, gateway)
    agent = agents_sdk.Agent(name="assistant", instructions="Answer in one line.", model=model)
    # when the runner takes one turn
    result = agents_sdk.Runner.run_sync(agent, "What is OCI?")
    # then the agent's final output is the model's answer, and OCI got the prompt and the instructions
    assert result.final_output == "Local answer to: What is OCI?"
    sent = json.loads(upstream.requests[-1].body)
    assert sent["instructions"] == "Answer in one line." and sent["model"] == DEFAULT_MODEL


def test_given_an_agents_first_turn_when_its_history_is_replayed_with_a_new_question_then_it_answers(
    agents_sdk: ModuleType, gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given a first turn, and the runner's own history of it (the assistant message as the SDK returns it)
    agent = agents_sdk.Agent(name="assistant", model=_model(agents_sdk, gateway))
    first = agents_sdk.Runner.run_sync(agent, "Capital of France?")
    history = first.to_input_list()
    history.append({"role": "user", "content": "And of Italy?"})
    # when the next turn replays it
    second = agents_sdk.Runner.run_sync(agent, history)
    # then it is answered, and OCI got the whole history, the earlier answer verbatim
    assert second.final_output == "Local answer to: And of Italy?"
    sent = json.loads(upstream.requests[-1].body)["input"]
    assert [item["role"] for item in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0]["text"] == "Local answer to: Capital of France?"


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def test_given_an_agent_with_a_function_tool_when_run_then_it_calls_the_tool_and_answers_from_its_output(
    agents_sdk: ModuleType, gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given an Agent with one @function_tool, pointed at the gateway
    model = _model(agents_sdk, gateway)
    agent = agents_sdk.Agent(name="assistant", model=model, tools=[agents_sdk.function_tool(get_weather)])
    # when the runner takes its turns: the model calls the tool, the runner runs it and sends its output back
    result = agents_sdk.Runner.run_sync(agent, "Weather in Paris?")
    # then the answer comes from the tool's output, and OCI got the tool, then the call and its output
    assert result.final_output == "Local answer to: sunny in local"
    first, second = (json.loads(r.body) for r in upstream.requests[-2:])
    assert [tool["name"] for tool in first["tools"]] == ["get_weather"] and first["tools"][0]["strict"] is True
    assert [item.get("type", "message") for item in second["input"]] == [
        "message",
        "function_call",
        "function_call_output",
    ]


def test_given_the_agents_page_when_its_example_runs_against_the_gateway_then_it_prints_the_tools_answer(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given the example exactly as docs/agents.md shows it, pointed at this gateway as `make serve` would be
    page = (REPO_ROOT / "docs" / "agents.md").read_text(encoding="utf-8")
    [example] = re.findall(r"<!-- agents-example: begin -->\n```python\n(.*?)```", page, flags=re.S)
    env = {**os.environ, "GATEWAY_URL": gateway.url, "LOCAL_GATEWAY_TOKEN": TOKEN}
    # when it runs as a user's script
    done = subprocess.run([sys.executable, "-c", example], env=env, capture_output=True, text=True, timeout=60)
    # then it prints the answer made from the tool's output
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Local answer to: sunny in local"


def test_given_an_image_as_a_data_url_when_the_openai_sdk_sends_it_then_it_is_answered_and_oci_gets_the_image(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given a chat app's message: a question and a PNG, as the OpenAI SDK's image input takes it
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    message: EasyInputMessageParam = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in this image?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{png}", "detail": "low"},
        ],
    }
    with openai.OpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0) as client:
        # when
        answer = client.responses.create(model=DEFAULT_MODEL, input=[message])
    # then
    assert answer.output_text == "Local answer to: What is in this image?"
    assert json.loads(upstream.requests[-1].body)["input"][0]["content"] == message["content"]


def test_given_a_reasoning_models_turn_replayed_when_the_openai_sdk_sends_it_then_oci_gets_it_verbatim(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given the first turn's output as a reasoning model answers it with include=["reasoning.encrypted_content"],
    # replayed the idiomatic way (input += response.output), then the next question
    reasoning: ResponseReasoningItemParam = {
        "type": "reasoning",
        "id": "rs_0123abc",
        "summary": [{"type": "summary_text", "text": "A capital city is asked for."}],
        "encrypted_content": "gAAAAABpZ2VuYWktc2VhbGVkLWJ5LW9jaQ==",
    }
    history: list[ResponseInputItemParam] = [
        {"role": "user", "content": "Capital of France?"},
        reasoning,
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
        },
        {"role": "user", "content": "And of Italy?"},
    ]
    with openai.OpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0) as client:
        # when
        answer = client.responses.create(
            model=DEFAULT_MODEL, input=history, include=["reasoning.encrypted_content"], reasoning={"effort": "low"}
        )
    # then
    assert answer.output_text == "Local answer to: And of Italy?"
    sent = json.loads(upstream.requests[-1].body)
    assert sent["input"][1] == reasoning and sent["include"] == ["reasoning.encrypted_content"]


MCP_URL = "https://mcp.example.com/mcp"


def test_given_an_allowed_mcp_server_when_used_through_the_fdk_then_oci_gets_it_and_no_secret_is_logged(
    identity: LocalIdentity, upstream: LocalEndpoint, tmp_path: Path
) -> None:
    # given a function whose operator allows MCP tools on one server
    settings = {"GENAI_ALLOWED_HOSTED_TOOLS": "mcp", "GENAI_MCP_ALLOWED_URLS": MCP_URL}
    function = start_function(function_env(identity, upstream, **settings), tmp_path / "function.log")
    mcp = {
        "type": "mcp",
        "server_label": "docs",
        "server_url": MCP_URL,
        "require_approval": "never",
        "headers": {"Authorization": "Bearer mcp-secret-123"},
    }
    try:
        # when a caller sends it, and another caller sends a server of its own choosing
        allowed = function.invoke({"input": "Search the docs", "tools": [mcp]}, path="/genai/v1/responses")
        sent = json.loads(upstream.requests[-1].body)
        chosen = function.invoke(
            {"input": "Search", "tools": [{**mcp, "server_url": "https://attacker.example/mcp"}]},
            path="/genai/v1/responses",
        )
    finally:
        function.stop()
    # then OCI gets the tool as sent, the caller's own server is refused before any call, and the
    # server's credentials never reach the log
    assert allowed.http_status == 200, allowed.body
    assert sent["tools"] == [mcp]
    assert chosen.http_status == 400 and len(upstream.requests) == 1
    assert "GENAI_MCP_ALLOWED_URLS" in chosen.json()["error"]["message"]
    assert "mcp-secret-123" not in (tmp_path / "function.log").read_text()
