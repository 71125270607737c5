"""Every setting's name and default, in one place, read and validated once per container.

Function config reaches the function as environment variables (`fn config function ...`).
An explicit argument beats the environment: `Settings(project_ocid=..., region=...)` for code,
`Settings.from_env()` for the function. Stdlib only: the deploy tooling imports it too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from .errors import MisconfiguredError

OCID_PATTERN = re.compile(r"ocid1\.[a-z0-9]+\.[a-z0-9-]+\.[a-z0-9-]*(\.[a-z0-9-]+)?\.[a-z0-9]{1,255}")
_REGION_PATTERN = re.compile(r"[a-z]+(-[a-z]+)+-[0-9]+")
# OCI Functions may hand over the short region key; the Generative AI regions' keys.
_REGION_KEYS = {
    "ord": "us-chicago-1", "iad": "us-ashburn-1", "phx": "us-phoenix-1", "fra": "eu-frankfurt-1",
    "lhr": "uk-london-1", "ams": "eu-amsterdam-1", "gru": "sa-saopaulo-1", "nrt": "ap-tokyo-1",
    "kix": "ap-osaka-1", "hyd": "ap-hyderabad-1", "bom": "ap-mumbai-1", "jed": "me-jeddah-1",
    "dxb": "me-dubai-1", "sin": "ap-singapore-1", "yyz": "ca-toronto-1",
}
AUTH_MODES = ("resource_principal", "instance_principal", "user_principal", "session", "api_key")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

DEFAULT_MODEL = "xai.grok-4-1-fast-reasoning"  # the one place the default model is named

# setting name -> (field, default as the operator would write it)
ENV = {
    "GENAI_PROJECT_OCID": ("project_ocid", ""),
    "GENAI_REGION": ("region", ""),
    "GENAI_BASE_URL": ("base_url", ""),
    "GENAI_MODEL": ("model", DEFAULT_MODEL),
    "GENAI_ALLOWED_MODELS": ("allowed_models", ""),
    "GENAI_AUTH": ("auth", "resource_principal"),
    "GENAI_COMPARTMENT_OCID": ("compartment_ocid", ""),
    "GENAI_MAX_BODY_BYTES": ("max_body_bytes", "1048576"),
    "GENAI_MAX_INPUT_CHARS": ("max_input_chars", "32000"),
    "GENAI_MAX_OUTPUT_TOKENS": ("max_output_tokens", "2048"),
    "GENAI_MAX_RETRIES": ("max_retries", "2"),
    "GENAI_KEEPALIVE_SECONDS": ("keepalive_s", "120"),
    "GENAI_LOG_PROMPTS": ("log_prompts", "false"),
    "GENAI_ALLOW_STORED_RESPONSES": ("allow_stored_responses", "false"),
    "GENAI_API_KEY": ("api_key", ""),
    "GENAI_OCI_CONFIG_FILE": ("oci_config_file", "~/.oci/config"),
    "GENAI_OCI_PROFILE": ("oci_profile", "DEFAULT"),
}
_INT_LIMITS = {
    "max_body_bytes": (1024, 6 * 1024 * 1024),  # OCI Functions' invoke payload limit
    "max_input_chars": (1, 6 * 1024 * 1024),
    "max_output_tokens": (1, 1_000_000),
    "max_retries": (0, 10),
    "keepalive_s": (0, 3600),
}


def _setting_name(field_name: str) -> str:
    return next(name for name, (f, _) in ENV.items() if f == field_name)


@dataclass(frozen=True)
class Settings:
    """The function's configuration; see the README's Settings table for each one's meaning."""

    project_ocid: str
    region: str = ""
    base_url: str = ""
    model: str = DEFAULT_MODEL
    allowed_models: tuple[str, ...] = ()
    auth: str = "resource_principal"
    compartment_ocid: str = ""
    max_body_bytes: int = 1024 * 1024
    max_input_chars: int = 32000
    max_output_tokens: int = 2048
    max_retries: int = 2
    keepalive_s: int = 120
    log_prompts: bool = False
    allow_stored_responses: bool = False
    api_key: str = field(default="", repr=False)
    oci_config_file: str = "~/.oci/config"
    oci_profile: str = "DEFAULT"

    def __post_init__(self) -> None:
        if not self.project_ocid:
            raise MisconfiguredError("GENAI_PROJECT_OCID is required: the OCID of your Generative AI project")
        for name in ("project_ocid", "compartment_ocid"):
            value = getattr(self, name)
            if value and not OCID_PATTERN.fullmatch(value):
                raise MisconfiguredError(f"{_setting_name(name)} is not an OCID (expected ocid1.<type>.<realm>...)")
        for name, (low, high) in _INT_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise MisconfiguredError(f"{_setting_name(name)} must be a whole number from {low} to {high}")
        if self.auth not in AUTH_MODES:
            raise MisconfiguredError(f"GENAI_AUTH must be one of {', '.join(AUTH_MODES)}")
        if self.auth == "api_key" and not self.api_key:
            raise MisconfiguredError("GENAI_API_KEY is required when GENAI_AUTH is api_key")
        if not self.model:
            raise MisconfiguredError("GENAI_MODEL must not be empty")
        object.__setattr__(self, "allowed_models", tuple(self.allowed_models) or (self.model,))
        if self.model not in self.allowed_models:
            raise MisconfiguredError("GENAI_MODEL must be one of GENAI_ALLOWED_MODELS")
        region = _REGION_KEYS.get(self.region.lower(), self.region.lower())
        if region and not _REGION_PATTERN.fullmatch(region):
            raise MisconfiguredError("GENAI_REGION is not an OCI region name (e.g. us-chicago-1)")
        object.__setattr__(self, "region", region)
        if self.base_url:
            _check_base_url(self.base_url)
        elif not region:
            raise MisconfiguredError("GENAI_REGION is required outside OCI Functions (or set GENAI_BASE_URL)")
        else:
            object.__setattr__(
                self, "base_url", f"https://inference.generativeai.{region}.oci.oraclecloud.com/openai/v1"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from environment variables; keyword arguments win over them."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, (field_name, default) in ENV.items():
            raw = env.get(name, default).strip()
            values[field_name] = _parse(name, field_name, raw)
        if not values["region"]:
            values["region"] = env.get("OCI_RESOURCE_PRINCIPAL_REGION", "").strip()
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if k in known})
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, field_name: str, raw: str) -> object:
    if field_name in _INT_LIMITS:
        if not raw.isdigit():
            low, high = _INT_LIMITS[field_name]
            raise MisconfiguredError(f"{name} must be a whole number from {low} to {high}")
        return int(raw)
    if field_name in ("log_prompts", "allow_stored_responses"):
        if raw.lower() not in _TRUE + _FALSE:
            raise MisconfiguredError(f"{name} must be true or false")
        return raw.lower() in _TRUE
    if field_name == "allowed_models":
        return tuple(m.strip() for m in raw.split(",") if m.strip())
    return raw


def _check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return  # the local endpoint; signed requests never cross a network in clear text
    raise MisconfiguredError("GENAI_BASE_URL must be an https URL (http only for 127.0.0.1/localhost)")
