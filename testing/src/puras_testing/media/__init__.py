"""Wire-format stubs of the media providers, for tests: :mod:`.fal` (the queue API) and
:mod:`.elevenlabs` (speech and transcription), each a local server scripted per test."""
