"""The Origin check for browser requests that change state. The allowed origins are the app's
(`app.state.allowed_origins`: the public URL's origin and cors.allowed_origins)."""

from __future__ import annotations

from starlette.requests import Request

from passwordless.platform.errors import ApiError

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def check_origin(request: Request) -> None:
    """A browser request that changes state must come from our own pages or an allowed origin.

    Our pages send `Referrer-Policy: no-referrer`, so a browser posts their forms with
    `Origin: null`; such a post is ours when Fetch Metadata (which no page can forge) says
    it came from this very origin."""
    origin = request.headers.get("origin")
    allowed: frozenset[str] = request.app.state.allowed_origins
    if origin in allowed:
        return
    if origin in (None, "null") and request.headers.get("sec-fetch-site") == "same-origin":
        return
    raise ApiError(403, "forbidden", "This request did not come from an allowed origin.")
