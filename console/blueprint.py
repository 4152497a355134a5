"""The web console's files: `GET /api/console` (the page) and `GET /api/console/{*path}`.

Anonymous on purpose: the page holds no data; it asks for the function key and calls the API
with it, so the API's own authorization protects everything (design.md section 5). Only files
inside `static/` are served, with a strict Content-Security-Policy: every value in the console is
rendered as text, and the policy makes a mistake there inert too (no inline script or style).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import azure.functions as func

from sms_http import handle, new_blueprint, problem_response
from sms_http.problems import problem

bp_static = Path(__file__).resolve().parent / "static"

# A content type per extension we ship; anything else is not served (no guessing from the
# platform's mimetypes table, which differs between machines).
_TYPES = {
    ".html": ("text/html", "utf-8"),
    ".js": ("text/javascript", "utf-8"),
    ".css": ("text/css", "utf-8"),
    ".svg": ("image/svg+xml", "utf-8"),
    ".png": ("image/png", None),
    ".ico": ("image/x-icon", None),
    ".json": ("application/json", "utf-8"),
}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The page and the modules change with each deploy and are small: revalidate each time (the
# ETag makes it a 304), so a new version is never mixed with cached old modules.
_CACHE = "no-cache"

bp = new_blueprint()


def _not_found(path: str) -> func.HttpResponse:
    response = problem_response(problem(404, "Not Found",
                                        f"The console has no file {path!r}.", "not-found"))
    for name, value in _SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def resolve(path: str) -> Path | None:
    """The file in static/ that `path` names, or None: no `..`, hidden or empty segments,
    backslashes or NULs, nothing that resolves (symlinks included) outside static/."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return None
    parts = PurePosixPath(path).parts
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    candidate = (bp_static / Path(*parts)).resolve()
    if not candidate.is_relative_to(bp_static) or not candidate.is_file():
        return None
    if candidate.suffix not in _TYPES:
        return None
    return candidate


def serve(req: func.HttpRequest, path: str) -> func.HttpResponse:
    """The file's answer: 200 with its type, the security and cache headers, an ETag; 304 when
    the browser's copy is current; a 404 problem for anything else."""
    file = resolve(path)
    if file is None:
        return _not_found(path)
    body = file.read_bytes()
    stat = file.stat()
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    headers = {**_SECURITY_HEADERS, "Cache-Control": _CACHE, "ETag": etag}
    if req.headers.get("if-none-match") == etag:
        return func.HttpResponse(status_code=304, headers=headers)
    # The type goes in mimetype/charset: the worker writes Content-Type from them (a
    # Content-Type in `headers` would be replaced by the text/plain default).
    mimetype, charset = _TYPES[file.suffix]
    return func.HttpResponse(body, status_code=200, headers=headers, mimetype=mimetype,
                             charset=charset or "utf-8")


@bp.route(route="console", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def console_page(req: func.HttpRequest) -> func.HttpResponse:
    """The console's page (index.html)."""
    return handle(req, lambda: serve(req, "index.html"))


@bp.route(route="console/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def console_files(req: func.HttpRequest) -> func.HttpResponse:
    """The console's modules, stylesheet and images; an empty path is the page."""
    return handle(req, lambda: serve(req, req.route_params.get("path") or "index.html"))
