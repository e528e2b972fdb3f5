"""Content inspection: the rules file is validated with errors naming the rule and field; the matcher finds the
starter set's claims in Chinese, Korean and English text (NFKC variants included) and not the known harmless
look-alikes."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgtrans_pipeline.inspection import BUILTIN, Inspector, RulesError, load_rules, parse_rules, verdict
from imgtrans_pipeline.inspection.matcher import TextBlockRef


@pytest.fixture(scope="module")
def starter() -> Inspector:
    return Inspector(load_rules(BUILTIN))


def _hits(inspector: Inspector, text: str, lang: str) -> list[tuple[str, str]]:
    return [(m.rule, m.text) for m in inspector.inspect_text(text, lang)]


@pytest.mark.parametrize(("document", "message"), [
    ("rules: [", "not valid YAML"),
    ("- a\n- b", "must be a mapping with a 'rules' list"),
    ("rules: []", "'rules' must be a non-empty list"),
    ("version: 2\nrules: [{id: a, lang: zh, category: c, action: flag, phrases: [x]}]", "version 2"),
    ("rules: [{id: a, lang: zh, category: c, action: block, phrases: [x]}]",
     "rule 'a': 'action' must be one of flag, review, reject (got 'block')"),
    ("rules: [{id: a, lang: zh, category: c, action: flag}]", "rule 'a': needs at least one entry"),
    ("rules: [{id: a, lang: zh, category: c, action: flag, patterns: ['(unclosed']}]",
     "rule 'a': pattern '(unclosed' is not a valid regular expression"),
    ("rules: [{id: a, category: c, action: flag, phrases: [x]}]", "rule 'a': 'lang' is required"),
    ("rules: [{id: a, lang: zh, action: flag, phrases: [x]}]", "rule 'a': 'category' is required"),
    ("rules: [{id: 'bad id', lang: zh, category: c, action: flag, phrases: [x]}]", "rule 'bad id': 'id' must be"),
    ("rules: [{id: a, lang: zh, category: c, action: flag, phrases: [x], colour: red}]",
     "rule 'a': unknown key(s) colour"),
    ("rules: [{id: a, lang: zh, category: c, action: flag, phrases: [x, '']}]",
     "rule 'a': 'phrases' must be a list of non-empty strings"),
    ("rules: [{id: a, lang: zh, category: c, action: flag, phrases: [x]},"
     " {id: a, lang: ko, category: c, action: flag, phrases: [y]}]", "rule id 'a' is used twice"),
    ("rules: [42]", "rule #1: must be a mapping"),
])
def test_rules_file_errors_name_the_rule_and_field(document, message):
    with pytest.raises(RulesError) as error:
        parse_rules(document, "shop.yaml")
    assert message in str(error.value) and str(error.value).startswith("shop.yaml")


def test_missing_rules_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(RulesError, match="cannot be read"):
        load_rules(tmp_path / "nope.yaml")


def test_starter_set_loads_and_is_shipped_as_package_data():
    rules = load_rules(BUILTIN)
    assert {r.id for r in rules.rules} >= {"zh-absolute-banned", "ko-absolute-claim", "en-medical-claim"}
    assert {r.action for r in rules.rules} == {"review", "reject"}
    assert len(rules.digest) == 64


@pytest.mark.parametrize(("text", "lang", "expected", "final"), [
    ("全网第一 国家级品质", "zh", [("zh-absolute-banned", "全网第一"), ("zh-absolute-banned", "国家级")], "reject"),
    ("１００％有效", "zh", [("zh-absolute-banned", "100%有效")], "reject"),  # full-width digits and percent
    ("最 好 的 面 膜", "zh", [("zh-absolute-claim", "最 好")], "review"),  # OCR put spaces between characters
    ("本品可治疗湿疹", "zh", [("zh-medical-claim", "治疗")], "reject"),
    ("國家級認證", "zh", [("zh-absolute-banned", "國家級")], "reject"),
    ("부작용없음! 최고의 크림", "ko", [("ko-absolute-banned", "부작용없음"), ("ko-absolute-claim", "최고")], "reject"),
    ("여드름 치료 효과", "ko", [("ko-medical-claim", "여드름 치료")], "reject"),  # the longest phrase at the left
    ("The BEST in the World", "en", [("en-absolute-claim", "best in the world")], "review"),
    ("This cream cures acne", "en", [("en-medical-claim", "cures")], "reject"),
    ("ｃｕｒｅｓ　ａｃｎｅ", "en", [("en-medical-claim", "cures")], "reject"),  # full-width Latin
    ("World’s best serum", "en", [("en-absolute-claim", "world's best")], "review"),  # curly apostrophe
])
def test_starter_claims_are_found(starter, text, lang, expected, final):
    matches = starter.inspect_text(text, lang)
    assert [(m.rule, m.text) for m in matches] == expected
    assert verdict(matches) == final


@pytest.mark.parametrize(("text", "lang"), [
    ("最近上新 最新款 最后一天", "zh"),  # 最 alone is never a rule
    ("第一次使用 第一步 清洁", "zh"),  # neither is 第一
    ("最佳赏味期12个月", "zh"),  # excepted: best-before period on food
    ("오늘 최고기온 30도", "ko"),  # excepted: a weather/spec word
    ("Secures the lid; UV cure in 30 s", "en"),  # whole words only; the adhesive phrase is excepted
    ("限时特价 买一送一", "zh"),
])
def test_harmless_look_alikes_pass(starter, text, lang):
    assert _hits(starter, text, lang) == []


def test_rules_apply_to_their_language_and_record_block_and_box(starter):
    blocks = [TextBlockRef(0, "限时特价", (10, 10, 200, 60)), TextBlockRef(1, "全网第一", (10, 80, 200, 130))]
    (match,) = starter.inspect(blocks, "zh", on="source")
    assert match.to_dict() == {"rule": "zh-absolute-banned", "category": "advertising_absolute", "action": "reject",
                               "text": "全网第一", "on": "source", "lang": "zh", "block": 1,
                               "box": [10.0, 80.0, 200.0, 130.0], "block_text": "全网第一"}
    assert starter.inspect_text("全网第一", "ko") == []  # a zh rule does not read Korean text
    assert _hits(starter, "cures", "zh-Hant") == []
    assert _hits(starter, "治愈", "zh-Hant") == [("zh-medical-claim", "治愈")]  # primary subtag matches
    assert [m.rule for m in starter.inspect_text("cures 全网第一", None)] == ["zh-absolute-banned",
                                                                          "en-medical-claim"]  # unknown: all


def test_own_rules_with_patterns_and_exceptions():
    rules = parse_rules("""
rules:
  - id: shop-discount
    lang: any
    category: pricing
    action: flag
    patterns: ['\\d+\\s*折起']
    except: [9折起]
""")
    inspector = Inspector(rules)
    assert _hits(inspector, "全场３折起", "zh") == [("shop-discount", "3折起")]
    assert _hits(inspector, "全场9折起", "zh") == []
    assert verdict([]) == "pass"


def test_dated_log_files_switch_at_midnight_and_keep_the_request_id(tmp_path):
    import logging
    import time as _time

    from imgtrans_pipeline.core.logs import dated_line_logger, log_line

    now = [_time.mktime((2026, 1, 31, 23, 59, 0, 0, 0, -1))]
    logger = dated_line_logger(tmp_path, "daemon", backup_count=2, clock=lambda: now[0])
    log_line(logger, "daemon", "request.failed request_id=sv-1 stage=inspect")
    now[0] += 120  # past midnight
    log_line(logger, "daemon", "2026 - publish - request sv-2 succeeded: file:///x")
    now[0] += 86400
    log_line(logger, "daemon", "plain line")
    for handler in logger.handlers:
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["daemon_20260201.log", "daemon_20260202.log"]  # the oldest day removed (2 kept)
    assert " daemon request_id=sv-2 " in (tmp_path / "daemon_20260201.log").read_text()
    assert " daemon request_id=- plain line" in (tmp_path / "daemon_20260202.log").read_text()
    assert logging.getLogger("imgtrans.dated.daemon").propagate is False
