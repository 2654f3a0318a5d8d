/** The shapes the Puras API answers with, and the options of each client method. */

/** A job as returned by the API. Extra fields ride along untyped. */
export interface Job {
  id: string;
  status: string;
  result?: Record<string, unknown> | null;
  error?: string | null;
  skill_name?: string;
  created_at?: string;
  /** While `status` is `"waiting"`: the question the job asked. Answer it with `provideInput`. */
  input_request?: InputRequest | null;
  /** While `status` is `"queued"`: why it has not started (see docs/queue.md). */
  waiting_reason?: WaitingReason | null;
  /** While queued: 1 for the next of its workspace's queue; null once handed to a runner. */
  queue_position?: number | null;
  [key: string]: unknown;
}

/** Why a queued job waits; an event of type `waiting_reason` tells each change. */
export type WaitingReason =
  | "queue"
  | "concurrency_limit"
  | "no_runner"
  | "no_credit"
  | "spend_cap";

/** The question a waiting job asked. */
export interface InputRequest {
  request_id: string;
  /** 1 for the job's first question, 2 for its second … */
  number: number;
  prompt: string;
  /** The JSON Schema the answer must match. */
  answer_schema: Record<string, unknown>;
  timeout_seconds: number;
  /** When the job fails if no answer has come (ISO 8601). */
  expires_at?: string | null;
}

/** One job event (`step`, `tool_call`, `log`, …) as emitted by the worker. */
export interface JobEvent {
  id: number;
  type: string;
  payload: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface PurasOptions {
  /** Workspace API key (`puras_live_…` or `puras_pub_…`). Falls back to the
   * `PURAS_API_KEY` env var when running under Node. */
  apiKey?: string;
  /** Default skillpack (slug or UUID) for bare skill names. */
  skillpack?: string;
  /** API origin; defaults to `PURAS_API_BASE` under Node, else http://127.0.0.1:8080. */
  apiBase?: string;
  /** Per-request timeout in ms for non-streaming calls. Default 120 000. */
  timeoutMs?: number;
  /** Custom fetch implementation (tests, polyfills). Defaults to global fetch. */
  fetch?: typeof fetch;
}

export interface SubmitOptions {
  /** Skillpack override (slug, `workspace/skillpack` path, or UUID). */
  skillpack?: string;
  /** Pin the run to a specific deployment version; omit for the active one. */
  version?: number;
  /** While a deployment ramps up, jobs with the same routing key (a user id, say) run the same
   * version; without one, unpinned jobs are split at random. */
  routingKey?: string;
  /** Also send this job's end (and its requests for input) to this URL, signed with the
   * workspace's job_url webhook secret. Not with a publishable key. */
  webhookUrl?: string;
  /** Block server-side until the job finishes or `timeoutSeconds` elapses. Short jobs only. */
  wait?: boolean;
  /** Server-side wait budget in seconds (only with `wait: true`), 1–60. Default 60. */
  timeoutSeconds?: number;
}

export interface WaitOptions {
  /** Give up after this long. Default 600 000 (10 min). */
  timeoutMs?: number;
  /** Poll interval. Default 2000. */
  pollIntervalMs?: number;
  /** Return as well when the job is `waiting` for input (its `input_request` holds the question). */
  orWaiting?: boolean;
}

export interface ProvideInputOptions {
  /** The question answered (`input_request.request_id`): an answer meant for another question is
   * then refused with 409. */
  requestId?: string;
}

export interface EventsOptions {
  /** Yield only events with id greater than this (resume a dropped stream). */
  afterId?: number;
  /** `"sse"`: Server-Sent Events over a streaming fetch; `"poll"`: repeated
   * `GET /v1/jobs/{id}/events`; `"auto"` (default): SSE where fetch can stream, else poll. */
  transport?: "auto" | "sse" | "poll";
  /** Poll interval for the poll transport. Default 1500. */
  pollIntervalMs?: number;
  /** Abort the stream early (e.g. when a screen unmounts); the iteration then just ends. */
  signal?: AbortSignal;
}

export type RunOptions = Pick<SubmitOptions, "skillpack" | "version"> & WaitOptions;

/** The statuses a job ends in. */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled"]);
