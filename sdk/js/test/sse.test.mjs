// The SSE parser on its own: frames split anywhere, any line ending, comments ignored.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SSEParser } from "../dist/index.js";

test("frames are complete whatever the chunking and line endings", () => {
  const text = ': ping\r\n\r\nid: 7\r\ndata: {"id":7}\r\n\r\nevent: end\rdata: {"status":"succeeded"}\r\n\n';
  for (let size = 1; size <= text.length; size++) {
    const parser = new SSEParser();
    const frames = [];
    for (let i = 0; i < text.length; i += size) frames.push(...parser.feed(text.slice(i, i + size)));
    assert.deepEqual(frames, [
      { event: "message", id: "7", data: '{"id":7}' },
      { event: "end", id: "7", data: '{"status":"succeeded"}' },
    ], `chunks of ${size}`);
  }
});

test("multi-line data joins with newlines", () => {
  const parser = new SSEParser();
  assert.deepEqual(parser.feed("data: a\ndata:b\n\n"), [{ event: "message", id: null, data: "a\nb" }]);
});
