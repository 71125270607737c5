"""`make stack` and `make image`: the Resource Manager zip, and the function image the stack runs.

    python3 -m genai_handler.local.stack zip [--out dist/genai-stack.zip]
    python3 -m genai_handler.local.stack image --region us-chicago-1 --namespace NS [--print-url]

The zip holds schema.yaml and the .tf files at its root (Resource Manager reads the schema there)
and, beside them, exactly the templates the .tf files read, so `local.kit` resolves inside it.
The image is what the manual path's `fn deploy` pushes: `fn build` tags <FN_REGISTRY>/<func.yaml
name>:<func.yaml version> (fn CLI, common/funcfile.go ImageNameV20180708), with the registry
<region-key>.ocir.io/<namespace>/genai as in docs/deploy.md step 3; then `docker push`.

Stdlib only, and kept out of the function image (.dockerignore: genai_handler/local).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..settings import REGION_KEYS

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "policies" / "terraform"
KIT = STACK.parent
DEFAULT_ZIP = ROOT / "dist" / "genai-stack.zip"
FUNC_YAML = ROOT / "func.yaml"
REGISTRY_PATH = "genai"
# Fixed timestamps: the same sources always give the same zip bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_KIT_READ = re.compile(r"\$\{local\.kit\}/([A-Za-z0-9_.-]+)")
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_YAML_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*):(?:[ \t]+(.*))?")
_YAML_INT = re.compile(r"[-+]?[0-9]+")
_YAML_COMMENT = re.compile(r"[ \t]#.*")
# Plain scalars starting with these mean flow collections, anchors, tags or block text: not read here.
_YAML_UNREAD = tuple("{[&*!|>%@`")


class StackError(Exception):
    """A reason to stop, printed as one line; the command exits 2."""


def kit_files() -> list[str]:
    """The files one folder up that the .tf files read through ${local.kit}/<name>."""
    names = {name for tf in sorted(STACK.glob("*.tf")) for name in _KIT_READ.findall(tf.read_text(encoding="utf-8"))}
    return sorted(names)


def stack_members() -> dict[str, Path]:
    """Zip member name -> source file: the stack's root files, then the templates it reads."""
    members = {path.name: path for path in sorted(STACK.glob("*.tf"))}
    members["schema.yaml"] = STACK / "schema.yaml"
    for name in kit_files():
        if name in members:
            raise StackError(f"{name} would shadow a stack file in the zip")
        members[name] = KIT / name
    missing = [name for name, path in members.items() if not path.is_file()]
    if missing:
        raise StackError(f"missing from the repository: {', '.join(missing)}")
    return members


def build_zip(out: Path) -> list[str]:
    """Write the Resource Manager zip; returns its member names."""
    members = stack_members()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in members.items():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    partial.replace(out)
    return list(members)


@dataclass(frozen=True)
class FuncYaml:
    """What the local tools read from func.yaml: its top-level scalars and its `config:` map.

    Values are as YAML types them where that matters here: a decimal integer is an int, anything
    else a string. Other nested blocks (`triggers:`, `build:`) are skipped."""

    scalars: dict[str, str | int]
    config: dict[str, str | int]

    @property
    def name(self) -> str:
        return self._required("name")

    @property
    def version(self) -> str:
        return self._required("version")

    @property
    def timeout_s(self) -> int | None:
        """`timeout:` in seconds; None when absent or not a whole number, for the caller's default."""
        timeout = self.scalars.get("timeout")
        return timeout if isinstance(timeout, int) and timeout >= 0 else None

    def _required(self, key: str) -> str:
        if key not in self.scalars:
            raise StackError(f"func.yaml needs top-level {key}:")
        return str(self.scalars[key])


def read_func_yaml(path: Path = FUNC_YAML) -> FuncYaml:
    """func.yaml read with the standard library (make stack and make image run on the system python3).

    It reads the block-style YAML that `fn init` writes: `key: value` lines, comments, quoted values,
    and indented blocks. StackError names a line it cannot read faithfully; OSError if it cannot be read."""
    scalars: dict[str, str | int] = {}
    config: dict[str, str | int] = {}
    block: str | None = None  # the top-level key whose indented lines follow
    margin: str | None = None  # the indentation of config's entries
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {number}"
        indent = line[: len(line) - len(line.lstrip())]
        nested = bool(indent) or line.startswith("-")
        if nested and block is None:
            raise StackError(f"{where}: indented, but under no key")
        if nested and block != "config":
            continue  # another block (triggers:, build:): nothing here reads it
        if nested and margin is None:
            margin = indent
        match = _YAML_KEY.fullmatch(line.strip())
        if match is None or (nested and indent != margin):
            raise StackError(f"{where}: not a `key: value` line" + (" of config:" if nested else ""))
        key, text = match[1], (match[2] or "").strip()
        if nested:
            config[key] = _yaml_scalar(text, where)
        elif _YAML_COMMENT.sub("", " " + text).strip():
            block = None
            scalars[key] = _yaml_scalar(text, where)
        else:
            block, margin = key, None
            scalars.pop(key, None)
            if key == "config":
                config = {}
    return FuncYaml(scalars, config)


def _yaml_scalar(text: str, where: str) -> str | int:
    """One value: quoted (YAML's single-quote rule, JSON's escapes in double quotes) or plain, with a
    trailing ` #` comment dropped; plain decimal digits are an int."""
    if text.startswith(("'", '"')):
        quote = text[0]
        end = text.find(quote, 1)
        while quote == "'" and text.startswith("''", end):
            end = text.find(quote, end + 2)
        while quote == '"' and end > 0 and (len(text[:end]) - len(text[:end].rstrip("\\"))) % 2:
            end = text.find(quote, end + 1)
        if end < 0 or _YAML_COMMENT.sub("", " " + text[end + 1 :]).strip():
            raise StackError(f"{where}: a quoted value must close on its line, followed only by a comment")
        if quote == "'":
            return text[1:end].replace("''", "'")
        try:
            return str(json.loads(text[: end + 1]))
        except ValueError:
            raise StackError(f"{where}: a double-quoted value with an escape JSON does not share") from None
    plain = _YAML_COMMENT.sub("", " " + text).strip()
    if plain.startswith(_YAML_UNREAD):
        raise StackError(f"{where}: flow collections, anchors, tags and block text are not read here")
    digits = plain.lstrip("+-")
    if _YAML_INT.fullmatch(plain):
        if len(digits) > 1 and digits.startswith("0"):
            raise StackError(f"{where}: {plain} has a leading zero, which YAML reads as octal")
        return int(plain)
    return plain


def region_key(region: str) -> str:
    """OCIR's host is <region key>.ocir.io; the key comes from the same table the function uses."""
    keys = {name: key for key, name in REGION_KEYS.items()}
    value = region.strip().lower()
    if value in REGION_KEYS:
        return value
    if value not in keys:
        raise StackError(f"unknown region {region!r}: give its name (us-chicago-1) or key (ord)")
    return keys[value]


def image_url(region: str, namespace: str, name: str, version: str) -> str:
    """The image `fn build` tags with docs/deploy.md's registry, which the stack runs."""
    if not _NAMESPACE.fullmatch(namespace):
        raise StackError(f"invalid Object Storage namespace {namespace!r} (oci os ns get --query data --raw-output)")
    return f"{region_key(region)}.ocir.io/{namespace}/{REGISTRY_PATH}/{name}:{version}"


def build_and_push(url: str) -> None:
    """fn build (Docker) then docker push; both must be installed, and docker logged in to OCIR."""
    missing = [tool for tool in ("fn", "docker") if shutil.which(tool) is None]
    if missing:
        raise StackError(
            f"{' and '.join(missing)} not found on PATH: install the fn CLI and Docker "
            "(docs/deploy.md, prerequisites), or build elsewhere and give the stack the URL"
        )
    registry = url.rsplit("/", 1)[0]
    env = {**os.environ, "FN_REGISTRY": registry}
    for command in (["fn", "build"], ["docker", "push", url]):
        print("+ " + " ".join(command), file=sys.stderr, flush=True)
        if subprocess.run(command, cwd=ROOT, env=env, check=False).returncode != 0:
            raise StackError(f"`{' '.join(command)}` failed (see its output above)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m genai_handler.local.stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    zipped = commands.add_parser("zip", help="build the Resource Manager zip")
    zipped.add_argument("--out", type=Path, default=DEFAULT_ZIP)
    image = commands.add_parser("image", help="fn build + docker push, then print the image URL")
    image.add_argument("--region", required=True, help="region name or key, e.g. us-chicago-1 or ord")
    image.add_argument("--namespace", required=True, help="Object Storage namespace (oci os ns get)")
    image.add_argument("--print-url", action="store_true", help="only print the URL; build nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "zip":
            names = build_zip(args.out)
            print(f"{args.out} ({len(names)} files: {', '.join(names)})")
            return 0
        missing = [
            name for name, value in (("REGION", args.region), ("NAMESPACE", args.namespace)) if not value.strip()
        ]
        if missing:
            raise StackError(
                f"make image needs {' and '.join(missing)}, e.g. make image REGION=us-chicago-1 "
                "NAMESPACE=$(oci os ns get --query data --raw-output)"
            )
        function = read_func_yaml()
        url = image_url(args.region, args.namespace, function.name, function.version)
        if not args.print_url:
            build_and_push(url)
        print(url)
        return 0
    except (StackError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
