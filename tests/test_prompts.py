"""Prompts `<en> <ase> house` and language-code checks."""
from __future__ import annotations

import pytest

from signclip.errors import SignCLIPInputError, TextInputError
from signclip.text.prompts import make_prompt, make_prompts


def test_prompt_format():
    assert make_prompt("house", "en", "ase") == "<en> <ase> house"
    assert make_prompt("  house  ", "en", "ase") == "<en> <ase> house"
    assert make_prompt("big house", "de", "gsg") == "<de> <gsg> big house"


def test_free_text_without_languages():
    assert make_prompt(" house ") == "house"


def test_language_only_prompt_for_language_identification():
    assert make_prompt("", "en", "ase") == "<en> <ase>"


def test_custom_template():
    assert make_prompt("house", "en", "ase", template="{text} in {signed}") == "house in ase"


def test_known_languages_accepted():
    assert make_prompt("A", "en", "ase", known_spoken=["en", "de"], known_signed=["ase", "gsg"]) == "<en> <ase> A"


@pytest.mark.parametrize("field, kwargs", [
    ("spoken_language", dict(spoken_language="xx", signed_language="ase")),
    ("signed_language", dict(spoken_language="en", signed_language="zzz")),
])
def test_unknown_language_names_field(field, kwargs):
    with pytest.raises(TextInputError, match=f"^{field}: unknown language code") as e:
        make_prompt("house", known_spoken=["en"], known_signed=["ase"], **kwargs)
    assert isinstance(e.value, SignCLIPInputError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text(text):
    with pytest.raises(TextInputError, match="^text: empty text"):
        make_prompt(text)


def test_empty_language_code():
    with pytest.raises(TextInputError, match="^spoken_language: empty language code"):
        make_prompt("house", " ", "ase")


def test_non_string_text():
    with pytest.raises(TextInputError, match="^text: expected a string"):
        make_prompt(None)  # type: ignore[arg-type]


def test_make_prompts_one_code_or_one_per_text():
    assert make_prompts(["A", "B"], "en", "ase") == ["<en> <ase> A", "<en> <ase> B"]
    assert make_prompts(["A", "B"], ["en", "de"], ["ase", "gsg"]) == ["<en> <ase> A", "<de> <gsg> B"]
    assert make_prompts(["A", "B"]) == ["A", "B"]
    with pytest.raises(TextInputError, match="^signed_language: 1 codes for 2 texts"):
        make_prompts(["A", "B"], "en", ["ase"])
