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
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ..settings import REGION_KEYS

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "policies" / "terraform"
KIT = STACK.parent
DEFAULT_ZIP = ROOT / "dist" / "genai-stack.zip"
REGISTRY_PATH = "genai"
# Fixed timestamps: the same sources always give the same zip bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_KIT_READ = re.compile(r"\$\{local\.kit\}/([A-Za-z0-9_.-]+)")
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_FUNC_KEY = re.compile(r"^(name|version):\s*(\S+)\s*$", re.M)


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


def func_yaml(path: Path = ROOT / "func.yaml") -> tuple[str, str]:
    """(name, version) from func.yaml's top-level keys; no YAML parser in the standard library."""
    found = dict(_FUNC_KEY.findall(path.read_text(encoding="utf-8")))
    if not {"name", "version"} <= found.keys():
        raise StackError(f"{path.name} needs top-level name: and version:")
    return found["name"], found["version"]


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
        url = image_url(args.region, args.namespace, *func_yaml())
        if not args.print_url:
            build_and_push(url)
        print(url)
        return 0
    except (StackError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
