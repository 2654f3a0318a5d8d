"""``file_read`` (drive files into the model's context) and ``download_url`` (a URL into the drive)."""

from __future__ import annotations

import json
import re
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from puras_common.drive import DriveError

from puras_agent_runner.conversation import Content, Text, ToolSpec
from puras_agent_runner.drive import DriveFileMissing, DrivePathError, normalise
from puras_agent_runner.fetching import FetchError
from puras_agent_runner.files import (
    UnsupportedFile,
    block_for,
    check_readable,
    check_size,
    size_label,
    sniff,
)
from puras_agent_runner.tools.base import ToolContext, ToolError, ToolOutput

MAX_PATHS: Final = 10
MAX_DOWNLOAD_BYTES: Final = 50 * 1024 * 1024
"""download_url's cap: 50 MB per file."""

READ_SPEC = ToolSpec(
    "file_read",
    "Read one or more files from the project's drive and attach them to the conversation. Images "
    "(jpg/png/gif/webp) and PDFs come back as vision/document blocks you can look at directly. Text files "
    "(code, markdown, JSON, CSV, etc.) are inlined as text. Use this when you need to inspect contents; for "
    "listing files, use bash `ls drive/` instead. Hard cap: 5MB per file, 10 files per call.",
    {
        "type": "object",
        "properties": {
            "paths": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": MAX_PATHS,
                "description": "Drive paths relative to the project drive root (e.g. ['uploads/photo.jpg']). "
                "A leading 'drive/' is accepted and stripped.",
            }
        },
        "required": ["paths"],
        "additionalProperties": False,
    },
)

DOWNLOAD_SPEC = ToolSpec(
    "download_url",
    "Download a file from a URL via plain HTTP GET and save it to the project's drive. Use this for images, "
    "PDFs, CSVs, etc. Returns the drive path and a fresh signed URL. Does NOT resolve share links (Google "
    "Drive/Dropbox/YouTube): only direct HTTP(S) URLs work. Hard cap: 50MB per file.",
    {
        "type": "object",
        "properties": {
            "path": {
                "type": "string",
                "minLength": 1,
                "description": "Where to save in the drive: a full path with filename ('data/report.pdf') or a "
                "directory ending in '/' ('downloads/'), the filename then inferred from the URL",
            },
            "url": {"type": "string", "description": "Direct file URL (http:// or https://)"},
        },
        "required": ["path", "url"],
        "additionalProperties": False,
    },
)


class FileReadTool:
    spec = READ_SPEC

    def __init__(self, model: str) -> None:
        self.model = model

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        content: list[Content] = []
        failures = 0
        summary: list[str] = []
        for raw in args["paths"]:
            try:
                blocks, line = await self._one(raw, ctx)
            except (DrivePathError, DriveFileMissing, UnsupportedFile) as exc:
                failures += 1
                content.append(Text(f"=== {raw} ===\nerror: {exc}"))
                summary.append(f"{raw}: error: {exc}")
                continue
            content.extend(blocks)
            summary.append(line)
        return ToolOutput(
            tuple(content),
            is_error=failures == len(args["paths"]),
            summary="\n".join(summary),
            detail={"files": len(args["paths"]), "failed": failures},
        )

    async def _one(self, raw: str, ctx: ToolContext) -> tuple[list[Content], str]:
        path = normalise(raw)
        info = await ctx.drive.stat(path)
        check_size(info.bytes, what=f"drive/{path}")
        data = await ctx.drive.read(path, max_bytes=info.bytes)
        media_type = sniff(data, path)
        kind = check_readable(
            media_type, what=f"drive/{path}", model=self.model, vision=ctx.vision, pdf=ctx.pdf
        )
        header = f"=== {path} ({media_type}, {size_label(len(data))}) ==="
        return [Text(header), block_for(data, media_type, kind, what=f"drive/{path}")], header


def _filename(url: str) -> str:
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", last).strip("._")
    return cleaned[:200] or "download"


class DownloadUrlTool:
    spec = DOWNLOAD_SPEC

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        url, target = args["url"], args["path"]
        try:
            folder = target.endswith("/")
            rel = normalise(target)
            fetched = await ctx.fetcher.get(url, max_bytes=MAX_DOWNLOAD_BYTES)
            if folder or not rel:
                rel = f"{rel}/{_filename(fetched.url)}" if rel else _filename(fetched.url)
            saved = await ctx.drive.write(rel, fetched.body, tool="download_url")
        except (DrivePathError, FetchError, DriveError) as exc:
            raise ToolError(str(exc)) from None
        signed = await ctx.drive.signed_url(saved.path)
        result = {
            "drive_path": saved.path,
            "output_url": signed,
            "bytes": saved.bytes,
            "content_type": fetched.content_type,
            "source_url": fetched.url,
        }
        return ToolOutput.text(
            json.dumps(result), detail={"drive_path": saved.path, "bytes": saved.bytes}
        )
