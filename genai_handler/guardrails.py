"""Screen a request with OCI Generative AI's ApplyGuardrails before the model sees it (GENAI_GUARDRAILS).

One call per invocation: the instructions and every message's text are joined with a blank line
between them and screened as one input, and what comes back is mapped onto each text again. The
call goes through the container's pooled client (same connections, same signer) and ends by the
invocation's deadline. Imported only when guardrails are on: off costs nothing.

The service's shapes are the oci SDK's (2.189.0, oci/generative_ai_inference):
`GenerativeAiInferenceClient.apply_guardrails` is `POST /20231130/actions/applyGuardrails`
(base_path '/20231130', resource_path '/actions/applyGuardrails'); the body is
`ApplyGuardrailsDetails` {compartmentId, input: GuardrailsTextInput {type: "TEXT", content,
languageCode?}, guardrailConfigs: GuardrailConfigs {contentModerationConfig: {categories},
personallyIdentifiableInformationConfig: {types}, promptInjectionConfig: {}}}; the answer is
`ApplyGuardrailsResult` {results: GuardrailsResults {contentModeration: {categories: [CategoryScore
{name, score}]}, personallyIdentifiableInformation: [{offset, length, text, label, score}],
promptInjection: {score}}, guardrailVersion: {version}}.

Nothing the service flags, and no text it returns, ever reaches an error message or a log line:
only check names, category names, labels, counts and scores do.
"""

from __future__ import annotations

import bisect
import copy
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai

from .auth import _claims  # one JWT reader for the package
from .errors import ContentBlocked, HandlerError, MisconfiguredError, UpstreamError
from .settings import Settings, SettingError, ocid_pattern
from .upstream import post_oci

PATH = "/20231130/actions/applyGuardrails"
# Oracle's "Guardrails for OCI Generative AI" page: content moderation returns OVERALL (offensive or
# harmful language) and BLOCKLIST (OCI's predefined blocked words), each scored 0.0 or 1.0.
CATEGORIES = ("OVERALL", "BLOCKLIST")
SEPARATOR = "\n\n"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # what a category or label may look like to be logged
_COMPARTMENT = ocid_pattern("compartment", "tenancy")
_UNREADABLE = "OCI Generative AI Guardrails sent an answer this function cannot read"
_compartments: dict[Settings, str] = {}


@dataclass
class Verdict:
    """What the service found, in loggable form: names, scores and counts, never text."""

    fired: list[str] = field(default_factory=list)  # in GUARDRAIL_CHECKS order
    categories: dict[str, float] = field(default_factory=dict)
    injection: float | None = None
    pii: dict[str, int] = field(default_factory=dict)  # label -> spans at or over the threshold
    request_id: str | None = None
    latency_ms: float = 0.0

    def log_fields(self, mode: str) -> dict[str, Any]:
        fields: dict[str, Any] = {"mode": mode, "fired": self.fired, "request_id": self.request_id,
                                  "ms": round(self.latency_ms, 1)}
        if self.categories:
            fields["content_moderation"] = self.categories
        if self.injection is not None:
            fields["prompt_injection"] = self.injection
        if self.pii:
            fields["pii"] = self.pii
        return fields


@dataclass(frozen=True)
class _Span:
    """One PII finding, already located in the joined text (code points)."""

    start: int
    end: int
    label: str


def screen(
    client: openai.OpenAI, settings: Settings, arguments: dict[str, Any], deadline: float, log: dict[str, Any]
) -> dict[str, Any]:
    """The arguments to send the model (PII redacted if asked); `log` gets the invocation's
    `guardrails` log fields, also when this raises.

    Raises ContentBlocked in block mode when a check fires. When the service fails, block mode (and
    PII redaction in any mode: the original spans must never reach the model) fails closed with the
    service's error; inform mode fails open and says in the log that the check was skipped.
    """
    texts = list(_texts(arguments))
    joined = SEPARATOR.join(texts)
    started = time.monotonic()
    try:
        compartment = _compartment(client, settings)
        body, request_id = post_oci(client, _url(settings), _details(settings, compartment, joined), deadline)
        verdict, findings = _read(body, settings)
    except MisconfiguredError:
        raise
    except HandlerError as exc:
        log.update(mode=settings.guardrails, skipped=exc.type, request_id=exc.request_id)
        if settings.guardrails == "block" or settings.pii_action == "redact":
            raise
        return arguments
    verdict.request_id = request_id
    verdict.latency_ms = (time.monotonic() - started) * 1000
    log.update(verdict.log_fields(settings.guardrails))
    blocking = [c for c in verdict.fired if c != "pii" or settings.pii_action == "block"]
    if settings.guardrails == "block" and blocking:
        raise ContentBlocked(f"the request was blocked by guardrails: {', '.join(blocking)}", request_id=request_id)
    if settings.pii_action == "redact" and findings:
        spans = [span for finding in findings for span in _locate(joined, finding, request_id)]
        arguments = _with_texts(arguments, _redact(texts, spans))
        log["redacted"] = len(findings)
    return arguments


def probe(client: openai.OpenAI, settings: Settings, deadline: float) -> tuple[str, str | None]:
    """One harmless ApplyGuardrails call for the doctor: (the compartment it ran in, opc-request-id).
    Raises the function's own errors, so the doctor reports what an invocation would meet."""
    compartment = _compartment(client, settings)
    body, request_id = post_oci(client, _url(settings), _details(settings, compartment, "ping"), deadline)
    _read(body, settings)
    return compartment, request_id


def _texts(arguments: dict[str, Any]) -> Iterator[str]:
    """Every text the model would read, in a fixed order that _with_texts writes back in."""
    if "instructions" in arguments:
        yield arguments["instructions"]
    user_input = arguments["input"]
    if isinstance(user_input, str):
        yield user_input
        return
    for message in user_input:
        content = message["content"]
        if isinstance(content, str):
            yield content
        else:
            yield from (part["text"] for part in content)


def _with_texts(arguments: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    result = copy.deepcopy(arguments)
    replacements = iter(texts)
    if "instructions" in result:
        result["instructions"] = next(replacements)
    if isinstance(result["input"], str):
        result["input"] = next(replacements)
        return result
    for message in result["input"]:
        if isinstance(message["content"], str):
            message["content"] = next(replacements)
        else:
            for part in message["content"]:
                part["text"] = next(replacements)
    return result


def _url(settings: Settings) -> str:
    """The inference host's root (base_url is .../openai/v1 on the same host) plus the API's path."""
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}{PATH}"


def _compartment(client: openai.OpenAI, settings: Settings) -> str:
    """GENAI_COMPARTMENT_OCID, else the resource principal token's `res_compartment` claim
    (shared/FIELD-NOTES.md: RPST claims include res_compartment), read once per container."""
    if settings.compartment_ocid:
        return settings.compartment_ocid
    found = _compartments.get(settings)
    if found is None:
        auth = client._client.auth  # noqa: SLF001  (the signer upstream built for this client)
        credentials = getattr(auth, "credentials", None)
        key_id = credentials().key_id if credentials else ""
        claim = (_claims(key_id[3:]) or {}).get("res_compartment") if key_id.startswith("ST$") else None
        if not isinstance(claim, str) or not _COMPARTMENT.fullmatch(claim):
            raise SettingError("GENAI_COMPARTMENT_OCID", "GENAI_COMPARTMENT_OCID is required for GENAI_GUARDRAILS: the "
                               "function's identity names no compartment to run ApplyGuardrails in")
        found = _compartments[settings] = claim
    return found


def _details(settings: Settings, compartment: str, content: str) -> dict[str, Any]:
    """ApplyGuardrailsDetails as the oci SDK serialises it, with only the checks asked for."""
    configs: dict[str, Any] = {}
    if "content_moderation" in settings.guardrail_checks:
        configs["contentModerationConfig"] = {"categories": list(CATEGORIES)}
    if "prompt_injection" in settings.guardrail_checks:
        configs["promptInjectionConfig"] = {}
    if "pii" in settings.guardrail_checks:
        configs["personallyIdentifiableInformationConfig"] = {"types": list(settings.pii_types)}
    return {"compartmentId": compartment, "input": {"type": "TEXT", "content": content}, "guardrailConfigs": configs}


@dataclass(frozen=True)
class _Finding:
    offset: int
    length: int
    text: str = field(repr=False)
    label: str


def _read(body: Any, settings: Settings) -> tuple[Verdict, list[_Finding]]:
    """The verdict and the PII findings at or over the threshold; a checked result missing or
    mis-shaped makes the answer unreadable (an upstream failure)."""
    try:
        results = body["results"]
        verdict, findings = Verdict(), []
        if "content_moderation" in settings.guardrail_checks:
            for category in results["contentModeration"]["categories"]:
                verdict.categories[_name(category["name"])] = _score(category["score"])
            if any(score >= settings.content_threshold for score in verdict.categories.values()):
                verdict.fired.append("content_moderation")
        if "prompt_injection" in settings.guardrail_checks:
            verdict.injection = _score(results["promptInjection"]["score"])
            if verdict.injection >= settings.injection_threshold:
                verdict.fired.append("prompt_injection")
        if "pii" in settings.guardrail_checks:
            for finding in results.get("personallyIdentifiableInformation") or []:
                if _score(finding["score"]) < settings.pii_threshold:
                    continue
                label = _name(finding["label"])
                offset, length, text = finding["offset"], finding["length"], finding["text"]
                if not (_count(offset) and _count(length) and isinstance(text, str)):
                    raise TypeError
                verdict.pii[label] = verdict.pii.get(label, 0) + 1
                findings.append(_Finding(offset, length, text, label))
            if verdict.pii:
                verdict.fired.append("pii")
    except (KeyError, TypeError, ValueError):
        raise UpstreamError(_UNREADABLE) from None
    return verdict, findings


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value if _NAME.fullmatch(value) else "OTHER"


def _score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _locate(joined: str, finding: _Finding, request_id: str | None) -> list[_Span]:
    """Where a finding is, in code points. OCI does not document the unit of `offset` and `length`
    (a Java service would count UTF-16 code units, Python counts code points, some count UTF-8
    bytes), so each reading is tried and the one that gives back the finding's own `text` wins.
    If none does, every occurrence of the text is redacted; if it is nowhere, the request cannot be
    redacted safely and is refused."""
    text, label = finding.text, finding.label
    for start, end in _readings(joined, finding.offset, finding.length):
        if joined[start:end] == text and end > start:
            return [_Span(start, end, label)]
    if text and text in joined:
        return [_Span(m.start(), m.end(), label) for m in re.finditer(re.escape(text), joined)]
    raise ContentBlocked("the request was blocked by guardrails: pii (personal data the function could not redact)",
                         request_id=request_id)


def _readings(joined: str, offset: int, length: int) -> Iterator[tuple[int, int]]:
    yield offset, offset + length  # code points
    for encoding, width in (("utf-16-le", 2), ("utf-8", 1)):
        ends = _unit_ends(joined, encoding, width)
        if ends[-1] == len(joined):  # ASCII-only for this encoding: same as code points
            continue
        start, end = bisect.bisect_left(ends, offset), bisect.bisect_left(ends, offset + length)
        if start < len(ends) and ends[start] == offset and end < len(ends) and ends[end] == offset + length:
            yield start, end


def _unit_ends(joined: str, encoding: str, width: int) -> list[int]:
    """ends[i] = the units before code point i (and ends[len] = all of them)."""
    ends = [0]
    for ch in joined:
        ends.append(ends[-1] + len(ch.encode(encoding)) // width)
    return ends


def _redact(texts: list[str], spans: list[_Span]) -> list[str]:
    """Each text with every span over it replaced by `[LABEL]`; overlapping spans merge (the first
    one's label), and a span across the separator is cut at it."""
    merged: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            merged[-1] = _Span(merged[-1].start, max(merged[-1].end, span.end), merged[-1].label)
        else:
            merged.append(span)
    result = []
    start = 0
    for text in texts:
        end = start + len(text)
        redacted = text
        for span in reversed([s for s in merged if s.start < end and s.end > start]):
            left, right = max(span.start, start) - start, min(span.end, end) - start
            redacted = redacted[:left] + f"[{span.label}]" + redacted[right:]
        result.append(redacted)
        start = end + len(SEPARATOR)
    return result
