/** `Puras`: submit jobs to deployed skills and consume them, by one await (`run`), by id
 * (`submit`, `get`, `wait`) or live (`events`). One fetch-based client for Node ≥ 18, browsers
 * and React Native: no dependencies, no Node built-ins. */

import { JobError, PurasAPIError, PurasError, PurasTimeoutError } from "./errors.js";
import { SSEParser } from "./sse.js";
import {
  TERMINAL_STATUSES,
  type EventsOptions,
  type Job,
  type JobEvent,
  type ProvideInputOptions,
  type PurasOptions,
  type RunOptions,
  type SubmitOptions,
  type WaitOptions,
} from "./types.js";

const DEFAULT_API_BASE = "http://127.0.0.1:8080";
/** How many times in a row a dropped event stream is reopened before `events` gives up. */
const RECONNECTS = 5;

interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface EventsPage {
  events: JobEvent[];
  next_after_id: number;
  terminal: boolean;
}

/** Call deployed skills. Pass a `workspace/skillpack/skill` path to `run`/`submit`, or set a
 * default `skillpack` once and call skills by bare name. */
export class Puras {
  readonly apiBase: string;
  readonly skillpack: string | undefined;
  private readonly apiKey: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: PurasOptions = {}) {
    const key = options.apiKey ?? env("PURAS_API_KEY");
    if (!key) throw new PurasError("no API key: pass apiKey or set PURAS_API_KEY");
    this.apiKey = key;
    this.apiBase = (options.apiBase ?? env("PURAS_API_BASE") ?? DEFAULT_API_BASE).replace(/\/+$/, "");
    this.skillpack = options.skillpack;
    this.timeoutMs = options.timeoutMs ?? 120_000;
    const chosen = options.fetch ?? globalThis.fetch;
    if (typeof chosen !== "function") throw new PurasError("no fetch in this runtime: pass options.fetch");
    // Browsers refuse a fetch called with another `this` ("Illegal invocation").
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Submit a job; returns it at once (`status: "queued"`), or with `wait: true` once it ends or
   * `timeoutSeconds` pass (the answer may then still be running). */
  async submit(skill: string, inputs: Record<string, unknown> = {}, options: SubmitOptions = {}): Promise<Job> {
    const body: Record<string, unknown> = { skill, inputs };
    const pack = options.skillpack ?? (skill.includes("/") ? undefined : this.skillpack);
    if (pack) body.skillpack = pack;
    if (options.version !== undefined) body.version = options.version;
    if (options.routingKey !== undefined) body.routing_key = options.routingKey;
    if (options.webhookUrl !== undefined) body.webhook_url = options.webhookUrl;
    const seconds = options.timeoutSeconds ?? 60;
    return this.request<Job>("POST", "/v1/jobs", {
      body,
      query: options.wait ? { wait: "true", timeout: seconds } : undefined,
      timeoutMs: options.wait ? Math.max(this.timeoutMs, (seconds + 10) * 1000) : undefined,
    });
  }

  /** Submit and wait (client-side polling), returning the skill's result; `JobError` if the job
   * failed, was cancelled or is still running after `timeoutMs`. */
  async run(skill: string, inputs: Record<string, unknown> = {}, options: RunOptions = {}): Promise<Record<string, unknown>> {
    const submitted = await this.submit(skill, inputs, { skillpack: options.skillpack, version: options.version });
    const timeoutMs = options.timeoutMs ?? 600_000;
    const job = await this.wait(submitted.id, { timeoutMs, pollIntervalMs: options.pollIntervalMs });
    if (job.status === "succeeded") return (job.result ?? {}) as Record<string, unknown>;
    if (!TERMINAL_STATUSES.has(job.status)) {
      throw new JobError(job, `job ${job.id} still ${job.status} after ${timeoutMs} ms`);
    }
    throw new JobError(job);
  }

  /** A job by id: status, result, error, outputs with signed URLs. */
  async get(jobId: string): Promise<Job> {
    return this.request<Job>("GET", apiPath`/v1/jobs/${jobId}`);
  }

  /** Poll until the job ends (or, with `orWaiting`, waits for input) or `timeoutMs` passes;
   * returns the last job seen either way. */
  async wait(jobId: string, options: WaitOptions = {}): Promise<Job> {
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    const interval = options.pollIntervalMs ?? 2000;
    for (;;) {
      const job = await this.get(jobId);
      const left = deadline - Date.now();
      const settled = TERMINAL_STATUSES.has(job.status) || (options.orWaiting === true && job.status === "waiting");
      if (settled || left <= 0) return job;
      await sleep(Math.min(interval, left));
    }
  }

  /** Answer the question a `waiting` job asked; returns the job, queued to run on. The answer must
   * match the question's `answer_schema` (a `PurasAPIError` 400 whose `details` name each problem
   * by JSON pointer); 409 when the job is not waiting, or waits on another question. */
  async provideInput(jobId: string, answer: unknown, options: ProvideInputOptions = {}): Promise<Job> {
    const body: Record<string, unknown> = { answer };
    if (options.requestId !== undefined) body.request_id = options.requestId;
    return this.request<Job>("POST", apiPath`/v1/jobs/${jobId}/input`, { body });
  }

  /** The job's events as they happen, from the start (or after `afterId`), ending when the job
   * ends. A dropped stream is reopened from the last event seen, without gaps or repeats. */
  async *events(jobId: string, options: EventsOptions = {}): AsyncGenerator<JobEvent> {
    const cursor = { afterId: options.afterId ?? 0 };
    const { signal } = options;
    const interval = options.pollIntervalMs ?? 1500;
    const transport = options.transport ?? "auto";
    const stream = this.url(apiPath`/v1/jobs/${jobId}/stream`); // a bad id throws here, not retried
    if (transport === "poll") {
      yield* this.poll(jobId, cursor, interval, signal);
      return;
    }
    let failures = 0;
    while (!signal?.aborted) {
      let response: Response;
      try {
        response = await this.fetchImpl(stream, {
          headers: { ...this.headers(), Accept: "text/event-stream", "Last-Event-ID": String(cursor.afterId) },
          signal,
        });
      } catch (err) {
        if (signal?.aborted) return;
        if (++failures > RECONNECTS) throw err;
        await sleep(backoff(failures), signal);
        continue;
      }
      if (!response.ok) {
        const error = await PurasAPIError.from(response);
        if (response.status < 500 || ++failures > RECONNECTS) throw error;
        await sleep(backoff(failures), signal);
        continue;
      }
      const body = response.body as ReadableStream<Uint8Array> | null | undefined;
      if (!body || typeof body.getReader !== "function") {
        if (transport === "sse") throw new PurasError("this runtime's fetch cannot stream a response; use transport: \"poll\"");
        yield* this.poll(jobId, cursor, interval, signal);
        return;
      }
      const reader = body.getReader();
      const decoder = new TextDecoder();
      const parser = new SSEParser();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const frame of parser.feed(decoder.decode(value, { stream: true }))) {
            if (frame.event === "end" || signal?.aborted) return;
            const event = JSON.parse(frame.data) as JobEvent;
            if (event.id <= cursor.afterId) continue; // seen before a reconnect
            cursor.afterId = event.id;
            failures = 0;
            yield event;
          }
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (err instanceof SyntaxError) throw err;
      } finally {
        reader.cancel().catch(() => undefined);
      }
      // The connection ended before the job did: reopen it after the last event seen.
      if (++failures > RECONNECTS) throw new PurasError(`the event stream of job ${jobId} kept dropping`);
      await sleep(backoff(failures), signal);
    }
  }

  private async *poll(
    jobId: string,
    cursor: { afterId: number },
    interval: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<JobEvent> {
    const events = apiPath`/v1/jobs/${jobId}/events`;
    while (!signal?.aborted) {
      let page: EventsPage;
      try {
        page = await this.request<EventsPage>("GET", events, {
          query: { after_id: cursor.afterId, limit: 500 },
          signal,
        });
      } catch (err) {
        if (signal?.aborted) return;
        throw err;
      }
      for (const event of page.events) {
        if (signal?.aborted) return;
        if (event.id <= cursor.afterId) continue;
        cursor.afterId = event.id;
        yield event;
      }
      if (page.terminal) return;
      if (!page.events.length) await sleep(interval, signal);
    }
  }

  private headers(): Record<string, string> {
    return { Authorization: `Bearer ${this.apiKey}` };
  }

  private url(path: string, query?: RequestOptions["query"]): string {
    const params = Object.entries(query ?? {})
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
    return `${this.apiBase}${path}${params.length ? `?${params.join("&")}` : ""}`;
  }

  private async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const headers: Record<string, string> = { ...this.headers(), ...options.headers };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    try {
      const response = await this.fetchImpl(this.url(path, options.query), {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: controller.signal,
      });
      if (!response.ok) throw await PurasAPIError.from(response);
      return (await response.json()) as T;
    } catch (err) {
      if (controller.signal.aborted && !options.signal?.aborted) {
        throw new PurasTimeoutError(`${method} ${path} got no answer within ${timeoutMs} ms`);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** `Puras` under the name of the Python SDK's `puras.Client`. */
export { Puras as Client };

/** A request path from a template whose every interpolated value is one path segment, encoded
 * whole (`/`, `?`, `#` and `%` included), so that an id never reaches another route. An empty,
 * "." or ".." value, which URL parsing would drop or resolve, throws before any request. */
function apiPath(literals: TemplateStringsArray, ...segments: string[]): string {
  return segments.reduce((out, value, i) => {
    const text = String(value);
    if (text === "" || text === "." || text === "..") {
      throw new PurasError(`${JSON.stringify(text)} is not an id or name: a request path segment is never empty, "." or ".."`);
    }
    return out + encodeURIComponent(text) + literals[i + 1];
  }, literals[0]);
}

function env(name: string): string | undefined {
  const process = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return process?.env?.[name] || undefined;
}

function backoff(failures: number): number {
  return Math.min(2000, 200 * failures);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
