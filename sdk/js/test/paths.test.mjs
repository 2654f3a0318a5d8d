// A job id is one segment of the request path, whatever it holds; "", "." and ".." (which URL
// parsing drops or resolves) are refused before any request. Against a recording fetch.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Puras, PurasError } from "../dist/index.js";

const json = (body) => new Response(JSON.stringify(body), { headers: { "Content-Type": "application/json" } });

/** A client whose fetch records each request's path as fetch would send it (URL-parsed). */
function recording() {
  const sent = [];
  const fetch = async (url) => {
    const { pathname } = new URL(url);
    sent.push(pathname);
    if (pathname.endsWith("/stream")) {
      return new Response("event: end\ndata: {}\n\n", { headers: { "Content-Type": "text/event-stream" } });
    }
    if (pathname.endsWith("/events")) return json({ events: [], next_after_id: 0, terminal: true });
    return json({ id: "j", status: "succeeded" });
  };
  return { sent, puras: new Puras({ apiKey: "k", apiBase: "http://api.test", fetch }) };
}

async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

const CALLS = {
  get: (puras, id) => puras.get(id),
  wait: (puras, id) => puras.wait(id),
  provideInput: (puras, id) => puras.provideInput(id, { ok: true }),
  "events (sse)": (puras, id) => collect(puras.events(id, { transport: "sse" })),
  "events (poll)": (puras, id) => collect(puras.events(id, { transport: "poll" })),
};

const CRAFTED = "../../v1/balance";
const EXPECTED = {
  get: "/v1/jobs/..%2F..%2Fv1%2Fbalance",
  wait: "/v1/jobs/..%2F..%2Fv1%2Fbalance",
  provideInput: "/v1/jobs/..%2F..%2Fv1%2Fbalance/input",
  "events (sse)": "/v1/jobs/..%2F..%2Fv1%2Fbalance/stream",
  "events (poll)": "/v1/jobs/..%2F..%2Fv1%2Fbalance/events",
};

for (const [name, call] of Object.entries(CALLS)) {
  test(`${name}: a crafted job id stays under its job`, async () => {
    const { sent, puras } = recording();
    await call(puras, CRAFTED);
    assert.deepEqual(sent, [EXPECTED[name]]);
  });

  test(`${name}: an empty, "." or ".." job id throws before any request`, async () => {
    for (const id of ["", ".", ".."]) {
      const { sent, puras } = recording();
      await assert.rejects(call(puras, id), (err) => {
        assert.ok(err instanceof PurasError, String(err));
        assert.equal(err.message, `${JSON.stringify(id)} is not an id or name: a request path segment is never empty, "." or ".."`);
        return true;
      });
      assert.deepEqual(sent, [], `${JSON.stringify(id)} sent a request`);
    }
  });
}
