"""Content inspection: rules (phrase lists and regex patterns per language, each with a category and an action)
applied to the text an image carries and to its translation.

Plain Python (no Dagster): :func:`load_rules` reads and validates a YAML rules file (or the starter set shipped
in ``starter_rules.yaml``), :class:`Inspector` finds the matches in text blocks, :func:`verdict` says what the
strongest action among them is. The pipeline stage that applies it is ``pipeline.stages.inspect``.
"""

from .matcher import Inspector, Match, verdict
from .rules import ACTIONS, BUILTIN, Rule, RulesError, RuleSet, load_rules, parse_rules, starter_rules_path

__all__ = ["ACTIONS", "BUILTIN", "Inspector", "Match", "Rule", "RuleSet", "RulesError", "load_rules", "parse_rules",
           "starter_rules_path", "verdict"]
