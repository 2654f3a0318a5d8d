"""The project the console's browser tests push through the console: a skill that takes a photo
(an image drop zone) and writes a framed copy to the drive, one that reads a secret, and an
agentic one whose steps, tool calls and usage stream into the job's timeline."""

from __future__ import annotations

import io
import textwrap
import zipfile

FRAME = """
import hashlib
import time
from pathlib import Path

from puras import load_bytes


def run(inputs):
    photo = load_bytes(inputs["photo"])
    print(f"read {len(photo)} bytes", flush=True)
    for copy in range(inputs.get("copies", 1)):
        time.sleep(0.3)
        print(f"framing copy {copy + 1} in the {inputs.get('style', 'plain')} style", flush=True)
    out = f"renders/{Path(inputs['photo']['drive_path']).stem}-{inputs.get('style', 'plain')}.png"
    target = Path("drive") / out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(photo)
    return {
        "framed": {"drive_path": out},
        "title": inputs.get("title", ""),
        "bytes": len(photo),
        "sha256": hashlib.sha256(photo).hexdigest()[:16],
    }
"""

FILES: dict[str, str] = {
    "skills/frame/skill.yaml": """
        description: Put a photo in a frame and keep the result in the drive.
        entrypoint: main.py:run
        timeout_seconds: 60
        input_schema:
          type: object
          required: [photo, title]
          properties:
            photo:
              type: object
              title: Photo
              description: A PNG or JPEG; it is uploaded to the drive.
              properties: {drive_path: {type: string}, url: {type: string}}
              x-puras: {widget: image, accept: [image/png, image/jpeg], max_size_mb: 5, placeholder: Drop a photo here}
            title: {type: string, title: Title, maxLength: 80, x-puras: {placeholder: "Summer sale"}}
            style: {type: string, title: Style, enum: [plain, framed, polaroid], default: framed}
            copies: {type: integer, title: Copies, minimum: 1, maximum: 4, default: 2}
            notes: {type: string, title: Notes, x-puras: {widget: long_text, help: "Anything the framer should know"}}
        output_schema:
          type: object
          properties:
            framed: {type: object, title: Framed photo, contentMediaType: image/png}
            title: {type: string}
            bytes: {type: integer}
            sha256: {type: string}
        """,
    "skills/frame/main.py": FRAME,
    "skills/greet/skill.yaml": """
        description: Greet someone with the workspace's GREETING secret.
        entrypoint: main.py:run
        input_schema:
          type: object
          properties: {name: {type: string}}
          required: [name]
        """,
    "skills/greet/main.py": """
        import os

        def run(inputs):
            # Secret values are masked in results, so the skill reports only what it saw.
            secret = os.environ.get("GREETING", "")
            return {"to": inputs["name"], "greeting_chars": len(secret), "reversed": secret[::-1]}
        """,
    "skills/ask/skill.yaml": """
        description: Answer a question about the product catalogue.
        entrypoint: SKILL.md
        model: claude/sonnet-4-7
        input_schema:
          type: object
          properties: {question: {type: string, x-puras: {widget: long_text}}}
          required: [question]
        output_schema:
          type: object
          properties: {answer: {type: string}}
          required: [answer]
        """,
    "skills/ask/SKILL.md": "Answer briefly, then call set_output with {answer}. console-ask\n",
}


def bundle() -> bytes:
    """The project as the zip a person would push."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in FILES.items():
            archive.writestr(f"shop/{name}", textwrap.dedent(content).lstrip("\n"))
    return buffer.getvalue()
