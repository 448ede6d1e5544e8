"""The one secret/PII corpus every output channel is checked against (issue #17).

:data:`HOSTILE_TEXT` holds one value of every kind the redactor knows (e-mail, phone, card,
IP address, and secrets of five shapes); :data:`CONFIG_SECRETS` are credentials that live only
in settings and Prefect blocks (the judge's API key, a webhook's token). Tests put the text in
prompts, responses, contexts and quarantined rows, run a channel, and hand everything the
channel let out to :func:`assert_clean`, which names every value that got through.

The values are canaries: distinctive enough that finding one anywhere is a leak, never a
coincidence.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CONFIG_SECRETS",
    "HOSTILE_TEXT",
    "JUDGE_API_KEY",
    "PII_VALUES",
    "WEBHOOK_TOKEN",
    "assert_clean",
    "leaks",
]

#: Raw personal data and secrets, by kind: none may appear in anything that leaves.
PII_VALUES: dict[str, str] = {
    "email": "dana.whitfield@example.com",
    "phone": "+1 415-555-0143",
    "card": "4111 1111 1111 1111",
    "ip": "203.0.113.77",
    "openai_key": "sk-proj-LeakCanary0123456789abcd",
    "aws_key": "AKIALEAKCANARY0123XY",
    "github_token": "ghp_" + "L" * 36,
    "bearer_token": "LeakCanaryBearer0123456789",
    "password": "hunter2LeakCanary99",
}
#: Text holding every value of :data:`PII_VALUES`, as a user or a model might write it.
HOSTILE_TEXT = (
    f"Reach me at {PII_VALUES['email']} or {PII_VALUES['phone']}, card {PII_VALUES['card']}, "
    f"from {PII_VALUES['ip']}. key {PII_VALUES['openai_key']}, aws {PII_VALUES['aws_key']}, "
    f"gh {PII_VALUES['github_token']}, Authorization: Bearer {PII_VALUES['bearer_token']} "
    f"and password: {PII_VALUES['password']}"
)
JUDGE_API_KEY = "sk-judge-LeakCanary-0123456789abcdef"
WEBHOOK_TOKEN = "tok-LeakCanary-5f1b9c2e7d"
#: Credentials that exist only in settings and blocks: they may go where they authenticate
#: (a header to their own endpoint), never into a body, a log, a report or an output.
CONFIG_SECRETS: dict[str, str] = {"judge_api_key": JUDGE_API_KEY, "webhook_token": WEBHOOK_TOKEN}

_ALL = {**PII_VALUES, **CONFIG_SECRETS}
# The same values as a JSON or an HTML escaper could write them (a leak in disguise is a leak).
_FORMS = {
    kind: {value, value.replace("@", "\\u0040"), value.replace("+", "&#43;")}
    for kind, value in _ALL.items()
}


def leaks(text: str) -> list[str]:
    """The kinds of corpus value found in ``text`` (raw, or escaped as JSON or HTML would).

    Examples:
        >>> leaks("mail dana.whitfield@example.com")
        ['email']
        >>> leaks("mail [REDACTED:email]")
        []
    """
    return [kind for kind, forms in _FORMS.items() if any(f in text for f in forms)]


def assert_clean(texts: Iterable[str], where: str) -> None:
    """Fail naming each corpus value found in any of ``texts``; ``where`` names the channel.

    Also fails when ``texts`` is empty: a channel that let nothing out checks nothing.
    """
    texts = [t for t in texts if t]
    assert texts, f"{where}: the channel produced nothing to check"
    found = {kind: i for i, t in enumerate(texts) for kind in leaks(t)}
    assert not found, (
        f"{where}: leaked {sorted(found)}; e.g. in: {texts[min(found.values())][:500]}"
    )
