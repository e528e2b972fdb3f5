"""Translation engines and the service the pipeline calls.

``create_translator(name, **options)`` builds an engine by name so configuration (Dagster resources, the CLI)
can choose one with a string:

- ``"ctranslate2"`` (default, offline): ``model_dir=`` one Argos/CTranslate2 package directory, or
  ``models_dir=`` to serve every pair installed under ``<models_dir>/translate/``; other options go to
  ``CTranslate2Translator`` (device, beam_size, threads, ...).
- ``"gemini"``: ``GeminiTranslator`` options (model, base_url, api_key_env, timeout, max_attempts, ...).
- ``"openai"``: ``OpenAICompatibleTranslator`` options (model, base_url, api_key_env, require_api_key, ...).
- ``"deepl"``: ``DeepLTranslator`` (DeepL API v2: api_key, base_url (default from the key: ``:fx`` = Free),
  model = DeepL ``model_type``, english_variant, portuguese_variant, ...); applies request glossaries itself
  through DeepL glossaries.
- ``"papago"``: ``PapagoTranslator`` (NAVER Cloud Papago Text Translation: client_id, api_key = Client Secret,
  base_url, honorific, ...).

The API engines take their keys from the settings (``TranslateSection.engine_options``), never from run config.
"""

from __future__ import annotations

from typing import Any

from ..registry import EngineRegistry
from .base import Translator, check_translations, glossary_digest, model_id, native_glossary
from .ctranslate2_engine import CTranslate2Router, CTranslate2Translator, discover_models
from .deepl_engine import DeepLTranslator
from .llm_engines import GeminiTranslator, OpenAICompatibleTranslator
from .papago_engine import PapagoTranslator
from .service import TranslationCache, TranslationService

TRANSLATE_ENGINES: EngineRegistry[Translator] = EngineRegistry(
    "translate",
    {"ctranslate2": f"{__name__}.ctranslate2_engine:open_ctranslate2",
     "gemini": f"{__name__}.llm_engines:GeminiTranslator",
     "openai": f"{__name__}.llm_engines:OpenAICompatibleTranslator",
     "deepl": f"{__name__}.deepl_engine:DeepLTranslator",
     "papago": f"{__name__}.papago_engine:PapagoTranslator"},
    aliases={"ct2": "ctranslate2", "argos": "ctranslate2", "opus-mt": "ctranslate2",
             "openai-compatible": "openai", "openai_compatible": "openai", "vllm": "openai", "ollama": "openai",
             "llamacpp": "openai", "naver": "papago"},
    default="ctranslate2",
    label="translation engine",
)


def create_translator(name: str | None = None, **options: Any) -> Translator:
    """Build the translation engine called ``name`` (see the module docstring for the options)."""
    return TRANSLATE_ENGINES.create(name, **options)


__all__ = [
    "TRANSLATE_ENGINES",
    "CTranslate2Router",
    "CTranslate2Translator",
    "DeepLTranslator",
    "GeminiTranslator",
    "OpenAICompatibleTranslator",
    "PapagoTranslator",
    "TranslationCache",
    "TranslationService",
    "Translator",
    "check_translations",
    "create_translator",
    "discover_models",
    "glossary_digest",
    "model_id",
    "native_glossary",
]
