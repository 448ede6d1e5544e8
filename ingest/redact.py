"""Finds and masks personal data and secrets in text.

One redactor serves ingest (before anything is stored), the PII-leak heuristic evaluator and
the judge (before text leaves for an external endpoint).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["PII_KINDS", "Finding", "Redactor", "luhn_ok"]

PII_KINDS = ("email", "phone", "card", "ip", "secret")

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# Candidate card numbers: 13-19 digits, optionally grouped by spaces or dashes; Luhn decides.
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?!\w)"
)
_IPV4 = re.compile(
    r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])")
_SECRET = re.compile(
    r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{16,}"  # OpenAI-style keys
    r"|AKIA[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|AIza[0-9A-Za-z_-]{35})"  # Google API keys
    r"|(?i:(?:api[_-]?key|secret|token|password|passwd|bearer)\s*[:=]\s*|bearer\s+)"
    r"[A-Za-z0-9._~+/=-]{12,}"
)


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum.

    Examples:
        >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
        (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Finding:
    """One piece of sensitive text: its kind and where it is."""

    kind: str
    start: int
    end: int


class Redactor:
    """Masks sensitive spans as ``[REDACTED:<kind>]``.

    Args:
        kinds: Which kinds to look for (default: all of ``PII_KINDS``).

    Examples:
        >>> Redactor().redact("mail bob@example.com now")[0]
        'mail [REDACTED:email] now'
    """

    def __init__(self, kinds: tuple[str, ...] = PII_KINDS) -> None:
        unknown = set(kinds) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {list(PII_KINDS)}")
        self.kinds = kinds

    def find(self, text: str) -> list[Finding]:
        """Every sensitive span, longest-first where they overlap, in text order."""
        found: list[Finding] = []
        if "secret" in self.kinds:
            found += [Finding("secret", m.start(), m.end()) for m in _SECRET.finditer(text)]
        if "email" in self.kinds and "@" in text:
            found += [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
        if "card" in self.kinds:
            for m in _CARD.finditer(text):
                digits = re.sub(r"\D", "", m.group())
                if 13 <= len(digits) <= 19 and luhn_ok(digits):
                    found.append(Finding("card", m.start(), m.end()))
        if "ip" in self.kinds:
            found += [Finding("ip", m.start(), m.end()) for m in _IPV4.finditer(text)]
            found += [Finding("ip", m.start(), m.end()) for m in _IPV6.finditer(text)]
        if "phone" in self.kinds:
            for m in _PHONE.finditer(text):
                if sum(c.isdigit() for c in m.group()) >= 7:
                    found.append(Finding("phone", m.start(), m.end()))
        # Earlier kinds win overlaps (a card number is not also a phone number).
        found.sort(key=lambda f: (f.start, -(f.end - f.start)))
        kept: list[Finding] = []
        for f in found:
            if kept and f.start < kept[-1].end:
                continue
            kept.append(f)
        return kept

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """The text with sensitive spans masked, and how many of each kind were masked."""
        findings = self.find(text)
        if not findings:
            return text, Counter()
        parts: list[str] = []
        pos = 0
        for f in findings:
            parts.append(text[pos : f.start])
            parts.append(f"[REDACTED:{f.kind}]")
            pos = f.end
        parts.append(text[pos:])
        return "".join(parts), Counter(f.kind for f in findings)
