"""Finds and masks personal data and secrets in text.

One redactor serves ingest (before anything is stored), the PII-leak heuristic evaluator, the
judge (before text leaves for an external endpoint), alert messages and ``quarantine show``; it
lives in the core layer so that each of them can use it without importing the others.

Ingest runs it on every prompt and response, so it is built to be cheap on text that holds
nothing sensitive: every expensive pattern runs only where a fast necessary condition holds
(an ``@`` for e-mails, a run of digits and separators for cards, phones and IPv4 addresses, a
known prefix or keyword for secrets, colons for IPv6).
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PII_KINDS", "Finding", "Redactor", "luhn_ok", "mask"]

PII_KINDS = ("email", "phone", "card", "ip", "secret")

# Anchored at the start of the run of address characters before an "@" (underscore included).
_EMAIL = re.compile(r"[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# How far back from an "@" a local part may reach.
_EMAIL_REACH = 256
# Cards, phones and IPv4 addresses consist only of these characters (digits are ASCII digits)
# and are at least 7 long, so they lie in runs of 7+ such characters. Runs are found by mapping
# the text through a byte table and searching for seven marks: far faster than a regex scan.
_RUN_CHARS = b"0123456789 ().+-"
_RUN_TABLE = bytes(0x44 if i in _RUN_CHARS else 0x78 for i in range(256))  # "D" / "x"
_RUN_MIN = b"D" * 7
_RUN_START = re.compile(r"[0-9(+]")
# Candidate card numbers: 13-19 digits, optionally grouped by spaces or dashes; Luhn decides.
_CARD = re.compile(r"(?<![0-9-])(?:[0-9][ -]?){12,18}[0-9](?![0-9-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,4}\)[ .-]?|[0-9]{2,4}[ .-])"
    r"[0-9]{3,4}[ .-]?[0-9]{3,4}(?!\w)"
)
_IPV4 = re.compile(
    r"\b(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\b"
)
# Full and "::"-compressed IPv6 candidates; ipaddress decides.
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_SECRET_KEY = re.compile(
    r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{16,}"  # OpenAI-style keys
    r"|AKIA[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|AIza[0-9A-Za-z_-]{35})"  # Google API keys
)
# "api_key = ...", "password: ...", "Bearer ..." followed by a long token.
_SECRET_ASSIGN = re.compile(
    r"(?i:(?:api[_-]?key|secret|token|password|passwd|bearer)\s*[:=]\s*|bearer\s+)"
    r"[A-Za-z0-9._~+/=-]{12,}"
)
# Every _SECRET_KEY match contains one of these.
# (GitHub's "gh?_" is found through its rarer underscore.)
_SECRET_KEY_NEEDLES = ("sk-", "AKIA", "AIza", "xox")
# Joins texts for one batch scan; no pattern matches across it.
_SEP = "\x00"
# Every _SECRET_ASSIGN match starts with one of these (lower-cased).
_SECRET_KEYWORDS = ("api", "secret", "token", "passw", "bearer")


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


def mask(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with each finding replaced by ``[REDACTED:<kind>]``.

    Args:
        text: The text the findings were found in.
        findings: Non-overlapping findings in text order (as :meth:`Redactor.find` gives them).

    Returns:
        The masked text.

    Examples:
        >>> mask("hi bob@x.io", [Finding("email", 3, 11)])
        'hi [REDACTED:email]'
    """
    parts: list[str] = []
    pos = 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(f"[REDACTED:{f.kind}]")
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def _find_all(text: str, needle: str) -> list[int]:
    out: list[int] = []
    pos = text.find(needle)
    while pos != -1:
        out.append(pos)
        pos = text.find(needle, pos + 1)
    return out


class Redactor:
    """Masks sensitive spans as ``[REDACTED:<kind>]``.

    Args:
        kinds: Which kinds to look for (default: all of ``PII_KINDS``).

    Examples:
        >>> Redactor().redact("mail bob@example.com now")[0]
        'mail [REDACTED:email] now'
        >>> Redactor(("card",)).redact("card 4111 1111 1111 1111, ok")[0]
        'card [REDACTED:card], ok'
    """

    def __init__(self, kinds: tuple[str, ...] = PII_KINDS) -> None:
        unknown = set(kinds) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {list(PII_KINDS)}")
        self.kinds = kinds
        self._email = "email" in kinds
        self._card = "card" in kinds
        self._phone = "phone" in kinds
        self._ip = "ip" in kinds
        self._secret = "secret" in kinds
        self._digits = self._card or self._phone or self._ip

    def find(self, text: str) -> list[Finding]:
        """Every sensitive span, longest-first where they overlap, in text order.

        Args:
            text: Any text.

        Returns:
            Non-overlapping findings sorted by position.

        Examples:
            >>> [f.kind for f in Redactor().find("ip 10.0.0.1, key sk-abcdefghijklmnop1234")]
            ['ip', 'secret']
        """
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """:meth:`find` for many texts at once: the same findings, with one scan for all.

        The texts are joined by a character no pattern matches, so the regex engine and the
        substring searches run once over the whole batch instead of once per text; ingest
        redacts whole chunks this way.

        Args:
            texts: Any texts.

        Returns:
            One list of findings per text, as :meth:`find` returns them.

        Examples:
            >>> [len(f) for f in Redactor().find_many(["hi", "bob@example.com", "10.0.0.1"])]
            [0, 1, 1]
        """
        if len(texts) <= 1:
            big = texts[0] if texts else ""
            starts = [0]
        else:
            big = _SEP.join(texts)
            if big.count(_SEP) != len(texts) - 1:  # a text holds the separator itself
                return [self.find(t) for t in texts]
            starts = [0] * len(texts)
            pos = 0
            for i, t in enumerate(texts):
                starts[i] = pos
                pos += len(t) + 1
        out: list[list[Finding]] = [[] for _ in texts]
        for f in self._scan(big, starts, texts):
            i = bisect_right(starts, f.start) - 1
            out[i].append(Finding(f.kind, f.start - starts[i], f.end - starts[i]))
        return [_resolve(found) if len(found) > 1 else found for found in out]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """The text with sensitive spans masked, and how many of each kind were masked.

        Args:
            text: Any text.

        Returns:
            The masked text and a count per kind.

        Examples:
            >>> Redactor().redact("call +1 415-555-0100")
            ('call [REDACTED:phone]', Counter({'phone': 1}))
        """
        return self.redact_many([text])[0]

    def redact_many(self, texts: Sequence[str]) -> list[tuple[str, Counter[str]]]:
        """:meth:`redact` for many texts at once (see :meth:`find_many`).

        Args:
            texts: Any texts.

        Returns:
            One (masked text, count per kind) pair per text.

        Examples:
            >>> [t for t, _ in Redactor().redact_many(["ok", "mail a@b.io"])]
            ['ok', 'mail [REDACTED:email]']
        """
        return [
            (mask(t, f), Counter(x.kind for x in f)) if f else (t, Counter())
            for t, f in zip(texts, self.find_many(texts), strict=True)
        ]

    def _scan(self, big: str, starts: Sequence[int], texts: Sequence[str]) -> list[Finding]:
        """Raw findings over the joined text, in its coordinates (overlaps not resolved)."""
        found: list[Finding] = []
        if self._secret:
            found += self._secrets(big)
        if self._email:
            found += self._emails(big)
        if self._digits:
            found += self._digit_runs(big)
        if self._ip:
            found += self._ipv6(big, starts, texts)
        return found

    def _secrets(self, big: str) -> list[Finding]:
        out: list[Finding] = []
        # Substring searches run at memchr speed; the patterns run only where one hits.
        starts = [p for needle in _SECRET_KEY_NEEDLES for p in _find_all(big, needle)]
        starts += [
            p - 3
            for p in _find_all(big, "_")
            if p >= 3 and big[p - 1] in "pousr" and big[p - 3 : p - 1] == "gh"
        ]
        for pos in starts:
            m = _SECRET_KEY.match(big, pos)
            if m:
                out.append(Finding("secret", m.start(), m.end()))
        lower = big.lower()
        if len(lower) != len(big):  # lower-casing moved offsets (rare scripts): scan it all
            out += [Finding("secret", m.start(), m.end()) for m in _SECRET_ASSIGN.finditer(big)]
            return out
        for kw in _SECRET_KEYWORDS:
            for pos in _find_all(lower, kw):
                m = _SECRET_ASSIGN.match(big, pos)
                if m:
                    out.append(Finding("secret", m.start(), m.end()))
        return out

    def _emails(self, big: str) -> list[Finding]:
        spans: set[tuple[int, int]] = set()
        for at in _find_all(big, "@"):
            lo = max(0, at - _EMAIL_REACH)
            start = at
            while start > lo and (big[start - 1].isalnum() or big[start - 1] in "_.%+-"):
                start -= 1
            if start == at:
                continue
            m = _EMAIL.match(big, start)
            if m:
                spans.add((m.start(), m.end()))
        return [Finding("email", s, e) for s, e in sorted(spans)]

    def _digit_runs(self, big: str) -> list[Finding]:
        out: list[Finding] = []
        n = len(big)
        # One byte per character (non-ASCII becomes "?"), so offsets stay the same.
        marks = big.encode("ascii", "replace").translate(_RUN_TABLE)
        run = marks.find(_RUN_MIN)
        while run != -1:
            end = marks.find(b"x", run)
            end = n if end == -1 else end
            first = _RUN_START.search(big, run, end)
            lo = first.start() if first else end
            # One character past the run, so lookaheads see what really follows it.
            hi = min(n, end + 1)
            run = marks.find(_RUN_MIN, end)
            if end - lo < 7:
                continue
            window = big[lo:end]
            if self._card:
                for m in _CARD.finditer(big, lo, hi):
                    digits = re.sub(r"\D", "", m.group())
                    if 13 <= len(digits) <= 19 and luhn_ok(digits):
                        out.append(Finding("card", m.start(), m.end()))
            if self._ip and "." in window:
                out += [Finding("ip", m.start(), m.end()) for m in _IPV4.finditer(big, lo, hi)]
            if self._phone:
                for m in _PHONE.finditer(big, lo, hi):
                    if sum(c.isdigit() for c in m.group()) >= 7:
                        out.append(Finding("phone", m.start(), m.end()))
        return out

    def _ipv6(self, big: str, starts: Sequence[int], texts: Sequence[str]) -> list[Finding]:
        colons = _find_all(big, ":")
        if len(colons) < 2:
            return []
        # Only texts with "::" or seven colons can hold an IPv6 address.
        per_text: Counter[int] = Counter()
        compressed: set[int] = set()
        prev = -2
        for p in colons:
            i = bisect_right(starts, p) - 1
            per_text[i] += 1
            if p == prev + 1:
                compressed.add(i)
            prev = p
        out: list[Finding] = []
        for i, count in per_text.items():
            if count < 7 and i not in compressed:
                continue
            for m in _IPV6.finditer(big, starts[i], starts[i] + len(texts[i])):
                s = m.group()
                if not any(c.isdigit() for c in s) or s.count(":") < 2:
                    continue
                try:
                    ipaddress.IPv6Address(s)
                except ValueError:
                    continue
                out.append(Finding("ip", m.start(), m.end()))
        return out


def _resolve(found: list[Finding]) -> list[Finding]:
    # Where spans overlap the earliest, then the longest, wins (a card is not also a phone).
    found.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in found:
        if kept and f.start < kept[-1].end:
            continue
        kept.append(f)
    return kept
