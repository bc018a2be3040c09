import { Server } from "node:http";
import type { App } from "@slack/bolt";
import { AccessPolicy } from "../../src/access.ts";
import type { Logger } from "../../src/logger.ts";
import type { WorkMetrics } from "../../src/metrics.ts";
import type { ConversationEngine, Inbox } from "../../src/ports.ts";
import { InboxWorker } from "../shared/inbox.ts";
import {
  type AckAfterHandlersReceiver,
  createBoltApp,
  createPostingClient,
  type SlackConnection,
  withRateLimits,
} from "./client.ts";
import { SlackDelivery } from "./delivery.ts";
import { allowedFileHosts } from "./files.ts";
import { SlackInbound } from "./inbound.ts";
import { SlackThreads } from "./threads.ts";

/** How to reach Slack (`client.ts`), and what the adapter needs beside it. */
export interface SlackAdapterOptions extends SlackConnection {
  engine: ConversationEngine;
  logger: Logger;
  /** Largest attachment used as a reference image. */
  maxAttachmentBytes?: number;
  /** Where events are written before they are acknowledged (`shared/inbox.ts`). */
  inbox: Inbox;
  /** Which teams and channels it serves; all by default. */
  access?: AccessPolicy;
  /** How long this process holds an event it works before another pass may take it over; 2 minutes by default. */
  inboxHoldMs?: number;
  /** Where acknowledgement times are counted (`/metrics`). */
  metrics?: Pick<WorkMetrics, "acknowledged">;
}

/**
 * Slack in, through the inbox, engine intents out (`inbound.ts`); engine results in, Slack messages out
 * (`delivery.ts`). Holds nothing that matters across a restart: events, threads and status messages live in
 * the store, button targets in the buttons themselves.
 */
export class SlackAdapter {
  readonly app: App;
  readonly #options: SlackAdapterOptions;
  readonly #log: Logger;
  readonly #inbox: InboxWorker;
  readonly #socket: AckAfterHandlersReceiver | null;
  #botUserId: string | undefined;
  #state: "stopped" | "receiving" | "delivering" = "stopped";

  constructor(options: SlackAdapterOptions) {
    this.#options = options;
    this.#log = options.logger.child({ adapter: "slack" });
    ({ app: this.app, socket: this.#socket } = createBoltApp(options, this.#log));
    const posts = createPostingClient(options, this.#log);
    const shared = {
      client: this.app.client,
      posts,
      engine: options.engine,
      logger: this.#log,
      botUserId: () => this.#botUserId,
    };
    const threads = new SlackThreads(shared);
    const delivery = new SlackDelivery({ ...shared, threads });
    const inbound = new SlackInbound({
      posts,
      engine: options.engine,
      threads,
      delivery,
      logger: this.#log,
      botToken: options.botToken,
      allowedHosts: allowedFileHosts(options.apiUrl),
      maxAttachmentBytes: options.maxAttachmentBytes ?? 20 * 1024 * 1024,
      access: options.access ?? AccessPolicy.open,
      metrics: options.metrics,
    });
    this.#inbox = new InboxWorker({
      inbox: options.inbox,
      platform: "slack",
      logger: this.#log,
      holdMs: options.inboxHoldMs,
      work: (entry) => inbound.work(entry),
      explain: (entry, error) => inbound.explain(entry, error),
      ask: (entry, question) => inbound.ask(entry, question),
    });
    inbound.register(this.app, this.#inbox);
    options.engine.observe("slack", {
      progress: (event) => delivery.progress(event),
      deliver: (event, signal) => delivery.deliver(event, signal),
    });
  }

  /**
   * Connects (Socket Mode) or listens (HTTP); returns the HTTP port, which matters when `port` was 0. With
   * `receive: false` (ROLE=worker) it only learns who the bot is: it delivers through the Web API and takes no
   * events, so it opens no socket and no HTTP route.
   */
  async start({ receive = true }: { receive?: boolean } = {}): Promise<number | null> {
    this.#botUserId = (await withRateLimits(() => this.app.client.auth.test())).user_id;
    if (!receive) {
      this.#state = "delivering";
      this.#log.info("slack adapter started (delivery only)");
      return null;
    }
    const started: unknown = await this.app.start(this.#options.port ?? 3000);
    const address = started instanceof Server ? started.address() : null;
    const port = address && typeof address === "object" ? address.port : null;
    // Events an earlier process recorded but did not finish are worked now.
    this.#inbox.start();
    this.#state = "receiving";
    this.#log.info({ socketMode: Boolean(this.#options.appToken), port }, "slack adapter started");
    return port;
  }

  /**
   * For `/healthz`: started, and in Socket Mode connected. Over HTTP there is no connection to hold: Slack
   * calls in, and a Web API outage shows as late deliveries, not as this process being unready.
   */
  connected(): boolean {
    if (this.#state === "stopped") return false;
    return this.#state === "delivering" || this.#socket === null || this.#socket.connected;
  }

  async stop(): Promise<void> {
    const receiving = this.#state === "receiving";
    this.#state = "stopped";
    await this.#inbox.stop();
    if (receiving) await this.app.stop();
  }
}
