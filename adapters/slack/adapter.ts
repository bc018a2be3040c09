import { Server } from "node:http";
import type { App } from "@slack/bolt";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine } from "../../src/ports.ts";
import { createBoltApp, createPostingClient, type SlackConnection, withRateLimits } from "./client.ts";
import { SlackDelivery } from "./delivery.ts";
import { allowedFileHosts } from "./files.ts";
import { registerSlackInbound } from "./inbound.ts";
import { SlackThreads } from "./threads.ts";

/** How to reach Slack (`client.ts`), and what the adapter needs beside it. */
export interface SlackAdapterOptions extends SlackConnection {
  engine: ConversationEngine;
  logger: Logger;
  /** Largest attachment used as a reference image. */
  maxAttachmentBytes?: number;
  /**
   * How long a command or click may take to be recorded before it is acknowledged anyway (Slack allows 3 s).
   * Only a burst on a busy database gets near it.
   */
  ackGuardMs?: number;
}

/**
 * Slack in, engine intents out (`inbound.ts`); engine results in, Slack messages out (`delivery.ts`). Holds
 * nothing that matters across a restart: threads, status messages and button targets live in the store or in
 * the buttons themselves.
 */
export class SlackAdapter {
  readonly app: App;
  readonly #options: SlackAdapterOptions;
  readonly #log: Logger;
  #botUserId: string | undefined;

  constructor(options: SlackAdapterOptions) {
    this.#options = options;
    this.#log = options.logger.child({ adapter: "slack" });
    this.app = createBoltApp(options, this.#log);
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
    registerSlackInbound(this.app, {
      posts,
      engine: options.engine,
      threads,
      delivery,
      logger: this.#log,
      botToken: options.botToken,
      allowedHosts: allowedFileHosts(options.apiUrl),
      maxAttachmentBytes: options.maxAttachmentBytes ?? 20 * 1024 * 1024,
      ackGuardMs: options.ackGuardMs,
    });
    options.engine.observe("slack", {
      progress: (event) => delivery.progress(event),
      deliver: (event, signal) => delivery.deliver(event, signal),
    });
  }

  /** Connects (Socket Mode) or listens (HTTP); returns the HTTP port, which matters when `port` was 0. */
  async start(): Promise<number | null> {
    this.#botUserId = (await withRateLimits(() => this.app.client.auth.test())).user_id;
    const started: unknown = await this.app.start(this.#options.port ?? 3000);
    const address = started instanceof Server ? started.address() : null;
    const port = address && typeof address === "object" ? address.port : null;
    this.#log.info({ socketMode: Boolean(this.#options.appToken), port }, "slack adapter started");
    return port;
  }

  async stop(): Promise<void> {
    await this.app.stop();
  }
}
