"""Prompts such as ``<en> <ase> house``: the text with its spoken and signed language as tokens."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from signclip.errors import TextInputError

DEFAULT_TEMPLATE = "<{spoken}> <{signed}> {text}"


def _check_encodable(value: str, field: str) -> None:
    """Text that is not valid Unicode (e.g. a lone surrogate such as "\\ud800") cannot be tokenised."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TextInputError(f"{field}: not valid Unicode text ({e.reason} at position {e.start})") from None


def _check_language(code: str | None, field: str, known: Sequence[str]) -> None:
    if code is None:
        return
    if not isinstance(code, str) or not code.strip():
        raise TextInputError(f"{field}: empty language code")
    _check_encodable(code, field)
    if known and code not in known:
        raise TextInputError(f"{field}: unknown language code {code!r}; this model knows {sorted(known)}")


def make_prompt(text: str, spoken_language: str | None = None, signed_language: str | None = None,
                template: str = DEFAULT_TEMPLATE, known_spoken: Sequence[str] = (),
                known_signed: Sequence[str] = ()) -> str:
    """Format one prompt. Without languages the text is used as it is (a free-text query).

    Raises :class:`TextInputError` for an empty text or a language code the model does not know.
    """
    if not isinstance(text, str):
        raise TextInputError(f"text: expected a string, got {type(text).__name__}")
    _check_encodable(text, "text")
    if spoken_language is None and signed_language is None:
        if not text.strip():
            raise TextInputError("text: empty text")
        return text.strip()
    _check_language(spoken_language, "spoken_language", known_spoken)
    _check_language(signed_language, "signed_language", known_signed)
    prompt = template.format(spoken=spoken_language or "", signed=signed_language or "", text=text.strip())
    if not text.strip() and "{text}" in template:
        # a language-only prompt (sign-language identification) is allowed, but not an empty one
        prompt = prompt.strip()
        if not prompt:
            raise TextInputError("text: empty text")
    return " ".join(prompt.split())


def prompt_id(prompt: str) -> int:
    """A stable 63-bit id of a prompt (samples with equal prompts are contrastive positives)."""
    return int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "little") >> 1


def language_prompt(spoken_language: str | None, signed_language: str | None,
                    template: str = DEFAULT_TEMPLATE) -> str | None:
    """The text-free prompt ``<en> <ase>`` used for sign-language identification (None without languages)."""
    if spoken_language is None and signed_language is None:
        return None
    return make_prompt("", spoken_language, signed_language, template)


def _per_text(value: str | Sequence[str | None] | None, n: int, field: str) -> list[str | None]:
    if value is None or isinstance(value, str):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise TextInputError(f"{field}: {len(value)} codes for {n} texts")
    return value


def make_prompts(texts: Sequence[str], spoken_language: str | Sequence[str | None] | None = None,
                 signed_language: str | Sequence[str | None] | None = None, **kwargs) -> list[str]:
    """Prompts for many texts; a language may be one code for all or one per text."""
    spoken = _per_text(spoken_language, len(texts), "spoken_language")
    signed = _per_text(signed_language, len(texts), "signed_language")
    return [make_prompt(t, s, g, **kwargs) for t, s, g in zip(texts, spoken, signed)]
