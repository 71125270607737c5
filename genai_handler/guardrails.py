"""Screen a request with OCI Generative AI's ApplyGuardrails before the model sees it (GENAI_GUARDRAILS).

Every text the model reads is screened in one call, on the container's pooled client and within the
invocation's deadline, and the findings are mapped back onto each text. Imported only when guardrails
are on. No text the service flags or returns reaches an error message or a log line: only check
names, category names, labels, counts and scores do.
"""

from __future__ import annotations

import bisect
import itertools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai

from .auth import SESSION_KEY_ID, _claims  # one JWT reader for the package
from .contract import Kind, Request, Text, texts, with_texts
from .errors import ContentBlocked, HandlerError, MisconfiguredError, UpstreamError, UpstreamTimeout
from .settings import SettingError, Settings, ocid_pattern
from .upstream import post_oci

# The service's shapes are the oci SDK's (2.189.0, oci/generative_ai_inference): apply_guardrails is
# POST base_path '/20231130' + resource_path '/actions/applyGuardrails'; see _details and _read.
PATH = "/20231130/actions/applyGuardrails"
# Oracle's "Guardrails for OCI Generative AI" page: content moderation returns OVERALL (offensive or
# harmful language) and BLOCKLIST (OCI's predefined blocked words), each scored 0.0 or 1.0.
CATEGORIES = ("OVERALL", "BLOCKLIST")
SEPARATOR = "\n\n"  # between the texts joined into the one input screened
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
        fields: dict[str, Any] = {
            "mode": mode,
            "fired": self.fired,
            "request_id": self.request_id,
            "ms": round(self.latency_ms, 1),
        }
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
    client: openai.OpenAI, settings: Settings, request: Request, deadline: float, log: dict[str, Any]
) -> Request:
    """The request to send the model (PII redacted if asked); `log` gets the invocation's
    `guardrails` log fields, also when this raises.

    Raises ContentBlocked in block mode when a check fires. When the service fails, block mode (and
    PII redaction in any mode: the original spans must never reach the model) fails closed with the
    service's error; inform mode fails open and says in the log that the check was skipped.
    """
    found = texts(request)
    joined = SEPARATOR.join(text.text for text in found)
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
        return request
    verdict.request_id = request_id
    verdict.latency_ms = (time.monotonic() - started) * 1000
    log.update(verdict.log_fields(settings.guardrails))
    blocking = [c for c in verdict.fired if c != "pii" or settings.pii_action == "block"]
    if settings.guardrails == "block" and blocking:
        raise ContentBlocked(f"the request was blocked by guardrails: {', '.join(blocking)}", request_id=request_id)
    if settings.pii_action == "redact" and findings:
        request = _redacted(request, found, joined, findings, _Clock(deadline, request_id))
        log["redacted"] = len(findings)
    return request


def probe(client: openai.OpenAI, settings: Settings, deadline: float) -> tuple[str, str | None]:
    """One harmless ApplyGuardrails call for the doctor: (the compartment it ran in, opc-request-id).
    Raises the function's own errors, so the doctor reports what an invocation would meet."""
    compartment = _compartment(client, settings)
    body, request_id = post_oci(client, _url(settings), _details(settings, compartment, "ping"), deadline)
    _read(body, settings)
    return compartment, request_id


@dataclass(frozen=True)
class _Clock:
    """The invocation's deadline inside redaction, which is local work but must end by it too."""

    deadline: float
    request_id: str | None

    def check(self) -> None:
        if time.monotonic() >= self.deadline:
            raise UpstreamTimeout(
                "the request could not be screened before the invocation deadline", request_id=self.request_id
            )


def _redacted(request: Request, found: list[Text], joined: str, findings: list[_Finding], clock: _Clock) -> Request:
    """The request with every PII span replaced by its label; refused when a span cannot be
    redacted (not found again, in a name the model needs as sent, or breaking a JSON text)."""
    locator = _Locator(joined, clock)
    spans = [span for finding in findings for span in locator.spans(finding)]
    redacted = _redact([text.text for text in found], spans, clock)
    fixed = [text.at for text, new in zip(found, redacted, strict=True) if new != text.text and text.kind is Kind.NAME]
    try:
        if fixed:
            raise ValueError(fixed)
        return with_texts(request, redacted)
    except ValueError:
        raise _unredactable(clock.request_id) from None


def _unredactable(request_id: str | None) -> ContentBlocked:
    return ContentBlocked(
        "the request was blocked by guardrails: pii (personal data the function could not redact)",
        request_id=request_id,
    )


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
        session = key_id.startswith(SESSION_KEY_ID)
        claim = (_claims(key_id.removeprefix(SESSION_KEY_ID)) or {}).get("res_compartment") if session else None
        if not isinstance(claim, str) or not _COMPARTMENT.fullmatch(claim):
            raise SettingError(
                "GENAI_COMPARTMENT_OCID",
                "GENAI_COMPARTMENT_OCID is required for GENAI_GUARDRAILS: the "
                "function's identity names no compartment to run ApplyGuardrails in",
            )
        found = _compartments[settings] = claim
    return found


def _details(settings: Settings, compartment: str, content: str) -> dict[str, Any]:
    """ApplyGuardrailsDetails as the oci SDK serialises it, with only the checks asked for: {compartmentId,
    input: GuardrailsTextInput {type: "TEXT", content, languageCode?}, guardrailConfigs: GuardrailConfigs
    {contentModerationConfig: {categories}, personallyIdentifiableInformationConfig: {types},
    promptInjectionConfig: {}}}."""
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
    mis-shaped makes the answer unreadable (an upstream failure). The oci SDK's ApplyGuardrailsResult:
    {results: GuardrailsResults {contentModeration: {categories: [CategoryScore {name, score}]},
    personallyIdentifiableInformation: [{offset, length, text, label, score}], promptInjection: {score}},
    guardrailVersion: {version}}."""
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


class _Locator:
    """Finds each finding in the joined text, in code points. OCI does not document the unit of
    `offset` and `length` (a Java service would count UTF-16 code units, Python counts code points,
    some count UTF-8 bytes), so each reading is tried and the one that gives back the finding's own
    `text` wins. If none does, every occurrence of the text is redacted; if it is nowhere, the
    request cannot be redacted safely and is refused. Offset tables are built once per unit, and a
    text's occurrences once per text: linear in the text and the number of findings."""

    _UNITS: tuple[tuple[str, Callable[[int], int]], ...] = (
        ("utf-16", lambda o: 2 if o > 0xFFFF else 1),
        ("utf-8", lambda o: 1 + (o > 0x7F) + (o > 0x7FF) + (o > 0xFFFF)),
    )

    def __init__(self, joined: str, clock: _Clock) -> None:
        self._joined = joined
        self._clock = clock
        self._ends: dict[str, list[int] | None] = {}
        self._occurrences: dict[str, list[tuple[int, int]]] = {}

    def spans(self, finding: _Finding) -> list[_Span]:
        self._clock.check()
        for start, end in self._readings(finding.offset, finding.length):
            if end > start and self._joined[start:end] == finding.text:
                return [_Span(start, end, finding.label)]
        occurrences = self._occurrences.get(finding.text)
        if occurrences is None and finding.text:
            pattern = re.escape(finding.text)
            occurrences = self._occurrences[finding.text] = [m.span() for m in re.finditer(pattern, self._joined)]
        if not occurrences:
            raise _unredactable(self._clock.request_id)
        return [_Span(start, end, finding.label) for start, end in occurrences]

    def _readings(self, offset: int, length: int) -> Iterator[tuple[int, int]]:
        yield offset, offset + length  # code points
        for unit, width in self._UNITS:
            ends = self._unit_ends(unit, width)
            if ends is None:
                continue
            start, end = bisect.bisect_left(ends, offset), bisect.bisect_left(ends, offset + length)
            if start < len(ends) and ends[start] == offset and end < len(ends) and ends[end] == offset + length:
                yield start, end

    def _unit_ends(self, unit: str, width: Callable[[int], int]) -> list[int] | None:
        """ends[i] = the units before code point i (ends[len] = all of them); None when every code
        point is one unit, so the reading is the code points' own."""
        if unit not in self._ends:
            self._clock.check()
            ends = list(itertools.accumulate((width(ord(ch)) for ch in self._joined), initial=0))
            self._ends[unit] = ends if ends[-1] != len(self._joined) else None
        return self._ends[unit]


def _redact(texts: list[str], spans: list[_Span], clock: _Clock) -> list[str]:
    """Each text with every span over it replaced by `[LABEL]`; overlapping spans merge (the first
    one's label), and a span across the separator is cut at it. One pass over texts and spans."""
    merged: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            merged[-1] = _Span(merged[-1].start, max(merged[-1].end, span.end), merged[-1].label)
        else:
            merged.append(span)
    clock.check()
    result, first, start = [], 0, 0
    for text in texts:
        end = start + len(text)
        while first < len(merged) and merged[first].end <= start:
            first += 1
        pieces, cursor, i = [], 0, first
        while i < len(merged) and merged[i].start < end:
            left, right = max(merged[i].start, start) - start, min(merged[i].end, end) - start
            pieces += [text[cursor:left], f"[{merged[i].label}]"]
            cursor, i = right, i + 1
        result.append("".join(pieces) + text[cursor:] if pieces else text)
        start = end + len(SEPARATOR)
    return result
