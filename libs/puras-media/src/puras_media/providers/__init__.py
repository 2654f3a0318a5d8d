"""Provider adapters: each turns one call of a slug into the provider's wire protocol."""

from puras_media.providers.base import Generation, MediaCancelled, upstream_message
from puras_media.providers.elevenlabs import VOICES, ElevenLabs
from puras_media.providers.fal import FalQueue

__all__ = ["VOICES", "ElevenLabs", "FalQueue", "Generation", "MediaCancelled", "upstream_message"]
