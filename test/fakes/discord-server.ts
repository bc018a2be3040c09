import { randomBytes, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { COMMAND_ROUTES, IDENTITY_ROUTES } from "./discord-commands.ts";
import {
  type AttachmentInput,
  type ComponentInput,
  clickComponent,
  defaultChannel,
  InteractionHandle,
  type OptionValue,
  type SlashCommandInput,
  slashCommand,
  type UserMessageInput,
  type UserThreadInput,
  userMessage,
  userThread,
} from "./discord-driver.ts";
import { createGateway, type FakeGateway, PRIVILEGED_INTENTS } from "./discord-gateway.ts";
import { INTERACTION_ROUTES } from "./discord-interactions.ts";
import { MESSAGE_ROUTES } from "./discord-messages.ts";
import { cdnSignature, channelJson, hostAttachment, listMessages } from "./discord-objects.ts";
import {
  DEFAULT_DISCORD_BUCKETS,
  DEFAULT_DISCORD_GLOBAL,
  type DiscordBucketRule,
  DiscordRateLimiter,
  type DiscordRateLimits,
  type RateLimitRecord,
} from "./discord-rate-limits.ts";
import {
  type DiscordFailure,
  type Failures,
  handleRest,
  type RestContext,
  type Route,
} from "./discord-rest.ts";
import {
  type ApiCall,
  type CallbackRecord,
  type ChannelRecord,
  type CommandRecord,
  DEFAULT_BOT_PERMISSIONS,
  DEFAULT_EVERYONE_PERMISSIONS,
  type DiscordState,
  type DiscordUser,
  type DownloadRecord,
  type InteractionRecord,
  type MessageSnapshot,
  now,
  Permission,
  type StoredAttachment,
  type StoredMessage,
  snowflake,
  waitFor,
} from "./discord-state.ts";

/**
 * A strict local Discord (reference/protocols.md A) for end-to-end tests of the real discord.js client: REST API
 * v10 under `/api/v10`, the gateway WebSocket on the same port, and a CDN for attachments
 * (`/attachments/…`, `/ephemeral-attachments/…`, signed and expiring like Discord's). One guild with a text
 * channel, a bot member with a managed role, and people (alice, bob) who send slash commands, click buttons,
 * post and start threads through the driver methods. It keeps every message version with its attachments' bytes
 * and records every REST call, gateway payload, interaction response and download.
 *
 * Point discord.js at it with `new Client({ intents, rest: { api: fake.apiUrl } })` and `client.login(fake.botToken)`.
 */

export type {
  ApiCall,
  AttachmentInput,
  CallbackRecord,
  ChannelRecord,
  CommandRecord,
  ComponentInput,
  DiscordBucketRule,
  DiscordFailure,
  DiscordRateLimits,
  DiscordUser,
  DownloadRecord,
  FakeGateway,
  InteractionRecord,
  MessageSnapshot,
  OptionValue,
  RateLimitRecord,
  SlashCommandInput,
  StoredAttachment,
  StoredMessage,
  UserMessageInput,
  UserThreadInput,
};
export { DEFAULT_DISCORD_BUCKETS, DEFAULT_DISCORD_GLOBAL, InteractionHandle, Permission };

export interface FakeDiscordOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  botToken?: string;
  botUsername?: string;
  guildName?: string;
  /** Text channels to create (default `["general"]`); the first is `channelId`. */
  channels?: string[];
  /** Usernames of the people in the guild (default alice and bob). */
  users?: string[];
  /** Discord's 3-second deadline for the first interaction response; shorten it to keep tests fast. */
  ackDeadlineMs?: number;
  /** Interaction tokens work for 15 minutes. */
  interactionTokenTtlMs?: number;
  /** The guild's upload limit per file (default 10 MiB). */
  attachmentSizeLimit?: number;
  /** HELLO's heartbeat_interval (Discord: 41250 ms). */
  heartbeatIntervalMs?: number;
  /** The bot role's permissions (default: view, send, threads, embed, attach, history, reactions, commands). */
  botPermissions?: bigint;
  /** Privileged intents enabled for the app; default all three (GuildMembers, GuildPresences, MessageContent). */
  privilegedIntents?: number;
  /**
   * Discord's rate limits, on by default: 5 creates and 5 edits per 5 s per channel, 50 requests per second for
   * the bot token (see discord-rate-limits.ts). `false` turns throttling off.
   */
  rateLimits?: DiscordRateLimits | false;
  /**
   * Shards the gateway asks for (default 1). With more, each session gets only the events of the servers its
   * shard owns (`(guild_id >> 22) % shards`), as on Discord.
   */
  shards?: number;
}

export interface FakeDiscord {
  /** `http://127.0.0.1:PORT/api`, for discord.js `rest: { api }` (it appends `/v10`). */
  apiUrl: string;
  baseUrl: string;
  port: number;
  botToken: string;
  applicationId: string;
  /** The bot's user (its id equals the application id, as for every app created since 2020). */
  botUser: DiscordUser;
  guildId: string;
  /** The first text channel. */
  channelId: string;
  /** The people in the guild by username: `owner` (the guild's owner), then alice and bob by default. */
  users: Record<string, DiscordUser>;
  gateway: Omit<FakeGateway, "handleUpgrade" | "close">;

  // Records
  calls: ApiCall[];
  downloads: DownloadRecord[];
  interactions(): InteractionRecord[];
  /** Messages of a channel or thread, oldest first (ephemeral ones included; check `flags & 64`). */
  messages(channelId?: string): StoredMessage[];
  message(id: string): StoredMessage | undefined;
  channel(id: string): ChannelRecord | undefined;
  /** Threads (of one parent channel if given), as Discord's channel JSON. */
  threads(parentId?: string): Array<Record<string, unknown>>;
  /** Registered commands: global without an argument, else the guild's. */
  commands(guildId?: string): CommandRecord[];

  // Driver (Discord's side)
  slashCommand(input: SlashCommandInput): InteractionHandle;
  clickButton(input: Omit<ComponentInput, "values">): InteractionHandle;
  selectMenu(input: ComponentInput & { values: string[] }): InteractionHandle;
  userMessage(input: UserMessageInput): StoredMessage;
  userThread(input: UserThreadInput): ChannelRecord;
  /** Serves bytes on the fake CDN as a message attachment would be (`/attachments/{channel}/…`). */
  hostAttachment(input: AttachmentInput, channelId?: string): StoredAttachment;

  // Settings
  addChannel(name: string): ChannelRecord;
  /**
   * Takes rights away from the bot in a channel (and its threads) with a member overwrite, announced by
   * CHANNEL_UPDATE: `"send"` (default) denies sending, attaching and threads → 50013; `"view"` hides it → 50001.
   */
  forbidChannel(channelId: string, mode?: "send" | "view"): void;
  allowChannel(channelId: string): void;
  setAttachmentSizeLimit(bytes: number): void;
  setAckDeadline(ms: number): void;
  /**
   * Runs `hook` once, after the next successful call of a route (that `match` accepts, if given) has taken effect
   * and before its answer is sent (awaited): a test can kill the bot at exactly that point. The route is named as
   * in `failNext`, e.g. `"PATCH /webhooks/{application}/{token}/messages/@original"`; an unknown one throws.
   */
  afterNextCall(
    route: string,
    hook: (call: ApiCall) => void | Promise<void>,
    match?: (call: ApiCall) => boolean,
  ): void;
  /** Hooks of `afterNextCall` that have not run yet, by route. */
  pendingAfterCalls(): string[];
  /**
   * Scripted failures for the next calls of a route, e.g. `"POST /channels/{channel}/messages"`: a 429, a status,
   * a dropped connection, or `{ hang: true, processed? }` (never answered; with `processed` after taking effect).
   */
  failNext(route: string, ...failures: DiscordFailure[]): void;
  /** Replaces the rate limits (`false` turns throttling off) and starts every bucket afresh. */
  setRateLimits(limits: DiscordRateLimits | false): void;
  /** Requests left unanswered by a `hang` failure whose client has not given up yet. */
  readonly hungRequests: number;
  /**
   * Someone adds the bot to another server: GUILD_CREATE for a new, empty server (no channels). Returns its id.
   */
  addBotToGuild(name?: string): string;
  /** Servers the bot left (`DELETE /users/@me/guilds/{guild}`), in order. */
  readonly leftGuilds: string[];
  /** The next `count` CDN downloads are left unanswered (recorded with status 0), as a stalled CDN would. */
  stallDownloads(count?: number): void;
  /** Moves the fake's clock (negative rewinds): interaction deadlines, token expiry, CDN link expiry, snowflakes. */
  advanceTime(ms: number): void;
  now(): number;
  /**
   * Resolves with the predicate's first truthy value, re-checked after every change in the fake's own state (REST
   * calls, gateway payloads it received, downloads); not for what a client has received, which it cannot see.
   */
  waitFor<T>(predicate: () => T | undefined | null | false, timeoutMs?: number, what?: string): Promise<T>;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 100 * 1024 * 1024;

export async function startFakeDiscord(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  const state: DiscordState = {
    baseUrl: "",
    botToken: options.botToken ?? fakeBotToken(),
    applicationId: "",
    bot: undefined as unknown as DiscordUser,
    guildId: "",
    guildName: options.guildName ?? "threadcanvas test",
    shardCount: options.shards ?? 1,
    otherGuilds: new Map(),
    leftGuilds: new Set(),
    commands: new Map(),
    users: new Map(),
    roles: [],
    memberRoles: new Map(),
    channels: new Map(),
    messages: new Map(),
    interactions: new Map(),
    interactionsByToken: new Map(),
    hosted: new Map(),
    cdnSecret: randomBytes(32),
    calls: [],
    downloads: [],
    afterCall: new Map(),
    ackDeadlineMs: options.ackDeadlineMs ?? 3000,
    interactionTokenTtlMs: options.interactionTokenTtlMs ?? 15 * 60 * 1000,
    attachmentSizeLimit: options.attachmentSizeLimit ?? 10 * 1024 * 1024,
    clock: { offsetMs: 0, lastSnowflakeMs: 0n, increment: 0 },
    seq: 0,
    dispatch: () => {},
    events: new EventEmitter(),
  };
  state.events.setMaxListeners(0);
  populate(state, options);

  const failures: Failures = new Map();
  const routes: Route[] = [...IDENTITY_ROUTES, ...COMMAND_ROUTES, ...INTERACTION_ROUTES, ...MESSAGE_ROUTES];
  const rest: RestContext = {
    routes,
    failures,
    limiter: new DiscordRateLimiter(
      options.rateLimits ?? {},
      routes.map((r) => `${r.method} ${r.pattern}`),
    ),
    hung: new Set(),
    stalledDownloads: 0,
  };
  const server = createServer((req, res) => void handle(req, res, state, rest));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  state.baseUrl = `http://127.0.0.1:${port}`;
  const gateway = createGateway(state, {
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
    privilegedIntents: options.privilegedIntents ?? PRIVILEGED_INTENTS,
  });
  state.dispatch = gateway.dispatch;
  server.on("upgrade", (req, socket, head) => gateway.handleUpgrade(req, socket, head));

  const setOverwrite = (channelId: string, deny: bigint) => {
    const channel = state.channels.get(channelId);
    if (channel?.type !== 0) throw new Error(`fake Discord: no text channel ${channelId}`);
    channel.overwrites = channel.overwrites.filter((o) => o.id !== state.bot.id);
    if (deny) channel.overwrites.push({ id: state.bot.id, type: 1, allow: 0n, deny });
    gateway.dispatch("CHANNEL_UPDATE", channelJson(state, channel));
  };

  return {
    apiUrl: `${state.baseUrl}/api`,
    baseUrl: state.baseUrl,
    port,
    botToken: state.botToken,
    applicationId: state.applicationId,
    botUser: state.bot,
    guildId: state.guildId,
    channelId: defaultChannel(state),
    users: Object.fromEntries([...state.users.values()].filter((u) => !u.bot).map((u) => [u.username, u])),
    gateway,
    calls: state.calls,
    downloads: state.downloads,
    interactions: () => [...state.interactions.values()],
    messages: (channelId = defaultChannel(state)) => listMessages(state, channelId),
    message: (id) => state.messages.get(id),
    channel: (id) => state.channels.get(id),
    threads: (parentId) =>
      [...state.channels.values()]
        .filter((c) => c.parentId && (parentId === undefined || c.parentId === parentId))
        .map((c) => channelJson(state, c)),
    commands: (guildId) => state.commands.get(guildId ?? "") ?? [],

    slashCommand: (input) => slashCommand(state, input),
    clickButton: (input) => clickComponent(state, input),
    selectMenu: (input) => clickComponent(state, input),
    userMessage: (input) => userMessage(state, input),
    userThread: (input) => userThread(state, input),
    hostAttachment: (input, channelId = defaultChannel(state)) => hostAttachment(state, input, { channelId }),

    addChannel(name) {
      const channel: ChannelRecord = {
        id: snowflake(state),
        type: 0,
        name,
        position: state.channels.size,
        overwrites: [],
        lastMessageId: null,
      };
      state.channels.set(channel.id, channel);
      gateway.dispatch("CHANNEL_CREATE", channelJson(state, channel));
      return channel;
    },
    forbidChannel(channelId, mode = "send") {
      setOverwrite(
        channelId,
        mode === "view"
          ? Permission.ViewChannel
          : Permission.SendMessages |
              Permission.SendMessagesInThreads |
              Permission.AttachFiles |
              Permission.CreatePublicThreads |
              Permission.CreatePrivateThreads,
      );
    },
    allowChannel: (channelId) => setOverwrite(channelId, 0n),
    setAttachmentSizeLimit: (bytes) => {
      state.attachmentSizeLimit = bytes;
    },
    setAckDeadline: (ms) => {
      state.ackDeadlineMs = ms;
    },
    afterNextCall(route, hook, match = () => true) {
      if (!routes.some((r) => `${r.method} ${r.pattern}` === route))
        throw new Error(`fake Discord: no route ${route}`);
      state.afterCall.set(route, [...(state.afterCall.get(route) ?? []), { match, run: hook }]);
    },
    pendingAfterCalls: () => [...state.afterCall].flatMap(([route, hooks]) => hooks.map(() => route)),
    failNext: (route, ...list) => void failures.set(route, [...(failures.get(route) ?? []), ...list]),
    setRateLimits: (limits) => rest.limiter.configure(limits),
    get hungRequests() {
      return rest.hung.size;
    },
    addBotToGuild: (name = "another server") => {
      const id = snowflake(state);
      state.otherGuilds.set(id, name);
      state.dispatch("GUILD_CREATE", emptyGuildJson(state, id, name));
      return id;
    },
    get leftGuilds() {
      return [...state.leftGuilds];
    },
    stallDownloads: (count = 1) => {
      rest.stalledDownloads += count;
    },
    advanceTime: (ms) => {
      state.clock.offsetMs += ms;
    },
    now: () => now(state),
    waitFor: (predicate, timeoutMs = 5000, what = "a condition") =>
      waitFor(state, predicate, timeoutMs, what),
    async close() {
      gateway.close();
      // A hung request would keep its connection, and close(), waiting for ever.
      for (const socket of rest.hung) socket.destroy();
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

/** A token shaped like Discord's: base64(user id).timestamp.hmac. */
function fakeBotToken(): string {
  return `${Buffer.from(String(Date.now())).toString("base64url")}.${randomBytes(4).toString("base64url")}.${randomBytes(27).toString("base64url")}`;
}

function populate(state: DiscordState, options: FakeDiscordOptions): void {
  state.applicationId = snowflake(state);
  state.guildId = snowflake(state);
  state.bot = {
    id: state.applicationId,
    username: options.botUsername ?? "threadcanvas",
    discriminator: "0",
    global_name: null,
    avatar: null,
    bot: true,
    public_flags: 0,
  };
  state.users.set(state.bot.id, state.bot);
  for (const username of ["owner", ...(options.users ?? ["alice", "bob"])]) {
    const user: DiscordUser = {
      id: snowflake(state),
      username,
      discriminator: "0",
      global_name: username[0]?.toUpperCase() + username.slice(1),
      avatar: null,
      public_flags: 0,
    };
    state.users.set(user.id, user);
    state.memberRoles.set(user.id, []);
  }
  const botRole = snowflake(state);
  state.roles.push(
    {
      id: state.guildId,
      name: "@everyone",
      permissions: DEFAULT_EVERYONE_PERMISSIONS,
      position: 0,
      managed: false,
    },
    {
      id: botRole,
      name: state.bot.username,
      permissions: options.botPermissions ?? DEFAULT_BOT_PERMISSIONS,
      position: 1,
      managed: true,
      botId: state.bot.id,
    },
  );
  state.memberRoles.set(state.bot.id, [botRole]);
  (options.channels ?? ["general"]).forEach((name, position) => {
    const id = snowflake(state);
    state.channels.set(id, { id, type: 0, name, position, overwrites: [], lastMessageId: null });
  });
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  state: DiscordState,
  rest: RestContext,
): Promise<void> {
  res.on("error", () => {});
  const url = new URL(req.url ?? "/", "http://fake");
  try {
    const raw = await readBody(req);
    if (url.pathname.startsWith("/api/v10/") || url.pathname === "/api/v10")
      return await handleRest(state, rest, req, raw, res);
    if (
      (req.method === "GET" || req.method === "HEAD") &&
      /^\/(media-proxy\/)?(ephemeral-)?attachments\//.test(url.pathname)
    )
      return serveAttachment(req, res, state, rest, url);
    res
      .writeHead(404, { "content-type": "application/json" })
      .end(JSON.stringify({ message: "404: Not Found", code: 0 }));
  } catch (error) {
    if (error instanceof RangeError) {
      res.writeHead(413, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ message: "Request entity too large", code: 40005 }));
    }
    console.error("[fake-discord]", error);
    if (!res.headersSent) res.writeHead(500).end();
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new RangeError("body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * The CDN: a link works only with its signature (`hm` over path, `ex`, `is`) and until `ex`, like Discord's signed
 * attachment URLs; anything else is a 404 with the CDN's text.
 */
function serveAttachment(
  req: IncomingMessage,
  res: ServerResponse,
  state: DiscordState,
  rest: RestContext,
  url: URL,
): void {
  const path = url.pathname.replace(/^\/media-proxy/, "");
  const id = path.split("/")[3] ?? "";
  if (rest.stalledDownloads > 0) {
    rest.stalledDownloads -= 1;
    state.downloads.push({ attachmentId: id, path: url.pathname, status: 0, at: now(state) });
    state.events.emit("change");
    rest.hung.add(req.socket);
    req.socket.once("close", () => rest.hung.delete(req.socket));
    return;
  }
  const attachment = state.hosted.get(id);
  const ex = url.searchParams.get("ex") ?? "";
  const is = url.searchParams.get("is") ?? "";
  const hm = Buffer.from(url.searchParams.get("hm") ?? "", "hex");
  const expected = Buffer.from(cdnSignature(state, path, ex, is), "hex");
  const valid =
    attachment !== undefined &&
    new URL(attachment.url).pathname === path &&
    hm.length === expected.length &&
    timingSafeEqual(hm, expected) &&
    Number.parseInt(ex, 16) * 1000 > now(state);
  const status = valid ? 200 : 404;
  state.downloads.push({ attachmentId: id, path: url.pathname, status, at: now(state) });
  state.events.emit("change");
  if (!valid || !attachment) {
    res.writeHead(404, { "content-type": "text/plain" });
    return void res.end("This content is no longer available.");
  }
  res.writeHead(200, {
    "content-type": attachment.content_type,
    "content-length": String(attachment.bytes.length),
    "cache-control": "public, max-age=31536000",
  });
  res.end(req.method === "HEAD" ? undefined : attachment.bytes);
}

/** GUILD_CREATE for a server the bot was just added to: nobody else in it, no channels yet. */
function emptyGuildJson(state: DiscordState, id: string, name: string): Record<string, unknown> {
  return {
    id,
    name,
    icon: null,
    owner_id: [...state.users.values()].find((u) => u.username === "owner")?.id ?? state.bot.id,
    afk_channel_id: null,
    afk_timeout: 300,
    verification_level: 0,
    default_message_notifications: 0,
    explicit_content_filter: 0,
    mfa_level: 0,
    nsfw_level: 0,
    premium_tier: 0,
    preferred_locale: "en-US",
    features: [],
    system_channel_id: null,
    system_channel_flags: 0,
    roles: [
      {
        id,
        name: "@everyone",
        permissions: "0",
        position: 0,
        color: 0,
        hoist: false,
        managed: false,
        mentionable: false,
        flags: 0,
      },
    ],
    emojis: [],
    stickers: [],
    joined_at: new Date(now(state)).toISOString(),
    large: false,
    unavailable: false,
    member_count: 1,
    voice_states: [],
    members: [],
    channels: [],
    threads: [],
    presences: [],
    stage_instances: [],
    guild_scheduled_events: [],
  };
}
