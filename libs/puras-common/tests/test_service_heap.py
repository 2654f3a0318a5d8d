"""A service, once started, freezes its heap: the start's garbage is collected first, what
survives is never walked by a collection again, and the collector's passes are spaced out."""

from __future__ import annotations

import json
import subprocess
import sys

from puras_common.service import GC_THRESHOLDS

# In a process of its own: freezing is for the life of the interpreter.
PROBE = """
import gc, json, weakref
from puras_common.service import settle_heap

class Node:
    pass

def garbage():
    node = Node()
    node.me = node  # a cycle: only the collector frees it
    return weakref.ref(node)

gone = garbage()
kept = Node()
kept.me = kept
settle_heap()
gc.collect()
print(json.dumps({
    "garbage_left": gone() is not None,
    "kept_walked": any(o is kept for o in gc.get_objects()),
    "frozen": gc.get_freeze_count(),
    "threshold": gc.get_threshold(),
}))
"""


def test_the_start_is_collected_then_frozen_and_collections_spaced_out() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    heap = json.loads(out.stdout)
    assert heap["garbage_left"] is False  # freed before the freeze, not kept for good
    assert heap["kept_walked"] is False  # what lives on is out of every collection's walk
    assert heap["frozen"] > 1_000  # the imports' objects with it
    assert tuple(heap["threshold"]) == GC_THRESHOLDS
