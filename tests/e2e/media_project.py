"""A project whose skills call the media SDK (``puras.media``) and an agent that uses the
built-in ``media`` tool; shared by the media and subagent tests."""

from __future__ import annotations

RENDER = '''
import warnings

from puras import media


def run(inputs: dict) -> dict:
    """media.run, or a portable helper, with the inputs given; errors come back as data."""
    helper = inputs.get("helper")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if helper:
                result = getattr(media, helper)(**inputs["args"])
            else:
                result = media.run(inputs["model"], inputs.get("inputs"), **inputs.get("options", {}))
        return {"result": result, "warnings": [str(w.message) for w in caught if issubclass(w.category, media.MediaWarning)]}
    except media.MediaError as exc:
        return {"error": exc.code, "message": exc.message, "status": exc.status, "value_error": isinstance(exc, ValueError)}
'''

PROJECT: dict[str, str] = {
    "skills/render/skill.yaml": """
        description: Make media with the SDK.
        entrypoint: main.py:run
        input_schema: {type: object}
        """,
    "skills/render/main.py": RENDER,
    "skills/artist/skill.yaml": """
        description: An agent that makes media with the built-in tool.
        entrypoint: SKILL.md
        model: claude/haiku-4-5
        output_schema: {type: object, properties: {drive_path: {type: string}}, required: [drive_path]}
        """,
}


def artist_prompt(marker: str) -> dict[str, str]:
    return {"skills/artist/SKILL.md": f"You make pictures with the media tool. {marker}\n"}
