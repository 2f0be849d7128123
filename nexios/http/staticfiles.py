"""Serve a directory of files: ``app.mount("/static", StaticFiles("static"))``.

Only files inside the directory are ever served: a path with a ``..`` segment, or one
that resolves (through symlinks) outside the directory, is answered 404 like a missing
file, so probing reveals nothing. Files carry ``etag``/``last-modified`` and a matching
``if-none-match`` gets ``304 Not Modified``.
"""

from __future__ import annotations

import asyncio
import os
import stat

from nexios.exceptions import ConfigurationError, HTTPException
from nexios.http.datastructures import Headers, Receive, Scope, Send, route_path
from nexios.http.responses import FileResponse, JSONResponse, RedirectResponse, Response

__all__ = ["StaticFiles"]

_REDIRECT = "redirect"


class StaticFiles:
    """An ASGI app serving the files under ``directory`` to GET and HEAD requests.

    With ``html=True`` a directory is served by its ``index.html`` (``/docs`` is
    redirected to ``/docs/`` first, so relative links in the page work).
    """

    def __init__(self, directory: str | os.PathLike[str], html: bool = False) -> None:
        root = os.path.realpath(directory)
        if not os.path.isdir(root):
            raise ConfigurationError(
                f"StaticFiles directory {os.fspath(directory)!r} does not exist "
                f"(looked for {root!r}); create it or pass the right path."
            )
        self.directory = root
        self.html = html

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = JSONResponse(
                {"detail": "Method Not Allowed"}, 405, {"allow": "GET, HEAD"}
            )
            await response(scope, receive, send)
            return
        path = route_path(scope)
        found = await asyncio.get_running_loop().run_in_executor(None, self.lookup_path, path)
        if found is None:
            response = JSONResponse({"detail": "Not Found"}, 404)
        elif isinstance(found, str):
            query = scope.get("query_string", b"").decode("latin-1")
            response = RedirectResponse(scope["path"] + "/" + (f"?{query}" if query else ""))
        else:
            full_path, stat_result = found
            response = FileResponse(full_path, stat_result=stat_result)
            if _not_modified(scope, response.headers["etag"]):
                response = Response(b"", 304, {"etag": response.headers["etag"]})
        try:
            await response(scope, receive, send)
        except HTTPException as exc:  # the file vanished between lookup and open
            await JSONResponse({"detail": exc.detail}, exc.status_code)(scope, receive, send)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result] | str | None:
        """Find the file for a URL path below the mount: ``(real_path, stat)``,
        ``"redirect"`` for a directory asked without its trailing slash, or ``None``.

        Blocking (it touches the file system); ``__call__`` runs it in a thread.
        """
        parts = [part for part in path.split("/") if part]
        if any(part == ".." or "\\" in part or "\x00" in part for part in parts):
            return None
        found = self._stat_inside(os.path.join(self.directory, *parts))
        if found is None:
            return None
        real, stat_result = found
        if stat.S_ISREG(stat_result.st_mode):
            return found
        if not (self.html and stat.S_ISDIR(stat_result.st_mode)):
            return None
        if not path.endswith("/"):
            return _REDIRECT
        index = self._stat_inside(os.path.join(real, "index.html"))
        if index is not None and stat.S_ISREG(index[1].st_mode):
            return index
        return None

    def _stat_inside(self, candidate: str) -> tuple[str, os.stat_result] | None:
        real = os.path.realpath(candidate)
        if os.path.commonpath((self.directory, real)) != self.directory:
            return None  # a symlink pointing out of the directory
        try:
            return real, os.stat(real)
        except (OSError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"StaticFiles({self.directory!r}, html={self.html})"


def _not_modified(scope: Scope, etag: str) -> bool:
    header = Headers(raw=scope.get("headers", ())).get("if-none-match")
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags
