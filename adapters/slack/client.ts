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
 *   seconds in all, on timeouts, network errors, 5xx and rate limits (the SDK's default is ten over ~30 minutes).
 * - Posts (`chat.postMessage`, `chat.postEphemeral`, file uploads, `response_url`) are never repeated on a
 *   timeout, a dropped connection or a 5xx: the post may have gone through, and a second one would show twice.
 *   The delivery fails instead, and its next attempt reads the thread back before posting. A rate limit (429:
 *   Slack did nothing) is waited out and retried, a few times.
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

/** Rate limits a post waits out before the delivery fails and is retried by the queue. */
const RATE_LIMIT_WAITS = 3;
/** The longest single wait a post accepts from `Retry-After`. */
const MAX_RATE_LIMIT_WAIT_MS = 30_000;

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
    },
    logger: boltLogger(log),
    logLevel: LogLevel.INFO,
  });
}

/** The client for posts: never retried by the SDK (see `post`). */
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
 * A post through the posting client: a rate limit is waited out and the post sent again (Slack did nothing
 * with it); any other failure is the caller's, unretried. Stops waiting when `signal` aborts.
 */
export async function post<T>(send: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let waits = 0; ; waits++) {
    try {
      return await send();
    } catch (error) {
      if (!(error instanceof WebAPIRateLimitedError) || waits >= RATE_LIMIT_WAITS) throw error;
      await sleep(Math.min(error.retryAfter * 1000, MAX_RATE_LIMIT_WAIT_MS), undefined, { signal });
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
