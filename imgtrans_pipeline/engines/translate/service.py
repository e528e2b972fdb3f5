"""Translation as the pipeline uses it: cache, glossary, pass-through rules and reply validation around an engine.

Why this layer exists:
- A product catalogue repeats the same phrases on hundreds of images ("全新升级", "包邮"), so translations are
  cached persistently in SQLite (WAL, shared by every worker process) keyed by engine, model, pair and text,
  and each image needs at most one batched engine call for the texts not cached yet.
- A glossary (brand names, fixed product terms) must win over any engine. Terms inside a text are swapped for
  placeholders (``[0]``, which OPUS-MT and LLMs both copy through) and substituted back after translation;
  a text that *is* a glossary term maps directly without an engine call. If the engine mangles a placeholder,
  the original text and the term are translated plainly and the term's translation is replaced in the output;
  the glossary value's presence is verified and a miss is logged. Engines that apply glossaries themselves
  (DeepL, see ``base.native_glossary``) get the original texts and the glossary instead; their cache entries are
  keyed by the glossary too.
- Blank texts and texts with nothing to translate (prices, numbers, Latin text in a CJK image, URLs: see
  ``core.keep``) pass through untouched: engines hallucinate on them (OPUS-MT turns "¥99" into "Zoom 99").
- A translation memory (``memory``: curated whole-text entries, e.g. reviewers' corrections, per catalogue or
  shop scope) is consulted first: a text it knows takes the entry's translation without an engine call. Every
  result says per text where its translation came from (``TranslationResult.sources``: memory, glossary, cache,
  engine + model, passthrough), so a reviewer sees why.
- Every number of a source text must come back, with its unit (``numbers``): number words are put back in
  digits, yuan shown as dollars become ¥, and texts still missing a number are translated once more with the
  numbers as placeholders. A number lost even then is flagged (``TranslationResult.flags``).
- Given a ``PageText`` (the pipeline builds one per image) and an engine that translates pages (the LLM
  engines), the texts not cached go to the engine in one page call with their roles, budgets, the image and the
  request context, and the glossary travels as a list the reply is checked against (no placeholders: the model
  sees the real text). Those translations are cached under the model id plus a hash of the context and glossary,
  because both change what the model writes; translations still flagged after the engine's retry are not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ...core.errors import InvalidRequest, UnsupportedLanguagePair
from ...core.keep import keep_reason
from ...core.languages import AUTO
from ...core.sqlite import SqliteFile
from ...core.types import TranslationResult
from .base import PageText, PageTranslator, Translator, check_translations, glossary_digest, model_id, native_glossary
from .memory import MemoryEntry, TranslationMemory
from .numbers import collapse_brand_echo, missing_numbers, protect_numbers, repair_numbers, restore_numbers

logger = logging.getLogger(__name__)

_EXISTING_PLACEHOLDER = re.compile(r"\[\s*\d+\s*\]")


def _placeholder(index: int) -> str:
    return f"[{index}]"


def _placeholder_pattern(index: int) -> re.Pattern[str]:
    return re.compile(rf"\[\s*{index}\s*\]")


class TranslationCache(SqliteFile):
    """Persistent (engine, model, source, target, text) → translation store in one SQLite file.

    Thread-safe (one connection per process behind a lock) and process-safe (WAL journal, busy timeout), so
    every worker of a run, and every later run, reuses what any of them translated. ``":memory:"`` works too.
    """

    SCHEMA = ("""
        CREATE TABLE IF NOT EXISTS translations (
            engine TEXT NOT NULL, model TEXT NOT NULL, source_lang TEXT NOT NULL, target_lang TEXT NOT NULL,
            source_text TEXT NOT NULL, translation TEXT NOT NULL, created_at REAL NOT NULL,
            PRIMARY KEY (engine, model, source_lang, target_lang, source_text)
        ) WITHOUT ROWID
    """,)

    def get_many(self, engine: str, model: str, source_lang: str, target_lang: str,
                 texts: Iterable[str]) -> dict[str, str]:
        """Cached translations for those of ``texts`` that have one."""
        wanted = list(dict.fromkeys(texts))
        found: dict[str, str] = {}
        with self._lock:
            conn = self._connection()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT source_text, translation FROM translations WHERE engine=? AND model=? AND source_lang=?"
                    f" AND target_lang=? AND source_text IN ({marks})",
                    (engine, model, source_lang, target_lang, *chunk),
                )
                found.update(dict(rows.fetchall()))
        return found

    def put_many(self, engine: str, model: str, source_lang: str, target_lang: str,
                 pairs: Mapping[str, str]) -> None:
        now = time.time()
        rows = [(engine, model, source_lang, target_lang, s, t, now) for s, t in pairs.items()]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM translations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


@dataclass
class _Item:
    """How one input text is handled."""

    text: str  # stripped input
    final: str | None = None  # set when no engine call is needed (blank, pass-through, whole-text glossary)
    engine_text: str = ""  # what is sent to the engine (placeholders in place of glossary terms)
    terms: list[tuple[str, str]] = field(default_factory=list)  # (matched source term, glossary value)
    flags: list[str] = field(default_factory=list)  # problems left in the translation ("number_lost:5折")
    origin: str = "engine"  # where ``final`` came from: memory, glossary, passthrough, cache or engine
    memory: MemoryEntry | None = None


class TranslationService:
    """Memory + cache + glossary + validation around one ``Translator``; ``translate`` is what the pipeline calls.

    ``glossary`` applies to every request; ``scoped_glossaries`` ({scope: {term: translation}}) to requests of
    that scope, over the global one."""

    def __init__(self, translator: Translator, cache: TranslationCache | None = None,
                 glossary: Mapping[str, str] | None = None, memory: TranslationMemory | None = None,
                 scoped_glossaries: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.translator = translator
        self.cache = cache
        self.glossary = dict(glossary or {})
        self.memory = memory
        self.scoped_glossaries = {scope: dict(terms) for scope, terms in (scoped_glossaries or {}).items()}

    def check_pair(self, source_lang: str, target_lang: str) -> None:
        """Raise ``UnsupportedLanguagePair`` (permanent) when the engine does not translate this pair."""
        if not self.translator.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(source_lang, target_lang, self.translator.name)

    def version(self) -> str:
        return f"{self.translator.name}:{self.translator.model}"

    @property
    def page_aware(self) -> bool:
        """Whether the engine translates whole pages (then ``translate`` makes use of a ``PageText``)."""
        return isinstance(self.translator, PageTranslator)

    @property
    def wants_image(self) -> bool:
        """Whether a page-aware engine sends the image (``IMGTRANS_TRANSLATE_SEND_IMAGE``)."""
        return self.page_aware and bool(getattr(self.translator, "send_image", True))

    # -- glossary --------------------------------------------------------------------------------------------

    @staticmethod
    def _normalise(text: str) -> str:
        return unicodedata.normalize("NFKC", text).strip().casefold()

    def _prepare(self, text: str, source_lang: str, target_lang: str, lookup: Mapping[str, str],
                 term_regex: re.Pattern[str] | None, placeholders: bool = True) -> _Item:
        stripped = text.strip()
        item = _Item(stripped)
        if not stripped:
            item.final, item.origin = "", "passthrough"
            return item
        if self._normalise(stripped) in lookup:
            item.final, item.origin = lookup[self._normalise(stripped)], "glossary"
            return item
        if keep_reason(stripped, source_lang, target_lang) is not None:
            item.final, item.origin = stripped, "passthrough"
            return item
        item.engine_text = stripped
        if term_regex is None:
            return item
        terms: list[tuple[str, str]] = []
        use_placeholders = not _EXISTING_PLACEHOLDER.search(stripped)

        def swap(match: re.Match[str]) -> str:
            value = lookup.get(self._normalise(match.group(0)))
            if value is None:  # IGNORECASE matched a spelling casefold/NFKC does not equate: leave it alone
                return match.group(0)
            terms.append((match.group(0), value))
            return _placeholder(len(terms) - 1)

        replaced = term_regex.sub(swap, stripped)
        item.terms = terms
        if terms and use_placeholders and placeholders:
            item.engine_text = replaced
        return item

    @staticmethod
    def _restore(translation: str, item: _Item) -> str | None:
        """Put glossary values back in place of the placeholders; None when one is missing (mangled)."""
        out = translation
        for index, (_term, value) in enumerate(item.terms):
            pattern = _placeholder_pattern(index)
            if not pattern.search(out):
                return None
            out = pattern.sub(lambda _m, v=value: v, out)
        return re.sub(r"\s{2,}", " ", out).strip()

    # -- main entry ------------------------------------------------------------------------------------------

    def translate(self, texts: Sequence[str], source_lang: str, target_lang: str,
                  glossary: Mapping[str, str] | None = None, page: PageText | None = None,
                  scope: str = "") -> TranslationResult:
        """Translate one image's texts (one result per text, same order) with at most one engine call
        for everything not in the memory or cached (two when the engine mangled a glossary placeholder).

        ``page``: the same texts as page blocks (block ``i`` is ``texts[i]``) with what a page-aware engine
        uses; ignored by other engines. ``scope`` (a catalogue or shop id) selects that scope's glossary section
        and memory entries first."""
        texts = list(texts)
        if source_lang == AUTO:
            raise InvalidRequest("source_lang", "'auto' must be resolved (e.g. from OCR) before translation")
        engine = self.translator.name
        if source_lang == target_lang:
            logger.info("source and target are both %s: texts pass through untranslated", source_lang)
            return TranslationResult(texts, [t.strip() for t in texts], source_lang, target_lang, engine, "identity",
                                     sources=[{"origin": "passthrough", "reason": "same language"} for _ in texts])
        if not self.translator.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(source_lang, target_lang, engine)
        model = model_id(self.translator, source_lang, target_lang)

        layers = (("global", self.glossary), (f"scope:{scope}", self.scoped_glossaries.get(scope, {}) if scope else {}),
                  ("request", glossary or {}))
        merged = {k.strip(): v.strip() for _label, terms in layers for k, v in terms.items() if k.strip()}
        term_from = {self._normalise(k): label for label, terms in layers for k in terms if k.strip()}
        term_regex = None
        if merged:
            terms = sorted(merged, key=len, reverse=True)  # longest first so "耐克Air" beats "耐克"
            term_regex = re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)
        lookup = {self._normalise(k): v for k, v in merged.items()}
        # An engine with its own glossaries gets the terms as they are, and the glossary with them.
        native = bool(merged) and native_glossary(self.translator, source_lang, target_lang)
        engine_glossary = merged if native else None
        remembered = self.memory.lookup_many(texts, source_lang, target_lang, scope) if self.memory else {}
        items = [self._remembered(t, remembered[t]) if t in remembered
                 else self._prepare(t, source_lang, target_lang, lookup, term_regex, placeholders=not native)
                 for t in texts]

        pending = [it for it in items if it.final is None]
        if page is not None and self.page_aware:
            if len(page.blocks) != len(items):
                raise ValueError(f"page has {len(page.blocks)} blocks for {len(items)} texts")
            hits = self._translate_page(page, items, merged, source_lang, target_lang, engine, model)
            self._keep_numbers(pending, source_lang, target_lang, engine, model)
            return self._result(texts, items, source_lang, target_lang, engine, model, hits,
                                [self._provenance(it, engine, model, term_from, source_lang, target_lang)
                                 for it in items])
        cached_texts: set[str] = set()
        engine_out, hits = self._translate_engine_texts([it.engine_text for it in pending], source_lang,
                                                        target_lang, engine, model, engine_glossary,
                                                        cached_texts=cached_texts)
        for it in pending:
            it.origin = "cache" if it.engine_text in cached_texts else "engine"
        mangled: list[_Item] = []
        for it in pending:
            raw = engine_out[it.engine_text]
            if it.terms and not native:
                # Placeholders not used (the text already had "[n]"-like parts) count as mangled: post-replace.
                restored = self._restore(raw, it) if it.engine_text != it.text else None
                if restored is None:
                    mangled.append(it)
                    continue
                it.final = restored
            else:
                it.final = raw
        if mangled:
            self._fallback_glossary(mangled, source_lang, target_lang, engine, model)
        self._keep_numbers(pending, source_lang, target_lang, engine, model, engine_glossary)
        return self._result(texts, items, source_lang, target_lang, engine, model, hits,
                            [self._provenance(it, engine, model, term_from, source_lang, target_lang) for it in items])

    @staticmethod
    def _remembered(text: str, entry: MemoryEntry) -> _Item:
        return _Item(text.strip(), final=entry.translation, origin="memory", memory=entry)

    def _provenance(self, it: _Item, engine: str, model: str, term_from: Mapping[str, str], source_lang: str,
                    target_lang: str) -> dict[str, object]:
        """Where ``it``'s translation came from, for translation.json and meta.json."""
        source: dict[str, object] = {"origin": it.origin}
        if it.memory is not None:
            source.update(it.memory.provenance())
        elif it.origin == "glossary":
            source["glossary"] = term_from.get(self._normalise(it.text), "request")
        elif it.origin == "passthrough":
            source["reason"] = f"keep:{keep_reason(it.text, source_lang, target_lang)}" if it.text else "blank"
        else:
            source.update(engine=engine, model=model)
            if it.terms:
                source["glossary_terms"] = [{"term": term, "translation": value,
                                             "glossary": term_from.get(self._normalise(term), "request")}
                                            for term, value in it.terms]
        return source

    @staticmethod
    def _result(texts: list[str], items: list[_Item], source_lang: str, target_lang: str, engine: str, model: str,
                hits: int, sources: list[dict[str, object]] | None = None) -> TranslationResult:
        for it in items:
            for term, value in it.terms:
                if value and value.casefold() not in (it.final or "").casefold():
                    logger.warning("glossary term %r -> %r missing from translation %r of %r",
                                   term, value, it.final, it.text)
        translations = [it.final or "" for it in items]
        flags = {index: it.flags for index, it in enumerate(items) if it.flags}
        return TranslationResult(texts, translations, source_lang, target_lang, engine, model, cache_hits=hits,
                                 flags=flags, sources=list(sources or []))

    def _translate_page(self, page: PageText, items: list[_Item], glossary: Mapping[str, str], source_lang: str,
                        target_lang: str, engine: str, model: str) -> int:
        """Fill ``final`` of the pending items from the cache or one page call; the number of cache hits."""
        digest = hashlib.sha256(json.dumps([sorted(page.context.items()), sorted(glossary.items())],
                                           ensure_ascii=False).encode()).hexdigest()[:12]
        cache_model = f"{model}|page:{digest}"
        first: dict[str, int] = {}  # text -> index of its first block; repeats share its translation
        for index, it in enumerate(items):
            if it.final is None:
                first.setdefault(it.text, index)
        cached = (self.cache.get_many(engine, cache_model, source_lang, target_lang, first)
                  if self.cache is not None else {})
        hits = sum(1 for it in items if it.final is None and it.text in cached)
        missing = [text for text in first if text not in cached]
        result = dict(cached)
        if missing:
            blocks = []
            for text in missing:
                block = page.blocks[first[text]]
                budgets = [page.blocks[i].budget for i, it in enumerate(items) if it.final is None and it.text == text]
                blocks.append(replace(block, text=text, budget=min(budgets)))
            used = {k: v for k, v in glossary.items() if any(k.casefold() in t.casefold() for t in missing)}
            logger.debug("%s/%s: translating %d block(s) as a page, %d cached", engine, model, len(missing),
                         len(cached))
            reply = self.translator.translate_page(page.with_blocks(blocks, used), source_lang,  # type: ignore[attr-defined]
                                                   target_lang)
            got = [reply.translations.get(block.id) for block in blocks]
            fresh = dict(zip(missing, check_translations(missing, got, engine), strict=True))
            flags = {text: list(reply.flags.get(block.id, [])) for text, block in zip(missing, blocks, strict=True)}
            if self.cache is not None:
                self.cache.put_many(engine, cache_model, source_lang, target_lang,
                                    {t: v for t, v in fresh.items() if not flags[t]})
            result.update(fresh)
            for it in items:
                if it.final is None:
                    it.flags.extend(flags.get(it.text, []))
        for it in items:
            if it.final is None:
                it.final = result[it.text]
                it.origin = "cache" if it.text in cached else "engine"
        return hits

    def _translate_engine_texts(self, engine_texts: list[str], source_lang: str, target_lang: str,
                                engine: str, model: str, glossary: Mapping[str, str] | None = None,
                                cached_texts: set[str] | None = None) -> tuple[dict[str, str], int]:
        """Translations for ``engine_texts`` from the cache or one engine call; also the number of cache hits.

        ``glossary`` goes to an engine that applies it itself. A text's cache entry is then keyed by the glossary
        entries found in that text (none: the plain entry), so texts without a term share the cache whatever
        glossary their request had."""
        unique = list(dict.fromkeys(engine_texts))
        keys = {text: self._cache_model(model, text, glossary) for text in unique}
        cached: dict[str, str] = {}
        if self.cache is not None:
            for key in dict.fromkeys(keys.values()):
                group = [t for t in unique if keys[t] == key]
                cached.update(self.cache.get_many(engine, key, source_lang, target_lang, group))
        hits = sum(1 for t in engine_texts if t in cached)
        if cached_texts is not None:
            cached_texts.update(cached)
        missing = [t for t in unique if t not in cached]
        result = dict(cached)
        if missing:
            logger.debug("%s/%s: translating %d text(s), %d cached", engine, model, len(missing), len(cached))
            if glossary:
                reply = self.translator.translate_batch(missing, source_lang, target_lang,  # type: ignore[call-arg]
                                                        glossary=glossary)
            else:
                reply = self.translator.translate_batch(missing, source_lang, target_lang)
            fresh = check_translations(missing, reply, engine)
            new = dict(zip(missing, fresh, strict=True))
            if self.cache is not None:
                for key in dict.fromkeys(keys[t] for t in missing):
                    self.cache.put_many(engine, key, source_lang, target_lang,
                                        {t: v for t, v in new.items() if keys[t] == key})
            result.update(new)
        return result, hits

    def _cache_model(self, model: str, text: str, glossary: Mapping[str, str] | None) -> str:
        """The cache's model key for ``text``: ``model``, plus a digest of the glossary entries the text holds."""
        if not glossary:
            return model
        folded = self._normalise(text)
        relevant = {k: v for k, v in glossary.items() if self._normalise(k) in folded}
        return f"{model}+glossary:{glossary_digest(relevant)}" if relevant else model

    def _fallback_glossary(self, items: list[_Item], source_lang: str, target_lang: str,
                           engine: str, model: str) -> None:
        """Translate the original texts and the glossary terms alone, then replace each term's translation."""
        logger.info("engine mangled glossary placeholders in %d text(s): falling back to post-replacement",
                    len(items))
        wanted = [it.text for it in items] + [term for it in items for term, _ in it.terms]
        out, _ = self._translate_engine_texts(wanted, source_lang, target_lang, engine, model)
        for it in items:
            final = out[it.text]
            for term, value in it.terms:
                term_translation = out.get(term, "").strip().rstrip(".")
                if term_translation and value.casefold() not in final.casefold():
                    final = re.sub(re.escape(term_translation), lambda _m, v=value: v, final, flags=re.IGNORECASE)
            it.final = final

    def _keep_numbers(self, items: list[_Item], source_lang: str, target_lang: str, engine: str, model: str,
                      glossary: Mapping[str, str] | None = None) -> None:
        """Make every number of each source come back (see ``numbers``): repair the text, else translate once more
        with the numbers protected by placeholders, else flag what is lost."""
        retry: list[tuple[_Item, str, list[str], int]] = []
        for it in items:
            final = collapse_brand_echo(it.text, repair_numbers(it.text, it.final or "", target_lang))
            it.final = final
            if missing_numbers(it.text, final) and not _EXISTING_PLACEHOLDER.search(it.text):
                # Glossary placeholders [0..k-1] may already be in the engine text: numbers continue from k.
                first = len(it.terms) if it.engine_text != it.text else 0
                protected, values = protect_numbers(it.engine_text, target_lang, first)
                retry.append((it, protected, values, first))
        if not retry:
            return
        logger.info("%d translation(s) lost a number: translating again with the numbers protected", len(retry))
        out, _ = self._translate_engine_texts([r[1] for r in retry], source_lang, target_lang, engine, model,
                                              glossary)
        for it, protected, values, first in retry:
            candidate = restore_numbers(out[protected], values, first)
            if candidate is not None and first:
                candidate = self._restore(candidate, it)
            before = missing_numbers(it.text, it.final or "")
            if candidate is not None:
                candidate = repair_numbers(it.text, candidate, target_lang)
                after = missing_numbers(it.text, candidate)
                if len(after) < len(before):
                    it.final, before = candidate, after
            for number in before:
                it.flags.append(f"number_lost:{number.text}")
                logger.warning("number %r of %r missing from its translation %r", number.text, it.text, it.final)
