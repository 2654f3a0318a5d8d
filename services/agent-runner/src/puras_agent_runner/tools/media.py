"""``media``: generate an image, a video or audio with a registered model, through the media
library the gateway's ``/v1/media/generate`` also uses. The inputs go to the model unchanged;
the file lands in the job's drive (origin: the job, its skill, the tool ``media``) and the
call is billed to the workspace as one ``usage`` event of the job."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from puras_media import CallContext, MediaCancelled, MediaError, MediaRequest

from puras_agent_runner.conversation import ToolSpec
from puras_agent_runner.drive import AgentMediaStore
from puras_agent_runner.tools.base import ToolContext, ToolError, ToolOutput

SPEC = ToolSpec(
    name="media",
    description=(
        "Generate media (image, video, audio) by calling a registered model. Pass a model slug (e.g. "
        "'openai/gpt-image-2', 'bytedance/seedream-v4-edit', 'kuaishou/kling-v3-i2v', 'bytedance/seedance-2-fast-t2v') "
        "and the inputs that model expects — they are passed through unchanged. Returns the drive path where the "
        "file was saved plus a fresh signed URL."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "model": {
                "type": "string",
                "minLength": 1,
                "description": "Registered model slug. Images: 'openai/gpt-image-2' (+ '-edit'), 'bytedance/seedream-v4' (+ '-edit'), "
                "'google/imagen-4', 'kuaishou/kling-v3-image'. Video families with t2v/i2v/r2v + fast variants: "
                "'bytedance/seedance-2-{t2v,i2v,r2v}[-fast]', 'kuaishou/kling-v3-{t2v,i2v}', 'google/veo-3-{t2v,i2v}[-fast]'. "
                "Some slugs are input-conditional — e.g. Kling/Veo charge more with `generate_audio: true`; Seedance r2v "
                "drops 40% when a video reference is supplied",
            },
            "inputs": {
                "type": "object",
                "description": "Inputs sent straight to the upstream model — bring whatever the chosen model wants: "
                "'prompt', 'image_url', 'duration', 'aspect_ratio', 'num_images', etc",
            },
            "kind": {
                "type": "string",
                "enum": ["image", "video", "audio", "auto"],
                "description": "Hint for content-type/extension. Default 'auto'",
            },
            "output_path": {
                "type": "string",
                "minLength": 1,
                "description": "Optional drive subpath (e.g. 'renders/spin.mp4')",
            },
            "output_url_path": {
                "type": "string",
                "minLength": 1,
                "description": "Optional jq-style path to the output URL in the upstream response (e.g. 'video.url', "
                "'images[0].url'). Only set this if auto-detect picks the wrong field",
            },
        },
        "required": ["model", "inputs"],
        "additionalProperties": False,
    },
)


class MediaTool:
    spec = SPEC

    async def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        if ctx.media is None or ctx.emit is None:
            raise ToolError("media generation is not available on this platform")
        request = MediaRequest(
            args["model"],
            args["inputs"],
            output_path=args.get("output_path"),
            output_url_path=args.get("output_url_path"),
            kind=args.get("kind", "auto"),
        )
        context = CallContext(
            workspace_id=UUID(ctx.workspace_id),
            job_id=UUID(ctx.job_id),
            key_id=ctx.key_id,
            attempt=ctx.attempt,
            daily_cap_micros=ctx.daily_cap_micros,
        )
        try:
            result = await ctx.media.run(
                request,
                context=context,
                store=AgentMediaStore(ctx.drive),
                emit=ctx.emit,
                cancelled=ctx.cancelled,
            )
        except MediaError as exc:
            raise ToolError(f"{exc.code}: {exc.message}", detail=exc.details()) from None
        except MediaCancelled:
            raise ToolError(
                "the job is being cancelled; the media request was withdrawn and not billed"
            ) from None
        detail = {
            "model": result["model"],
            "drive_path": result["drive_path"],
            "billed_micros": result["billed_micros"],
        }
        return ToolOutput.text(json.dumps(result, ensure_ascii=False), detail=detail)
