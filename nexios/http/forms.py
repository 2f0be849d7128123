"""Parsing ``multipart/form-data`` as the body arrives, with python-multipart.

The parser runs chunk by chunk over ``request.stream()``: text fields are collected in
memory (each bounded by ``max_part_size``), file parts are written to
:class:`~nexios.http.datastructures.UploadFile` objects that keep up to
``spool_max_size`` bytes in memory and roll over to a temporary file on disk after
that. Counts are bounded too (``max_files``, ``max_fields``). Anything malformed — no
closing boundary, a part without a name, a broken header — is HTTP 400, and the files
made so far are closed.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from nexios.exceptions import HTTPException
from nexios.http.datastructures import FormData, Headers, UploadFile

__all__ = ["FormLimits", "parse_multipart"]


@dataclass(frozen=True, slots=True)
class FormLimits:
    """Bounds on one multipart form; going over any of them is HTTP 400."""

    max_files: int = 1000
    max_fields: int = 1000
    max_part_size: int = 1024 * 1024
    """Largest text field, in bytes (files are bounded by the body-size limit only)."""
    spool_max_size: int = 1024 * 1024
    """Bytes of an uploaded file kept in memory before it rolls over to disk."""


class _Events:
    """python-multipart's callbacks, recorded so that they can be handled with awaits."""

    def __init__(self) -> None:
        self.queue: list[tuple[str, bytes]] = []
        self.ended = False

    def callbacks(self) -> dict[str, Any]:
        def record(name: str) -> Any:
            def callback(data: bytes | None = None, start: int = 0, end: int = 0) -> None:
                self.queue.append((name, b"" if data is None else data[start:end]))

            return callback

        names = (
            "part_begin",
            "part_data",
            "part_end",
            "header_field",
            "header_value",
            "headers_finished",
        )
        callbacks = {f"on_{name}": record(name) for name in names}
        callbacks["on_header_end"] = record("header_end")
        callbacks["on_end"] = self._end
        return callbacks

    def _end(self) -> None:
        self.ended = True


class _Builder:
    """Turns recorded events into form items, enforcing the limits."""

    def __init__(self, limits: FormLimits) -> None:
        self.limits = limits
        self.items: list[tuple[str, str | UploadFile]] = []
        self.files = 0
        self.fields = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._name = ""
        self._text: bytearray | None = None
        self._file: UploadFile | None = None

    async def handle(self, event: str, data: bytes) -> None:
        if event == "part_data":
            await self._part_data(data)
        elif event == "header_field":
            self._field += data
        elif event == "header_value":
            self._value += data
        elif event == "header_end":
            self._headers.append((bytes(self._field).lower(), bytes(self._value)))
            self._field.clear()
            self._value.clear()
        elif event == "headers_finished":
            self._start_part()
        elif event == "part_begin":
            self._headers = []
            self._text = None
            self._file = None
        elif event == "part_end":
            self._part_end()

    def _start_part(self) -> None:
        headers = Headers(raw=self._headers)
        _, options = parse_options_header(headers.get("content-disposition"))
        name = options.get(b"name")
        if name is None:
            raise _bad("a part has no name in its Content-Disposition header")
        self._name = name.decode(errors="replace")
        filename = options.get(b"filename")
        if filename is None:
            self.fields += 1
            if self.fields > self.limits.max_fields:
                raise _bad(f"more than {self.limits.max_fields} fields (max_fields)")
            self._text = bytearray()
            return
        self.files += 1
        if self.files > self.limits.max_files:
            raise _bad(f"more than {self.limits.max_files} files (max_files)")
        spool = tempfile.SpooledTemporaryFile(max_size=self.limits.spool_max_size)  # noqa: SIM115
        self._file = UploadFile(
            spool,  # type: ignore[arg-type]  # a BinaryIO in all but name
            size=0,
            filename=filename.decode(errors="replace"),
            content_type=headers.get("content-type", "application/octet-stream"),
            headers=headers,
            max_memory=self.limits.spool_max_size,
        )
        self.items.append((self._name, self._file))

    async def _part_data(self, data: bytes) -> None:
        if self._file is not None:
            await self._file.write(data)
        elif self._text is not None:
            self._text += data
            if len(self._text) > self.limits.max_part_size:
                raise _bad(
                    f"field {self._name!r} is larger than {self.limits.max_part_size} bytes "
                    "(max_part_size)"
                )

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.file.seek(0)
        elif self._text is not None:
            try:
                self.items.append((self._name, self._text.decode()))
            except UnicodeDecodeError:
                raise _bad(f"field {self._name!r} is not UTF-8 text") from None
        self._text = None
        self._file = None


def _bad(reason: str) -> HTTPException:
    return HTTPException(400, f"Invalid form body: {reason}.")


async def parse_multipart(
    chunks: AsyncIterator[bytes], boundary: bytes, limits: FormLimits | None = None
) -> FormData:
    """Parse a multipart body as it streams in; HTTP 400 when it is malformed."""
    limits = limits or FormLimits()
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())  # type: ignore[arg-type]
    builder = _Builder(limits)
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise _bad(str(exc)) from None
            queue, events.queue = events.queue, []
            for event, data in queue:
                await builder.handle(event, data)
        parser.finalize()
        if not events.ended:
            raise _bad("the body ended before the closing boundary")
    except BaseException:
        await FormData(builder.items).close()
        raise
    return FormData(builder.items)
