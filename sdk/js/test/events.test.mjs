// events(): SSE with resume, the poll transport, AbortSignal, and the fallback for runtimes
// whose fetch cannot stream.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Puras } from "../dist/index.js";
import { API_BASE, SECRET_KEY, allEvents, api, collect } from "./helpers.mjs";

const T = { timeout: 60_000 };

function client(fetchImpl) {
  return new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE, fetch: fetchImpl });
}

test("events streams every event live, in order, and ends with the job", T, async () => {
  const puras = client();
  const job = await puras.submit("chatty", { lines: 3, pause: 0.1 });
  const seen = await collect(puras.events(job.id));
  const types = seen.map((e) => e.type);
  assert.equal(types[0], "queued");
  assert.equal(types.at(-1), "succeeded");
  assert.deepEqual(
    seen.filter((e) => e.type === "log").map((e) => e.payload.text).join(""),
    "line 0line 1line 2",
  );
  assert.equal((await puras.get(job.id)).status, "succeeded", "terminal by the time events ends");
  assert.deepEqual(seen.map((e) => e.id), (await allEvents(job.id)).map((e) => e.id));
});

test("afterId resumes; the poll transport yields the same events", T, async () => {
  const puras = client();
  const { body: job } = await api("POST", "/v1/jobs?wait=true", { skill: "chatty", inputs: { lines: 2 } });
  const reference = (await allEvents(job.id)).map((e) => e.id);
  const later = await collect(puras.events(job.id, { afterId: reference[1] }));
  assert.deepEqual(later.map((e) => e.id), reference.slice(2));
  const polled = await collect(puras.events(job.id, { transport: "poll", pollIntervalMs: 50 }));
  assert.deepEqual(polled.map((e) => e.id), reference);
  // Resuming at the last event of an ended job ends at once.
  assert.deepEqual(await collect(puras.events(job.id, { afterId: reference.at(-1) })), []);
});

test("a dropped connection is resumed from the last event, without gaps or repeats", T, async () => {
  const streams = [];
  const flaky = async (url, init) => {
    const response = await fetch(url, init);
    if (!String(url).endsWith("/stream")) return response;
    streams.push(init.headers["Last-Event-ID"]);
    if (streams.length > 1) return response;
    // The first stream breaks after its second chunk, as a dropped network would.
    const reader = response.body.getReader();
    let chunks = 0;
    const body = new ReadableStream({
      async pull(controller) {
        if (chunks++ === 2) {
          reader.cancel();
          controller.error(new TypeError("network connection lost"));
          return;
        }
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  const puras = client(flaky);
  const job = await puras.submit("chatty", { lines: 6, pause: 0.1 });
  const seen = await collect(puras.events(job.id));
  assert.ok(streams.length >= 2, "the stream was reopened");
  assert.equal(streams[0], "0");
  assert.ok(Number(streams[1]) > 0, "the second stream resumed after the last event seen");
  assert.deepEqual(seen.map((e) => e.id), (await allEvents(job.id)).map((e) => e.id));
});

test("an AbortSignal ends the iteration early", T, async () => {
  const puras = client();
  const job = await puras.submit("chatty", { lines: 40, pause: 0.25 });
  const controller = new AbortController();
  const seen = [];
  const started = Date.now();
  for await (const event of puras.events(job.id, { signal: controller.signal })) {
    seen.push(event.type);
    if (event.type === "log") controller.abort();
  }
  assert.equal(seen.at(-1), "log");
  assert.ok(Date.now() - started < 8_000, "ended long before the job would");
  const polled = [];
  const pollAbort = new AbortController();
  for await (const event of puras.events(job.id, { transport: "poll", pollIntervalMs: 50, signal: pollAbort.signal })) {
    polled.push(event.type);
    if (polled.length === 2) pollAbort.abort();
  }
  assert.equal(polled.length, 2);
  await api("POST", `/v1/jobs/${job.id}/cancel`);
});

test("auto falls back to polling where fetch cannot stream (React Native)", T, async () => {
  const paths = [];
  const noStreams = async (url, init) => {
    const response = await fetch(url, init);
    paths.push(new URL(url).pathname);
    if (!String(url).endsWith("/stream")) return response;
    await response.body.cancel();
    // React Native's fetch: a response whose body cannot be read as a stream.
    return { ok: true, status: 200, headers: response.headers, body: undefined };
  };
  const puras = client(noStreams);
  const job = await puras.submit("chatty", { lines: 2, pause: 0.1 });
  const seen = await collect(puras.events(job.id, { pollIntervalMs: 50 }));
  assert.ok(paths.some((p) => p.endsWith("/events")), "polled /events");
  assert.equal(seen.at(-1).type, "succeeded");
  assert.deepEqual(seen.map((e) => e.id), (await allEvents(job.id)).map((e) => e.id));
  await assert.rejects(collect(puras.events(job.id, { transport: "sse" })), /cannot stream/);
});

test("events of a job that is not there is a PurasAPIError", T, async () => {
  const puras = client();
  for (const transport of ["sse", "poll"]) {
    const error = await collect(puras.events("00000000-0000-0000-0000-000000000000", { transport })).catch((e) => e);
    assert.equal(error.status, 404, transport);
    assert.equal(error.code, "not_found");
  }
});
