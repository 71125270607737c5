"""`make doctor`: why calls to OCI Generative AI fail, found one step at a time, with the fix.

Settings, credentials, the endpoint's reachability, then one cheap signed call (and, with guardrails
on, one ApplyGuardrails call), stopping at the first failure. A direct `fn invoke` with
`{"doctor": true}` runs the same checks as the deployed function's identity (handler.py). Nothing
here prints a secret: no token, key, API key or Authorization header.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from .errors import MisconfiguredError
from .settings import SettingError, Settings

_CALL_TIMEOUT_S = 15.0
_MAX_SKEW_S = 300  # how far OCI lets a signature's date be from its clock
_SHOWN_MODELS = 6
_FUNCTION = "genai"  # func.yaml's `name:`
_CLOUD_SETTINGS = ("GENAI_PROJECT_OCID", "GENAI_REGION", "GENAI_BASE_URL", "GENAI_AUTH")
_TO_REAL_OCI = (
    "to check real OCI instead: GENAI_AUTH=session GENAI_PROJECT_OCID=ocid1.generativeaiproject... "
    "GENAI_REGION=us-chicago-1 make doctor (or set them in .env)"
)
_FIX_IAM = (
    "check the dynamic group matches this principal (for a function: resource.type = 'fnfunc'), a policy "
    "`Allow dynamic-group <dg> to use generative-ai-family in compartment <c>` (a user needs a group policy), "
    "and that GENAI_PROJECT_OCID belongs to GENAI_REGION; new policies can take a few minutes to apply"
)
_FIX_IAM_OKE = (
    "a pod's workload identity needs a policy `Allow any-user to use generative-ai-family in compartment <c> where "
    "all {request.principal.type = 'workload', request.principal.namespace = '<ns>', "
    "request.principal.service_account = '<sa>', request.principal.cluster_id = '<cluster ocid>'}` (docs/oke.md), "
    "and GENAI_PROJECT_OCID must belong to GENAI_REGION; new policies can take a few minutes to apply"
)
_FIX_RETRY = "retry later; if it persists, open a service request quoting the opc-request-id"
_FIX_NETWORK = (
    "a function's subnet needs a service gateway or NAT gateway (and a route and security-list egress rule) "
    "to reach OCI services; on a laptop check VPN, firewall and HTTPS_PROXY"
)


def diagnose(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`{"ok": bool, "checks": [{"name", "ok", "detail", "fix"}]}` for these settings (default os.environ).

    Principals read their own variables (e.g. OCI_RESOURCE_PRINCIPAL_*) from os.environ, as in the function.
    """
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str, fix: str = "") -> bool:
        checks.append({"name": name, "ok": ok, "detail": detail, "fix": "" if ok else fix})
        return ok

    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
    except MisconfiguredError as exc:
        check("settings", False, exc.message, _settings_fix(exc))
        return _report(checks)
    check("settings", True, f"model {settings.model} at {settings.base_url}, GENAI_AUTH={settings.auth}")
    _ = (
        _check_credentials(settings, check)
        and _check_reachable(settings, check)
        and _check_call(settings, check)
        and _check_guardrails(settings, check)
    )
    return _report(checks)


def _settings_fix(exc: MisconfiguredError) -> str:
    name = exc.setting if isinstance(exc, SettingError) else "<NAME>"
    return f"set it with `fn config function <app> {_FUNCTION} {name} <value>` (locally: in .env or the environment)"


def _report(checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


def _principal(settings: Settings) -> str:
    profile = f"profile [{settings.oci_profile}] of {settings.oci_config_file}"
    return {
        "resource_principal": "resource principal (the function's own identity)",
        "instance_principal": "instance principal (this compute instance)",
        "user_principal": f"user principal (API key, {profile})",
        "session": f"session token ({profile})",
        "oke_workload_identity": "OKE workload identity (this pod's service account)",
        "api_key": "OCI Generative AI API key (GENAI_API_KEY)",
    }[settings.auth]


def _credentials_fix(settings: Settings) -> str:
    profile, config = settings.oci_profile, settings.oci_config_file
    return {
        "resource_principal": "OCI Functions provides it (OCI_RESOURCE_PRINCIPAL_*); on a laptop set "
        "GENAI_AUTH=session and run `oci session authenticate`",
        "instance_principal": "only works on an OCI compute instance; elsewhere set GENAI_AUTH=session",
        "user_principal": f"check user, fingerprint, tenancy and key_file (a readable PEM; pass_phrase if "
        f"encrypted) in profile [{profile}] of {config}; `oci setup config` writes them",
        "session": f"run `oci session authenticate --profile-name {profile}`; it writes the token and key "
        f"into {config}",
        "oke_workload_identity": "run in a pod of an enhanced OKE cluster whose spec has "
        "`automountServiceAccountToken: true` (docs/oke.md); elsewhere set GENAI_AUTH=session",
        "api_key": "set GENAI_API_KEY",
    }[settings.auth]


def _check_credentials(settings: Settings, check: Any) -> bool:
    name, principal = "credentials", _principal(settings)
    if settings.auth == "api_key":
        return check(name, True, f"{principal} is set (value not shown)")
    from .upstream import make_auth  # noqa: PLC0415  (the OpenAI SDK: once settings are valid)

    try:
        credentials = make_auth(settings).credentials()  # type: ignore[union-attr]  # (a signer: not api_key)
    except MisconfiguredError as exc:
        return check(name, False, f"{principal}: {exc.message}", _credentials_fix(settings))
    if credentials.expires_at is None:
        return check(name, True, f"{principal}: key loads")
    left = credentials.expires_at - time.time()
    if left <= 0:
        fix = {
            "session": f"run `oci session refresh --profile {settings.oci_profile}` "
            f"(or `oci session authenticate` once it can no longer be refreshed)",
            "resource_principal": "OCI Functions renews it; outside a function, provide fresh "
            "OCI_RESOURCE_PRINCIPAL_* files",
        }.get(settings.auth, "restart the process so the principal fetches a new token")
        return check(name, False, f"{principal}: token expired {_duration(-left)} ago", fix)
    return check(name, True, f"{principal}: credentials load; token valid for {_duration(left)}")


def _check_reachable(settings: Settings, check: Any) -> bool:
    """Whether the endpoint accepts a connection (and TLS) within the function's own connect timeout."""
    from .upstream import _CONNECT_TIMEOUT_S  # noqa: PLC0415  (the OpenAI SDK: once settings are valid)

    name = "endpoint"
    url = urlsplit(settings.base_url)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        return check(name, True, f"{host} is reached through a proxy; the call below tests the route")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return check(
            name,
            False,
            f"DNS cannot resolve {host}",
            f"check GENAI_REGION (a region name such as us-chicago-1) or GENAI_BASE_URL; {_FIX_NETWORK}",
        )
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S) as sock:
            if url.scheme == "https":
                ssl.create_default_context().wrap_socket(sock, server_hostname=host).close()
    except ssl.SSLError as exc:
        return check(
            name,
            False,
            f"TLS with {host} failed ({exc.reason or type(exc).__name__})",
            "behind a TLS-inspecting proxy, point SSL_CERT_FILE at its CA bundle",
        )
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        return check(name, False, f"cannot connect to {host}:{port} ({reason})", _FIX_NETWORK)
    return check(name, True, f"{host}:{port} accepts connections{' (TLS ok)' if url.scheme == 'https' else ''}")


def _check_call(settings: Settings, check: Any) -> bool:
    """The function's own call, a 16-token `POST /responses` to GENAI_MODEL with store off: it proves IAM
    lets the principal in and the model is offered. OCI does not document `GET /models`: it is asked
    only for a hint when the model is refused."""
    import httpx2  # noqa: PLC0415  (a dependency of the function, not of the doctor's first steps)

    from .upstream import (  # noqa: PLC0415  (the OpenAI SDK: once settings are valid)
        _CONNECT_TIMEOUT_S,
        COMPARTMENT_HEADER,
        REQUEST_ID_HEADER,
        make_auth,
        model_not_deployed,
        oci_error_code,
    )

    name = "call"
    headers = {"OpenAI-Project": settings.project_ocid}
    if settings.compartment_ocid:
        headers[COMPARTMENT_HEADER] = settings.compartment_ocid
    if settings.auth == "api_key":
        headers["Authorization"] = f"Bearer {settings.api_key}"
    probe = {"model": settings.model, "input": "ping", "max_output_tokens": 16, "store": False}
    try:
        auth = make_auth(settings)
        with httpx2.Client(auth=auth, timeout=httpx2.Timeout(_CALL_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S)) as client:
            response = client.post(f"{settings.base_url}/responses", headers=headers, json=probe)
            missing = model_not_deployed(response) if response.status_code == 500 else None
            refused = response.status_code == 400 or missing is not None
            offered = _model_ids(client.get(f"{settings.base_url}/models", headers=headers)) if refused else set()
    except MisconfiguredError as exc:
        return check(name, False, exc.message, _credentials_fix(settings))
    except httpx2.HTTPError as exc:
        return check(name, False, f"POST /responses failed ({type(exc).__name__})", _FIX_NETWORK)
    status, code = response.status_code, oci_error_code(response)
    seen = f"HTTP {status}{' ' + code if code else ''}, opc-request-id {response.headers.get(REQUEST_ID_HEADER, '-')}"
    if status == 200:
        return check(name, True, f"signed call accepted ({seen}); {settings.model} answered")
    if missing is not None:  # OCI's 500 for a model the region does not serve: retrying never helps
        model, region = missing
        return check(
            name,
            False,
            f"model {model} is not available in OCI Generative AI region {region} ({seen})",
            _model_fix(offered),
        )
    if status == 400:
        return check(
            name,
            False,
            f"OCI refused the call to model {settings.model} ({seen}): the model may not be "
            "offered here, or may not accept the function's fields",
            _model_fix(offered),
        )
    if status == 401:
        skew = _clock_skew(response)
        detail = f"OCI did not accept the credentials ({seen})"
        if skew is not None and abs(skew) > 60:
            detail += (
                f"; this clock is {abs(skew):.0f} s {'ahead' if skew > 0 else 'behind'} (OCI allows {_MAX_SKEW_S} s)"
            )
        return check(name, False, detail, _auth_fix(settings))
    if status in (403, 404):
        fix = _FIX_IAM_OKE if settings.auth == "oke_workload_identity" else _FIX_IAM
        return check(name, False, f"IAM refused this principal, or the project or region is wrong ({seen})", fix)
    if status == 429:
        return check(
            name, False, f"throttled ({seen})", "retry in a minute; ask for a higher service limit if it persists"
        )
    if status >= 500:
        return check(
            name, False, f"OCI Generative AI failed ({seen}): a service-side error, not this setup", _FIX_RETRY
        )
    return check(name, False, f"unexpected answer ({seen})", _FIX_RETRY)


def _check_guardrails(settings: Settings, check: Any) -> bool:
    """The function's own ApplyGuardrails call on "ping", when guardrails are on."""
    if not settings.guardrails_on:
        return True
    from . import guardrails  # noqa: PLC0415  (only with guardrails on)
    from .errors import HandlerError  # noqa: PLC0415  (with the rest of this check)
    from .upstream import client_for  # noqa: PLC0415  (the OpenAI SDK: once settings are valid)

    name = "guardrails"
    try:
        compartment, request_id = guardrails.probe(client_for(settings), settings, time.monotonic() + _CALL_TIMEOUT_S)
    except MisconfiguredError as exc:
        return check(name, False, exc.message, _settings_fix(exc))
    except HandlerError as exc:
        seen = f"{exc.type}, opc-request-id {exc.request_id or '-'}"
        fix = {
            "upstream_auth": f"the policy must let this principal use generative-ai-family in the compartment "
            f"ApplyGuardrails runs in (GENAI_COMPARTMENT_OCID, else the function's own); {_FIX_IAM}",
            "timeout": _FIX_NETWORK,
        }.get(exc.type, _FIX_RETRY)
        return check(name, False, f"ApplyGuardrails failed ({seen}): {exc.message}", fix)
    return check(
        name,
        True,
        f"ApplyGuardrails answered in compartment {compartment} (opc-request-id {request_id or '-'}); "
        f"mode {settings.guardrails}, checks {', '.join(settings.guardrail_checks)}",
    )


def _auth_fix(settings: Settings) -> str:
    causes = [f"sync this machine's clock (NTP): signatures more than {_MAX_SKEW_S // 60} minutes off are refused"]
    if settings.auth == "session":
        causes.append(f"an expired session: `oci session refresh --profile {settings.oci_profile}`")
    elif settings.auth == "user_principal":
        causes.append("the key must match an API key uploaded to the user, with that fingerprint, in that tenancy")
    elif settings.auth == "api_key":
        causes.append("GENAI_API_KEY must be an active Generative AI API key for this region")
    else:
        causes.append("an expired or foreign token")
    return "; ".join(causes)


def _model_fix(offered: Any) -> str:
    shown = ", ".join(sorted(offered)[:_SHOWN_MODELS])
    hint = f" (offered here: {shown}{', ...' if len(offered) > _SHOWN_MODELS else ''})" if shown else ""
    return (
        f"set GENAI_MODEL (and GENAI_ALLOWED_MODELS) to a model this region offers{hint}, or GENAI_REGION "
        "to a region that offers this model"
    )


def _model_ids(response: Any) -> set[str]:
    if response.status_code != 200:
        return set()
    try:
        return {m["id"] for m in response.json()["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)}
    except (ValueError, KeyError, TypeError):
        return set()


def _clock_skew(response: Any) -> float | None:
    """Seconds this clock is ahead of the server's `Date`, if it sent one."""
    try:
        return time.time() - email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _laptop_environ() -> Mapping[str, str] | None:
    """What `make serve` would give the function: the environment over .env (GENAI_AUTH=session if
    unset); None when neither names a cloud setting, so there is nothing in OCI to diagnose."""
    try:
        from .local import gateway  # noqa: PLC0415  (not in the function image)
    except ImportError:
        return os.environ
    dotenv = gateway.read_dotenv(gateway.DOTENV)
    merged = {**dotenv, **os.environ}
    if not any(merged.get(name, "").strip() for name in _CLOUD_SETTINGS):
        return None
    return {**merged, **(gateway.real_oci_settings(os.environ, dotenv) or {})}


def _diagnose_local() -> dict[str, Any]:
    """With no cloud setting at all (a fresh clone), the same checks against the local endpoint `make serve`
    would use (the same stack, the same GENAI_* behaviour settings, a generated identity): with no account
    there is still a setup to check, and the report says so first."""
    from .local import gateway  # noqa: PLC0415  (not in the function image)

    with gateway.upstream(os.environ, gateway.DOTENV) as (env, _), _environ(env):
        report = diagnose(env)
    report["note"] = (
        f"no cloud settings ({', '.join(_CLOUD_SETTINGS)}) in the environment or .env, so this checked the "
        f"local endpoint {env['GENAI_BASE_URL']} with a generated resource principal (no cloud account); {_TO_REAL_OCI}"
    )
    return report


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Principals read their variables (OCI_RESOURCE_PRINCIPAL_*) from os.environ, as in a function."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    environ = _laptop_environ()
    report = _diagnose_local() if environ is None else diagnose(environ)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if "note" in report:
            print(f"note: {report['note']}")
        for c in report["checks"]:
            print(f"{'✓' if c['ok'] else '✗'} {c['name']}: {c['detail']}")
            if c["fix"]:
                print(f"  fix: {c['fix']}")
        print("all checks passed" if report["ok"] else "stopped at the first failure")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
