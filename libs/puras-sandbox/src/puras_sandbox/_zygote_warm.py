"""Stand-in for a user module: the zygote's spare child imports and calls it once to warm up.

Not part of the API; never imported by the platform.
"""

from typing import Any


def run(inputs: Any) -> dict[str, Any]:
    return {"echo": inputs}
