/** What the client throws: API refusals carry the API's status, code and message; a job that
 * did not succeed carries the whole job. */

import type { Job } from "./types.js";

/** Base of every error this package throws. */
export class PurasError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A non-2xx response from the Puras API (e.g. 402 insufficient credits, 403 a skill outside
 * the key's allowlist, 429 the key's daily spend cap). */
export class PurasAPIError extends PurasError {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  readonly body: unknown;

  constructor(status: number, code: string, message: string, details?: unknown, body?: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? null;
    this.body = body ?? null;
  }

  /** The error a response carries: the API's `{error: {code, message, details}}`, or its text. */
  static async from(response: Response): Promise<PurasAPIError> {
    const text = await response.text().catch(() => "");
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string; details?: unknown } };
      const error = body.error ?? {};
      return new PurasAPIError(
        response.status,
        error.code ?? "error",
        error.message ?? text.slice(0, 500),
        error.details,
        body,
      );
    } catch {
      return new PurasAPIError(response.status, "error", text.slice(0, 500) || response.statusText);
    }
  }
}

/** A job finished in a state other than succeeded, or was still running when the wait ended. */
export class JobError extends PurasError {
  readonly job: Job;

  constructor(job: Job, message?: string) {
    super(message ?? `job ${job.id} ${job.status}: ${job.error ?? "no result"}`);
    this.job = job;
  }
}

/** A request got no answer within `timeoutMs`. */
export class PurasTimeoutError extends PurasError {}
