"""Personal data and secrets found in text, and replaced by a placeholder (DESIGN.md,
invariant 5): e-mail addresses, phone numbers, payment card numbers (Luhn-checked), IBANs
(mod-97-checked) and secrets (Slack, cloud and provider tokens, bearer tokens, private keys).

Applied to a question before it is stored or logged, and to the whole prompt before it goes
to a model configured with ``redact: true``. Every pattern is bounded, so the work is linear
in the text (a person cannot stall a question with a crafted one); candidates the cheap
pattern finds are confirmed by a check (Luhn, mod 97, digit counts) to keep precision high.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# In the order they run: secrets first (a token may hold an e-mail-like part), IBANs before
# cards (an IBAN's digits can pass a Luhn check).
DETECTORS = ("secret", "email", "iban", "card", "phone")

SECRET_PATTERNS = [
    re.compile(
        r"-----BEGIN ([A-Z ]{0,40})PRIVATE KEY-----.{0,20000}?-----END \1PRIVATE KEY-----",
        re.DOTALL,
    ),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,200}"),  # Slack bot, user, app-level tokens
    re.compile(r"\bxapp-\d-[A-Za-z0-9-]{10,200}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API keys
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),  # GitHub tokens
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,100}\b"),  # GitLab tokens
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,200}"),  # OpenAI / Anthropic keys
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,2000}=*"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,2000}\.[A-Za-z0-9_-]{8,4000}\.[A-Za-z0-9_-]{8,2000}"),
]
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\d[\d ().-]{6,22}\d(?![\w])")
DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    value = text.replace(" ", "")
    if not 15 <= len(value) <= 34:
        return False
    moved = value[4:] + value[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


def _card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1


def _phone(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    if not 8 <= len(digits) <= 15 or DATE_LIKE.match(match.strip()):
        return False
    international = match.startswith(("+", "00"))
    grouped = bool(re.search(r"[ ().-]", match))
    # A bare run of digits is an id or an amount more often than a phone number.
    return international or (grouped and len(digits) >= 9)


@dataclass
class Redacted:
    text: str
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Redactor:
    detectors: tuple[str, ...] = DETECTORS

    def redact(self, text: str) -> Redacted:
        """``text`` with every finding replaced by ``[kind]``, and how many of each."""
        out = Redacted(text)
        for kind in DETECTORS:
            if kind not in self.detectors:
                continue
            for pattern, check in _RULES[kind]:
                out.text = pattern.sub(_replacer(kind, check, out.counts), out.text)
        return out

    def redact_all(self, texts: Iterable[str]) -> tuple[list[str], Counter[str]]:
        counts: Counter[str] = Counter()
        done = []
        for t in texts:
            r = self.redact(t)
            counts.update(r.counts)
            done.append(r.text)
        return done, counts


def _replacer(
    kind: str, check: Callable[[str], bool] | None, counts: Counter[str]
) -> Callable[[re.Match[str]], str]:
    def replace(m: re.Match[str]) -> str:
        if check is not None and not check(m.group(0)):
            return m.group(0)
        counts[kind] += 1
        return f"[{kind}]"

    return replace


_RULES: dict[str, list[tuple[re.Pattern[str], Callable[[str], bool] | None]]] = {
    "secret": [(p, None) for p in SECRET_PATTERNS],
    "email": [(EMAIL, None)],
    "card": [(CARD, _card)],
    "iban": [(IBAN, iban_ok)],
    "phone": [(PHONE, _phone)],
}
