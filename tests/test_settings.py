"""genai_handler.settings: names, defaults and validation of the function's configuration."""

from __future__ import annotations

import pytest

from genai_handler.errors import MisconfiguredError
from genai_handler.settings import ENV, Settings

PROJECT = "ocid1.generativeaiproject.oc1.us-chicago-1.amaaaaaaexample"


def test_defaults_in_oci_functions() -> None:
    settings = Settings.from_env({"GENAI_PROJECT_OCID": PROJECT, "OCI_RESOURCE_PRINCIPAL_REGION": "us-chicago-1"})
    assert settings.base_url == "https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1"
    assert settings.model == "xai.grok-4-1-fast-reasoning"
    assert settings.allowed_models == ("xai.grok-4-1-fast-reasoning",)
    assert settings.auth == "resource_principal"
    assert (settings.max_body_bytes, settings.max_input_chars, settings.max_output_tokens) == (1048576, 32000, 2048)
    assert settings.log_prompts is False and settings.allow_stored_responses is False


def test_every_setting_has_a_documented_default_in_func_yaml() -> None:
    from pathlib import Path

    func_yaml = (Path(__file__).parents[1] / "func.yaml").read_text()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in ENV:
        if name not in ("GENAI_API_KEY", "GENAI_OCI_CONFIG_FILE", "GENAI_OCI_PROFILE"):
            assert f"{name}:" in func_yaml, name
        assert name in readme, name


def test_explicit_arguments_beat_the_environment() -> None:
    settings = Settings.from_env({"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "eu-frankfurt-1"}, region="uk-london-1")
    assert settings.region == "uk-london-1"


def test_short_region_keys_are_expanded() -> None:
    assert Settings(project_ocid=PROJECT, region="ord").region == "us-chicago-1"


def test_allowed_models_list_and_default_model() -> None:
    settings = Settings.from_env({
        "GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "us-chicago-1",
        "GENAI_MODEL": "openai.gpt-oss-120b", "GENAI_ALLOWED_MODELS": " openai.gpt-oss-120b , xai.grok-4 ",
    })
    assert settings.allowed_models == ("openai.gpt-oss-120b", "xai.grok-4")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "GENAI_PROJECT_OCID"),
        ({"GENAI_PROJECT_OCID": "my-project"}, "GENAI_PROJECT_OCID"),
        ({"GENAI_COMPARTMENT_OCID": "compartment"}, "GENAI_COMPARTMENT_OCID"),
        ({"GENAI_REGION": "Mars"}, "GENAI_REGION"),
        ({"GENAI_REGION": ""}, "GENAI_REGION"),
        ({"GENAI_MAX_BODY_BYTES": "lots"}, "GENAI_MAX_BODY_BYTES"),
        ({"GENAI_MAX_BODY_BYTES": "99999999"}, "GENAI_MAX_BODY_BYTES"),
        ({"GENAI_MAX_OUTPUT_TOKENS": "0"}, "GENAI_MAX_OUTPUT_TOKENS"),
        ({"GENAI_MAX_INPUT_CHARS": "-5"}, "GENAI_MAX_INPUT_CHARS"),
        ({"GENAI_LOG_PROMPTS": "sometimes"}, "GENAI_LOG_PROMPTS"),
        ({"GENAI_AUTH": "password"}, "GENAI_AUTH"),
        ({"GENAI_AUTH": "api_key"}, "GENAI_API_KEY"),
        ({"GENAI_MODEL": "a", "GENAI_ALLOWED_MODELS": "b,c"}, "GENAI_ALLOWED_MODELS"),
        ({"GENAI_BASE_URL": "http://example.com/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "ftp://127.0.0.1/x"}, "GENAI_BASE_URL"),
    ],
)
def test_invalid_settings_are_misconfigured_and_named(env: dict[str, str], named: str) -> None:
    base = {"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "us-chicago-1"}
    with pytest.raises(MisconfiguredError) as caught:
        Settings.from_env({**base, **env} if env else {})
    assert named in caught.value.message
    assert caught.value.status == 500 and caught.value.type == "misconfigured"


def test_plain_http_is_allowed_only_to_loopback() -> None:
    assert Settings(project_ocid=PROJECT, base_url="http://127.0.0.1:8081/openai/v1").base_url.startswith("http://")


def test_api_key_is_not_in_the_repr() -> None:
    settings = Settings(project_ocid=PROJECT, region="us-chicago-1", auth="api_key", api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(settings)
