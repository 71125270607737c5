"""genai_handler.local.contract_docs: the docs' field tables come from the declaration."""

from __future__ import annotations

from pathlib import Path

import pytest

from genai_handler.contract import Request, models
from genai_handler.local import contract_docs


def test_given_the_contract_when_tables_are_written_then_every_model_and_field_has_its_row() -> None:
    # when
    tables = contract_docs.tables()
    # then
    for model in models():
        assert f"#### {model.__name__}" in tables
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in tables


def test_given_the_contract_when_tables_are_written_then_what_the_model_reads_is_said_per_field() -> None:
    # when
    rows = {line.split("|")[1].strip(): line for line in contract_docs.tables().splitlines() if line.startswith("| `")}
    # then
    assert "no (capped)" in rows["`metadata`"]
    assert "yes: screened, counted, redacted" in rows["`prompt`"]
    assert "yes, as JSON" in rows["`schema`"]


def test_given_a_new_field_when_the_tables_are_written_then_it_appears(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    class Extended(Request):
        """What a caller sends, extended."""

        note: str | None = None

    # when / then
    assert "| `note` |" in contract_docs.tables(Extended)


def test_given_a_page_with_the_marked_block_when_written_then_only_the_block_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    page = tmp_path / "contracts.md"
    page.write_text(f"before\n{contract_docs.BEGIN}\nold\n{contract_docs.END}\nafter\n", encoding="utf-8")
    monkeypatch.setattr(contract_docs, "PAGE", page)
    # when / then
    assert contract_docs.main(["--write"]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert contract_docs.tables() in text


def test_given_a_page_without_the_block_when_written_then_it_is_refused_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    page = tmp_path / "contracts.md"
    page.write_text("no block here\n", encoding="utf-8")
    monkeypatch.setattr(contract_docs, "PAGE", page)
    # when / then
    assert contract_docs.main(["--write"]) == 1
    assert page.read_text(encoding="utf-8") == "no block here\n"
