"""The field tables of docs/contracts.md, written from the contract's declaration (contract.py).

`python -m genai_handler.local.contract_docs` prints them, `--write` replaces them in the page;
tests/test_docs.py fails when the page and the declaration differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..contract import Kind, Request, leaves, models
from .agent import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "contracts.md"
BEGIN, END = (
    "<!-- contract-fields: begin (.venv/bin/python -m genai_handler.local.contract_docs --write) -->",
    "<!-- contract-fields: end -->",
)
_READS = {
    Kind.PROSE: "yes: screened, counted, redacted",
    Kind.NAME: "yes: screened, counted (PII blocks)",
    Kind.JSON: "yes, as JSON: screened, counted, redacted",
    Kind.UNREAD: "no (capped)",
    Kind.ID: "no",
    Kind.IMAGE: "yes, as an image: counted, never screened nor logged",
    Kind.SEALED: "yes, once OCI opens it: never screened nor logged",
}
_NAMES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}


def tables(root: type[BaseModel] = Request) -> str:
    """One table per object of the contract, root first."""
    sections = []
    for model in models(root):
        rows = [
            f"| `{field.alias or name}` | {_type(field.annotation)} | {_rule(field)} | {_reads(field)} |"
            for name, field in model.model_fields.items()
        ]
        sections.append(
            "\n".join(
                [
                    f"#### {model.__name__}",
                    "",
                    (model.__doc__ or "").strip(),
                    "",
                    "| Field | Type | Rule | The model reads it |",
                    "| --- | --- | --- | --- |",
                    *rows,
                ]
            )
        )
    return "\n\n".join(sections)


def _type(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_type(a) for a in args if a is not type(None)))
    if origin is Literal:
        return " or ".join(f"`{json.dumps(a)}`" for a in args)
    if origin is list:
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _rule(field: FieldInfo) -> str:
    must = field.json_schema_extra.get("must") if isinstance(field.json_schema_extra, dict) else None
    doc = field.description or ""
    required = "**required**; " if field.is_required() else ""
    text = f"{required}{doc}" + (f"; must be {must}" if must else "")
    return (
        text.replace("{allowed_models}", "GENAI_ALLOWED_MODELS")
        .replace("{max_output_tokens}", "GENAI_MAX_OUTPUT_TOKENS")
        .replace("|", "\\|")
    )


def _reads(field: FieldInfo) -> str:
    kinds = [kind for _, kind in leaves(field.annotation, tuple(field.metadata)) if kind is not None]
    said = list(dict.fromkeys(_READS[k] for k in kinds)) + [f"see {m.__name__}" for m in _held(field.annotation)]
    return ", ".join(said) or "no"


def _held(annotation: Any) -> list[type[BaseModel]]:
    """The models a field holds itself (not those inside them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _held(arg)]


def page_with_tables(page: str) -> str:
    before, _, rest = page.partition(BEGIN)
    _, _, after = rest.partition(END)
    return f"{before}{BEGIN}\n\n{tables()}\n\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the tables in docs/contracts.md")
    args = parser.parse_args(argv)
    if not args.write:
        print(tables())
        return 0
    page = PAGE.read_text(encoding="utf-8")
    if BEGIN not in page or END not in page:
        print(f"{PAGE} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    PAGE.write_text(page_with_tables(page), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
