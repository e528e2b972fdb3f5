"""Translation engines and the service the pipeline calls.

``create_translator(name, **options)`` builds an engine by name so configuration (Dagster resources, the CLI)
can choose one with a string:

- ``"ctranslate2"`` (default, offline): ``model_dir=`` one Argos/CTranslate2 package directory, or
  ``models_dir=`` to serve every pair installed under ``<models_dir>/translate/``; other options go to
  ``CTranslate2Translator`` (device, beam_size, threads, ...).
- ``"gemini"``: ``GeminiTranslator`` options (model, base_url, api_key_env, timeout, max_attempts, ...).
- ``"openai"``: ``OpenAICompatibleTranslator`` options (model, base_url, api_key_env, require_api_key, ...).
"""

from __future__ import annotations

from typing import Any

from ..registry import EngineRegistry
from .base import Translator, check_translations, model_id
from .ctranslate2_engine import CTranslate2Router, CTranslate2Translator, discover_models
from .llm_engines import GeminiTranslator, OpenAICompatibleTranslator
from .service import TranslationCache, TranslationService

TRANSLATE_ENGINES: EngineRegistry[Translator] = EngineRegistry(
    "translate",
    {"ctranslate2": f"{__name__}.ctranslate2_engine:open_ctranslate2",
     "gemini": f"{__name__}.llm_engines:GeminiTranslator",
     "openai": f"{__name__}.llm_engines:OpenAICompatibleTranslator"},
    aliases={"ct2": "ctranslate2", "argos": "ctranslate2", "opus-mt": "ctranslate2",
             "openai-compatible": "openai", "openai_compatible": "openai", "vllm": "openai", "ollama": "openai",
             "llamacpp": "openai"},
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
    "GeminiTranslator",
    "OpenAICompatibleTranslator",
    "TranslationCache",
    "TranslationService",
    "Translator",
    "check_translations",
    "create_translator",
    "discover_models",
    "model_id",
]
