"""Stand-in for a user module: the zygote's spare child imports and calls it once to warm up.

Not part of the API; never imported by the platform. It imports nothing: a module it imported
would be loaded afresh in every spare (the zygote itself has only what it preloads), costing
each job milliseconds of CPU for a module the job may never use.
"""


def run(inputs):  # type: ignore[no-untyped-def]
    return {"echo": inputs}
