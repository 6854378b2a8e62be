"""A ``multipart/form-data`` request body read into memory, with a size limit enforced as it
arrives: uploads are never written to disk (Starlette's own form parser spools files over 1 MB
to a temporary file) and never kept after the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header


class UploadError(Exception):
    """A body that is not a form, is malformed, or is over the limit (``status`` 400 or 413)."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass
class Form:
    """The form's text fields (a list per name: ``timestamp_granularities[]`` repeats) and its
    one file (name and bytes)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    file_name: str | None = None
    file_data: bytes | None = None

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


async def read_form(content_type: str | None, chunks: AsyncIterator[bytes], max_bytes: int) -> Form:
    """Parse the body arriving as ``chunks``; :class:`UploadError` when it is not
    ``multipart/form-data``, is malformed, holds more than one file, or passes ``max_bytes``."""
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(
            "the request must be multipart/form-data with the audio as its 'file' field",
            param="file",
        )
    form = Form()
    part: dict = {}
    ended: list[bool] = []

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, data=bytearray(), field=b"", value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part["data"] += data[start:end]

    def on_part_end() -> None:
        disposition = part["headers"].get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if form.file_data is not None:
                raise UploadError("only one file may be uploaded", param=name)
            if name != "file":
                raise UploadError(f"the audio must be the 'file' field, not {name!r}", param=name)
            form.file_name = options[b"filename"].decode("utf-8", "replace") or "upload"
            form.file_data = bytes(part["data"])
        else:
            value = bytes(part["data"]).decode("utf-8", "replace")
            form.fields.setdefault(name, []).append(value)

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": lambda: ended.append(True),
        },
    )
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise UploadError(
                    f"the upload is larger than this server's limit of {max_bytes / 1e6:g} MB",
                    status=413,
                    param="file",
                )
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as error:  # python-multipart's parse errors
        raise UploadError(f"malformed multipart body: {error}", param="file") from error
    if not ended:
        raise UploadError(
            "the multipart body ends before its closing boundary (a truncated upload?)",
            param="file",
        )
    return form


__all__ = ["Form", "UploadError", "read_form"]
