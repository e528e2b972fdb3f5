"""Finding rule hits in the text blocks of an image (or of its translation)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .rules import ACTIONS, Rule, RuleSet, normalize

PASS = "pass"


@dataclass(frozen=True)
class TextBlockRef:
    """One piece of text to inspect and where it is: the block's index and box (``kept``: a block left untranslated,
    indexed among the kept blocks)."""

    index: int
    text: str
    box: Sequence[float] | None = None
    kept: bool = False


@dataclass(frozen=True)
class Match:
    rule: str
    category: str
    action: str
    text: str  # the matched text, normalised (NFKC, case-folded)
    on: str  # "source" (the OCR text) or "translation"
    lang: str | None
    block: int
    box: tuple[float, ...] | None
    block_text: str
    kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rule": self.rule, "category": self.category, "action": self.action,
                                "text": self.text, "on": self.on, "lang": self.lang, "block": self.block,
                                "box": [round(v, 1) for v in self.box] if self.box is not None else None,
                                "block_text": self.block_text}
        if self.kept:
            data["kept"] = True
        return data

    @property
    def reason(self) -> str:
        where = "translation" if self.on == "translation" else "text"
        return f"rule {self.rule} ({self.category}, {self.action}): {where} '{self.text}' in block {self.block}"


def _hits(rule: Rule, text: str) -> list[str]:
    normal = normalize(text)
    allowed = [(m.start(), m.end()) for m in rule.except_regex.finditer(normal)] if rule.except_regex else []
    found: list[str] = []
    for match in rule.regex.finditer(normal):
        if match.end() == match.start():
            continue
        if any(a <= match.start() and match.end() <= b for a, b in allowed):
            continue  # inside a known harmless phrase
        if match.group(0) not in found:
            found.append(match.group(0))
    return found


class Inspector:
    """Applies a :class:`RuleSet` to text blocks."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def inspect(self, blocks: Iterable[TextBlockRef], lang: str | None, *, on: str = "source") -> list[Match]:
        applicable = [rule for rule in self.rules.rules if rule.applies_to(lang)]
        matches: list[Match] = []
        for block in blocks:
            if not block.text.strip():
                continue
            for rule in applicable:
                for hit in _hits(rule, block.text):
                    matches.append(Match(rule=rule.id, category=rule.category, action=rule.action, text=hit.strip(),
                                         on=on, lang=lang, block=block.index,
                                         box=tuple(float(v) for v in block.box) if block.box is not None else None,
                                         block_text=block.text, kept=block.kept))
        return matches

    def inspect_text(self, text: str, lang: str | None, *, on: str = "source") -> list[Match]:
        return self.inspect([TextBlockRef(0, text)], lang, on=on)


def verdict(matches: Iterable[Match | dict[str, Any]]) -> str:
    """The strongest action among ``matches``: reject > review > flag, ``pass`` when there is none."""
    strength = -1
    for match in matches:
        action = match["action"] if isinstance(match, dict) else match.action
        strength = max(strength, ACTIONS.index(action))
    return ACTIONS[strength] if strength >= 0 else PASS
