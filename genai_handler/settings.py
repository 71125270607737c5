"""Every setting's name and default, in one place, read and validated once per container.

Function config reaches the function as environment variables (`fn config function ...`).
An explicit argument beats the environment: `Settings(project_ocid=..., region=...)` for code,
`Settings.from_env()` for the function. Stdlib only: the deploy tooling imports it too.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from .errors import MisconfiguredError

# OCI's OCID format (docs.oracle.com/iaas/Content/General/Concepts/identifiers.htm, "Resource Identifiers"):
# ocid1.<RESOURCE TYPE>.<REALM>.[REGION][.FUTURE USE].<UNIQUE ID>; realms are oc1, oc2, ... (oci SDK REALMS).
_OCID_TAIL = r"\.oc[0-9]+\.[a-z0-9-]*(?:\.[a-z0-9-]*)?\.[a-z0-9]{1,255}"
OCID_PATTERN = re.compile(r"ocid1\.[a-z0-9]+" + _OCID_TAIL)

# The resource types each setting must name ("Using a Project" shows ocid1.generativeaiproject.oc1...).
_OCID_TYPES = {"project_ocid": ("generativeaiproject",), "compartment_ocid": ("compartment", "tenancy")}
_REGION_PATTERN = re.compile(r"[a-z]+(-[a-z]+)+-[0-9]+")
# OCI Functions may hand over the short region key (OCI_RESOURCE_PRINCIPAL_REGION). Copied from the oci
# SDK 2.189.0 (oci/regions_definitions.py REGIONS_SHORT_NAMES); this module must not import the SDK, and
# tests/test_settings.py fails when the two differ.
REGION_KEYS = {
    "aga": "us-saltlake-2", "ahu": "me-abudhabi-3", "ams": "eu-amsterdam-1", "arn": "eu-stockholm-1",
    "auh": "me-abudhabi-1", "avf": "eu-crissier-1", "avz": "eu-dcc-zurich-1", "beg": "eu-jovanovac-1",
    "bgy": "eu-dcc-milan-1", "bno": "ap-chuncheon-2", "bog": "sa-bogota-1", "bom": "ap-mumbai-1",
    "brs": "uk-gov-cardiff-1", "cdg": "eu-paris-1", "cwl": "uk-cardiff-1", "dac": "ap-dcc-gazipur-1",
    "dln": "ap-suwon-1", "doh": "me-dcc-doha-1", "dtm": "eu-dcc-rating-2", "dtz": "ap-seoul-2",
    "dus": "eu-dcc-rating-1", "dxb": "me-dubai-1", "ebb": "us-somerset-1", "ebl": "us-thames-1",
    "fra": "eu-frankfurt-1", "gru": "sa-saopaulo-1", "hnw": "sa-riodejaneiro-1", "hsg": "ap-batam-1",
    "hyd": "ap-hyderabad-1", "iad": "us-ashburn-1", "ibr": "me-ibri-1", "icn": "ap-seoul-1", "jbp": "ap-kulai-2",
    "jed": "me-jeddah-1", "jnb": "af-johannesburg-1", "jsk": "eu-budapest-1", "kix": "ap-osaka-1",
    "lej": "af-casablanca-1", "lfi": "us-langley-1", "lhr": "uk-london-1", "lin": "eu-milan-1",
    "ltn": "uk-gov-london-1", "luf": "us-luke-1", "mad": "eu-madrid-1", "mct": "me-dcc-muscat-1",
    "mel": "ap-melbourne-1", "mrs": "eu-marseille-1", "mty": "mx-monterrey-1", "mtz": "il-jerusalem-1",
    "mxp": "eu-dcc-milan-2", "nja": "ap-chiyoda-1", "nrq": "eu-turin-1", "nrt": "ap-tokyo-1", "onm": "ap-delhi-1",
    "ord": "us-chicago-1", "orf": "eu-madrid-3", "ork": "eu-dcc-dublin-1", "pgc": "us-newark-1",
    "phx": "us-phoenix-1", "pia": "us-gov-chicago-1", "qro": "mx-queretaro-1", "rba": "me-alain-1",
    "ric": "us-gov-ashburn-1", "rkt": "me-abudhabi-2", "ruh": "me-riyadh-1", "scl": "sa-santiago-1",
    "shj": "me-abudhabi-4", "sin": "ap-singapore-1", "sjc": "us-sanjose-1", "snn": "eu-dcc-dublin-2",
    "str": "eu-frankfurt-2", "syd": "ap-sydney-1", "tus": "us-gov-phoenix-1", "ukb": "ap-ibaraki-1",
    "vap": "sa-valparaiso-1", "vcp": "sa-vinhedo-1", "vll": "eu-madrid-2", "vve": "me-alrayyan-1",
    "wga": "ap-dcc-canberra-1", "xsp": "ap-singapore-2", "yny": "ap-chuncheon-1", "yul": "ca-montreal-1",
    "yxj": "us-ashburn-2", "yyz": "ca-toronto-1", "zrh": "eu-zurich-1",
}
# Regions outside the commercial realm oc1 (oraclecloud.com), by their realm's domain: the oci SDK's
# REGION_REALMS and REALMS, checked the same way. Endpoints are https://<service>.<region>.oci.<domain>.
_REALM_DOMAINS = {
    "oraclecloud.eu": ("eu-frankfurt-2", "eu-madrid-2"),
    "oraclecloud10.com": ("ap-dcc-canberra-1",),
    "oraclecloud14.com": (
        "eu-dcc-dublin-1", "eu-dcc-dublin-2", "eu-dcc-milan-1", "eu-dcc-milan-2", "eu-dcc-rating-1", "eu-dcc-rating-2",
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
        "us-gov-ashburn-1", "us-gov-chicago-1", "us-gov-phoenix-1", "us-langley-1", "us-luke-1",
    ),
    "oraclegovcloud.uk": ("uk-gov-cardiff-1", "uk-gov-london-1"),
}
_DOMAIN_OF = {region: domain for domain, regions in _REALM_DOMAINS.items() for region in regions}
AUTH_MODES = ("resource_principal", "instance_principal", "user_principal", "session", "api_key")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_URL_CHARS = re.compile(r"[!-~]+")

DEFAULT_MODEL = "xai.grok-4-1-fast-reasoning"  # the one place the default model is named
GUARDRAIL_MODES = ("off", "inform", "block")
GUARDRAIL_CHECKS = ("content_moderation", "prompt_injection", "pii")
PII_ACTIONS = ("block", "redact")
# PII types by the labels OCI names (release note "OCI Generative AI Now Supports AI Guardrails for
# On-Demand Mode": PERSON, EMAIL, TELEPHONE_NUMBER "and more"). PERSON is left out of the default:
# blocking every name would refuse ordinary prompts ("a letter to Ada Lovelace").
DEFAULT_PII_TYPES = "EMAIL,TELEPHONE_NUMBER"
_PII_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

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
    "GENAI_GUARDRAILS": ("guardrails", "off"),
    "GENAI_GUARDRAILS_CHECKS": ("guardrail_checks", ",".join(GUARDRAIL_CHECKS)),
    "GENAI_PII_ACTION": ("pii_action", "block"),
    "GENAI_PII_TYPES": ("pii_types", DEFAULT_PII_TYPES),
    "GENAI_GUARDRAILS_CONTENT_THRESHOLD": ("content_threshold", "0.5"),
    "GENAI_GUARDRAILS_INJECTION_THRESHOLD": ("injection_threshold", "0.5"),
    "GENAI_GUARDRAILS_PII_THRESHOLD": ("pii_threshold", "0.5"),
}
_THRESHOLDS = ("content_threshold", "injection_threshold", "pii_threshold")
_LISTS = ("allowed_models", "guardrail_checks", "pii_types")
_INT_LIMITS = {
    "max_body_bytes": (1024, 6 * 1024 * 1024),  # OCI Functions' invoke payload limit
    "max_input_chars": (1, 6 * 1024 * 1024),
    "max_output_tokens": (1, 1_000_000),
    "max_retries": (0, 10),
    "keepalive_s": (0, 3600),
}


def ocid_pattern(*types: str) -> re.Pattern[str]:
    """OCIDs of these resource types only: any other type names the wrong thing, even if it exists."""
    return re.compile(rf"ocid1\.(?:{'|'.join(map(re.escape, types))})" + _OCID_TAIL)


class SettingError(MisconfiguredError):
    """A misconfiguration traced to one setting, so a fix can name the variable to change."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _setting_name(field_name: str) -> str:
    return next(name for name, (f, _) in ENV.items() if f == field_name)


@dataclass(frozen=True)
class Settings:
    """The function's configuration; see docs/settings.md for each one's meaning."""

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
    guardrails: str = "off"
    guardrail_checks: tuple[str, ...] = GUARDRAIL_CHECKS
    pii_action: str = "block"
    pii_types: tuple[str, ...] = tuple(DEFAULT_PII_TYPES.split(","))
    content_threshold: float = 0.5
    injection_threshold: float = 0.5
    pii_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.project_ocid:
            raise SettingError("GENAI_PROJECT_OCID", "GENAI_PROJECT_OCID is required: the OCID of your Generative AI project")
        for name, types in _OCID_TYPES.items():
            _check_ocid(_setting_name(name), getattr(self, name), types)
        for name, (low, high) in _INT_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SettingError(_setting_name(name), f"{_setting_name(name)} must be a whole number from {low} to {high}")
        if self.auth not in AUTH_MODES:
            raise SettingError("GENAI_AUTH", f"GENAI_AUTH must be one of {', '.join(AUTH_MODES)}")
        if self.auth == "api_key" and not self.api_key:
            raise SettingError("GENAI_API_KEY", "GENAI_API_KEY is required when GENAI_AUTH is api_key")
        if not self.model:
            raise SettingError("GENAI_MODEL", "GENAI_MODEL must not be empty")
        object.__setattr__(self, "allowed_models", tuple(self.allowed_models) or (self.model,))
        if self.model not in self.allowed_models:
            raise SettingError("GENAI_MODEL", "GENAI_MODEL must be one of GENAI_ALLOWED_MODELS")
        self._check_guardrails()
        if self.base_url:  # the region is unused then: a value no table knows must not stop the function
            object.__setattr__(self, "base_url", _check_base_url(self.base_url))
            object.__setattr__(self, "region", REGION_KEYS.get(self.region.lower(), self.region.lower()))
            return
        region = _region_name(self.region, "GENAI_REGION")
        if not region:
            raise SettingError("GENAI_REGION", "GENAI_REGION is required outside OCI Functions (or set GENAI_BASE_URL)")
        object.__setattr__(self, "region", region)
        domain = _DOMAIN_OF.get(region, "oraclecloud.com")
        object.__setattr__(self, "base_url", f"https://inference.generativeai.{region}.oci.{domain}/openai/v1")

    @property
    def guardrails_on(self) -> bool:
        return self.guardrails != "off"

    def _check_guardrails(self) -> None:
        """Every guardrail setting is checked even when off, so turning them on cannot surface an old typo."""
        if self.guardrails not in GUARDRAIL_MODES:
            raise SettingError("GENAI_GUARDRAILS", f"GENAI_GUARDRAILS must be one of {', '.join(GUARDRAIL_MODES)}")
        checks = tuple(dict.fromkeys(self.guardrail_checks))
        if not checks or set(checks) - set(GUARDRAIL_CHECKS):
            raise SettingError("GENAI_GUARDRAILS_CHECKS",
                               f"GENAI_GUARDRAILS_CHECKS must be a comma list of {', '.join(GUARDRAIL_CHECKS)}")
        object.__setattr__(self, "guardrail_checks", checks)
        if self.pii_action not in PII_ACTIONS:
            raise SettingError("GENAI_PII_ACTION", f"GENAI_PII_ACTION must be one of {', '.join(PII_ACTIONS)}")
        types = tuple(dict.fromkeys(self.pii_types))
        if not types or not all(_PII_TYPE.fullmatch(t) for t in types):
            raise SettingError("GENAI_PII_TYPES", "GENAI_PII_TYPES must be a comma list of OCI PII labels such as EMAIL")
        object.__setattr__(self, "pii_types", types)
        for name in _THRESHOLDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise SettingError(_setting_name(name), f"{_setting_name(name)} must be a number from 0 to 1")
        if self.guardrails_on and not self.compartment_ocid and self.auth != "resource_principal":
            # A resource principal's token names its compartment (res_compartment); no other principal's does.
            raise SettingError("GENAI_COMPARTMENT_OCID", "GENAI_COMPARTMENT_OCID is required when GENAI_GUARDRAILS is on "
                               "outside OCI Functions: ApplyGuardrails runs in a compartment")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from environment variables; keyword arguments win over them.

        Without GENAI_REGION, the region is OCI Functions' OCI_RESOURCE_PRINCIPAL_REGION, and an
        error about it names that variable: the user never set GENAI_REGION.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, (field_name, default) in ENV.items():
            raw = env.get(name, default).strip()
            values[field_name] = _parse(name, field_name, raw)
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if k in known})
        if not values["region"] and not values["base_url"]:
            values["region"] = _region_name(env.get("OCI_RESOURCE_PRINCIPAL_REGION", "").strip(), "OCI_RESOURCE_PRINCIPAL_REGION")
        return cls(**values)  # type: ignore[arg-type]


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


def _check_ocid(setting: str, value: str, types: tuple[str, ...]) -> None:
    if not value:
        return
    if not OCID_PATTERN.fullmatch(value):
        raise SettingError(setting, f"{setting} is not an OCID (expected ocid1.<type>.<realm>.[region].<unique id>)")
    kind = value.split(".")[1]
    if kind not in types:
        expected = " or ".join(f"ocid1.{t}..." for t in types)
        raise SettingError(setting, f"{setting} is the OCID of a {kind}, expected {expected}")


def _parse(name: str, field_name: str, raw: str) -> object:
    if field_name in _INT_LIMITS:
        if not (raw.isascii() and raw.isdigit()):  # str.isdigit alone accepts "²", which int() refuses
            low, high = _INT_LIMITS[field_name]
            raise SettingError(name, f"{name} must be a whole number from {low} to {high}")
        return int(raw)
    if field_name in ("log_prompts", "allow_stored_responses"):
        if raw.lower() not in _TRUE + _FALSE:
            raise SettingError(name, f"{name} must be true or false")
        return raw.lower() in _TRUE
    if field_name in _LISTS:
        return tuple(m.strip() for m in raw.split(",") if m.strip())
    if field_name in _THRESHOLDS:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise SettingError(name, f"{name} must be a number from 0 to 1")
        return value
    if field_name in ("guardrails", "pii_action"):
        return raw.lower()
    return raw


def _check_base_url(url: str) -> str:
    """The URL without trailing slashes (the SDK appends `/responses`), or SettingError.

    Everything the client would misuse is refused here, once: a query or fragment would corrupt
    every request path, user info would be sent nowhere useful, and a bad port fails only at run time.
    """
    if not _URL_CHARS.fullmatch(url):
        raise SettingError("GENAI_BASE_URL", "GENAI_BASE_URL must be a URL in printable ASCII, without spaces")
    bad_port = SettingError("GENAI_BASE_URL", "GENAI_BASE_URL has an invalid host or port (a port is 1 to 65535)")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError unless a number from 0 to 65535
    except ValueError:
        raise bad_port from None
    if "?" in url or "#" in url or "@" in parts.netloc:
        raise SettingError("GENAI_BASE_URL", "GENAI_BASE_URL must not have a query, fragment or user info")
    if port == 0 or parts.netloc.endswith(":"):
        raise bad_port
    if not (parts.scheme == "https" and parts.hostname) and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        # http only to the local endpoint: signed requests never cross a network in clear text
        raise SettingError("GENAI_BASE_URL", "GENAI_BASE_URL must be an https URL (http only for 127.0.0.1/localhost)")
    return url.rstrip("/")
