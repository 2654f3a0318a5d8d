"""Media generation for Puras: one library behind the agent's built-in ``media`` tool and the
gateway's ``POST /v1/media/generate`` (which the in-skill SDK calls with the job token).

* :class:`MediaService` makes one call: checks the slug and prices the inputs, calls the
  provider (fal's queue API, ElevenLabs), saves the outputs into the drive with their origin,
  publishes the call's usage, and answers with the drive paths and signed links.
* :mod:`puras_media.portable`: the model-portable helpers (``generate_image`` …) resolved to a
  concrete slug and inputs.
"""

from puras_media.catalog import Catalogue, Route, catalogue
from puras_media.errors import MediaError, PortableError
from puras_media.providers import MediaCancelled
from puras_media.service import CallContext, Emit, MediaRequest, MediaService
from puras_media.settings import MediaSettings
from puras_media.stores import DriveStore, MediaStore

__all__ = [
    "CallContext",
    "Catalogue",
    "DriveStore",
    "Emit",
    "MediaCancelled",
    "MediaError",
    "MediaRequest",
    "MediaService",
    "MediaSettings",
    "MediaStore",
    "PortableError",
    "Route",
    "catalogue",
]
