"""README.md and docs/ against the code they describe, and the files that must agree with them.

Each check reads the documentation as a user would follow it (the commands in its code, its
links, its settings table) and compares it with the source of truth: settings.ENV, errors.py,
the Makefile, func.yaml, the API Gateway specification and settings.DEFAULT_MODEL.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from genai_handler import errors, settings
from genai_handler.local import contract_docs
from genai_handler.settings import DEFAULT_MODEL, ENV

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# Models the docs name as examples of a second, non-default model; never the default itself.
OTHER_EXAMPLE_MODELS = {"openai.gpt-oss-120b"}
_MODEL_ID = re.compile(r"\b(?:xai|openai|google|meta|cohere|mistralai)\.[a-z0-9][a-z0-9.]*-[a-z0-9.-]*[a-z0-9]")
# Where a default model could be named besides settings.py.
# The bench's own sources, not the virtualenvs `make bench` builds beside them (bench/.venv-*).
BENCH_SOURCES = sorted(
    path
    for top in (ROOT / "bench").iterdir()
    if not top.name.startswith(".")  # walking the virtualenvs took 1.4 s of every pytest process
    for path in ([top] if top.is_file() else top.rglob("*.py"))
    if path.suffix == ".py"
)
DEFAULT_MODEL_FILES = [
    *PAGES,
    ROOT / "func.yaml",
    ROOT / "bench" / "README.md",
    *BENCH_SOURCES,
    *sorted((ROOT / "policies" / "terraform").glob("*.tf")),
    *sorted((ROOT / "policies" / "terraform").glob("*.example")),
]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _code(markdown: str) -> list[str]:
    """Fenced blocks and inline code spans: the text a reader copies and runs."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    without_code = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", without_code, flags=re.M)}


def _func_yaml_config() -> dict[str, Any]:
    """func.yaml's `config:` map, the one `fn deploy` sends, read by PyYAML."""
    return yaml.safe_load(_text(ROOT / "func.yaml")).get("config") or {}


def _fn_config_settings() -> set[str]:
    """Every setting the docs tell users to set with `fn config function <app> <fn> NAME value`."""
    found: set[str] = set()
    for page in PAGES:
        for code in _code(_text(page)):
            found |= set(re.findall(r"fn config function\s+\S+\s+\S+\s+([A-Z][A-Z0-9_]*)", code))
    return found


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", _text(ROOT / "Makefile"), flags=re.M))


def _handler_errors() -> set[type[errors.HandlerError]]:
    found, todo = set(), [errors.HandlerError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def models_named_unlike(default: str) -> list[str]:
    """Every file:model where a file names a model that is neither `default` nor a known other example."""
    wrong = []
    for path in DEFAULT_MODEL_FILES:
        for model in sorted(set(_MODEL_ID.findall(_text(path)))):
            if model != default and model not in OTHER_EXAMPLE_MODELS:
                wrong.append(f"{path.relative_to(ROOT)}: {model}")
    return wrong


def test_given_bench_virtualenvs_when_scanning_for_default_models_then_only_the_bench_sources_are_read() -> None:
    # given make bench leaves bench/.venv-* with the oci SDK in it, which names many models
    # when / then
    assert ROOT / "bench" / "bench.py" in BENCH_SOURCES
    assert not [p for p in BENCH_SOURCES if ".venv" in str(p.relative_to(ROOT))]


# --- settings -------------------------------------------------------------------------------


def test_given_settings_env_when_the_settings_page_is_read_then_every_setting_is_documented() -> None:
    # when
    table = _text(DOCS / "settings.md")
    missing = [name for name in ENV if f"`{name}`" not in table]
    # then
    assert not missing, f"settings.ENV names these, docs/settings.md doesn't: {missing}"


def test_given_the_docs_when_they_name_genai_settings_then_every_one_exists() -> None:
    # when
    named = {name for page in PAGES for name in re.findall(r"\bGENAI_[A-Z0-9_]*[A-Z0-9]", _text(page))}
    # then
    unknown = named - set(ENV)
    assert not unknown, f"documented but not in settings.ENV: {sorted(unknown)}"


def test_given_the_settings_declarations_when_the_table_is_written_then_the_page_already_holds_it() -> None:
    # given
    page = _text(settings.PAGE)
    # when / then
    assert settings.page_with_table(page) == page, (
        "docs/settings.md's table differs from genai_handler/settings.py: "
        "run .venv/bin/python -m genai_handler.settings --write"
    )


def test_given_settings_set_with_fn_config_when_func_yaml_is_deployed_then_a_redeploy_cannot_undo_them() -> None:
    # given the settings the docs tell users to set with `fn config function`
    told = _fn_config_settings()
    assert "GENAI_PROJECT_OCID" in told  # the one required setting is among them
    # when func.yaml is read as `fn deploy` sends it
    config = _func_yaml_config()
    # then it sends none of them, so a redeploy cannot overwrite them
    assert not told & set(config), f"func.yaml's config: would overwrite {sorted(told & set(config))} on every deploy"


def test_given_func_yaml_when_read_then_it_holds_no_value_a_user_must_replace() -> None:
    # when
    text = _text(ROOT / "func.yaml")
    config = _func_yaml_config()
    # then
    assert "REPLACE_ME" not in text.upper()
    assert not re.search(r"^[^#]*<[^>]*>", text, flags=re.M), "a <placeholder> outside a comment"
    empty = [key for key, value in config.items() if value is None or value == ""]
    assert not empty, f"empty values in func.yaml's config: {empty}"


# --- errors ---------------------------------------------------------------------------------


def test_given_errors_py_when_the_contract_page_is_read_then_every_error_type_is_in_it() -> None:
    # when
    contract = _text(DOCS / "contracts.md")
    rows = {(m[0], m[1]) for m in re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", contract, flags=re.M)}
    # then
    missing = [(e.status, e.type) for e in _handler_errors() if (str(e.status), e.type) not in rows]
    assert not missing, f"errors.py defines these (status, type), docs/contracts.md's table doesn't: {missing}"


# --- commands and links ---------------------------------------------------------------------


def test_given_the_docs_when_they_mention_make_targets_then_every_one_exists() -> None:
    # given
    targets = _makefile_targets()
    # when
    mentioned = {
        (page.name, target)
        for page in PAGES
        for code in _code(_text(page))
        for target in re.findall(r"(?:^|[\s;&|(])make ([a-z][a-z0-9-]*)", code, flags=re.M)
    }
    # then
    assert {t for _, t in mentioned} >= {"run", "test", "serve", "doctor", "clean"}
    unknown = sorted((page, target) for page, target in mentioned if target not in targets)
    assert not unknown, f"no such Makefile target: {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_given_a_docs_page_when_its_relative_links_are_followed_then_every_one_resolves(page: Path) -> None:
    # given
    text = _text(page)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    # when
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(_text(linked))):
            broken.append(target)
    # then
    assert not broken, f"{page.name}: {broken}"


def test_given_the_docs_pages_when_the_readme_is_read_then_it_links_every_one() -> None:
    # when
    readme = _text(ROOT / "README.md")
    # then
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in readme, page.name


def test_given_the_docs_commands_when_they_run_python_then_they_say_python3_or_the_venv_python() -> None:
    # a bare `python` is Python 2 or missing on many systems; the venv's is `.venv/bin/python`
    # when
    bare = [
        (page.name, line.strip())
        for page in PAGES
        for code in _code(_text(page))
        for line in code.splitlines()
        if re.search(r"(?<![\w/.-])python -[cm]\b", line)
    ]
    # then
    assert not bare, bare


def test_given_the_docs_when_they_name_cors_settings_then_they_are_the_specifications_placeholders() -> None:
    # given
    spec = _text(ROOT / "policies" / "apigateway-deployment.json")
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", spec))
    # when
    named = {name for page in PAGES for name in re.findall(r"\bCORS_[A-Z_]*[A-Z]", _text(page))}
    # then
    assert named and named <= placeholders, named - placeholders


def test_given_a_real_jwt_when_the_token_decoding_command_runs_then_it_prints_the_claims() -> None:
    # given a JWT as identity domains issue them: base64url, no padding, with '-' and '_'
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {
        "aud": "https://genai-api.example.com/",
        "iss": "https://identity.oraclecloud.com/",
        "sub": "\u00ff\u00fe>>>???",
        "x": "a",
    }
    payload = json.dumps(claims).encode()
    assert len(part(payload)) % 4 and re.search(r"[-_]", part(payload))
    header = part(json.dumps({"alg": "RS256"}).encode())
    token = f"{header}.{part(payload)}.{part(b'signature')}"
    # when the command the troubleshooting section gives is run on it
    deploy = _text(DOCS / "deploy.md")
    section = deploy[deploy.index("## Decode a token") :]
    (command,) = [line for line in _code(section) if line.startswith("python3 -c")]
    code = re.fullmatch(r"python3 -c '(.*)' \"\$TOKEN\"", command.strip())
    assert code, command
    decoded = subprocess.run([sys.executable, "-c", code[1], token], capture_output=True, text=True, check=True)
    # then it prints the claims
    assert json.loads(decoded.stdout) == claims


# --- one default model ----------------------------------------------------------------------


def test_given_the_files_when_scanned_for_models_then_none_names_a_default_other_than_settings() -> None:
    # given
    assert DEFAULT_MODEL not in OTHER_EXAMPLE_MODELS
    # when / then
    assert not models_named_unlike(DEFAULT_MODEL)


def test_given_the_files_when_the_default_model_changes_then_every_file_naming_the_old_one_is_reported() -> None:
    # given the files as they are
    # when the default moves to another model
    reported = models_named_unlike("vendor.some-new-model-1")
    # then besides settings.py, only the generated settings page and the agents example (which must
    # name a model for the Agents SDK) are flagged: other examples let the function default it
    flagged = {line.split(":")[0] for line in reported}
    assert flagged == {"docs/settings.md", "docs/agents.md"}


def test_given_the_settings_page_and_terraform_when_read_then_the_page_names_the_default_and_terraform_defers() -> None:
    # when
    table = _text(DOCS / "settings.md")
    (row,) = [line for line in table.splitlines() if line.startswith("| `GENAI_MODEL` |")]
    # then
    assert f"`{DEFAULT_MODEL}`" in row.split("|")[2]
    # when
    variables = _text(ROOT / "policies" / "terraform" / "variables.tf")
    block = variables[variables.index('variable "genai_model"') :]
    block = block[: block.index("\n}") + 2]
    # then Terraform points at the page rather than naming the model a second time
    assert DEFAULT_MODEL not in block and "the function's default (docs/settings.md)" in block
    assert re.search(r"default\s*=\s*null", block), "Terraform leaves the default to the function"


def test_given_the_bench_baseline_when_read_then_it_takes_the_model_it_is_given() -> None:
    # when
    baseline = _text(ROOT / "bench" / "baseline" / "func.py")
    # then
    assert not _MODEL_ID.search(baseline)
    assert 'os.environ["GENAI_MODEL"]' in baseline
    assert '"GENAI_MODEL": DEFAULT_MODEL' in _text(ROOT / "bench" / "bench.py")


def test_given_the_packages_modules_when_the_readmes_wiring_is_read_then_it_names_every_one() -> None:
    # given the "How it is wired" block and the package's modules
    wiring = _text(ROOT / "README.md").split("## How it is wired", 1)[1].split("```", 2)[1]
    modules = {p.name for p in (ROOT / "genai_handler").glob("*.py") if p.name != "__init__.py"}
    # then each module has its line there
    missing = sorted(name for name in modules if f"  {name} " not in wiring)
    assert not missing, f"README.md's wiring block does not name {missing}"


def test_given_the_contract_declaration_when_the_tables_are_written_then_the_page_already_holds_them() -> None:
    # given
    page = _text(contract_docs.PAGE)
    # when / then
    assert contract_docs.page_with_tables(page) == page, (
        "docs/contracts.md's field tables differ from genai_handler/contract.py: "
        "run .venv/bin/python -m genai_handler.local.contract_docs --write"
    )
