// run, submit, get, wait and the errors, against the running platform.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client, JobError, Puras, PurasAPIError } from "../dist/index.js";
import { API_BASE, PUBLISHABLE_KEY, SECRET_KEY, WORKSPACE, api } from "./helpers.mjs";

const T = { timeout: 60_000 };

test("run returns the result; the key and base come from the environment", T, async () => {
  assert.equal(Client, Puras);
  const puras = new Puras(); // PURAS_API_KEY and PURAS_API_BASE
  assert.equal(puras.apiBase, API_BASE);
  assert.deepEqual(await puras.run("echo", { text: "hi" }, { pollIntervalMs: 100 }), { echoed: "hi" });
});

test("submit returns the queued job at once; get and wait follow it", T, async () => {
  const puras = new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE });
  const job = await puras.submit("echo", { text: "later" });
  assert.equal(job.status, "queued");
  assert.equal(job.skill_name, "echo");
  const done = await puras.wait(job.id, { pollIntervalMs: 100, timeoutMs: 30_000 });
  assert.equal(done.status, "succeeded");
  assert.deepEqual(done.result, { echoed: "later" });
  assert.deepEqual((await puras.get(job.id)).result, { echoed: "later" });
});

test("submit with wait holds the request until the job ends, or timeoutSeconds", T, async () => {
  const puras = new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE });
  const done = await puras.submit("echo", { text: "sync" }, { wait: true, timeoutSeconds: 20 });
  assert.equal(done.status, "succeeded");
  assert.deepEqual(done.result, { echoed: "sync" });
  const slow = await puras.submit("chatty", { lines: 3, pause: 1 }, { wait: true, timeoutSeconds: 1 });
  assert.ok(["queued", "running"].includes(slow.status), slow.status);
  const timedOut = await puras.wait(slow.id, { timeoutMs: 200, pollIntervalMs: 50 });
  assert.ok(["queued", "running"].includes(timedOut.status), "wait returns the job as it is at timeout");
});

test("version pins a deployment; skillpack chooses the skillpack", T, async () => {
  const puras = new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE });
  const pinned = await puras.submit("which", {}, { version: 1, wait: true, timeoutSeconds: 20 });
  assert.deepEqual(pinned.result, { version: 1 });
  assert.deepEqual(await puras.run("which", {}, { pollIntervalMs: 100 }), { version: 2 });
  assert.deepEqual(await puras.run("which", {}, { version: 1, pollIntervalMs: 100 }), { version: 1 });

  const extra = await puras.submit("hello", {}, { skillpack: "extra", wait: true, timeoutSeconds: 20 });
  assert.deepEqual(extra.result, { pack: "extra" });
  const byDefault = new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE, skillpack: "extra" });
  assert.deepEqual(await byDefault.run("hello", {}, { pollIntervalMs: 100 }), { pack: "extra" });
  // A path names its own skillpack, whatever the default.
  assert.deepEqual(await byDefault.run("default/echo", { text: "p" }, { pollIntervalMs: 100 }), { echoed: "p" });
  assert.deepEqual(await puras.run(`${WORKSPACE}/extra/hello`, {}, { pollIntervalMs: 100 }), { pack: "extra" });
});

test("a refusal is a PurasAPIError with the API's status, code and message", T, async () => {
  const puras = new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE });
  const invalid = await puras.submit("echo", { text: 1 }).catch((e) => e);
  assert.ok(invalid instanceof PurasAPIError);
  assert.equal(invalid.status, 422);
  assert.equal(invalid.code, "validation_error");
  assert.match(invalid.message, /input_schema/);
  assert.deepEqual(invalid.details, [{ pointer: "/inputs/text", message: "1 is not of type 'string'" }]);

  const missing = await puras.get("00000000-0000-0000-0000-000000000000").catch((e) => e);
  assert.equal(missing.status, 404);
  assert.equal(missing.code, "not_found");

  const wrongKey = new Puras({ apiKey: "puras_live_AAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", apiBase: API_BASE });
  const unauthorized = await wrongKey.get("00000000-0000-0000-0000-000000000000").catch((e) => e);
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.code, "invalid_key");
});

test("run throws JobError carrying the job when it fails or outlives timeoutMs", T, async () => {
  const puras = new Puras({ apiKey: SECRET_KEY, apiBase: API_BASE });
  const failed = await puras.run("boom", {}, { pollIntervalMs: 100 }).catch((e) => e);
  assert.ok(failed instanceof JobError);
  assert.equal(failed.job.status, "failed");
  assert.equal(failed.job.error, "KeyError: 'missing'");

  const slow = await puras.run("chatty", { lines: 2, pause: 1 }, { timeoutMs: 300, pollIntervalMs: 50 }).catch((e) => e);
  assert.ok(slow instanceof JobError);
  assert.ok(["queued", "running"].includes(slow.job.status));
  assert.match(slow.message, /still (queued|running)/);
});

test("a publishable key runs its allowed skills and reads only its own jobs", T, async () => {
  const app = new Puras({ apiKey: PUBLISHABLE_KEY, apiBase: API_BASE });
  assert.deepEqual(await app.run("echo", { text: "app" }, { pollIntervalMs: 100 }), { echoed: "app" });
  const refused = await app.submit("boom").catch((e) => e);
  assert.equal(refused.status, 403);
  assert.equal(refused.code, "skill_not_allowed");
  const { body: theirs } = await api("POST", "/v1/jobs", { skill: "echo", inputs: { text: "x" } });
  const foreign = await app.get(theirs.id).catch((e) => e);
  assert.equal(foreign.status, 404);
  assert.equal(foreign.code, "not_found");
});
