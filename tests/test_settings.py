"""genai_handler.settings: names, defaults and validation of the function's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oci import regions, regions_definitions

from genai_handler.settings import (
    _DOMAIN_OF,
    DEFAULT_MODEL,
    ENV,
    MAX_INVOKE_PAYLOAD_BYTES,
    REGION_KEYS,
    SettingError,
    Settings,
    docs_table,
    env_names,
    setting,
)

PROJECT = "ocid1.generativeaiproject.oc1.us-chicago-1.amaaaaaaexample"


def test_given_oci_functions_environment_when_read_then_the_defaults_apply() -> None:
    # when
    settings = Settings.from_env({"GENAI_PROJECT_OCID": PROJECT, "OCI_RESOURCE_PRINCIPAL_REGION": "us-chicago-1"})
    # then
    assert settings.base_url == "https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1"
    assert settings.model == DEFAULT_MODEL
    assert settings.allowed_models == (DEFAULT_MODEL,)
    assert settings.auth == "resource_principal"
    assert (settings.max_body_bytes, settings.max_input_chars, settings.max_output_tokens) == (1048576, 32000, 2048)
    assert settings.log_prompts is False and settings.allow_stored_responses is True


def test_given_an_argument_and_an_environment_value_when_read_then_the_argument_wins() -> None:
    # when
    settings = Settings.from_env(
        {"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "eu-frankfurt-1"}, region="uk-london-1"
    )
    # then
    assert settings.region == "uk-london-1"


def test_given_a_short_region_key_when_built_then_it_is_expanded() -> None:
    # when / then
    assert Settings(project_ocid=PROJECT, region="ord").region == "us-chicago-1"


def test_given_a_default_model_and_an_allowed_models_list_when_read_then_the_list_is_split_and_trimmed() -> None:
    # when
    settings = Settings.from_env(
        {
            "GENAI_PROJECT_OCID": PROJECT,
            "GENAI_REGION": "us-chicago-1",
            "GENAI_MODEL": "openai.gpt-oss-120b",
            "GENAI_ALLOWED_MODELS": " openai.gpt-oss-120b , xai.grok-4 ",
        }
    )
    # then
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
        ({"GENAI_MAX_RETRIES": "²"}, "GENAI_MAX_RETRIES"),  # str.isdigit() is true, int() fails
        ({"GENAI_MAX_RETRIES": "\u0661"}, "GENAI_MAX_RETRIES"),  # Arabic-Indic one: int() would accept it
        ({"GENAI_LOG_PROMPTS": "sometimes"}, "GENAI_LOG_PROMPTS"),
        ({"GENAI_AUTH": "password"}, "GENAI_AUTH"),
        ({"GENAI_AUTH": "api_key"}, "GENAI_API_KEY"),
        ({"GENAI_MODEL": "a", "GENAI_ALLOWED_MODELS": "b,c"}, "GENAI_MODEL"),
        ({"GENAI_BASE_URL": "http://example.com/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "ftp://127.0.0.1/x"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://h.example/openai/v1?x=1"}, "GENAI_BASE_URL"),  # corrupts every path
        ({"GENAI_BASE_URL": "https://h.example/openai/v1?"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://h.example/openai/v1#frag"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://user:pw@h.example/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://h.example:abc/openai/v1"}, "GENAI_BASE_URL"),  # was 500 internal_error
        ({"GENAI_BASE_URL": "https://h.example:99999/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://h.example:0/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://h.example:/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "http://127.0.0.1:²/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://[::1/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_BASE_URL": "https://h .example/openai/v1"}, "GENAI_BASE_URL"),
        ({"GENAI_GUARDRAILS": "on"}, "GENAI_GUARDRAILS"),
        ({"GENAI_GUARDRAILS_CHECKS": "pii,toxicity"}, "GENAI_GUARDRAILS_CHECKS"),
        ({"GENAI_GUARDRAILS_CHECKS": " , "}, "GENAI_GUARDRAILS_CHECKS"),
        ({"GENAI_PII_ACTION": "mask"}, "GENAI_PII_ACTION"),
        ({"GENAI_PII_TYPES": "email"}, "GENAI_PII_TYPES"),
        ({"GENAI_GUARDRAILS_CONTENT_THRESHOLD": "1.5"}, "GENAI_GUARDRAILS_CONTENT_THRESHOLD"),
        ({"GENAI_GUARDRAILS_INJECTION_THRESHOLD": "nan"}, "GENAI_GUARDRAILS_INJECTION_THRESHOLD"),
        ({"GENAI_GUARDRAILS_PII_THRESHOLD": "high"}, "GENAI_GUARDRAILS_PII_THRESHOLD"),
        ({"GENAI_GUARDRAILS": "block", "GENAI_AUTH": "session"}, "GENAI_COMPARTMENT_OCID"),  # no res_compartment
    ],
)
def test_given_an_invalid_setting_when_read_then_it_is_misconfigured_and_named(env: dict[str, str], named: str) -> None:
    # given
    base = {"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "us-chicago-1"}
    # when
    with pytest.raises(SettingError) as caught:
        Settings.from_env({**base, **env} if env else {})
    # then
    assert named in caught.value.message and caught.value.setting == named
    assert caught.value.status == 500 and caught.value.type == "misconfigured"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GENAI_MODEL": "meta.llama-3.3-70b-instruct"}, "GENAI_MODEL"),
        ({"GENAI_ALLOWED_MODELS": f"{DEFAULT_MODEL},cohere.command-a-03-2025"}, "GENAI_ALLOWED_MODELS"),
    ],
)
def test_given_a_model_oci_serves_only_on_chat_completions_when_read_then_it_is_misconfigured_saying_why(
    env: dict[str, str], named: str
) -> None:
    # given a Meta or Cohere model, which OCI does not serve on the Responses API this function calls
    base = {"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "us-chicago-1"}
    # when
    with pytest.raises(SettingError) as caught:
        Settings.from_env({**base, "GENAI_ALLOWED_MODELS": env.get("GENAI_MODEL", ""), **env})
    # then the operator learns which setting and why, before any caller does
    assert caught.value.setting == named
    assert caught.value.message == f"{named} names a meta or cohere model: OCI does not serve them on the Responses API"


def test_given_no_guardrail_settings_when_read_then_they_are_off_with_the_documented_defaults() -> None:
    # when
    settings = Settings.from_env({"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "us-chicago-1"})
    # then
    assert settings.guardrails == "off" and not settings.guardrails_on
    assert settings.guardrail_checks == ("content_moderation", "prompt_injection", "pii")
    assert (settings.pii_action, settings.pii_types) == ("block", ("EMAIL", "TELEPHONE_NUMBER"))
    assert (settings.content_threshold, settings.injection_threshold, settings.pii_threshold) == (0.5, 0.5, 0.5)


def test_given_guardrail_settings_in_mixed_case_and_spacing_when_read_then_they_are_accepted() -> None:
    # when
    settings = Settings.from_env(
        {
            "GENAI_PROJECT_OCID": PROJECT,
            "GENAI_REGION": "us-chicago-1",
            "GENAI_GUARDRAILS": "Inform",
            "GENAI_GUARDRAILS_CHECKS": " pii , prompt_injection,pii",
            "GENAI_PII_ACTION": "REDACT",
            "GENAI_PII_TYPES": "EMAIL,PERSON",
            "GENAI_GUARDRAILS_PII_THRESHOLD": "0.8",
        }
    )
    # then
    assert (settings.guardrails, settings.guardrail_checks) == ("inform", ("pii", "prompt_injection"))
    assert (settings.pii_action, settings.pii_types, settings.pii_threshold) == ("redact", ("EMAIL", "PERSON"), 0.8)


def test_given_guardrails_outside_functions_when_a_compartment_is_given_then_they_are_fine() -> None:
    # given
    base = {
        "GENAI_PROJECT_OCID": PROJECT,
        "GENAI_REGION": "us-chicago-1",
        "GENAI_GUARDRAILS": "block",
        "GENAI_AUTH": "session",
    }
    # when
    settings = Settings.from_env({**base, "GENAI_COMPARTMENT_OCID": "ocid1.compartment.oc1..aaaa"})
    # then
    assert settings.guardrails_on
    # the resource principal's token names its compartment: checked at the first call (test_guardrails.py)
    assert Settings.from_env({**base, "GENAI_AUTH": "resource_principal"}).compartment_ocid == ""


def test_given_plain_http_when_built_then_it_is_allowed_only_to_loopback() -> None:
    # when / then
    assert Settings(project_ocid=PROJECT, base_url="http://127.0.0.1:8081/openai/v1").base_url.startswith("http://")


def test_given_an_api_key_when_the_settings_are_shown_then_the_key_is_not_in_their_repr() -> None:
    # given
    settings = Settings(project_ocid=PROJECT, region="us-chicago-1", auth="api_key", api_key="sk-very-secret")
    # when / then
    assert "sk-very-secret" not in repr(settings)


@pytest.mark.parametrize("url", ["https://h.example/openai/v1/", "https://h.example/openai/v1//"])
def test_given_trailing_slashes_when_built_then_they_are_dropped_so_no_path_has_a_double_slash(url: str) -> None:
    # given a base URL as people paste it / when / then
    assert Settings(project_ocid=PROJECT, base_url=url).base_url == "https://h.example/openai/v1"


def test_given_a_valid_port_when_built_then_it_is_kept() -> None:
    # given
    url = "http://127.0.0.1:8081/openai/v1"
    # when / then
    assert Settings(project_ocid=PROJECT, base_url=url).base_url == url


# --- OCIDs: OCI's format and the resource type each setting needs ---------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("GENAI_PROJECT_OCID", "ocid1.compartment.oc1..aaaaaaaaexample"),  # the commonest mix-up
        ("GENAI_PROJECT_OCID", "ocid1.tenancy.oc1..aaaaaaaaexample"),
        ("GENAI_PROJECT_OCID", "ocid1.generativeaiproject.xx1.us-chicago-1.aaaaexample"),  # not a realm
        ("GENAI_PROJECT_OCID", "ocid1.generativeaiproject.oc1.us-chicago-1.AAAA"),
        ("GENAI_COMPARTMENT_OCID", PROJECT),
        ("GENAI_COMPARTMENT_OCID", "ocid1.compartment.oc1"),
    ],
)
def test_given_an_ocid_of_the_wrong_type_or_shape_when_read_then_it_is_refused(setting: str, value: str) -> None:
    # given
    env = {"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "us-chicago-1", setting: value}
    # when
    with pytest.raises(SettingError) as caught:
        Settings.from_env(env)
    # then
    assert caught.value.setting == setting and caught.value.message.startswith(setting)


def test_given_a_compartment_ocid_as_project_when_built_then_it_says_what_it_is_and_what_is_expected() -> None:
    # when
    with pytest.raises(SettingError) as caught:
        Settings(project_ocid="ocid1.compartment.oc1..aaaaaaaaexample", region="us-chicago-1")
    # then
    assert "compartment" in caught.value.message and "ocid1.generativeaiproject" in caught.value.message


@pytest.mark.parametrize(
    "compartment",
    ["ocid1.compartment.oc1..aaaaaaaaexample", "ocid1.tenancy.oc1..aaaaaaaaexample", "ocid1.compartment.oc19..aaaa"],
)
def test_given_a_compartment_or_the_tenancy_when_built_then_it_is_a_valid_compartment(compartment: str) -> None:
    # when / then
    assert (
        Settings(project_ocid=PROJECT, region="us-chicago-1", compartment_ocid=compartment).compartment_ocid
        == compartment
    )


# --- regions: the oci SDK's table, and the variable each value came from --------------------


def test_given_the_oci_sdks_region_tables_when_compared_then_ours_are_the_same() -> None:
    # settings.py ships without the oci SDK, so it keeps a copy; this fails when the SDK's table moves on
    # when / then
    assert REGION_KEYS == regions_definitions.REGIONS_SHORT_NAMES
    outside_oc1 = {
        region: regions_definitions.REALMS[realm]
        for region, realm in regions_definitions.REGION_REALMS.items()
        if realm != "oc1"
    }
    assert outside_oc1 == _DOMAIN_OF


def test_given_any_oci_region_key_from_oci_functions_when_read_then_it_gives_that_regions_endpoint() -> None:
    for key, region in regions.REGIONS_SHORT_NAMES.items():
        # given OCI Functions' short key / when / then: the endpoint the oci SDK would use
        settings = Settings.from_env({"GENAI_PROJECT_OCID": PROJECT, "OCI_RESOURCE_PRINCIPAL_REGION": key.upper()})
        expected = regions.endpoint_for(
            "generative_ai_inference",
            region,
            service_endpoint_template="https://inference.generativeai.{region}.oci.{secondLevelDomain}",
        )
        assert (settings.region, settings.base_url) == (region, f"{expected}/openai/v1"), key


def test_given_an_unknown_functions_region_and_a_base_url_when_read_then_the_region_is_unused() -> None:
    # given OCI Functions hands over a key no table knows, and GENAI_BASE_URL says where to call
    env = {
        "GENAI_PROJECT_OCID": PROJECT,
        "OCI_RESOURCE_PRINCIPAL_REGION": "zzz",
        "GENAI_BASE_URL": "https://inference.generativeai.ap-sydney-1.oci.oraclecloud.com/openai/v1",
    }
    # when / then: the region is never used, so it cannot make the function misconfigured
    assert Settings.from_env(env).base_url == env["GENAI_BASE_URL"]


def test_given_an_unknown_functions_region_when_read_then_the_error_names_the_variable_it_came_from() -> None:
    # given no GENAI_REGION: the value came from OCI Functions, not from the user
    # when
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"GENAI_PROJECT_OCID": PROJECT, "OCI_RESOURCE_PRINCIPAL_REGION": "zzz"})
    # then the message blames OCI_RESOURCE_PRINCIPAL_REGION and says GENAI_REGION is the way out
    assert caught.value.message.startswith("OCI_RESOURCE_PRINCIPAL_REGION ")
    assert "set GENAI_REGION" in caught.value.message and caught.value.setting == "GENAI_REGION"


def test_given_sydney_from_oci_functions_when_read_then_it_is_known() -> None:
    # when
    settings = Settings.from_env({"GENAI_PROJECT_OCID": PROJECT, "OCI_RESOURCE_PRINCIPAL_REGION": "syd"})
    # then
    assert settings.base_url == "https://inference.generativeai.ap-sydney-1.oci.oraclecloud.com/openai/v1"


@given(st.text(max_size=12))
def test_given_any_port_text_when_built_then_it_is_a_valid_port_or_a_named_misconfiguration(port: str) -> None:
    # given whatever follows the colon / when / then: never another exception, never a port that fails later
    try:
        settings = Settings(project_ocid=PROJECT, base_url=f"https://h.example:{port}/openai/v1")
    except SettingError as exc:
        assert exc.setting == "GENAI_BASE_URL"  # noqa: PT017 (a refusal is one of two allowed outcomes)
    else:
        assert 1 <= (urlsplit(settings.base_url).port or 443) <= 65535


@given(st.text(min_size=1, max_size=40))
def test_given_any_base_url_when_built_then_it_is_accepted_whole_or_refused_by_name(url: str) -> None:
    # given whatever text / when / then
    try:
        settings = Settings(project_ocid=PROJECT, base_url=url)
    except SettingError as exc:
        assert exc.setting == "GENAI_BASE_URL"  # noqa: PT017 (a refusal is one of two allowed outcomes)
    else:
        parts = urlsplit(settings.base_url)
        assert parts.hostname and not (parts.query or parts.fragment or parts.username) and parts.port != 0
        assert not settings.base_url.endswith("/")


# --- one declaration per setting: ENV, the parser and the docs table derive from it ---------


def test_given_a_setting_declared_once_when_read_then_env_the_parser_and_the_table_know_it() -> None:
    # given one declaration, and nothing else written for it
    @dataclass(frozen=True)
    class Extended(Settings):
        system_prompt: str = setting("GENAI_SYSTEM_PROMPT", "", "Instructions sent before every prompt.")

    # when / then: the environment table, the parser and the docs table all have it
    assert env_names(Extended)["GENAI_SYSTEM_PROMPT"] == ("system_prompt", "")
    env = {"GENAI_PROJECT_OCID": PROJECT, "GENAI_REGION": "us-chicago-1", "GENAI_SYSTEM_PROMPT": " Be brief. "}
    extended = Extended.from_env(env)
    assert isinstance(extended, Extended)
    assert extended.system_prompt == "Be brief."
    assert "| `GENAI_SYSTEM_PROMPT` | `` | Instructions sent before every prompt. |" in docs_table(Extended)


def test_given_the_declarations_when_env_is_built_then_it_is_derived_from_them() -> None:
    # when / then
    assert env_names(Settings) == ENV
    assert ENV["GENAI_MAX_BODY_BYTES"] == ("max_body_bytes", "1048576")
    assert ENV["GENAI_GUARDRAILS_CHECKS"] == ("guardrail_checks", "content_moderation,prompt_injection,pii")


def test_given_a_region_when_built_then_the_endpoint_is_computed_and_not_written_into_the_base_url_input() -> None:
    # when
    settings = Settings(project_ocid=PROJECT, region="ord")
    # then
    assert settings.base_url == "https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1"
    assert vars(settings)["base_url"] == ""  # the operator's GENAI_BASE_URL: still unset


def test_given_the_payload_limit_when_checked_then_it_is_oci_functions_6_mib_and_caps_the_body_setting() -> None:
    # when / then
    assert MAX_INVOKE_PAYLOAD_BYTES == 6 * 1024 * 1024
    assert Settings(project_ocid=PROJECT, region="ord", max_body_bytes=MAX_INVOKE_PAYLOAD_BYTES).max_body_bytes
    with pytest.raises(SettingError, match="GENAI_MAX_BODY_BYTES must be a whole number from 1024 to 6291456"):
        Settings(project_ocid=PROJECT, region="ord", max_body_bytes=MAX_INVOKE_PAYLOAD_BYTES + 1)
