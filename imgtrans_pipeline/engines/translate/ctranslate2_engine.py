"""Offline machine translation with CTranslate2 models in the Argos Translate package layout.

An Argos package directory (what ``setup_models`` installs under ``models/translate/<pair>/``) holds
``metadata.json`` (``from_code``/``to_code``: the only pair the model translates), a SentencePiece model and the
CTranslate2 model in ``model/``. Argos' conventions, checked against argostranslate 1.9 and the package itself:
source text is SentencePiece-encoded into pieces (no BOS; the model's config adds EOS), there is no target prefix
unless metadata declares ``target_prefix`` (multilingual packages), and output pieces are detokenised by joining
them and turning ``▁`` into spaces (``sp.decode`` would leave ``▁`` in pieces absent from the source-side vocab).
Argos splits paragraphs into sentences with stanza (needs torch); we split on sentence punctuation instead,
which is what matters for OCR'd banner and paragraph text.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...core.errors import EngineError, InvalidRequest, TranslationError, UnsupportedLanguagePair
from ...core.languages import CHARACTER_WRAPPED, normalize_language
from .base import check_translations

logger = logging.getLogger(__name__)

# Argos language codes that differ from ours.
_ARGOS_CODES = {"zt": "zh-Hant", "pb": "pt"}
# A sentence ends at CJK or Latin terminal punctuation (kept with the sentence) or at a line break.
_SENTENCE_SPLIT = re.compile(r"(?<=[。！？!?；;])|\n+")
_TERMINAL_PUNCT = tuple("。．.！!？?…；;:：")


def _canonical(code: str) -> str:
    code = _ARGOS_CODES.get(code, code)
    try:
        return normalize_language(code, field="model language")
    except InvalidRequest:
        return code  # a language core.languages does not know yet: still usable for an exact match


def read_model_pair(model_dir: Path) -> tuple[str, str]:
    """(source, target) canonical codes an Argos package directory declares in its metadata.json."""
    meta_path = Path(model_dir) / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return _canonical(str(meta["from_code"])), _canonical(str(meta["to_code"]))
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"{meta_path}: cannot read the model's language pair: {exc}", stage="translate") from exc


def _ct2_model_path(model_dir: Path) -> Path | None:
    for candidate in (model_dir / "model", model_dir):
        if (candidate / "model.bin").is_file():
            return candidate
    return None


def discover_models(models_dir: Path) -> dict[tuple[str, str], Path]:
    """Installed CTranslate2 translation models under ``<models_dir>/translate/``, keyed by (source, target).

    Directories without metadata.json or model.bin (half-copied, or a different engine's files) are skipped.
    """
    found: dict[tuple[str, str], Path] = {}
    root = Path(models_dir) / "translate"
    if not root.is_dir():
        return found
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir() or not (sub / "metadata.json").is_file():
            continue
        if _ct2_model_path(sub) is None:
            continue
        try:
            pair = read_model_pair(sub)
        except EngineError as exc:
            logger.warning("skipping %s: %s", sub, exc.reason)
            continue
        if pair in found:
            logger.warning("two models for %s -> %s: using %s, ignoring %s", *pair, found[pair], sub)
            continue
        found[pair] = sub
    return found


def split_sentences(text: str) -> list[str]:
    """Split on sentence punctuation and line breaks; a long paragraph translated whole degrades badly."""
    parts = [p.strip() for p in _SENTENCE_SPLIT.split(text)]
    return [p for p in parts if p]


def select_device(device: str = "auto") -> str:
    """"cuda" when asked for or when ``device='auto'`` and CTranslate2 sees a CUDA device, else "cpu"."""
    if device != "auto":
        return device
    import ctranslate2

    try:
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # a broken CUDA install must not stop CPU translation
        return "cpu"


class CTranslate2Translator:
    """One Argos/CTranslate2 model for the one language pair its metadata declares. Thread-safe.

    The model and SentencePiece processor load once in ``__init__`` (0.1 s for zh→en); ``translate_batch``
    sends all sentences of all texts to CTranslate2 in one call, which batches them internally.
    """

    name = "ctranslate2"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "auto",
        inter_threads: int = 1,
        intra_threads: int = 0,
        beam_size: int = 4,
        compute_type: str = "default",
        max_batch_size: int = 32,
        max_decoding_length: int = 256,
        strip_added_period: bool = True,
    ) -> None:
        import ctranslate2
        import sentencepiece as spm

        self.model_dir = Path(model_dir)
        ct2_path = _ct2_model_path(self.model_dir)
        if ct2_path is None:
            raise EngineError(
                f"no CTranslate2 model (model.bin) in {self.model_dir}; run `python -m imgtrans_pipeline.setup_models`",
                stage="translate",
            )
        self.source_lang, self.target_lang = read_model_pair(self.model_dir)
        meta = json.loads((self.model_dir / "metadata.json").read_text(encoding="utf-8"))
        self.target_prefix: str | None = meta.get("target_prefix") or None
        version = meta.get("package_version", "")
        self.model = f"argos-{meta['from_code']}_{meta['to_code']}" + (f"-{version}" if version else "")

        spm_path = self._find_spm(self.model_dir)
        self.device = select_device(device)
        self.beam_size = beam_size
        self.max_batch_size = max_batch_size
        self.max_decoding_length = max_decoding_length
        self.strip_added_period = strip_added_period
        try:
            self._translator = ctranslate2.Translator(
                str(ct2_path),
                device=self.device,
                compute_type=compute_type,
                inter_threads=inter_threads,
                intra_threads=intra_threads,
            )
            self._sp = spm.SentencePieceProcessor(model_file=str(spm_path))
        except Exception as exc:  # any load failure is an engine error naming the path
            raise EngineError(f"cannot load CTranslate2 model {ct2_path}: {exc}", stage="translate") from exc
        self._sp_lock = threading.Lock()  # SentencePieceProcessor is not documented as thread-safe
        logger.info("loaded %s from %s on %s (%s -> %s)", self.model, ct2_path, self.device,
                    self.source_lang, self.target_lang)

    @staticmethod
    def _find_spm(model_dir: Path) -> Path:
        for name in ("sentencepiece.model", "source.spm", "spm.model"):
            if (model_dir / name).is_file():
                return model_dir / name
        raise EngineError(f"no SentencePiece model (sentencepiece.model) in {model_dir}", stage="translate")

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return (source_lang, target_lang) == (self.source_lang, self.target_lang)

    def pairs(self) -> set[tuple[str, str]]:
        return {(self.source_lang, self.target_lang)}

    def _postprocess(self, source: str, translation: str) -> str:
        translation = translation.strip()
        # OPUS-MT ends most outputs with '.', which looks wrong on a banner ("New upgrade.") when the source
        # had no terminal punctuation; keep ellipses and anything the source itself ended with.
        if (self.strip_added_period and translation.endswith(".") and not translation.endswith("..")
                and not source.rstrip().endswith(_TERMINAL_PUNCT)):
            translation = translation[:-1].rstrip()
        return translation

    def translate_batch(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        """Translate ``texts`` (one result per text, "" for blank input) in one CTranslate2 call."""
        if not self.supports(source_lang, target_lang):
            raise UnsupportedLanguagePair(
                source_lang, target_lang, self.name,
                f"model {self.model} in {self.model_dir} translates only {self.source_lang} -> {self.target_lang}",
            )
        texts = list(texts)
        sentences: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            for sentence in split_sentences(unicodedata.normalize("NFKC", text)):
                sentences.append(sentence)
                owners.append(index)
        if not sentences:
            return ["" for _ in texts]
        with self._sp_lock:
            tokens = [self._sp.encode(s, out_type=str) for s in sentences]
        options: dict[str, Any] = {
            "beam_size": self.beam_size,
            "max_batch_size": self.max_batch_size,
            "max_decoding_length": self.max_decoding_length,
            "max_input_length": 512,
        }
        if self.target_prefix:
            options["target_prefix"] = [[self.target_prefix]] * len(tokens)
        try:
            results = self._translator.translate_batch(tokens, **options)
        except Exception as exc:  # CTranslate2 raises plain RuntimeError/ValueError
            raise EngineError(f"CTranslate2 translation failed: {exc}", stage="translate", transient=False) from exc
        pieces: list[list[str]] = [[] for _ in texts]
        for owner, sentence, result in zip(owners, sentences, results, strict=True):
            hyp = list(result.hypotheses[0])
            if self.target_prefix and hyp and hyp[0] == self.target_prefix:
                hyp = hyp[1:]
            decoded = "".join(hyp).replace("▁", " ").strip()
            pieces[owner].append(self._postprocess(sentence, decoded))
        joiner = "" if self.target_lang in CHARACTER_WRAPPED else " "  # no spaces between CJK sentences
        outputs = [joiner.join(p for p in parts if p) for parts in pieces]
        for index, output in enumerate(outputs):
            if not output and texts[index].strip():
                # Texts without letters never reach the engine (the service passes them through), so an empty
                # output is a real failure; the model is deterministic, so retrying cannot help.
                raise TranslationError(
                    f"{self.model} produced an empty translation for {texts[index][:40]!r}", transient=False
                )
        return check_translations(texts, outputs, self.name)


class CTranslate2Router:
    """Every model installed under ``<models_dir>/translate/``, one per pair, each loaded on first use."""

    name = "ctranslate2"

    def __init__(self, models_dir: str | Path, **options: Any) -> None:
        self.models_dir = Path(models_dir)
        self._options = options
        self._dirs = discover_models(self.models_dir)
        if not self._dirs:
            raise EngineError(
                f"no translation model installed under {self.models_dir / 'translate'}; "
                "run `python -m imgtrans_pipeline.setup_models`",
                stage="translate",
            )
        self._loaded: dict[tuple[str, str], CTranslate2Translator] = {}
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return "+".join(f"{s}-{t}:{d.name}" for (s, t), d in sorted(self._dirs.items()))

    def pairs(self) -> set[tuple[str, str]]:
        return set(self._dirs)

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return (source_lang, target_lang) in self._dirs

    def translator_for(self, source_lang: str, target_lang: str) -> CTranslate2Translator:
        pair = (source_lang, target_lang)
        if pair not in self._dirs:
            installed = ", ".join(f"{s}->{t}" for s, t in sorted(self._dirs)) or "none"
            raise UnsupportedLanguagePair(source_lang, target_lang, self.name, f"installed models: {installed}")
        with self._lock:
            if pair not in self._loaded:
                self._loaded[pair] = CTranslate2Translator(self._dirs[pair], **self._options)
            return self._loaded[pair]

    def model_for(self, source_lang: str, target_lang: str) -> str:
        return self.translator_for(source_lang, target_lang).model

    def translate_batch(self, texts: Sequence[str], source_lang: str, target_lang: str) -> list[str]:
        return self.translator_for(source_lang, target_lang).translate_batch(texts, source_lang, target_lang)


def open_ctranslate2(
    *,
    models_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    device: str = "auto",
    inter_threads: int = 1,
    intra_threads: int = 0,
    beam_size: int = 4,
    compute_type: str = "default",
    max_batch_size: int = 32,
    max_decoding_length: int = 256,
    strip_added_period: bool = True,
) -> CTranslate2Translator | CTranslate2Router:
    """The ``ctranslate2`` engine: one model directory (``model_dir``), or every pair installed under
    ``<models_dir>/translate/`` (each model loaded on first use). One of the two is required."""
    options: dict[str, Any] = {"device": device, "inter_threads": inter_threads, "intra_threads": intra_threads,
                               "beam_size": beam_size, "compute_type": compute_type,
                               "max_batch_size": max_batch_size, "max_decoding_length": max_decoding_length,
                               "strip_added_period": strip_added_period}
    if model_dir is not None:
        return CTranslate2Translator(Path(model_dir), **options)
    if models_dir is None:
        raise EngineError("the ctranslate2 engine needs models_dir (or model_dir)", stage="translate",
                          transient=False)
    return CTranslate2Router(Path(models_dir), **options)
