from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from evalwatch.core import redact as R
from evalwatch.core.redact import PII_KINDS, Finding, Redactor, luhn_ok, mask

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("mail bob.smith@example.com now", "email", "mail [REDACTED:email] now"),
        ("john_doe+tag@sub.example.co.uk.", "email", "[REDACTED:email]."),
        ("not an email: a@b", "email", None),
        ("card 4111 1111 1111 1111 ok", "card", "card [REDACTED:card] ok"),
        ("card 4111-1111-1111-1111", "card", "card [REDACTED:card]"),
        ("card 4111111111111112 fails Luhn", "card", None),
        ("order 41111111111111115 is 17 digits", "card", None),
        ("call +1 415-555-0100 today", "phone", "call [REDACTED:phone] today"),
        ("call (415) 555-0100", "phone", "call [REDACTED:phone]"),
        ("room 12 of 40", "phone", None),
        ("host 192.168.0.1.", "ip", "host [REDACTED:ip]."),
        ("version 1.2.3 and 256.1.1.1", "ip", None),
        ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up", "ip", "v6 [REDACTED:ip] up"),
        ("v6 fe80::1ff:fe23:4567:890a here", "ip", "v6 [REDACTED:ip] here"),
        ("meeting at 10:30 or 11:45", "ip", None),
        ("key sk-proj-abcdefghijklmnop1234 here", "secret", "key [REDACTED:secret] here"),
        ("AKIAABCDEFGHIJKLMNOP", "secret", "[REDACTED:secret]"),
        ("token ghp_" + "a" * 36, "secret", "token [REDACTED:secret]"),
        ("xoxb-1234567890-abcdef", "secret", "[REDACTED:secret]"),
        ("AIza" + "B" * 35, "secret", "[REDACTED:secret]"),
        ("API_KEY=abcdefghijklmnop", "secret", "[REDACTED:secret]"),
        ("Auth: Bearer abcdefghijklmnopqrstu", "secret", "Auth: [REDACTED:secret]"),
        ("password: hunter2hunter2hunter2", "secret", "[REDACTED:secret]"),
        ("I forgot my password, help", "secret", None),
        ("a task-based plan", "secret", None),
    ],
)
def test_each_kind_is_found_and_masked(text, kind, expected):
    masked, counts = Redactor((kind,)).redact(text)
    if expected is None:
        assert masked == text and counts == Counter()
    else:
        assert masked == expected
        assert counts == Counter({kind: 1})


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("5555555555554444")
    assert not luhn_ok("4111111111111112")


def test_kinds_filter_and_unknown_kind():
    text = "bob@example.com 10.0.0.1"
    assert Redactor(("email",)).redact(text)[0] == "[REDACTED:email] 10.0.0.1"
    assert Redactor(("ip",)).redact(text)[0] == "bob@example.com [REDACTED:ip]"
    with pytest.raises(ValueError, match="unknown PII kinds"):
        Redactor(("ssn",))


def test_overlaps_keep_the_earliest_longest_span():
    # A card number also looks like a phone number; it is masked once, as a card.
    masked, counts = Redactor().redact("pay 4111 1111 1111 1111 now")
    assert masked == "pay [REDACTED:card] now"
    assert counts == Counter({"card": 1})


def test_offsets_are_right_in_non_ascii_text():
    text = "Grüße – ruf an: +49 30 1234 5678, oder schreib an jürgen@example.de ✓"
    found = Redactor().find(text)
    assert [(f.kind, text[f.start : f.end]) for f in found] == [
        ("phone", "+49 30 1234 5678"),
        ("email", "jürgen@example.de"),
    ]


def test_mask_and_counts():
    text = "a@b.io and c@d.io"
    findings = Redactor().find(text)
    assert mask(text, findings) == "[REDACTED:email] and [REDACTED:email]"
    assert Redactor().redact(text)[1] == Counter({"email": 2})
    assert mask("abc", []) == "abc"


# A plain definition of what the redactor finds: every pattern run over the whole text, no
# gates, windows or batching. The fast paths must find exactly the same spans.
def _reference_find(text: str) -> list[Finding]:
    found: list[Finding] = []
    found += [Finding("secret", m.start(), m.end()) for m in R._SECRET_KEY.finditer(text)]
    found += [Finding("secret", m.start(), m.end()) for m in R._SECRET_ASSIGN.finditer(text)]
    email = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
    found += [Finding("email", m.start(), m.end()) for m in email.finditer(text)]
    for m in R._CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(Finding("card", m.start(), m.end()))
    found += [Finding("ip", m.start(), m.end()) for m in R._IPV4.finditer(text)]
    for m in R._PHONE.finditer(text):
        if sum(c.isdigit() for c in m.group()) >= 7:
            found.append(Finding("phone", m.start(), m.end()))
    import ipaddress

    for m in R._IPV6.finditer(text):
        s = m.group()
        if any(c.isdigit() for c in s) and s.count(":") >= 2:
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                continue
            found.append(Finding("ip", m.start(), m.end()))
    return R._resolve(found) if len(found) > 1 else found


def _corpus() -> list[str]:
    rng = random.Random(7)
    pieces = [
        "bob@example.com",
        "x_y@mail.example.org",
        "4111 1111 1111 1111",
        "4111-1111-1111-1112",
        "+1 415-555-0100",
        "(020) 7946 0958",
        "555.123.4567",
        "10.0.0.255",
        "1.2.3.4.5",
        "2001:db8::8a2e:370:7334",
        "sk-abcdefghijklmnopqrstu",
        "token=abcdefghijklmnopq",
        "Bearer abcdefghijklmnop",
        "order AC-6581698",
        "$249.99",
        "2026-11-01 10:30:00",
        "v1.2.3",
        "call me",
        "the quick brown fox",
        "naïve café",
        "ghp_" + "x" * 36,
        "a@b",
        "12:34:56:78",
        "(555)",
        "+",
        "-",
        "..",
        "@",
        ":",
        "password",
        "API",
    ]
    texts = []
    for _ in range(1500):
        k = rng.randint(0, 8)
        texts.append(" ".join(rng.choice(pieces) for _ in range(k)))
    sample = REPO / "datasets" / "sample_traffic.jsonl"
    if sample.exists():
        import json

        with sample.open() as fh:
            for i, line in enumerate(fh):
                if i >= 600:
                    break
                row = json.loads(line)
                texts += [row["prompt"], row["response"], row.get("context") or ""]
    return texts


def test_fast_paths_find_what_the_plain_definition_finds():
    texts = _corpus()
    red = Redactor()
    many = red.find_many(texts)
    for text, got in zip(texts, many, strict=True):
        assert got == _reference_find(text), text
        assert red.find(text) == got


def test_find_many_handles_texts_holding_the_separator():
    texts = ["nul \x00 then bob@example.com", "clean", ""]
    red = Redactor()
    assert red.find_many(texts) == [red.find(t) for t in texts]
    assert red.find_many(texts)[0][0].kind == "email"
    assert red.find_many([]) == []


def test_redact_many_matches_redact():
    texts = ["mail bob@example.com", "nothing", "ip 8.8.8.8 and +44 20 7946 0958"]
    red = Redactor()
    assert red.redact_many(texts) == [red.redact(t) for t in texts]


def test_every_kind_is_known():
    assert set(PII_KINDS) == {"email", "phone", "card", "ip", "secret"}
