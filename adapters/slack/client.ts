import { App, type Logger as BoltLogger, LogLevel } from "@slack/bolt";
import type { HttpRoute } from "../../src/http/http-server.ts";
import type { Logger } from "../../src/logger.ts";

/** Slack's side of the wire: the Bolt app (HTTP or Socket Mode) and the Web API's paged listings. */

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
}

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
    clientOptions: connection.apiUrl ? { slackApiUrl: connection.apiUrl } : {},
    logger: boltLogger(log),
    logLevel: LogLevel.INFO,
  });
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
  return {
    debug: (...msg: unknown[]) => child.debug(msg.map(String).join(" ")),
    info: (...msg: unknown[]) => child.info(msg.map(String).join(" ")),
    warn: (...msg: unknown[]) => child.warn(msg.map(String).join(" ")),
    error: (...msg: unknown[]) => child.error(msg.map(String).join(" ")),
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => {},
  };
}
