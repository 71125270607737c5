"""Render the deploy kit's IAM policies and API Gateway specification.

The templates in ``policies/`` stay the single source of truth, plain text a person can read and copy:
this module only fills their ``${PLACEHOLDERS}`` (Terraform templatefile's syntax). Stdlib only, so it
runs on a deployer's laptop without the function's dependencies (`python -m genai_handler.policies -h`).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .settings import ocid_pattern

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
FORMATS = ("text", "json", "oci-cli", "gateway-spec")

_COMPARTMENT_OCID = ocid_pattern("compartment", "tenancy")
_TENANCY_OCID = ocid_pattern("tenancy")
_FUNCTION_OCID = ocid_pattern("fnfunc")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,89}")
_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?")
# A browser origin exactly as browsers send it (RFC 6454 section 6.1): http(s), a lower-case host of DNS
# labels, a port 1-65535 without leading zeros; no path, user info, wildcard or IPv6 literal.
# schema.yaml and variables.tf carry the same rule anchored as ^...$ (tests/test_stack.py);
# no backslashes, so Python, YAML and HCL all read it as written.
ORIGIN = re.compile(
    "https?://[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:[.][a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    "(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
)
_ORIGIN_RULE = "CORS origin (http(s)://host[:port] in lower case, without path, wildcard or user info)"
_AUDIENCE = re.compile(r"[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]{1,255}")
# Terraform's templatefile() escape: "$${" is a literal "${" (the gateway's own context variables).
_TEMPLATE_TOKEN = re.compile(r"\$\$\{|\$\{([A-Z][A-Z0-9_]*)\}")


class KitError(ValueError):
    """A value the kit refuses: the CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class Policy:
    """One IAM policy: OCI places each policy in a compartment, so statements are grouped by it."""

    name: str
    compartment_ocid: str
    description: str
    statements: list[str]


@dataclass(frozen=True)
class Rendered:
    """Everything the function and the gateway need, in the order an administrator applies it."""

    dynamic_group_name: str
    matching_rule: str
    policies: list[Policy]

    @property
    def statements(self) -> list[str]:
        return [s for p in self.policies for s in p.statements]


def _read(name: str) -> str:
    try:
        return (POLICY_DIR / name).read_text(encoding="utf-8")
    except OSError as exc:
        raise KitError(f"cannot read the template {name}: {exc.strerror}") from None


def read_template(name: str) -> list[str]:
    """Non-comment lines of a template: one statement or matching rule per line."""
    text = _read(name)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def fill(text: str, values: dict[str, str]) -> str:
    """Substitute ``${NAME}`` and unescape ``$${`` exactly as Terraform's templatefile() does, so the
    renderer and the stack read one file the same way; an unknown placeholder is a bug in the kit."""

    def _value(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "${"
        if match.group(1) not in values:
            raise KeyError(f"no value for placeholder {match.group(0)}")
        return values[match.group(1)]

    return _TEMPLATE_TOKEN.sub(_value, text)


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise KitError(f"invalid {what}: {value!r}")
    return value


def render(
    compartment_ocid: str,
    dynamic_group: str,
    gateway_compartment_ocid: str | None = None,
    genai_compartment_ocid: str | None = None,
    function_ocid: str | None = None,
) -> Rendered:
    """Validate every value before it reaches a statement: OCI would accept a policy with a typo
    and silently grant nothing, or a crafted value could widen the grant."""
    fn_compartment = _check(compartment_ocid, _COMPARTMENT_OCID, "compartment OCID")
    gateway_compartment = _check(
        fn_compartment if gateway_compartment_ocid is None else gateway_compartment_ocid,
        _COMPARTMENT_OCID,
        "gateway compartment OCID",
    )
    genai_compartment = _check(
        fn_compartment if genai_compartment_ocid is None else genai_compartment_ocid,
        _COMPARTMENT_OCID,
        "Generative AI compartment OCID",
    )
    name = _check(dynamic_group, _NAME, "dynamic group name (letters, digits, . _ -; at most 90; starts with a letter)")
    values = {
        "DYNAMIC_GROUP": name,
        "FUNCTION_COMPARTMENT_OCID": fn_compartment,
        "GATEWAY_COMPARTMENT_OCID": gateway_compartment,
        "GENAI_COMPARTMENT_OCID": genai_compartment,
    }
    if function_ocid is not None:
        values["FUNCTION_OCID"] = _check(function_ocid, _FUNCTION_OCID, "function OCID")
        (rule,) = read_template("dynamic-group-one-function.txt")
    else:
        (rule,) = read_template("dynamic-group.txt")
    policies = [
        Policy(
            name=f"{name}-genai",
            compartment_ocid=genai_compartment,
            description=f"Functions in dynamic group {name} may call OCI Generative AI",
            statements=[fill(s, values) for s in read_template("function-policy.txt")],
        ),
        Policy(
            name=f"{name}-gateway",
            compartment_ocid=fn_compartment,
            description="API Gateway may invoke the functions in this compartment",
            statements=[fill(s, values) for s in read_template("gateway-policy.txt")],
        ),
    ]
    return Rendered(name, fill(rule, values), policies)


def render_gateway_spec(
    function_ocid: str, issuer: str, audience: str, jwks_uri: str, cors_allowed_origin: str
) -> dict:
    """Values go in as JSON strings, so json.dumps quotes them; then re-parse to prove the result."""
    values = {
        "FUNCTION_OCID": _check(function_ocid, _FUNCTION_OCID, "function OCID"),
        "ISSUER": _check(issuer, _HTTPS_URL, "issuer (an https URL)"),
        "AUDIENCE": _check(audience, _AUDIENCE, "audience"),
        "JWKS_URI": _check(jwks_uri, _HTTPS_URL, "JWKS URI (an https URL)"),
        "CORS_ALLOWED_ORIGIN": _check(cors_allowed_origin, ORIGIN, _ORIGIN_RULE),
    }
    template = _read("apigateway-deployment.json")
    quoted = {key: json.dumps(value)[1:-1] for key, value in values.items()}
    return json.loads(fill(template, quoted))


def format_text(rendered: Rendered) -> str:
    lines = [
        f"Dynamic group (create in the tenancy): {rendered.dynamic_group_name}",
        f"  Matching rule: {rendered.matching_rule}",
    ]
    for policy in rendered.policies:
        lines += ["", f"Policy {policy.name} (attach to compartment {policy.compartment_ocid}):"]
        lines += [f"  {statement}" for statement in policy.statements]
    lines += ["", "The deployers' own policy is in policies/deployer-policy.txt."]
    return "\n".join(lines)


def format_json(rendered: Rendered) -> str:
    """One object per policy: OCI attaches each to its own compartment, so a flat list of
    statements would lose where each must go."""
    return json.dumps(
        {
            "dynamic_group": {"name": rendered.dynamic_group_name, "matching_rule": rendered.matching_rule},
            "policies": [
                {
                    "name": policy.name,
                    "compartment": policy.compartment_ocid,
                    "description": policy.description,
                    "statements": policy.statements,
                }
                for policy in rendered.policies
            ],
        },
        indent=2,
    )


def format_oci_cli(rendered: Rendered, tenancy_ocid: str | None) -> str:
    """Dynamic groups live in the tenancy, whose OCID is the tenancy= line of ~/.oci/config."""
    tenancy = shlex.quote(tenancy_ocid) if tenancy_ocid else '"$TENANCY_OCID"'
    commands = [] if tenancy_ocid else ["# Set TENANCY_OCID first (the tenancy= line of ~/.oci/config)."]
    commands.append(
        shlex.join(["oci", "iam", "dynamic-group", "create"])
        + f" --compartment-id {tenancy} "
        + shlex.join(
            [
                "--name",
                rendered.dynamic_group_name,
                "--description",
                "Functions that call OCI Generative AI",
                "--matching-rule",
                rendered.matching_rule,
            ]
        )
    )
    for policy in rendered.policies:
        commands.append(
            shlex.join(
                [
                    "oci",
                    "iam",
                    "policy",
                    "create",
                    "--compartment-id",
                    policy.compartment_ocid,
                    "--name",
                    policy.name,
                    "--description",
                    policy.description,
                    "--statements",
                    json.dumps(policy.statements),
                ]
            )
        )
    return "\n".join(commands)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """argparse's multi-line usage dump would bury the reason; keep it to one line."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m genai_handler.policies", description=__doc__.split("\n\n")[0])
    parser.add_argument("--compartment-ocid", help="compartment of the Functions application")
    parser.add_argument("--dynamic-group", help="name of the function's dynamic group")
    parser.add_argument(
        "--gateway-compartment-ocid", help="compartment of the API gateway (default: --compartment-ocid)"
    )
    parser.add_argument(
        "--genai-compartment-ocid", help="compartment of the Generative AI project (default: --compartment-ocid)"
    )
    parser.add_argument("--function-ocid", help="pin the dynamic group to this function; the gateway spec's backend")
    parser.add_argument("--tenancy-ocid", help="tenancy for `oci iam dynamic-group create` (default: $TENANCY_OCID)")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--issuer", help="gateway-spec: JWT issuer URL")
    parser.add_argument("--audience", help="gateway-spec: JWT audience")
    parser.add_argument("--jwks-uri", help="gateway-spec: JWKS URL of the issuer")
    parser.add_argument("--cors-allowed-origin", help="gateway-spec: browser origin allowed to call the API")
    return parser


def _output(args: argparse.Namespace) -> str:
    if args.format == "gateway-spec":
        required = ("function_ocid", "issuer", "audience", "jwks_uri", "cors_allowed_origin")
        missing = [f"--{name.replace('_', '-')}" for name in required if getattr(args, name) is None]
        if missing:
            raise KitError(f"--format gateway-spec needs {', '.join(missing)}")
        spec = render_gateway_spec(
            args.function_ocid, args.issuer, args.audience, args.jwks_uri, args.cors_allowed_origin
        )
        return json.dumps(spec, indent=2)
    if args.compartment_ocid is None or args.dynamic_group is None:
        raise KitError("--compartment-ocid and --dynamic-group are required")
    rendered = render(
        args.compartment_ocid,
        args.dynamic_group,
        args.gateway_compartment_ocid,
        args.genai_compartment_ocid,
        args.function_ocid,
    )
    if args.format == "json":
        return format_json(rendered)
    if args.format == "oci-cli":
        tenancy = None if args.tenancy_ocid is None else _check(args.tenancy_ocid, _TENANCY_OCID, "tenancy OCID")
        return format_oci_cli(rendered, tenancy)
    return format_text(rendered)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        print(_output(args))
    except KitError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
