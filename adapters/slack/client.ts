import { setTimeout as sleep } from "node:timers/promises";
import {
  App,
  type Logger as BoltLogger,
  LogLevel,
  type ReceiverEvent,
  SocketModeReceiver,
  type SocketModeReceiverOptions,
} from "@slack/bolt";
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
export function createBoltApp(
  connection: SlackConnection,
  log: Logger,
): { app: App; socket: AckAfterHandlersReceiver | null } {
  const clientOptions = {
    ...(connection.apiUrl ? { slackApiUrl: connection.apiUrl } : {}),
    timeout: connection.timeoutMs ?? CALL_TIMEOUT_MS,
    retryConfig: REPEATABLE_RETRIES,
    // Rate limits come back to `withRateLimits`, which waits them out without spending the retries above.
    rejectRateLimitedCalls: true,
  };
  const logger = boltLogger(log);
  // Either way, Slack's request is answered only once the handlers are done, and they return once the event is
  // in the inbox: a crash before that makes Slack report a failure or send the event again, never lose it.
  const receiver = connection.appToken
    ? new AckAfterHandlersReceiver(
        {
          appToken: connection.appToken,
          logger,
          logLevel: LogLevel.INFO,
          installerOptions: { clientOptions },
        },
        log,
      )
    : undefined;
  const app = new App({
    token: connection.botToken,
    ...(receiver
      ? { receiver }
      : {
          signingSecret: connection.signingSecret,
          processBeforeResponse: true,
          port: connection.port,
          customRoutes: connection.routes?.map((route) => ({ ...route })),
        }),
    clientOptions,
    logger,
    logLevel: LogLevel.INFO,
  });
  return { app, socket: receiver ?? null };
}

/**
 * Socket Mode that acknowledges an envelope only after the handlers returned, as HTTP does with
 * `processBeforeResponse`; Bolt's own receiver acknowledges events before any handler runs. A handler that
 * throws leaves the envelope unacknowledged, so Slack sends it again.
 */
export class AckAfterHandlersReceiver extends SocketModeReceiver {
  #app: App | undefined;
  /** Whether the WebSocket is open and Slack said hello (for `/healthz`). */
  connected = false;

  constructor(options: SocketModeReceiverOptions, log: Logger) {
    super(options);
    this.client.on("connected", () => {
      this.connected = true;
    });
    for (const lost of ["disconnected", "reconnecting"])
      this.client.on(lost, () => {
        this.connected = false;
      });
    this.client.removeAllListeners("slack_event");
    this.client.on("slack_event", async (args: SocketEnvelope) => {
      const answer: { body?: unknown; given: boolean } = { given: false };
      const event: ReceiverEvent = {
        body: args.body,
        ack: async (response?: unknown) => {
          if (answer.given) return;
          answer.given = true;
          answer.body = response;
        },
        retryNum: args.retry_num,
        retryReason: args.retry_reason,
        customProperties: {},
      };
      try {
        await this.#app?.processEvent(event);
      } catch (error) {
        log.warn({ err: error }, "slack event not acknowledged: its handler failed");
        return;
      }
      if (answer.given)
        await args
          .ack(answer.body as Record<string, unknown> | undefined)
          .catch((error: unknown) => log.warn({ err: error }, "could not acknowledge a slack event"));
    });
  }

  override init(app: App): void {
    super.init(app);
    this.#app = app;
  }
}

/** What `SocketModeClient` emits for each envelope. */
interface SocketEnvelope {
  body: Record<string, unknown>;
  ack(response?: Record<string, unknown>): Promise<void>;
  retry_num?: number;
  retry_reason?: string;
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
  options: { keepOriginal?: boolean; timeoutMs?: number; blocks?: unknown[] } = {},
): Promise<void> {
  const response = await fetch(responseUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      response_type: "ephemeral",
      ...(options.keepOriginal ? { replace_original: false } : {}),
      text,
      ...(options.blocks ? { blocks: options.blocks } : {}),
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
