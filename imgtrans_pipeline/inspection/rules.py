"""The inspection rules file: YAML, validated with errors that name the file, the rule and the field.

```yaml
version: 1
rules:
  - id: zh-absolute-banned          # unique; letters, digits, . _ -
    lang: zh                        # a language code, a list of them, or "any"
    category: advertising_absolute  # free text: what kind of claim this is (counted per category)
    action: reject                  # flag | review | reject
    phrases: [国家级, 最佳]           # literal phrases
    patterns: ['全(网|国)第一']       # regular expressions (Python re)
    except: [最佳赏味期]              # phrases inside which a hit does not count (known false positives)
    description: Advertising Law art. 9 absolute terms
```

Phrases, patterns and exceptions are matched on NFKC-normalised, case-folded text (full-width ``１００％`` is
``100%``, ``ＢＥＳＴ`` is ``best``); a phrase tolerates whitespace OCR put between CJK characters, and a phrase
starting or ending with a Latin letter or digit matches whole words only.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import PipelineError

ACTIONS = ("flag", "review", "reject")  # in rising strength
BUILTIN = "builtin"  # IMGTRANS_INSPECTION_RULES value naming the starter set shipped with the package
ANY_LANG = "any"
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_RULE_KEYS = {"id", "lang", "category", "action", "phrases", "patterns", "except", "description"}
_WORD = re.compile(r"[0-9a-z]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})  # NFKC keeps curly quotes


class RulesError(PipelineError):
    """A rules file that cannot be used; the message names the file, the rule and the field."""

    stage = "inspect"


def normalize(text: str) -> str:
    """What rules are matched on: NFKC (full-width and compatibility forms folded) and case-folded."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.translate(_QUOTES)


def phrase_regex(phrase: str) -> str:
    """A literal phrase as a regex: whitespace between CJK/Hangul characters optional (OCR inserts or drops it),
    whole words when it starts or ends with a Latin letter or digit."""
    text = normalize(phrase).strip()

    def gap(left: str, right: str) -> str:
        return "" if left.isascii() and right.isascii() else r"\s*"

    words = []
    for word in text.split():
        words.append("".join(re.escape(c) if i == 0 else gap(word[i - 1], c) + re.escape(c)
                             for i, c in enumerate(word)))
    body = words[0] if words else ""
    for previous, word, pattern in zip(text.split(), text.split()[1:], words[1:], strict=False):
        body += (r"\s+" if previous[-1].isascii() and word[0].isascii() else r"\s*") + pattern
    start = r"(?<![0-9a-z])" if text and _WORD.match(text[0]) else ""
    end = r"(?![0-9a-z])" if text and _WORD.match(text[-1]) else ""
    return start + body + end


@dataclass(frozen=True)
class Rule:
    id: str
    langs: tuple[str, ...]
    category: str
    action: str
    phrases: tuple[str, ...]
    patterns: tuple[str, ...]
    exceptions: tuple[str, ...]
    description: str
    regex: re.Pattern[str]
    except_regex: re.Pattern[str] | None

    def applies_to(self, lang: str | None) -> bool:
        """Rules of ``any`` language apply to all text; text of unknown language gets every rule."""
        if ANY_LANG in self.langs or not lang:
            return True
        primary = lang.split("-", 1)[0].lower()
        return lang in self.langs or primary in self.langs

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "lang": list(self.langs), "category": self.category, "action": self.action,
                "phrases": list(self.phrases), "patterns": list(self.patterns), "except": list(self.exceptions),
                "description": self.description}


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str  # the file (or "builtin")
    digest: str  # sha256 of the file's bytes: which rules produced a finding (meta.json, dedupe)

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "digest": self.digest[:16], "rules": len(self.rules)}


def _strings(value: Any, where: str, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RulesError(f"{where}: '{field}' must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _compile(sources: list[str], where: str, field: str) -> re.Pattern[str] | None:
    if not sources:
        return None
    try:
        return re.compile("|".join(f"(?:{s})" for s in sources), re.IGNORECASE)
    except re.error as error:
        raise RulesError(f"{where}: '{field}' has an invalid regular expression: {error}") from error


def _rule(raw: Any, index: int, origin: str) -> Rule:
    where = f"{origin}: rule #{index + 1}"
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a mapping with id, lang, category, action and phrases/patterns")
    if isinstance(raw.get("id"), str):
        where = f"{origin}: rule '{raw['id']}'"
    unknown = set(map(str, raw)) - _RULE_KEYS
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_RULE_KEYS))})")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise RulesError(f"{where}: 'id' must be 1-100 letters, digits, '.', '_' or '-', starting alphanumeric")
    langs = _strings(raw.get("lang"), where, "lang")
    if not langs:
        raise RulesError(f"{where}: 'lang' is required (a language code, a list of them, or 'any')")
    category = raw.get("category")
    if not isinstance(category, str) or not category.strip():
        raise RulesError(f"{where}: 'category' is required (a non-empty string)")
    action = raw.get("action")
    if action not in ACTIONS:
        raise RulesError(f"{where}: 'action' must be one of {', '.join(ACTIONS)} (got {action!r})")
    phrases = _strings(raw.get("phrases"), where, "phrases")
    patterns = _strings(raw.get("patterns"), where, "patterns")
    if not phrases and not patterns:
        raise RulesError(f"{where}: needs at least one entry in 'phrases' or 'patterns'")
    exceptions = _strings(raw.get("except"), where, "except")
    for pattern in patterns:  # each alone, so the error names the bad one
        try:
            re.compile(pattern)
        except re.error as error:
            raise RulesError(f"{where}: pattern {pattern!r} is not a valid regular expression: {error}") from error
    regex = _compile([phrase_regex(p) for p in phrases] + [normalize(p) for p in patterns], where, "patterns")
    assert regex is not None
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise RulesError(f"{where}: 'description' must be a string")
    return Rule(id=rule_id, langs=tuple(lang.strip().lower() if lang.lower() == ANY_LANG else lang.strip()
                                          for lang in langs),
                category=category.strip(), action=action, phrases=phrases, patterns=patterns, exceptions=exceptions,
                description=description, regex=regex,
                except_regex=_compile([phrase_regex(e) for e in exceptions], where, "except"))


def parse_rules(text: str, origin: str = "<rules>") -> RuleSet:
    """Validate a rules document (YAML text) into a :class:`RuleSet`; raises :class:`RulesError`."""
    import yaml  # PyYAML comes with Dagster

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RulesError(f"{origin}: not valid YAML: {error}") from error
    if not isinstance(data, dict) or "rules" not in data:
        raise RulesError(f"{origin}: must be a mapping with a 'rules' list")
    unknown = set(map(str, data)) - {"version", "rules"}
    if unknown:
        raise RulesError(f"{origin}: unknown top-level key(s) {', '.join(sorted(unknown))} (known: version, rules)")
    if data.get("version", 1) != 1:
        raise RulesError(f"{origin}: version {data.get('version')!r} is not supported (1)")
    raw_rules = data["rules"]
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(f"{origin}: 'rules' must be a non-empty list")
    rules = [_rule(raw, index, origin) for index, raw in enumerate(raw_rules)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RulesError(f"{origin}: rule id '{rule.id}' is used twice")
        seen.add(rule.id)
    return RuleSet(rules=tuple(rules), source=origin, digest=hashlib.sha256(text.encode("utf-8")).hexdigest())


def starter_rules_path() -> Path:
    return Path(__file__).with_name("starter_rules.yaml")


def load_rules(location: str | Path) -> RuleSet:
    """The rules at ``location`` (a YAML file, or ``builtin`` for the shipped starter set)."""
    path = starter_rules_path() if str(location) == BUILTIN else Path(location).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RulesError(f"inspection rules {path}: cannot be read: {error.strerror or error}") from error
    return parse_rules(text, BUILTIN if str(location) == BUILTIN else str(path))
