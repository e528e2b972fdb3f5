"""Translation engines and the service the pipeline calls.

``create_translator(name, **options)`` builds an engine by name so configuration (Dagster resources, the CLI)
can choose one with a string:

- ``"ctranslate2"`` (default, offline): ``model_dir=`` one Argos/CTranslate2 package directory, or
  ``models_dir=`` (default ``$IMGTRANS_MODELS_DIR`` or ``<repo>/models``) to serve every pair installed under
  ``<models_dir>/translate/``; other options go to ``CTranslate2Translator`` (device, beam_size, threads, ...).
- ``"gemini"``: ``GeminiTranslator`` options (model, base_url, api_key_env, timeout, max_attempts, ...).
- ``"openai"``: ``OpenAICompatibleTranslator`` options (model, base_url, api_key_env, require_api_key, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.errors import EngineError
from .base import Translator, check_translations, model_id
from .ctranslate2_engine import CTranslate2Router, CTranslate2Translator, discover_models
from .llm_engines import GeminiTranslator, OpenAICompatibleTranslator
from .service import TranslationCache, TranslationService

ENGINE_NAMES = ("ctranslate2", "gemini", "openai")


def create_translator(name: str = "ctranslate2", **options: Any) -> Translator:
    """Build the translation engine called ``name`` (see the module docstring for the options)."""
    key = (name or "ctranslate2").strip().lower()
    if key in ("ctranslate2", "ct2", "argos", "opus-mt"):
        model_dir = options.pop("model_dir", None)
        models_dir = options.pop("models_dir", None)
        if model_dir is not None:
            return CTranslate2Translator(Path(model_dir), **options)
        if models_dir is None:
            from ...setup_models import default_models_dir

            models_dir = default_models_dir()
        return CTranslate2Router(Path(models_dir), **options)
    if key == "gemini":
        return GeminiTranslator(**options)
    if key in ("openai", "openai-compatible", "openai_compatible", "vllm", "ollama", "llamacpp"):
        return OpenAICompatibleTranslator(**options)
    raise EngineError(f"unknown translation engine '{name}' (known: {', '.join(ENGINE_NAMES)})", stage="translate")


__all__ = [
    "ENGINE_NAMES",
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
