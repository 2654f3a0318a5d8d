// Human in the loop: wait until a job asks, answer it with provideInput, and the refusals.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Puras, PurasAPIError } from "../dist/index.js";
import { API_BASE, SECRET_KEY } from "./helpers.mjs";

const T = { timeout: 90_000 };

test("wait with orWaiting returns the question; provideInput answers it and the job runs on", T, async () => {
  const puras = new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE });
  const job = await puras.submit("ask", {});
  const waiting = await puras.wait(job.id, { orWaiting: true, pollIntervalMs: 100, timeoutMs: 60_000 });
  assert.equal(waiting.status, "waiting");
  assert.equal(waiting.input_request?.prompt, "Your name?");
  assert.deepEqual(waiting.input_request?.answer_schema, { type: "string", minLength: 2 });

  const wrong = await puras.provideInput(job.id, "x").catch((e) => e);
  assert.ok(wrong instanceof PurasAPIError);
  assert.equal(wrong.status, 400);
  assert.equal(wrong.details[0].pointer, "/answer");

  const queued = await puras.provideInput(job.id, "Ada", { requestId: waiting.input_request.request_id });
  assert.equal(queued.status, "queued");
  const done = await puras.wait(job.id, { pollIntervalMs: 100, timeoutMs: 60_000 });
  assert.equal(done.status, "succeeded");
  assert.deepEqual(done.result, { hello: "Ada" });

  const late = await puras.provideInput(job.id, "Bob").catch((e) => e);
  assert.ok(late instanceof PurasAPIError);
  assert.equal(late.status, 409);
  assert.equal(late.code, "conflict");
});
