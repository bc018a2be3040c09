import { randomUUID } from "node:crypto";
import OpenAI from "openai";
import type { UsageEntry } from "../domain.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { CallLedger, CallOutcome } from "../ports.ts";

/**
 * Puts every HTTP request the SDK sends for a turn in the turn's ledger — its own retries included, which the
 * engine never sees. The SDK takes a `fetch` of our choosing: each request carries the call's id in
 * `X-Client-Request-Id` (OpenAI logs it, so a call can be traced even when no answer came back); the wrapper makes
 * it unique per attempt (`<call>`, `<call>.r1`, …, from `X-Stainless-Retry-Count`), writes the ledger row before
 * the request leaves, and settles what the HTTP answer already tells: an error status is not billed, no answer
 * at all is unknown. A 2xx answer stays open until the provider has read its usage (`answered`) or failed
 * reading it (`failed`).
 */

export const CLIENT_REQUEST_ID = "X-Client-Request-Id";
const RETRY_COUNT = "X-Stainless-Retry-Count";

interface TrackedCall {
  ledger: CallLedger;
  endpoint: string;
  /** The attempt that got a 2xx answer, waiting for its usage. */
  open: { clientRequestId: string; requestId: string | null } | null;
  /** The ledger could not be written: the request was not sent, and this is why. */
  ledgerError: unknown;
}

type Fetch = typeof globalThis.fetch;

export class CallTracker {
  readonly #calls = new Map<string, TrackedCall>();
  readonly #logger: Logger | undefined;

  constructor(logger?: Logger) {
    this.#logger = logger;
  }

  /** The `fetch` to give the SDK: `inner` (the SDK's own) with the ledger around each tracked request. */
  wrap(inner: Fetch): Fetch {
    return async (input, init) => {
      const headers = new Headers(init?.headers);
      const callId = headers.get(CLIENT_REQUEST_ID);
      const call = callId ? this.#calls.get(callId) : undefined;
      if (!callId || !call) return inner(input, init);
      const retry = Number(headers.get(RETRY_COUNT) ?? 0) || 0;
      const clientRequestId = retry === 0 ? callId : `${callId}.r${retry}`;
      headers.set(CLIENT_REQUEST_ID, clientRequestId);
      try {
        await call.ledger.open({ clientRequestId, endpoint: call.endpoint, retry });
      } catch (error) {
        // Nothing is sent that the ledger does not know of. The SDK would retry a throwing fetch as a
        // connection error; `failed` reports this error instead.
        call.ledgerError ??= error;
        throw error;
      }
      let response: Response;
      try {
        response = await inner(input, { ...init, headers });
      } catch (error) {
        await this.#settle(call, clientRequestId, { status: "unknown", requestId: null });
        throw error;
      }
      const requestId = response.headers.get("x-request-id");
      if (response.ok) call.open = { clientRequestId, requestId };
      else
        await this.#settle(call, clientRequestId, {
          status: "not_billed",
          requestId,
          httpStatus: response.status,
        });
      return response;
    };
  }

  /**
   * Starts tracking one SDK call for `ledger`; returns the request options that tag it (none without a ledger).
   * Call `answered` (its usage read) or `failed` once the SDK call is over.
   */
  begin(ledger: CallLedger | undefined, endpoint: string): TrackedHandle {
    if (!ledger) return UNTRACKED;
    const callId = `tc_${randomUUID()}`;
    const call: TrackedCall = { ledger, endpoint, open: null, ledgerError: undefined };
    this.#calls.set(callId, call);
    return {
      headers: { [CLIENT_REQUEST_ID]: callId },
      answered: async (usage) => {
        this.#calls.delete(callId);
        if (call.open) {
          await this.#settle(call, call.open.clientRequestId, {
            status: "billed",
            requestId: call.open.requestId,
            usage,
          });
        }
      },
      failed: async (error, usage = []) => {
        this.#calls.delete(callId);
        if (call.ledgerError !== undefined) {
          throw new AppError("internal", "the provider call could not be written to the ledger", {
            userMessage: "Something went wrong on our side. Please try again.",
            retryable: true,
            cause: call.ledgerError,
          });
        }
        if (!call.open) return; // every attempt was settled by its HTTP answer
        const { clientRequestId, requestId } = call.open;
        // Tokens reported before the failure were billed; an error the server itself sent bills nothing;
        // a broken connection or an abort after a 2xx may have been billed: charged at the estimate.
        const outcome: CallOutcome =
          usage.length > 0
            ? { status: "billed", requestId, usage }
            : serverSaid(error)
              ? { status: "not_billed", requestId, httpStatus: null }
              : { status: "unknown", requestId };
        await this.#settle(call, clientRequestId, outcome);
      },
    };
  }

  /** A settle that fails leaves the row pending; the turn's next attempt (or its end) counts it as unknown. */
  async #settle(call: TrackedCall, clientRequestId: string, outcome: CallOutcome): Promise<void> {
    try {
      await call.ledger.settle(clientRequestId, outcome);
    } catch (error) {
      this.#logger?.warn({ err: error, clientRequestId }, "could not settle a ledger row; it stays pending");
    }
  }
}

export interface TrackedHandle {
  /** Request headers for the SDK call (`{ headers }` in its request options). */
  headers: Record<string, string>;
  /** The call's answer was read: bills its open attempt with `usage` (that request's own tokens). */
  answered(usage: readonly UsageEntry[]): Promise<void>;
  /**
   * The call failed. `usage`: tokens the answer reported before failing (a stream's completed images). Throws
   * the ledger's own error when the request could not be recorded (and so was not sent).
   */
  failed(error: unknown, usage?: readonly UsageEntry[]): Promise<void>;
}

const UNTRACKED: TrackedHandle = {
  headers: {},
  answered: async () => {},
  failed: async () => {},
};

/** An error the API answered with (an error event in a stream, a failed response) rather than a lost connection. */
function serverSaid(error: unknown): boolean {
  if (error instanceof AppError)
    return error.code === "moderation_blocked" || error.code === "provider_rejected";
  return error instanceof OpenAI.APIError && !(error instanceof OpenAI.APIConnectionError);
}
