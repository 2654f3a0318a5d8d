"""The conversation as the loop keeps it, independent of any provider's wire format.

A message is a role and a list of blocks. Provider adapters translate these to and from the
Anthropic Messages or OpenAI Chat Completions shapes; the loop, the tools and the attachment
resolver only ever see these types.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Text:
    """Plain text."""

    text: str


@dataclass(frozen=True)
class Image:
    """An image the model looks at: inline bytes or a URL the provider fetches."""

    media_type: str
    data: bytes | None = None
    url: str | None = None

    def base64(self) -> str:
        return base64.b64encode(self.data or b"").decode()

    def data_url(self) -> str:
        """The image as a URL: its own, or a ``data:`` URL of the bytes."""
        return self.url or f"data:{self.media_type};base64,{self.base64()}"


@dataclass(frozen=True)
class Document:
    """A PDF the model reads (text and page images); the Claude family only."""

    media_type: str
    data: bytes | None = None
    url: str | None = None

    def base64(self) -> str:
        return base64.b64encode(self.data or b"").decode()


Content = Text | Image | Document
"""What a user turn or a tool result may carry."""


@dataclass(frozen=True)
class ToolCall:
    """The model asked for a tool: ``id`` pairs the call with its result."""

    id: str
    name: str
    input: dict[str, Any]
    malformed: str | None = None
    """Why the model's arguments could not be read (not JSON, not an object), if they could not."""


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gave back to the model."""

    call_id: str
    name: str
    content: tuple[Content, ...]
    is_error: bool = False


Block = Content | ToolCall | ToolResult


@dataclass
class Message:
    role: Role
    blocks: list[Block] = field(default_factory=list)

    def text(self) -> str:
        return "".join(b.text for b in self.blocks if isinstance(b, Text))


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it."""

    name: str
    description: str
    input_schema: dict[str, Any]


def text_of(content: tuple[Content, ...] | list[Content]) -> str:
    """The text parts of ``content`` joined, with a placeholder for each image or document."""
    parts: list[str] = []
    for block in content:
        if isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Image):
            parts.append(f"[image {block.media_type}]")
        else:
            parts.append(f"[document {block.media_type}]")
    return "\n".join(parts)


def dump_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation as JSON, to keep it while the job waits for input."""
    return [{"role": m.role, "blocks": [_dump_block(b) for b in m.blocks]} for m in messages]


def load_messages(data: list[dict[str, Any]]) -> list[Message]:
    """The conversation :func:`dump_messages` kept."""
    return [Message(m["role"], [_load_block(b) for b in m["blocks"]]) for m in data]


def _dump_block(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"t": "text", "text": block.text}
    if isinstance(block, Image | Document):
        return {
            "t": "image" if isinstance(block, Image) else "document",
            "media_type": block.media_type,
            "data": block.base64() if block.data is not None else None,
            "url": block.url,
        }
    if isinstance(block, ToolCall):
        return {
            "t": "call",
            "id": block.id,
            "name": block.name,
            "input": block.input,
            "malformed": block.malformed,
        }
    return {
        "t": "result",
        "call_id": block.call_id,
        "name": block.name,
        "content": [_dump_block(c) for c in block.content],
        "is_error": block.is_error,
    }


def _load_block(data: dict[str, Any]) -> Any:
    kind = data["t"]
    if kind == "text":
        return Text(data["text"])
    if kind in ("image", "document"):
        raw = base64.b64decode(data["data"]) if data.get("data") is not None else None
        cls = Image if kind == "image" else Document
        return cls(data["media_type"], data=raw, url=data.get("url"))
    if kind == "call":
        return ToolCall(data["id"], data["name"], data["input"], data.get("malformed"))
    return ToolResult(
        data["call_id"],
        data["name"],
        tuple(_load_block(c) for c in data["content"]),
        data["is_error"],
    )
