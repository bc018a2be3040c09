import { setTimeout as sleep } from "node:timers/promises";
import { App, type Logger as BoltLogger, LogLevel } from "@slack/bolt";
import { type RetryOptions, WebAPIRateLimitedError, WebClient } from "@slack/web-api";
import type { HttpRoute } from "../../src/http/http-server.ts";
import { type Logger, redactUrlSecrets } from "../../src/logger.ts";

/**
 * Slack's side of the wire: the Bolt app (HTTP or Socket Mode), the Web API clients and the retry policy they
 * follow, and the Web API's paged listings.
 *
 * The policy, chosen so that no call can stall a turn for long and no message can appear twice:
 * - Every Web API call gives up after `timeoutMs` (10 s by default; the SDK's default is no limit).
 * - Reads and edits (`conversations.*`, `chat.update`, `auth.test`) can be repeated safely: a few quick retries,
 *   seconds in all, on timeouts, network errors and 5xx (the SDK's default is ten over ~30 minutes).
 * - Posts (`chat.postMessage`, `chat.postEphemeral`, file uploads, `response_url`) are never repeated on a
 *   timeout, a dropped connection or a 5xx: the post may have gone through, and a second one would show twice.
 *   The delivery fails instead, and its next attempt reads the thread back before posting.
 * - Rate limits (429: Slack did nothing with the call) are waited out, as long as Slack says, for up to two
 *   minutes per call (`withRateLimits`): a burst in one channel is slowed to Slack's pace (about a message a
 *   second), not dropped.
 */

export interface SlackConnection {
  botToken: string;
  signingSecret?: string;
  /** `xapp-…`: Socket Mode instead of HTTP. */
  appToken?: string;
  /** Base of Slack's Web API (tests and proxies); Slack's own by default. */
  apiUrl?: string;
  /** HTTP mode: where Bolt listens (`POST /slack/events`), with `routes` beside it. */
  port?: number;
  routes?: readonly HttpRoute[];
  /** How long any one Web API call may take; 10 s by default. */
  timeoutMs?: number;
}

const CALL_TIMEOUT_MS = 10_000;

/** Reads and edits: seconds of retrying, not the SDK's half hour. */
const REPEATABLE_RETRIES: RetryOptions = { retries: 2, factor: 2, minTimeout: 500, maxTimeout: 4_000 };

/** How long one call may wait out rate limits in all before it fails (and the queue retries the delivery). */
const RATE_LIMIT_PATIENCE_MS = 120_000;

/** The Bolt app; its `client` is the one for reads and edits. */
export function createBoltApp(connection: SlackConnection, log: Logger): App {
  const socketMode = Boolean(connection.appToken);
  return new App({
    token: connection.botToken,
    appToken: connection.appToken,
    socketMode,
    signingSecret: socketMode ? undefined : connection.signingSecret,
    // Over HTTP, Slack's request is answered only once the handlers are done, so an event is acknowledged
    // after its turn is recorded: a crash before that makes Slack retry it instead of losing it. (Socket
    // Mode acknowledges events before handlers run; Bolt offers no way to wait there.)
    processBeforeResponse: !socketMode,
    port: connection.port,
    customRoutes: socketMode ? undefined : connection.routes?.map((route) => ({ ...route })),
    clientOptions: {
      ...(connection.apiUrl ? { slackApiUrl: connection.apiUrl } : {}),
      timeout: connection.timeoutMs ?? CALL_TIMEOUT_MS,
      retryConfig: REPEATABLE_RETRIES,
      // Rate limits come back to `withRateLimits`, which waits them out without spending the retries above.
      rejectRateLimitedCalls: true,
    },
    logger: boltLogger(log),
    logLevel: LogLevel.INFO,
  });
}

/** The client for posts: never retried by the SDK (rate limits: see `withRateLimits`). */
export function createPostingClient(connection: SlackConnection, log: Logger): WebClient {
  return new WebClient(connection.botToken, {
    ...(connection.apiUrl ? { slackApiUrl: connection.apiUrl } : {}),
    timeout: connection.timeoutMs ?? CALL_TIMEOUT_MS,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    logger: boltLogger(log),
  });
}

/**
 * A Web API call made again after each rate limit, once Slack's `Retry-After` has passed (Slack did nothing
 * with a rate-limited call), for up to two minutes in all; any other failure is the caller's. Stops waiting
 * when `signal` aborts.
 */
export async function withRateLimits<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const giveUpAt = Date.now() + RATE_LIMIT_PATIENCE_MS;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof WebAPIRateLimitedError)) throw error;
      const waitMs = Math.max(error.retryAfter, 1) * 1000;
      if (Date.now() + waitMs > giveUpAt) throw error;
      await sleep(waitMs, undefined, { signal });
    }
  }
}

/**
 * Answers a slash command or a click privately through its `response_url` (valid for 30 minutes), within the
 * call timeout (Bolt's own `respond` has none). A click's answer must not replace the message clicked.
 */
export async function respondPrivately(
  responseUrl: string,
  text: string,
  options: { keepOriginal?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  const response = await fetch(responseUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      response_type: "ephemeral",
      ...(options.keepOriginal ? { replace_original: false } : {}),
      text,
    }),
    signal: AbortSignal.timeout(options.timeoutMs ?? CALL_TIMEOUT_MS),
  });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`response_url answered ${response.status}`);
}

/** Every message of a paged Web API listing (`conversations.history`, `conversations.replies`), in order. */
export async function* allMessages<M>(
  fetchPage: (
    cursor: string | undefined,
  ) => Promise<{ messages?: M[]; response_metadata?: { next_cursor?: string } }>,
): AsyncGenerator<M> {
  let cursor: string | undefined;
  do {
    const page = await fetchPage(cursor);
    yield* page.messages ?? [];
    cursor = page.response_metadata?.next_cursor || undefined;
  } while (cursor);
}

/** Bolt logs through our pino logger, so secrets are redacted the same way everywhere. */
function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.INFO;
  const child = logger.child({ component: "bolt" });
  const text = (msg: unknown[]) => redactUrlSecrets(msg.map(String).join(" "));
  return {
    debug: (...msg: unknown[]) => child.debug(text(msg)),
    info: (...msg: unknown[]) => child.info(text(msg)),
    warn: (...msg: unknown[]) => child.warn(text(msg)),
    error: (...msg: unknown[]) => child.error(text(msg)),
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => {},
  };
}
