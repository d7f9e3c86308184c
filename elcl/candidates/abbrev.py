"""Abbreviation expansion (Schwartz & Hearst 2003) for candidate queries.

Abstracts define abbreviations once ("copper toxicosis (CT)") and then use the short
form; a short form alone ("CT") carries almost no n-gram signal, so mention queries
replace defined short forms with their long forms from the same document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from elcl.data.types import Document, Mention

AbbreviationStyle = Literal["initials", "schwartz_hearst", "off"]
"""How short forms are resolved: ``initials`` (default) prefers the long form whose word
initials spell the short form and expands short forms nested in long forms;
``schwartz_hearst`` is the plain shortest-tail rule (what elcl did before, kept so runs
made with it resume and compare unchanged); ``off`` leaves mentions as written."""

_PAREN = re.compile(r"\(([^()]{1,20})\)")
_TOKEN = re.compile(r"\S+")


def _valid_short(sf: str) -> bool:
    return 2 <= len(sf) <= 10 and any(c.isalpha() for c in sf) and sf[0].isalnum() and len(sf.split()) <= 2


def _best_long_form(sf: str, lf: str) -> str | None:
    """Shortest tail of ``lf`` whose characters contain ``sf``'s in order (Schwartz-Hearst)."""
    s, li = len(sf) - 1, len(lf) - 1
    while s >= 0:
        c = sf[s].lower()
        if not c.isalnum():
            s -= 1
            continue
        while li >= 0 and (lf[li].lower() != c or (s == 0 and li > 0 and lf[li - 1].isalnum())):
            li -= 1
        if li < 0:
            return None
        li -= 1
        s -= 1
    start = lf.rfind(" ", 0, li + 1) + 1
    out = lf[start:].strip()
    return out or None


_STOPWORDS = frozenset({"of", "the", "and", "in", "with", "to", "for", "on", "a", "an", "or", "by"})
_PARTS = re.compile(r"[-/]")


def _initials_long_form(sf: str, words: list[str]) -> str | None:
    """The words before the parenthesis whose initials spell ``sf`` ("attenuated adenomatous
    polyposis coli (AAPC)"), stop words allowed between them.

    Schwartz-Hearst takes the *shortest* tail whose characters contain the short form's, so
    a letter can match inside a word ("adenomatous polyposis coli" for AAPC, one word
    short); when every letter is a word's initial, that reading is the intended one.  A
    hyphenated word gives the initials of its parts ("X-linked" -> X, L) or its first only.
    """
    letters = [c.lower() for c in sf if c.isalnum()]
    j = len(letters)
    start = len(words)
    for w in range(len(words) - 1, -1, -1):
        if j == 0:
            break
        word = words[w].strip("()[],;\"'")
        parts = [p for p in _PARTS.split(word) if p]
        if not parts:
            return None
        initials = [p[0].lower() for p in parts]
        if len(initials) <= j and letters[j - len(initials) : j] == initials:
            j -= len(initials)
        elif letters[j - 1] == initials[0]:
            j -= 1
        elif word.lower() in _STOPWORDS:
            pass
        else:
            return None
        start = w
    if j > 0 or words[start].lower() in _STOPWORDS:
        return None
    return " ".join(words[start:])


def _expand_nested(abbreviations: dict[str, str]) -> dict[str, str]:
    """Long forms with the document's other short forms expanded ("isolated DMS" -> "isolated
    diffuse mesangial sclerosis" when DMS is defined too); one level, never a form itself."""

    def expand(sf: str, lf: str) -> str:
        return _TOKEN.sub(lambda t: t.group(0) if t.group(0) == sf else abbreviations.get(t.group(0), t.group(0)), lf)

    return {sf: expand(sf, lf) for sf, lf in abbreviations.items()}


def find_abbreviations(text: str, style: AbbreviationStyle = "initials") -> dict[str, str]:
    """Short form -> long form for every ``long form (SF)`` pattern in ``text``."""
    out: dict[str, str] = {}
    if style == "off":
        return out
    for m in _PAREN.finditer(text):
        sf = m.group(1).strip()
        if not _valid_short(sf):
            continue
        before = text[: m.start()].rstrip()
        # Window of min(|SF| + 5, 2|SF|) words before the parenthesis, within the sentence.
        sentence = re.split(r"[.;:]\s", before)[-1]
        words = sentence.split()
        n = min(len(sf) + 5, 2 * len(sf))
        window = " ".join(words[-n:])
        lf = (_initials_long_form(sf, words[-n:]) if style == "initials" else None) or _best_long_form(sf, window)
        if lf and len(lf) > len(sf) and sf not in out and sf.lower() not in lf.lower().split():
            out[sf] = lf
    return _expand_nested(out) if style == "initials" else out


def expand_mention(mention: Mention, abbreviations: dict[str, str]) -> str:
    """The mention text with each defined short form token replaced by its long form."""
    text = mention.text.strip()
    if text in abbreviations:
        return abbreviations[text]
    return _TOKEN.sub(lambda t: abbreviations.get(t.group(0), t.group(0)), text)


def query_texts(documents: Sequence[Document], style: AbbreviationStyle = "initials") -> list[str]:
    """One query per mention of ``documents`` (document order), abbreviations expanded."""
    out: list[str] = []
    for doc in documents:
        abbr = find_abbreviations(doc.text, style)
        out.extend(expand_mention(m, abbr) for m in doc.mentions)
    return out
