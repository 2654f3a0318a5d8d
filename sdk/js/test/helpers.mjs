// What every test file shares: the platform's address and keys, handed over by the harness.
import assert from "node:assert/strict";

export const API_BASE = need("PURAS_API_BASE");
export const SECRET_KEY = need("PURAS_API_KEY");
export const PUBLISHABLE_KEY = need("PURAS_TEST_PUBLISHABLE_KEY");
export const WORKSPACE = need("PURAS_TEST_WORKSPACE");

function need(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this suite through tests/e2e/js (make test)`);
  return value;
}

/** A call to the API with the secret key, outside the SDK (to check what it did). */
export async function api(method, path, body) {
  const response = await fetch(`${API_BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${SECRET_KEY}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** Every event of an ended job, as the paged endpoint lists them. */
export async function allEvents(jobId) {
  const { body } = await api("GET", `/v1/jobs/${jobId}/events?limit=1000`);
  return body.events;
}

export async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}
