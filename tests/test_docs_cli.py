"""Every `oci ...` command the docs show is one that oci-cli would accept.

The reference is oci-cli itself (pinned in requirements-dev.txt to the release that pins our oci
SDK): its click command tree, walked without running a command, so nothing leaves the machine.
A command passes when its path (`oci api-gateway deployment create`) exists, each option is one
that command declares or one of the CLI's global options (which oci-cli accepts anywhere on the
line: its root group allows interspersed arguments), a literal value of a choice, boolean or
integer option is one the CLI would take, and a complete command (in a code block) carries every
option oci-cli marks "[required]". A command mentioned in prose (`oci os ns get`) only needs a
real path and real options.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from genai_handler import policies

ROOT = Path(__file__).resolve().parent.parent
SHELL_FENCES = frozenset({"", "sh", "bash", "shell", "console", "zsh"})
_PUNCTUATION = ";&|()"
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_MENTIONS_OCI = re.compile(r"(?<![\w.$/-])oci(?![\w.-])")
_LITERAL_TYPES = (click.Choice, click.types.BoolParamType, click.types.IntParamType, click.types.FloatParamType)


@dataclass(frozen=True)
class Shown:
    """An `oci` command as a page shows it: `words` are the arguments after `oci`."""

    where: str
    words: tuple[str, ...]
    complete: bool
    unparsable: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(['oci', *self.words])}"


# --- reading the commands out of Markdown ---------------------------------------------------


def shell_commands(line: str) -> Iterator[list[str]]:
    """Split one logical shell line into simple commands (at ; && || | $( ) and comments), so
    `export X=$(oci ...)` and `a && oci ...` give their `oci` commands whole."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=_PUNCTUATION)
    lexer.whitespace_split = True
    command: list[str] = []
    for token in lexer:
        if token and set(token) <= set(_PUNCTUATION):
            if command:
                yield command
            command = []
        else:
            command.append(token)
    if command:
        yield command


def oci_words(command: Sequence[str]) -> tuple[str, ...] | None:
    """The arguments of an `oci` command, after `export` and `NAME=value` prefixes; None if the
    simple command runs something else."""
    words = list(command)
    while words and (words[0] == "export" or _ASSIGNMENT.match(words[0])):
        words.pop(0)
    if len(words) > 1 and words[0] == "oci":
        return tuple(words[1:])
    return None


def _logical_lines(lines: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Join backslash-continued lines; each result keeps the number of its first line."""
    start = 0
    parts: list[str] = []
    for number, line in lines:
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def _commands_in(line: str, where: str, complete: bool) -> list[Shown]:
    if not _MENTIONS_OCI.search(line):
        return []
    try:
        commands = list(shell_commands(line))
    except ValueError as exc:  # shlex: an unclosed quote
        return [Shown(where, (), complete, unparsable=f"not a shell command line ({exc}): {line}")]
    return [Shown(where, words, complete) for command in commands if (words := oci_words(command)) is not None]


def shown_commands(text: str, name: str) -> list[Shown]:
    """The `oci` commands of a Markdown page: shell code blocks (complete commands) and inline
    code anywhere outside fence lines (mentions)."""
    found: list[Shown] = []
    block: list[tuple[int, str]] | None = None
    language = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            if block is None:
                block, language = [], stripped[3:].strip().lower()
            else:
                if language in SHELL_FENCES:
                    for start, line in _logical_lines(block):
                        found += _commands_in(line.strip().removeprefix("$ "), f"{name}:{start}", complete=True)
                block = None
            continue
        if block is not None:
            block.append((number, raw.rstrip()))
        for span in _INLINE_CODE.findall(raw):
            found += _commands_in(span, f"{name}:{number}", complete=False)
    return found


# --- checking a command against oci-cli's click tree ------------------------------------------


@functools.cache
def _root() -> click.Group:
    """oci-cli's root group with its non-service commands (session, setup, raw-request), as its
    console script `oci_cli.cli:cli` registers them; services load on demand (dynamic_loader)."""
    import oci_cli.cli  # noqa: F401, PLC0415  (registers session, setup, raw-request on the root)
    from oci_cli.cli_root import cli  # noqa: PLC0415  (oci-cli takes seconds to import: only when a test asks)

    return cli


def _load_service(name: str) -> None:
    from oci_cli import dynamic_loader  # noqa: PLC0415  (as _root: only when a test asks)

    dynamic_loader.load_service(name)


def _options(command: click.Command) -> dict[str, click.Option]:
    return {name: p for p in command.params if isinstance(p, click.Option) for name in (*p.opts, *p.secondary_opts)}


def _required(option: click.Option) -> bool:
    """oci-cli registers every option with click as optional (so its defaults file can fill one) and
    marks the required ones in their help text (oci_cli.cli_util.option)."""
    return (option.help or "").rstrip().endswith("[required]")


def _value_problem(name: str, option: click.Option, value: str) -> str | None:
    if "$" in value or not isinstance(option.type, _LITERAL_TYPES):
        return None
    try:
        option.type.convert(value, option, None)  # type: ignore[arg-type]  # click's number types take text too
    except click.BadParameter as exc:
        return f"{name} {value!r}: {exc.message}"
    return None


def _take_options(
    words: Sequence[str],
    options: dict[str, click.Option],
    keep_unknown: bool,
) -> tuple[list[str], set[str], list[str]]:
    """Consume the options `options` declares (and their values) as click's parser would.
    Returns what is left, the options seen (by their first name), and the problems found."""
    rest: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        name, equals, value = word.partition("=")
        if not word.startswith("-") or len(word) == 1:
            rest.append(word)
        elif name in options:
            option = options[name]
            seen.add(option.opts[0])
            if not option.is_flag and not option.count and not equals:
                if index + 1 >= len(words):
                    problems.append(f"{name} needs a value")
                    break
                index += 1
                value = words[index]
            if not option.is_flag:
                problem = _value_problem(name, option, value)
                if problem:
                    problems.append(problem)
        elif keep_unknown:
            rest.append(word)
        else:
            problems.append(f"no such option: {name}")
        index += 1
    return rest, seen, problems


def command_problems(shown: Shown) -> list[str]:
    """What oci-cli would refuse in this command; empty when it would accept it."""
    if shown.unparsable:
        return [shown.unparsable]
    root = _root()
    # The root group parses with allow_interspersed_args and ignore_unknown_options: global
    # options are taken wherever they stand, everything else passes on to the subcommand.
    words, _, problems = _take_options(shown.words, _options(root), keep_unknown=True)
    command: click.Command = root
    path = ["oci"]
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        if command is root:
            _load_service(words[0])
        sub = command.commands.get(words[0])
        if sub is None:
            return [f"{' '.join(path)} has no command {words[0]!r}"]
        command, words = sub, words[1:]
        path.append(sub.name or "")
    if isinstance(command, click.Group):
        if shown.complete or len(words):
            return [f"{' '.join(path)} is a group, not a command"]
        return problems
    rest, seen, option_problems = _take_options(words, _options(command), keep_unknown=False)
    problems += option_problems
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if len(rest) > sum(1 if p.nargs == 1 else len(rest) for p in arguments):
        problems.append(f"unexpected arguments: {rest}")
    if shown.complete and "--from-json" not in seen:
        missing = [p.opts[0] for p in _options(command).values() if _required(p) and p.opts[0] not in seen]
        problems += [f"missing required option {name}" for name in dict.fromkeys(missing)]
    return problems


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _all_shown() -> list[Shown]:
    return [
        s for page in _pages() for s in shown_commands(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    ]


# --- the checker is a real check ----------------------------------------------------------------

_GOOD = [
    "oci os ns get --query data --raw-output",
    "oci --profile DEFAULT --region us-chicago-1 os ns get --output json",
    "oci iam policy create -c ocid1.compartment.oc1..a --name n --description d --statements '[\"x\"]'",
    "oci api-gateway gateway create --compartment-id c --endpoint-type PUBLIC --subnet-id s --wait-for-state succeeded",
    "oci api-gateway deployment create --from-json file://deployment.json",
    "oci session authenticate --region us-chicago-1 --profile-name DEFAULT",
]
_BAD = [
    (
        "oci api-gateway deployment create --compartment-id c --gateway-id g --path-prefix /p "
        "--specification file://s.json --wait-for-status SUCCEEDED",
        "no such option: --wait-for-status",
    ),
    ("oci api-gateway deployments create --compartment-id c", "has no command 'deployments'"),
    (
        "oci api-gateway deployment create --gateway-id g --specification file://s.json",
        "missing required option --compartment-id",
    ),
    (
        "oci api-gateway gateway create --compartment-id c --endpoint-type PUBLIC --subnet-id s --wait-for-state DONE",
        "--wait-for-state 'DONE'",
    ),
    (
        "oci artifacts container repository create --compartment-id c --display-name r --is-public maybe",
        "--is-public 'maybe'",
    ),
    ("oci api-gateway gateway --compartment-id c", "is a group, not a command"),
    ("oci os ns get extra", "unexpected arguments"),
    ("oci os ns get --query", "--query needs a value"),
    ("oci genai chat --prompt hi", "has no command 'genai'"),
]


def _shown(line: str, complete: bool = True) -> Shown:
    (command,) = list(shell_commands(line))
    words = oci_words(command)
    assert words is not None
    return Shown("example", words, complete)


@pytest.mark.parametrize("line", _GOOD)
def test_given_a_real_command_when_checked_then_oci_cli_accepts_it(line: str) -> None:
    # given / when / then
    assert command_problems(_shown(line)) == []


@pytest.mark.parametrize(("line", "reason"), _BAD, ids=[reason for _, reason in _BAD])
def test_given_a_made_up_command_when_checked_then_it_is_refused_with_the_reason(line: str, reason: str) -> None:
    # given / when
    problems = command_problems(_shown(line))
    # then
    assert any(reason in problem for problem in problems), problems


def test_given_a_mention_in_prose_when_checked_then_only_path_and_options_must_be_real() -> None:
    # given / when / then
    assert command_problems(_shown("oci iam dynamic-group create", complete=False)) == []
    assert command_problems(_shown("oci api-gateway", complete=False)) == []
    assert command_problems(_shown("oci iam dynamic-group make", complete=False)) != []


def test_given_markdown_when_read_then_blocks_continuations_substitutions_and_inline_code_are_found() -> None:
    # given
    page = "\n".join(
        [
            "Run `oci os ns get` first; the `oci` CLI is configured.",
            "",
            "  ```sh",
            "  export NS=$(oci os ns get --query data --raw-output)   # the namespace",
            '  oci iam policy create --compartment-id "$C" \\',
            "    --name n --description d \\",
            "    --statements '[\"a; b\"]' && echo done",
            "  fn invoke app oci",
            "  ```",
            "```text",
            "oci not a command here",
            "```",
        ]
    )
    # when
    found = shown_commands(page, "page.md")
    # then
    assert [(s.where, s.words, s.complete) for s in found] == [
        ("page.md:1", ("os", "ns", "get"), False),
        ("page.md:4", ("os", "ns", "get", "--query", "data", "--raw-output"), True),
        (
            "page.md:5",
            (
                "iam",
                "policy",
                "create",
                "--compartment-id",
                "$C",
                "--name",
                "n",
                "--description",
                "d",
                "--statements",
                '["a; b"]',
            ),
            True,
        ),
    ]


# --- the docs -------------------------------------------------------------------------------------


def test_given_an_unclosed_quote_when_read_then_the_line_is_reported_not_skipped() -> None:
    # given
    page = "```sh\noci iam policy create --name 'unclosed\n```"
    # when
    (shown,) = shown_commands(page, "page.md")
    # then
    assert command_problems(shown)[0].startswith("not a shell command line")


def test_given_the_docs_when_read_then_they_show_oci_commands_to_check() -> None:
    # given / when
    found = _all_shown()
    # then: guards the extraction itself (a parser that found nothing would pass everything)
    assert sum(s.complete for s in found) >= 6
    assert any(
        s.where.startswith("docs/deploy.md") and s.words[:3] == ("api-gateway", "deployment", "create") for s in found
    )


@pytest.mark.parametrize("shown", _all_shown(), ids=str)
def test_given_an_oci_command_in_the_docs_when_checked_then_oci_cli_accepts_it(shown: Shown) -> None:
    # given / when
    problems = command_problems(shown)
    # then
    assert problems == [], f"{shown}: {problems}"


# --- the renderer's --format oci-cli output --------------------------------------------------------


@pytest.mark.parametrize(
    "tenancy", [["--tenancy-ocid", "ocid1.tenancy.oc1..aaaaaaaatenancy"], []], ids=["tenancy", "variable"]
)
@pytest.mark.parametrize(
    "pin", [[], ["--function-ocid", "ocid1.fnfunc.oc1.us-chicago-1.aaaaaaaafunction"]], ids=["compartment", "pinned"]
)
def test_given_the_renderer_when_it_prints_oci_cli_commands_then_oci_cli_accepts_each(
    tenancy: list[str],
    pin: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given
    argv = [
        "--compartment-ocid",
        "ocid1.compartment.oc1..aaaaaaaafn",
        "--dynamic-group",
        "genai-functions",
        "--gateway-compartment-ocid",
        "ocid1.compartment.oc1..aaaaaaaagw",
        *tenancy,
        *pin,
        "--format",
        "oci-cli",
    ]
    # when
    assert policies.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = [
        Shown(f"line {n}", words, True)
        for n, line in enumerate(lines, 1)
        for command in shell_commands(line)
        if (words := oci_words(command)) is not None
    ]
    # then: one dynamic group and two policies, each accepted as a complete command
    assert [s.words[:3] for s in shown] == [
        ("iam", "dynamic-group", "create"),
        ("iam", "policy", "create"),
        ("iam", "policy", "create"),
    ]
    for command in shown:
        assert command_problems(command) == [], str(command)
