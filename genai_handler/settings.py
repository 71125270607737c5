"""Every setting of the function, each declared once: its variable, type, default, rule and doc line.

`ENV`, `Settings.from_env` and the table in docs/settings.md are all derived from the declarations
(`python -m genai_handler.settings --write` rewrites the table). Stdlib only: the deploy tooling imports it.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from .errors import MisconfiguredError

# OCI's OCID format (docs.oracle.com/iaas/Content/General/Concepts/identifiers.htm, "Resource Identifiers"):
# ocid1.<RESOURCE TYPE>.<REALM>.[REGION][.FUTURE USE].<UNIQUE ID>; realms are oc1, oc2, ... (oci SDK REALMS).
_OCID_TAIL = r"\.oc[0-9]+\.[a-z0-9-]*(?:\.[a-z0-9-]*)?\.[a-z0-9]{1,255}"
OCID_PATTERN = re.compile(r"ocid1\.[a-z0-9]+" + _OCID_TAIL)

# The resource types each setting must name ("Using a Project" shows ocid1.generativeaiproject.oc1...).
_OCID_TYPES = {"project_ocid": ("generativeaiproject",), "compartment_ocid": ("compartment", "tenancy")}
REGION_NAME = r"[a-z]+(?:-[a-z]+)+-[0-9]+"  # what a region's name looks like: us-chicago-1
_REGION_PATTERN = re.compile(REGION_NAME)
_FUNCTION_REGION = "OCI_RESOURCE_PRINCIPAL_REGION"  # set by OCI Functions: the function's region
# OCI Functions may hand over the short region key (OCI_RESOURCE_PRINCIPAL_REGION). Copied from the oci
# SDK 2.189.0 (oci/regions_definitions.py REGIONS_SHORT_NAMES); this module must not import the SDK, and
# tests/test_settings.py fails when the two differ.
REGION_KEYS = {
    "aga": "us-saltlake-2",
    "ahu": "me-abudhabi-3",
    "ams": "eu-amsterdam-1",
    "arn": "eu-stockholm-1",
    "auh": "me-abudhabi-1",
    "avf": "eu-crissier-1",
    "avz": "eu-dcc-zurich-1",
    "beg": "eu-jovanovac-1",
    "bgy": "eu-dcc-milan-1",
    "bno": "ap-chuncheon-2",
    "bog": "sa-bogota-1",
    "bom": "ap-mumbai-1",
    "brs": "uk-gov-cardiff-1",
    "cdg": "eu-paris-1",
    "cwl": "uk-cardiff-1",
    "dac": "ap-dcc-gazipur-1",
    "dln": "ap-suwon-1",
    "doh": "me-dcc-doha-1",
    "dtm": "eu-dcc-rating-2",
    "dtz": "ap-seoul-2",
    "dus": "eu-dcc-rating-1",
    "dxb": "me-dubai-1",
    "ebb": "us-somerset-1",
    "ebl": "us-thames-1",
    "fra": "eu-frankfurt-1",
    "gru": "sa-saopaulo-1",
    "hnw": "sa-riodejaneiro-1",
    "hsg": "ap-batam-1",
    "hyd": "ap-hyderabad-1",
    "iad": "us-ashburn-1",
    "ibr": "me-ibri-1",
    "icn": "ap-seoul-1",
    "jbp": "ap-kulai-2",
    "jed": "me-jeddah-1",
    "jnb": "af-johannesburg-1",
    "jsk": "eu-budapest-1",
    "kix": "ap-osaka-1",
    "lej": "af-casablanca-1",
    "lfi": "us-langley-1",
    "lhr": "uk-london-1",
    "lin": "eu-milan-1",
    "ltn": "uk-gov-london-1",
    "luf": "us-luke-1",
    "mad": "eu-madrid-1",
    "mct": "me-dcc-muscat-1",
    "mel": "ap-melbourne-1",
    "mrs": "eu-marseille-1",
    "mty": "mx-monterrey-1",
    "mtz": "il-jerusalem-1",
    "mxp": "eu-dcc-milan-2",
    "nja": "ap-chiyoda-1",
    "nrq": "eu-turin-1",
    "nrt": "ap-tokyo-1",
    "onm": "ap-delhi-1",
    "ord": "us-chicago-1",
    "orf": "eu-madrid-3",
    "ork": "eu-dcc-dublin-1",
    "pgc": "us-newark-1",
    "phx": "us-phoenix-1",
    "pia": "us-gov-chicago-1",
    "qro": "mx-queretaro-1",
    "rba": "me-alain-1",
    "ric": "us-gov-ashburn-1",
    "rkt": "me-abudhabi-2",
    "ruh": "me-riyadh-1",
    "scl": "sa-santiago-1",
    "shj": "me-abudhabi-4",
    "sin": "ap-singapore-1",
    "sjc": "us-sanjose-1",
    "snn": "eu-dcc-dublin-2",
    "str": "eu-frankfurt-2",
    "syd": "ap-sydney-1",
    "tus": "us-gov-phoenix-1",
    "ukb": "ap-ibaraki-1",
    "vap": "sa-valparaiso-1",
    "vcp": "sa-vinhedo-1",
    "vll": "eu-madrid-2",
    "vve": "me-alrayyan-1",
    "wga": "ap-dcc-canberra-1",
    "xsp": "ap-singapore-2",
    "yny": "ap-chuncheon-1",
    "yul": "ca-montreal-1",
    "yxj": "us-ashburn-2",
    "yyz": "ca-toronto-1",
    "zrh": "eu-zurich-1",
}
# Regions outside the commercial realm oc1 (oraclecloud.com), by their realm's domain: the oci SDK's
# REGION_REALMS and REALMS, checked the same way. Endpoints are https://<service>.<region>.oci.<domain>.
_REALM_DOMAINS = {
    "oraclecloud.eu": ("eu-frankfurt-2", "eu-madrid-2"),
    "oraclecloud10.com": ("ap-dcc-canberra-1",),
    "oraclecloud14.com": (
        "eu-dcc-dublin-1",
        "eu-dcc-dublin-2",
        "eu-dcc-milan-1",
        "eu-dcc-milan-2",
        "eu-dcc-rating-1",
        "eu-dcc-rating-2",
    ),
    "oraclecloud15.com": ("ap-dcc-gazipur-1",),
    "oraclecloud20.com": ("eu-jovanovac-1",),
    "oraclecloud21.com": ("me-alrayyan-1", "me-dcc-doha-1"),
    "oraclecloud23.com": ("us-somerset-1", "us-thames-1"),
    "oraclecloud24.com": ("eu-crissier-1", "eu-dcc-zurich-1"),
    "oraclecloud26.com": ("me-abudhabi-3", "me-alain-1"),
    "oraclecloud29.com": ("me-abudhabi-2", "me-abudhabi-4"),
    "oraclecloud35.com": ("ap-chuncheon-2", "ap-seoul-2", "ap-suwon-1"),
    "oraclecloud42.com": ("us-ashburn-2", "us-newark-1"),
    "oraclecloud51.com": ("eu-budapest-1",),
    "oraclecloud52.com": ("sa-riodejaneiro-1",),
    "oraclecloud8.com": ("ap-chiyoda-1", "ap-ibaraki-1"),
    "oraclecloud9.com": ("me-dcc-muscat-1", "me-ibri-1"),
    "oraclegovcloud.com": (
        "us-gov-ashburn-1",
        "us-gov-chicago-1",
        "us-gov-phoenix-1",
        "us-langley-1",
        "us-luke-1",
    ),
    "oraclegovcloud.uk": ("uk-gov-cardiff-1", "uk-gov-london-1"),
}
_DOMAIN_OF = {region: domain for domain, regions in _REALM_DOMAINS.items() for region in regions}
AUTH_MODES = (
    "resource_principal",
    "instance_principal",
    "user_principal",
    "session",
    "oke_workload_identity",
    "api_key",
)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_URL_CHARS = re.compile(r"[!-~]+")

DEFAULT_MODEL = "xai.grok-4-1-fast-reasoning"  # the one place the default model is named
# OCI Functions' invoke payload limit (docs.oracle.com/iaas/Content/Functions/Tasks/functionsinvoking.htm).
MAX_INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024
# The longest OCI Functions lets a call run: a synchronous one, and a detached one.
MAX_SYNC_CALL_S = 300.0
MAX_DETACHED_CALL_S = 3600.0
HOSTED_TOOLS = ("file_search", "code_interpreter", "mcp")  # what OCI's Responses API hosts (OCI "tool support")
# Model families OCI serves on Chat Completions only, never on the Responses API (OCI "OpenAI-compatible API").
NOT_ON_RESPONSES_API = ("meta.", "cohere.")
_HTTPS_URL = re.compile(r"https://[!-~]{1,2048}")
GUARDRAIL_MODES = ("off", "inform", "block")
GUARDRAIL_CHECKS = ("content_moderation", "prompt_injection", "pii")
PII_ACTIONS = ("block", "redact")
# PII types by the labels OCI names (release note "OCI Generative AI Now Supports AI Guardrails for
# On-Demand Mode": PERSON, EMAIL, TELEPHONE_NUMBER "and more"). PERSON is left out of the default:
# blocking every name would refuse ordinary prompts ("a letter to Ada Lovelace").
DEFAULT_PII_TYPES = ("EMAIL", "TELEPHONE_NUMBER")
_PII_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_DECLARED = "genai_handler.setting"  # the field metadata key of a declaration


def ocid_pattern(*types: str) -> re.Pattern[str]:
    """OCIDs of these resource types only: any other type names the wrong thing, even if it exists."""
    return re.compile(rf"ocid1\.(?:{'|'.join(map(re.escape, types))})" + _OCID_TAIL)


class SettingError(MisconfiguredError):
    """A misconfiguration traced to one setting, so a fix can name the variable to change."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


# --- kinds: how a type of setting is read from text, checked and shown ----------------------


class Refused(ValueError):
    """Why a value is refused, worded to follow the variable's name: Declaration.read adds the name."""


class Text:
    """Free text; the base of every kind. `parse` reads the operator's text, `tidy` checks any value
    (from text or from code) and returns the one kept; both raise Refused."""

    def __init__(self, *, required: str = "") -> None:
        self.required = required  # why an empty value is refused ("must not be empty"), or "" if it may be

    def parse(self, raw: str) -> Any:
        return raw

    def tidy(self, value: Any) -> Any:
        if self.required and not value:
            raise Refused(self.required)
        return value

    def text(self, value: Any) -> str:
        return str(value)


class Choice(Text):
    def __init__(self, options: tuple[str, ...], *, fold: bool = False) -> None:
        super().__init__()
        self.options, self.fold = options, fold  # fold: read case-insensitively

    def parse(self, raw: str) -> Any:
        return raw.lower() if self.fold else raw

    def tidy(self, value: Any) -> Any:
        if value not in self.options:
            raise Refused(f"must be one of {', '.join(self.options)}")
        return value


class Whole(Text):
    def __init__(self, low: int, high: int) -> None:
        super().__init__()
        self.low, self.high = low, high

    def parse(self, raw: str) -> Any:
        if not (raw.isascii() and raw.isdigit()):  # str.isdigit alone accepts "²", which int() refuses
            raise self._refused()
        return int(raw)

    def tidy(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise self._refused()
        return value

    def _refused(self) -> Refused:
        return Refused(f"must be a whole number from {self.low} to {self.high}")


class Fraction(Text):
    def parse(self, raw: str) -> Any:
        try:
            return float(raw)
        except ValueError:
            return math.nan  # refused by tidy, as NaN is

    def tidy(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise Refused("must be a number from 0 to 1")
        return value


class Flag(Text):
    def parse(self, raw: str) -> Any:
        if raw.lower() not in _TRUE + _FALSE:
            raise Refused("must be true or false")
        return raw.lower() in _TRUE

    def text(self, value: Any) -> str:
        return "true" if value else "false"


class Names(Text):
    """A comma list, kept once each in the order given; with a `rule`, required and checked."""

    def __init__(
        self,
        rule: str = "",
        *,
        allowed: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
        may_be_empty: bool = False,
    ):
        super().__init__()
        self.rule, self.allowed, self.pattern, self.may_be_empty = rule, allowed, pattern, may_be_empty

    def parse(self, raw: str) -> Any:
        return tuple(name.strip() for name in raw.split(",") if name.strip())

    def tidy(self, value: Any) -> Any:
        names = tuple(dict.fromkeys(value))
        unknown = set(names) - set(self.allowed) if self.allowed else set()
        malformed = [name for name in names if self.pattern and not self.pattern.fullmatch(name)]
        if self.rule and ((not names and not self.may_be_empty) or unknown or malformed):
            raise Refused(f"must be a comma list of {self.rule}")
        return names

    def text(self, value: Any) -> str:
        return ",".join(value)


class Ocid(Text):
    """An OCID of one of these resource types ("Using a Project" shows ocid1.generativeaiproject.oc1...)."""

    def __init__(self, *types: str, required: str = "") -> None:
        super().__init__(required=required)
        self.types = types

    def tidy(self, value: Any) -> Any:
        if not super().tidy(value):
            return value
        if not OCID_PATTERN.fullmatch(value):
            raise Refused("is not an OCID (expected ocid1.<type>.<realm>.[region].<unique id>)")
        kind = value.split(".")[1]
        if kind not in self.types:
            raise Refused(f"is the OCID of a {kind}, expected {' or '.join(f'ocid1.{t}...' for t in self.types)}")
        return value


class Region(Text):
    """A region name or short key, expanded; checked only where it is used (_check_together)."""

    def tidy(self, value: Any) -> Any:
        return REGION_KEYS.get(value.lower(), value.lower())


class Url(Text):
    """An endpoint URL without trailing slashes (the SDK appends `/responses`).

    Everything the client would misuse is refused here, once: a query or fragment would corrupt
    every request path, user info would be sent nowhere useful, and a bad port fails only at run time.
    """

    def tidy(self, value: Any) -> Any:
        if not value:
            return value
        if not _URL_CHARS.fullmatch(value):
            raise Refused("must be a URL in printable ASCII, without spaces")
        bad_port = Refused("has an invalid host or port (a port is 1 to 65535)")
        try:
            parts = urlsplit(value)
            port = parts.port  # ValueError unless a number from 0 to 65535
        except ValueError:
            raise bad_port from None
        if "?" in value or "#" in value or "@" in parts.netloc:
            raise Refused("must not have a query, fragment or user info")
        if port == 0 or parts.netloc.endswith(":"):
            raise bad_port
        if not (parts.scheme == "https" and parts.hostname) and not (
            parts.scheme == "http" and parts.hostname in _LOOPBACK
        ):
            # http only to the local endpoint: signed requests never cross a network in clear text
            raise Refused("must be an https URL (http only for 127.0.0.1/localhost)")
        return value.rstrip("/")


# --- the declarations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    """One setting as the operator sees it: the variable, its kind, its default as written, its doc line."""

    env: str
    kind: Text
    default: str
    shown: str  # the default in docs/settings.md
    doc: str

    def parse(self, raw: str) -> Any:
        return self._named(self.kind.parse, raw)

    def tidy(self, value: Any) -> Any:
        return self._named(self.kind.tidy, value)

    def _named(self, step: Callable[[Any], Any], value: Any) -> Any:
        try:
            return step(value)
        except Refused as refused:
            raise SettingError(self.env, f"{self.env} {refused}") from None


def setting(env: str, default: Any, doc: str, kind: Text | None = None, *, shown: str = "", **options: Any) -> Any:
    """A dataclass field declaring one setting; `options` go to `dataclasses.field` (repr=False for secrets).

    A default of `...` makes the field required in code, and "" from the environment."""
    kind = kind or Text()
    text = "" if default is ... else kind.text(default)
    declaration = Declaration(env, kind, text, shown or f"`{text}`", doc)
    if default is ...:
        return field(metadata={_DECLARED: declaration}, **options)
    return field(default=default, metadata={_DECLARED: declaration}, **options)


def declared(cls: type[Settings] | Settings) -> list[tuple[Field[Any], Declaration]]:
    """Each field of `cls` with its declaration, in declaration order (the order of the docs table)."""
    return [(f, f.metadata[_DECLARED]) for f in fields(cls)]


@dataclass(frozen=True)
class Settings:
    """The function's configuration; hashable, so it keys the client cache."""

    project_ocid: str = setting(
        "GENAI_PROJECT_OCID",
        ...,
        "The Generative AI project, sent as the OpenAI `project` (`OpenAI-Project` "
        "header). Must be a project's OCID (`ocid1.generativeaiproject...`); an OCID of another type is refused, "
        "naming the type it is.",
        Ocid("generativeaiproject", required="is required: the OCID of your Generative AI project"),
        shown="(required)",
    )
    region: str = setting(
        "GENAI_REGION",
        "",
        "Region of the endpoint `https://inference.generativeai.<region>.oci.<realm "
        "domain>/openai/v1`: `oraclecloud.com` in the commercial realm, the realm's own domain elsewhere (e.g. "
        "`oraclegovcloud.com` for `us-gov-ashburn-1`). A region name (`ap-sydney-1`) or any short key the oci SDK "
        "knows (`syd`). A bad value taken from the function's region is reported as "
        "`OCI_RESOURCE_PRINCIPAL_REGION`. Not used, nor checked, when `GENAI_BASE_URL` is set.",
        Region(),
        shown="the function's region (`OCI_RESOURCE_PRINCIPAL_REGION`)",
    )
    # The operator's override; `base_url` reads the endpoint, computed (see _Endpoint below).
    base_url: str = setting(
        "GENAI_BASE_URL",
        "",
        "Override of the endpoint (private endpoints, the local endpoint). https only, "
        "except loopback. Trailing slashes are dropped. Refused, with a message naming `GENAI_BASE_URL`: a query, "
        "fragment or user info, spaces or non-ASCII characters, a port that is not 1 to 65535.",
        Url(),
        shown="derived from the region",
    )
    model: str = setting(
        "GENAI_MODEL",
        DEFAULT_MODEL,
        "Model used when a request names none. A model OCI serves on its Responses API: not `meta.*` or `cohere.*`"
        " (Chat Completions only).",
        Text(required="must not be empty"),
        shown=f"`{DEFAULT_MODEL}` (`settings.DEFAULT_MODEL`)",
    )
    allowed_models: tuple[str, ...] = setting(
        "GENAI_ALLOWED_MODELS",
        (),
        "Comma-separated models callers may ask for. Must include `GENAI_MODEL` (the error names `GENAI_MODEL`).",
        Names(),
        shown="only `GENAI_MODEL`",
    )
    auth: str = setting(
        "GENAI_AUTH",
        "resource_principal",
        "`resource_principal`, `instance_principal`, `user_principal`, "
        "`session` (laptop, after `oci session authenticate`), `oke_workload_identity` (a pod of an enhanced OKE "
        "cluster: docs/oke.md), or `api_key` (an OCI Generative AI API key in "
        "`GENAI_API_KEY`, sent as a Bearer token; early development only). `instance_principal`, `user_principal` "
        "and `session` need the oci SDK: `.venv/bin/pip install -r requirements-oci.txt` (`make test` installs it "
        "too); it is not in the function image.",
        Choice(AUTH_MODES),
    )
    compartment_ocid: str = setting(
        "GENAI_COMPARTMENT_OCID",
        "",
        "Sent as `opc-compartment-id` when set. A compartment or tenancy OCID. With "
        "guardrails on, the compartment ApplyGuardrails runs in (default: the function's own, from its resource "
        "principal token; required with any other `GENAI_AUTH`).",
        Ocid("compartment", "tenancy"),
        shown="unset",
    )
    max_body_bytes: int = setting(
        "GENAI_MAX_BODY_BYTES", 1024 * 1024, "Larger bodies get 413.", Whole(1024, MAX_INVOKE_PAYLOAD_BYTES)
    )
    max_input_chars: int = setting(
        "GENAI_MAX_INPUT_CHARS",
        32000,
        "Cap on the characters of every text the model reads (prompt or messages, "
        "instructions, the output format's name, description and schema).",
        Whole(1, MAX_INVOKE_PAYLOAD_BYTES),
    )
    max_images: int = setting(
        "GENAI_MAX_IMAGES",
        4,
        "Cap on the images (`input_image` parts) in one request; 0 refuses every image.",
        Whole(0, 64),
    )
    max_output_tokens: int = setting(
        "GENAI_MAX_OUTPUT_TOKENS",
        2048,
        "Cap and default for `max_output_tokens`: the cost ceiling of one call.",
        Whole(1, 1_000_000),
    )
    max_retries: int = setting(
        "GENAI_MAX_RETRIES",
        2,
        "Retries of 408, 409, 429, 5xx, failed answers and connection failures (connect "
        "timeouts included), only while the deadline allows; OCI's 500 for a model not deployed in the region is "
        "not retried (see [contracts.md](contracts.md#deadline-and-retries)).",
        Whole(0, 10),
    )
    keepalive_s: int = setting(
        "GENAI_KEEPALIVE_SECONDS",
        120,
        "How long an idle upstream connection is kept for the next invocation.",
        Whole(0, 3600),
    )
    log_prompts: bool = setting(
        "GENAI_LOG_PROMPTS",
        False,
        "Log what was sent to the model (after redaction) and the answer in the invocation's log line.",
        Flag(),
    )
    allow_stored_responses: bool = setting(
        "GENAI_ALLOW_STORED_RESPONSES",
        True,
        "Responses kept in the project for their caller only (`store`, default true), continued, polled and deleted "
        "by that caller; `false`: nothing stored, and `store`, `previous_response_id`, `conversation`, `background` "
        "and the stored-object routes refused ([security.md](security.md#what-is-stored)).",
        Flag(),
    )
    api_key: str = setting("GENAI_API_KEY", "", "Only for `GENAI_AUTH=api_key`.", shown="unset", repr=False)
    allowed_hosted_tools: tuple[str, ...] = setting(
        "GENAI_ALLOWED_HOSTED_TOOLS",
        (),
        "Hosted tools callers may use: any of `file_search`, `code_interpreter`, `mcp` "
        "([agents.md](agents.md#hosted-tools): each reaches data or URLs as the function's identity).",
        Names(", ".join(HOSTED_TOOLS), allowed=HOSTED_TOOLS, may_be_empty=True),
        shown="none",
    )
    mcp_allowed_urls: tuple[str, ...] = setting(
        "GENAI_MCP_ALLOWED_URLS",
        (),
        "Comma-separated MCP server URLs (exact, https) an `mcp` tool may name; no other URL is ever called.",
        Names("https URLs", pattern=_HTTPS_URL, may_be_empty=True),
        shown="none",
    )
    guardrails: str = setting(
        "GENAI_GUARDRAILS",
        "off",
        "`off`, `inform` or `block`: screen every request with OCI's ApplyGuardrails "
        "before the model ([guardrails.md](guardrails.md)).",
        Choice(GUARDRAIL_MODES, fold=True),
    )
    guardrails_allow_images: bool = setting(
        "GENAI_GUARDRAILS_ALLOW_IMAGES",
        False,
        "In `block` mode, let images through unscreened (guardrails read text only); off, an image is refused.",
        Flag(),
    )
    guardrail_checks: tuple[str, ...] = setting(
        "GENAI_GUARDRAILS_CHECKS",
        GUARDRAIL_CHECKS,
        "Which checks to ask for.",
        Names(", ".join(GUARDRAIL_CHECKS), allowed=GUARDRAIL_CHECKS),
    )
    pii_action: str = setting(
        "GENAI_PII_ACTION",
        "block",
        "`block` (PII is a check that fires) or `redact` (each span replaced by "
        "`[LABEL]` before the model sees it, in both modes).",
        Choice(PII_ACTIONS, fold=True),
    )
    pii_types: tuple[str, ...] = setting(
        "GENAI_PII_TYPES",
        DEFAULT_PII_TYPES,
        "OCI PII labels to detect (e.g. add `PERSON`; left out by default so ordinary names don't fire).",
        Names("OCI PII labels such as EMAIL", pattern=_PII_TYPE),
    )
    content_threshold: float = setting(
        "GENAI_GUARDRAILS_CONTENT_THRESHOLD",
        0.5,
        'A content moderation category at or over it fires. OCI scores these 0.0 or 1.0, so 0.5 means "flagged".',
        Fraction(),
    )
    injection_threshold: float = setting(
        "GENAI_GUARDRAILS_INJECTION_THRESHOLD",
        0.5,
        "The prompt injection score at or over it fires (OCI: typically 0.0 or 1.0; 0.5 is the midpoint).",
        Fraction(),
    )
    pii_threshold: float = setting(
        "GENAI_GUARDRAILS_PII_THRESHOLD",
        0.5,
        "PII findings whose confidence is at or over it count: more likely "
        "than not. Raise it for fewer false positives.",
        Fraction(),
    )
    oci_config_file: str = setting(
        "GENAI_OCI_CONFIG_FILE", "~/.oci/config", "The oci config file, for `user_principal` and `session`."
    )
    oci_profile: str = setting("GENAI_OCI_PROFILE", "DEFAULT", "The profile of `GENAI_OCI_CONFIG_FILE` to use.")

    def __post_init__(self) -> None:
        """The one tidy-values step: each value checked by its own declaration, then the rules between
        settings. A field is rewritten only with its own value tidied, never with a derived one."""
        given = vars(self)  # holds the operator's base_url: the descriptor stores it here
        values = {f.name: d.tidy(given[f.name]) for f, d in declared(self)}
        values["allowed_models"] = values["allowed_models"] or (values["model"],)  # documented: only GENAI_MODEL
        _check_together(values)
        for name, value in values.items():
            if value is not given[name]:
                object.__setattr__(self, name, value)

    @property
    def guardrails_on(self) -> bool:
        return self.guardrails != "off"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Self:
        """Settings from environment variables; keyword arguments win over them.

        Without GENAI_REGION, the region is OCI Functions' OCI_RESOURCE_PRINCIPAL_REGION, and an
        error about it names that variable: the user never set GENAI_REGION.
        """
        env = os.environ if environ is None else environ
        values = {f.name: d.parse(env.get(d.env, d.default).strip()) for f, d in declared(cls)}
        values.update({name: value for name, value in overrides.items() if name in values})
        if not values["region"] and not values["base_url"]:
            values["region"] = _region_name(env.get(_FUNCTION_REGION, "").strip(), _FUNCTION_REGION)
        return cls(**values)


class _Endpoint:
    """`Settings.base_url`: GENAI_BASE_URL when set, else the region's endpoint, computed on each read.

    The operator's value stays in the instance's __dict__, so the derived URL is never written into it.
    Installed after the dataclass is built: as a class attribute in the body it would be taken for the default.
    """

    def __get__(self, settings: Settings | None, owner: type | None = None) -> Any:
        if settings is None:
            return self
        override: str = vars(settings)["base_url"]
        return override or _regional_endpoint(settings.region)

    def __set__(self, settings: Settings, value: str) -> None:
        vars(settings)["base_url"] = value  # only the dataclass's __init__ and __post_init__ get here: it is frozen


setattr(Settings, "base_url", _Endpoint())  # noqa: B010  (an assignment would tell mypy the field changed type)


def env_names(cls: type[Settings] = Settings) -> dict[str, tuple[str, str]]:
    """Each variable's field and default, from the declarations (`ENV` for Settings itself)."""
    return {d.env: (f.name, d.default) for f, d in declared(cls)}


ENV = env_names()  # variable -> (field, default as the operator would write it)


def _check_together(values: dict[str, Any]) -> None:
    """The rules that read more than one setting; each names the variable to change."""
    if values["auth"] == "api_key" and not values["api_key"]:
        raise SettingError("GENAI_API_KEY", "GENAI_API_KEY is required when GENAI_AUTH is api_key")
    for name, models in (("GENAI_MODEL", [values["model"]]), ("GENAI_ALLOWED_MODELS", values["allowed_models"])):
        if any(model.startswith(NOT_ON_RESPONSES_API) for model in models):
            families = " or ".join(family.rstrip(".") for family in NOT_ON_RESPONSES_API)
            message = f"{name} names a {families} model: OCI does not serve them on the Responses API"
            raise SettingError(name, message)
    if values["model"] not in values["allowed_models"]:
        raise SettingError("GENAI_MODEL", "GENAI_MODEL must be one of GENAI_ALLOWED_MODELS")
    if values["guardrails"] != "off" and not values["compartment_ocid"] and values["auth"] != "resource_principal":
        # A resource principal's token names its compartment (res_compartment); no other principal's does.
        raise SettingError(
            "GENAI_COMPARTMENT_OCID",
            "GENAI_COMPARTMENT_OCID is required when GENAI_GUARDRAILS is "
            "on outside OCI Functions: ApplyGuardrails runs in a compartment",
        )
    if values["base_url"]:  # the region is unused then: a value no table knows must not stop the function
        return
    if not _region_name(values["region"], "GENAI_REGION"):
        raise SettingError("GENAI_REGION", "GENAI_REGION is required outside OCI Functions (or set GENAI_BASE_URL)")


def _regional_endpoint(region: str) -> str:
    return f"https://inference.generativeai.{region}.oci.{_DOMAIN_OF.get(region, 'oraclecloud.com')}/openai/v1"


def _region_name(value: str, source: str) -> str:
    """`value` as a region name (us-chicago-1), a short key (ord) expanded; `source` is the variable it came from."""
    region = REGION_KEYS.get(value.lower(), value.lower())
    if region and not _REGION_PATTERN.fullmatch(region):
        override = "" if source == "GENAI_REGION" else "; set GENAI_REGION to the region's name"
        raise SettingError(
            "GENAI_REGION",
            f"{source} is neither an OCI region name (e.g. us-chicago-1) nor a region key this version knows "
            f"(e.g. ord){override}",
        )
    return region


# --- docs/settings.md's table ---------------------------------------------------------------

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
BEGIN = "<!-- settings-table: begin (.venv/bin/python -m genai_handler.settings --write) -->"
END = "<!-- settings-table: end -->"


def docs_table(cls: type[Settings] = Settings) -> str:
    rows = [f"| `{d.env}` | {d.shown} | {d.doc} |" for _, d in declared(cls)]
    return "\n".join(["| Setting | Default | Meaning |", "| --- | --- | --- |", *rows])


def page_with_table(page: str) -> str:
    """`page` with the text between the markers replaced by the table written from the declarations."""
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{docs_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print docs/settings.md's table, or --write it into the page.")
    parser.add_argument("--write", action="store_true", help=f"replace the table in {PAGE}")
    if parser.parse_args(argv).write:
        PAGE.write_text(page_with_table(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(docs_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
