import { type APIUser, Client, Events, type Guild, Routes } from "discord.js";
import { AccessPolicy } from "../../src/access.ts";
import type { Logger } from "../../src/logger.ts";
import type { WorkMetrics } from "../../src/metrics.ts";
import type { ConversationEngine, Inbox } from "../../src/ports.ts";
import { InboxWorker } from "../shared/inbox.ts";
import { INTENTS, NO_MENTIONS, REST_POLICY } from "./client.ts";
import { DiscordDelivery } from "./delivery.ts";
import { allowedFileHosts } from "./files.ts";
import { AcknowledgementGates } from "./gates.ts";
import { DiscordInbound } from "./inbound.ts";
import { DiscordThreads } from "./threads.ts";

export interface DiscordAdapterOptions {
  engine: ConversationEngine;
  logger: Logger;
  token: string;
  /** Base of Discord's REST API (`DISCORD_API_URL`); the gateway URL comes from `GET /gateway/bot`. */
  apiUrl?: string;
  /**
   * Which servers and channels it serves (`DISCORD_ALLOWED_GUILDS`, `DISCORD_ALLOWED_CHANNELS`); every one by
   * default. It leaves any other server it is in or is added to.
   */
  access?: AccessPolicy;
  /** Largest attachment used as a reference image. */
  maxAttachmentBytes?: number;
  /** How long one REST call may take before it is tried again (`REST_POLICY`); 15 s by default. */
  requestTimeoutMs?: number;
  /** How long one attachment download may take; 30 s by default. */
  downloadTimeoutMs?: number;
  /** Where events are written before they are acknowledged (`shared/inbox.ts`). */
  inbox: Inbox;
  /** How long this process holds an event it works before another pass may take it over; 2 minutes by default. */
  inboxHoldMs?: number;
  /** Where acknowledgement times are counted (`/metrics`). */
  metrics?: Pick<WorkMetrics, "acknowledged">;
}

/**
 * Discord in, through the inbox, engine intents out (`inbound.ts`); engine results in, Discord messages out
 * (`delivery.ts`). Holds nothing that matters across a restart: events, threads, reply tokens and status
 * messages live in the store, button targets in custom_ids.
 */
export class DiscordAdapter {
  readonly client: Client;
  readonly #options: DiscordAdapterOptions;
  readonly #log: Logger;
  readonly #ready: Promise<void>;
  readonly #inbound: DiscordInbound;
  readonly #inbox: InboxWorker;
  readonly #access: AccessPolicy;
  #markReady: () => void = () => {};
  /** ROLE=worker: no gateway session; the bot's id comes from `GET /users/@me`. */
  #restOnly: { botId: string } | null = null;

  constructor(options: DiscordAdapterOptions) {
    this.#options = options;
    this.#log = options.logger.child({ adapter: "discord" });
    this.#access = options.access ?? AccessPolicy.open;
    this.#ready = new Promise((resolve) => {
      this.#markReady = resolve;
    });
    this.client = new Client({
      intents: INTENTS,
      rest: {
        ...(options.apiUrl ? { api: options.apiUrl } : {}),
        ...REST_POLICY,
        ...(options.requestTimeoutMs ? { timeout: options.requestTimeoutMs } : {}),
      },
      allowedMentions: NO_MENTIONS,
      // As many gateway sessions as Discord recommends (`GET /gateway/bot`): one until the bot is in ~2,500
      // servers, more after that. discord.js runs them all in this process.
      shards: "auto",
    });
    const threads = new DiscordThreads(this.client, options.engine);
    const gates = new AcknowledgementGates();
    const delivery = new DiscordDelivery({
      client: this.client,
      engine: options.engine,
      threads,
      logger: this.#log,
      whenConnected: () => this.#whenConnected(),
      acknowledged: (turn) => gates.passed(turn),
      botId: () => this.#restOnly?.botId,
    });
    const inbound = new DiscordInbound({
      client: this.client,
      engine: options.engine,
      threads,
      delivery,
      gates,
      logger: this.#log,
      access: this.#access,
      metrics: options.metrics,
      download: {
        allowedHosts: allowedFileHosts(options.apiUrl),
        maxBytes: options.maxAttachmentBytes ?? 25 * 1024 * 1024,
        timeoutMs: options.downloadTimeoutMs,
      },
    });
    this.#inbound = inbound;
    this.#inbox = new InboxWorker({
      inbox: options.inbox,
      platform: "discord",
      logger: this.#log,
      holdMs: options.inboxHoldMs,
      work: (entry) => inbound.work(entry),
      explain: (entry, error) => inbound.explain(entry, error),
      ask: (entry, question) => inbound.ask(entry, question),
    });
    inbound.register(this.#inbox);
    // Added to a server (after start-up): one that is not allowed is left at once.
    this.client.on(Events.GuildCreate, (guild) => void this.#leaveIfNotServed(guild));
    options.engine.observe("discord", {
      progress: (event) => delivery.progress(event),
      deliver: (event, signal) => delivery.deliver(event, signal),
      delivered: (event) => delivery.delivered(event),
    });
  }

  /**
   * Logs in and resolves once the gateway is ready (guilds and channels cached). With `receive: false`
   * (ROLE=worker) it opens no gateway session — Discord must see one per shard, held by the ingress — and
   * delivers over REST only, reading servers and channels as it needs them.
   */
  async start({ receive = true }: { receive?: boolean } = {}): Promise<void> {
    if (!receive) {
      this.client.rest.setToken(this.#options.token);
      const me = (await this.client.rest.get(Routes.user())) as APIUser;
      this.#restOnly = { botId: me.id };
      this.#markReady();
      this.#log.info({ user: me.id }, "discord ready (delivery only, no gateway session)");
      return;
    }
    const ready = new Promise<void>((resolve) => this.client.once(Events.ClientReady, () => resolve()));
    await this.client.login(this.#options.token);
    await ready;
    this.#markReady();
    this.#log.info({ user: this.client.user?.id, guilds: this.client.guilds.cache.size }, "discord ready");
    if (this.#access.restrictsWorkspaces("discord")) {
      for (const guild of [...this.client.guilds.cache.values()]) await this.#leaveIfNotServed(guild);
    } else {
      this.#log.warn(
        "DISCORD_ALLOWED_GUILDS is not set: the bot serves any server it is added to, and anyone who can add it spends the OpenAI key",
      );
    }
    // Events an earlier process recorded but did not finish are worked now; messages written in our threads
    // while no process was connected are read back.
    this.#inbox.start();
    void this.#inbound
      .catchUp()
      .catch((error: unknown) => this.#log.warn({ err: error }, "could not read back our threads"));
  }

  /** A server the bot may not serve is left (it was added by someone who had its invite link). */
  async #leaveIfNotServed(guild: Guild): Promise<void> {
    if (this.#access.servesWorkspace("discord", guild.id)) return;
    try {
      await guild.leave();
      this.#log.warn({ guild: guild.id }, "left a server that is not in DISCORD_ALLOWED_GUILDS");
    } catch (error) {
      this.#log.error({ err: error, guild: guild.id }, "could not leave a server that is not allowed");
    }
  }

  /** For `/healthz`: the gateway session is up (or, delivering only, the bot's identity was read). */
  connected(): boolean {
    return this.#restOnly !== null || this.client.isReady();
  }

  async stop(): Promise<void> {
    await this.#inbox.stop();
    await this.client.destroy();
  }

  /** Resolves once the gateway is ready; rejects after 30 s (delivery then runs again later). */
  async #whenConnected(): Promise<void> {
    const timeout = new Promise<never>((_, reject) => {
      const timer = setTimeout(() => reject(new Error("discord is not connected yet")), 30_000);
      timer.unref();
      void this.#ready.then(() => clearTimeout(timer));
    });
    await Promise.race([this.#ready, timeout]);
  }
}
