"""The imgtrans web app: Starlette routes served by uvicorn (monitoring endpoints now, the review page next)."""

from .app import check_token_rule, create_app, is_loopback
from .server import WebServer

__all__ = ["WebServer", "check_token_rule", "create_app", "is_loopback"]
