"""Agent libraries through the local API Gateway: the OpenAI Agents SDK, as a user points it at `make serve`."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled

from genai_handler.local.endpoint import LocalEndpoint
from genai_handler.local.gateway import LocalGateway
from genai_handler.local.identity import LocalIdentity
from genai_handler.settings import DEFAULT_MODEL

from .conftest import function_env

TOKEN = "agents-test-token"


@pytest.fixture(scope="module")
def gateway(
    identity: LocalIdentity, endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalGateway]:
    log = open(tmp_path_factory.mktemp("agents") / "function.log", "ab")  # noqa: SIM115
    with LocalGateway(function_env(identity, endpoint), token=TOKEN, function_log=log, console=io.StringIO()) as gw:
        yield gw
    log.close()


def test_given_an_agents_sdk_agent_without_tools_when_run_then_it_answers_through_the_gateway(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given an Agent whose Responses model is an AsyncOpenAI client pointed at the gateway, tracing off
    # (its exporter would call api.openai.com)
    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0, timeout=30)
    model = OpenAIResponsesModel(model=DEFAULT_MODEL, openai_client=client)
    agent = Agent(name="assistant", instructions="Answer in one line.", model=model)
    # when the runner takes one turn
    result = Runner.run_sync(agent, "What is OCI?")
    # then the agent's final output is the model's answer, and OCI got the prompt and the instructions
    assert result.final_output == "Local answer to: What is OCI?"
    sent = json.loads(upstream.requests[-1].body)
    assert sent["instructions"] == "Answer in one line." and sent["model"] == DEFAULT_MODEL


def test_given_an_agents_first_turn_when_its_history_is_replayed_with_a_new_question_then_it_answers(
    gateway: LocalGateway, upstream: LocalEndpoint
) -> None:
    # given a first turn, and the runner's own history of it (the assistant message as the SDK returns it)
    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/genai/v1", api_key=TOKEN, max_retries=0, timeout=30)
    agent = Agent(name="assistant", model=OpenAIResponsesModel(model=DEFAULT_MODEL, openai_client=client))
    first = Runner.run_sync(agent, "Capital of France?")
    history = first.to_input_list()
    history.append({"role": "user", "content": "And of Italy?"})
    # when the next turn replays it
    second = Runner.run_sync(agent, history)
    # then it is answered, and OCI got the whole history, the earlier answer verbatim
    assert second.final_output == "Local answer to: And of Italy?"
    sent = json.loads(upstream.requests[-1].body)["input"]
    assert [item["role"] for item in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0]["text"] == "Local answer to: Capital of France?"
