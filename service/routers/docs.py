"""``/docs`` and ``/redoc`` with their assets served by the gateway: they work with no internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so ``create_app`` turns them off
(``docs_url=None, redoc_url=None``) and these take their place, pointing at ``/vendor/...``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
_FAVICON = "/favicon.ico"
# The pages may load nothing from other hosts: ReDoc's footer shows a logo from cdn.redoc.ly and
# Swagger UI may fetch a validator badge; the browser drops both without a request. ReDoc runs its
# search in a worker made from a blob, and both libraries set inline styles.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _CSP
    return page


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over the gateway's OpenAPI document."""
    return _offline(get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - API",
        swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url=_FAVICON,
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
    ))


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse)
async def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 helper page (FastAPI serves it next to /docs too)."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the same document, without Google Fonts (which would be another external host)."""
    return _offline(get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - API reference",
        redoc_js_url="/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url=_FAVICON,
        with_google_fonts=False,
    ))
