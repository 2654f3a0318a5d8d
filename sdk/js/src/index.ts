/** The Puras client for JavaScript and TypeScript: call deployed skills and follow their jobs. */

export { Puras, Client } from "./client.js";
export { JobError, PurasAPIError, PurasError, PurasTimeoutError } from "./errors.js";
export { SSEParser, type SSEFrame } from "./sse.js";
export {
  TERMINAL_STATUSES,
  type EventsOptions,
  type InputRequest,
  type Job,
  type JobEvent,
  type ProvideInputOptions,
  type PurasOptions,
  type RunOptions,
  type SubmitOptions,
  type WaitOptions,
} from "./types.js";
