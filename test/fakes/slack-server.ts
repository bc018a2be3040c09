import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  applyCommandAck,
  type DeliveryOptions,
  deliver,
  type EventOptions,
  eventEnvelope,
  retryHeaders,
  type SlashCommandInput,
  slashCommandFields,
} from "./slack-driver.ts";
import { FILE_METHODS, handleUpload, serveFile } from "./slack-files.ts";
import { MESSAGE_METHODS, respond } from "./slack-messages.ts";
import {
  appMention,
  type BlockActionInput,
  blockActions,
  ephemeralBlockActions,
  messageChanged,
  messageDeleted,
  otherBotMessage,
  type UserMessageInput,
  userMessage,
} from "./slack-payloads.ts";
import {
  DEFAULT_SLACK_METHOD_TIERS,
  DEFAULT_SLACK_POST_MESSAGE_LIMIT,
  DEFAULT_SLACK_TIERS,
  SlackRateLimiter,
  type SlackRateLimits,
  type SlackTier,
  type SlackTierLimit,
} from "./slack-rate-limits.ts";
import { createSocketMode, type FakeSocketMode, type SocketSendOptions } from "./slack-socket.ts";
import {
  type AckRecord,
  type ApiCall,
  type ChannelInfo,
  createResponseUrl,
  type DownloadRecord,
  type EphemeralRecord,
  findMessage,
  hostFile,
  listMessages,
  messageEvent,
  type ResponseUrlPost,
  type SlackFileObject,
  type SlackIdentity,
  type SlackMessage,
  type SlackState,
  type UpdateRecord,
  type UploadRecord,
} from "./slack-state.ts";
import { CORE_METHODS, type Failures, handleWebApi, type SlackFailure } from "./slack-web-api.ts";

/**
 * A strict local Slack (reference/protocols.md B) for end-to-end tests of the real Bolt app: the Web API under
 * `/api/`, the upload URLs of `files.uploadV2`, a file host for `url_private`, response_urls, and Socket Mode;
 * and Slack's side of the HTTP conversation (signed slash commands, events and button clicks, timed against the
 * 3-second rule). It keeps a message log per channel and thread and records every call, upload and ack.
 *
 * Point Bolt at it with `clientOptions: { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } }`.
 */

export { type Signing, signatureHeaders } from "./slack-driver.ts";
export type {
  AckRecord,
  ApiCall,
  BlockActionInput,
  DeliveryOptions,
  EventOptions,
  SlackFailure,
  SlackFileObject,
  SlackMessage,
  SlackRateLimits,
  SlackTier,
  SlackTierLimit,
  SlashCommandInput,
  UploadRecord,
  UserMessageInput,
};

export { DEFAULT_SLACK_METHOD_TIERS, DEFAULT_SLACK_POST_MESSAGE_LIMIT, DEFAULT_SLACK_TIERS };

export type SlackEvent = Record<string, unknown>;

export interface FakeSlackOptions extends Partial<Omit<SlackIdentity, "teamName">> {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Default: C0001 #general and C0002 #random, public, with the bot a member. */
  channels?: Array<Pick<ChannelInfo, "id" | "name"> & Partial<ChannelInfo>>;
  /** id → name. Default: U0001 alice, U0002 bob. */
  users?: Record<string, string>;
  /** Slack's acknowledgement deadline; default 3000 ms. */
  ackTimeoutMs?: number;
  /**
   * Deliver the `message` events Slack sends for the bot's own posts, uploads and edits (as when subscribed to
   * `message.channels`), to an HTTP URL or over Socket Mode. Bolt's ignoreSelf drops the posts, but not
   * the `message_changed` of the bot's own edits.
   */
  echoBotMessagesTo?: string | "socket";
  /**
   * Slack's rate limits, on by default: each method's tier (1, 20, 50, 100 per minute) and chat.postMessage's
   * one message per second per channel with short bursts (see slack-rate-limits.ts). `false` turns them off.
   */
  rateLimits?: SlackRateLimits | false;
}

export interface SlashCommandResult extends AckRecord {
  responseUrl: string;
  fields: Record<string, string>;
}

export interface EventResult extends AckRecord {
  eventId: string;
  envelope: ReturnType<typeof eventEnvelope>;
}

export interface FakeSlack extends Readonly<SlackIdentity> {
  /** `http://127.0.0.1:PORT/api/`, for Bolt's `clientOptions.slackApiUrl` / `SLACK_API_URL`. */
  apiUrl: string;
  /** `http://127.0.0.1:PORT`: also the file host of `url_private`. */
  baseUrl: string;
  port: number;

  calls: ApiCall[];
  uploads: UploadRecord[];
  ephemerals: EphemeralRecord[];
  updates: UpdateRecord[];
  responseUrlPosts: ResponseUrlPost[];
  downloads: DownloadRecord[];
  /** Every delivery the fake made (HTTP and Socket Mode), with the acknowledgement's latency. */
  acks: AckRecord[];
  /**
   * The acks that missed Slack's rules (late, non-200, unreachable): tests assert this stays empty. Socket Mode
   * envelopes still waiting for their ack are not counted; `settled()` waits for them.
   */
  readonly ackFailures: AckRecord[];
  /** Resolves once no Socket Mode envelope is waiting for its ack (each is acked or past its deadline). */
  settled(): Promise<void>;
  /** Top-level messages of a channel, or one thread (parent first). */
  messages(channel: string, threadTs?: string): SlackMessage[];
  message(channel: string, ts: string): SlackMessage | undefined;

  addChannel(channel: Pick<ChannelInfo, "id" | "name"> & Partial<ChannelInfo>): void;
  addUser(id: string, name: string): void;
  /** A file a person uploaded: served at `url_private(_download)` only with the bot token. */
  addUserFile(input: { bytes: Buffer; name: string; mimetype?: string; user?: string }): SlackFileObject;
  createResponseUrl(target?: { channel?: string; user?: string; messageTs?: string }): string;

  userMessage(input: UserMessageInput): SlackEvent;
  appMention(input: UserMessageInput): SlackEvent;
  otherBotMessage(input: { channel: string; text: string; thread_ts?: string; bot_id?: string }): SlackEvent;
  messageChanged(input: { channel: string; ts: string; text: string }): SlackEvent;
  messageDeleted(input: { channel: string; ts: string }): SlackEvent;
  /** The `message` event for a logged message (e.g. the bot's own post). */
  messageEventFor(channel: string, ts: string): SlackEvent;
  blockActions(input: BlockActionInput): Record<string, unknown>;
  /** The same for a button on an ephemeral message (its user clicks it). */
  ephemeralBlockActions(input: { ephemeral: EphemeralRecord; actionId: string }): Record<string, unknown>;

  sendSlashCommand(
    url: string,
    input: SlashCommandInput,
    options?: DeliveryOptions,
  ): Promise<SlashCommandResult>;
  sendEvent(url: string, event: SlackEvent, options?: EventOptions): Promise<EventResult>;
  sendInteraction(
    url: string,
    payload: Record<string, unknown>,
    options?: DeliveryOptions,
  ): Promise<AckRecord>;
  sendUrlVerification(url: string, options?: DeliveryOptions): Promise<AckRecord & { verified: boolean }>;

  socket: Pick<
    FakeSocketMode,
    "connections" | "envelopes" | "unexpected" | "waitForConnection" | "disconnect"
  > & {
    sendSlashCommand(input: SlashCommandInput, options?: SocketSendOptions): Promise<SlashCommandResult>;
    sendEvent(event: SlackEvent, options?: SocketSendOptions & { eventId?: string }): Promise<EventResult>;
    sendInteraction(payload: Record<string, unknown>, options?: SocketSendOptions): Promise<AckRecord>;
  };

  /**
   * Runs `hook` once, after the next successful call of a Web API method has taken effect and before its answer
   * is sent (awaited): a test can kill the bot at exactly that point.
   */
  afterNextCall(method: string, hook: () => void | Promise<void>): void;
  /**
   * Scripted failures for the next calls of a Web API method (`"upload"`: the upload URL; `"download"`: the
   * file host behind `url_private`): an error, a 429, a
   * status, a dropped connection, or `{ hang: true, processed? }` (never answered; with `processed` after taking
   * effect).
   */
  failNext(method: string, ...failures: SlackFailure[]): void;
  /** Replaces the rate limits (`false` turns throttling off) and refills every bucket. */
  setRateLimits(limits: SlackRateLimits | false): void;
  /** Requests left unanswered by a `hang` failure whose client has not given up yet. */
  readonly hungRequests: number;
  setEchoTarget(target: string | "socket" | null): void;
  /** Moves the fake's clock (response_url expiry, new ts values) forward. */
  advanceClock(ms: number): void;
  /** Forgets messages, files and records and refills the rate-limit buckets; keeps channels and users. */
  reset(): void;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;
const METHODS = { ...CORE_METHODS, ...MESSAGE_METHODS, ...FILE_METHODS };

export async function startFakeSlack(options: FakeSlackOptions = {}): Promise<FakeSlack> {
  const hex = (n: number) => randomBytes(n).toString("hex");
  const state: SlackState = {
    botToken: options.botToken ?? `xoxb-1-${Date.now()}-${hex(12)}`,
    appToken: options.appToken ?? `xapp-1-A0APP-${Date.now()}-${hex(16)}`,
    signingSecret: options.signingSecret ?? hex(16),
    verificationToken: options.verificationToken ?? hex(12),
    teamId: options.teamId ?? "T0001",
    teamDomain: options.teamDomain ?? "threadcanvas-test",
    teamName: "threadcanvas test",
    botUserId: options.botUserId ?? "U0BOT",
    botId: options.botId ?? "B0BOT",
    appId: options.appId ?? "A0APP",
    baseUrl: "",
    ackTimeoutMs: options.ackTimeoutMs ?? 3000,
    channels: new Map(),
    users: new Map(Object.entries(options.users ?? { U0001: "alice", U0002: "bob" })),
    log: [],
    files: new Map(),
    pendingUploads: new Map(),
    uploadTickets: new Map(),
    socketTickets: new Set(),
    responseUrls: new Map(),
    calls: [],
    uploads: [],
    ephemerals: [],
    updates: [],
    responseUrlPosts: [],
    downloads: [],
    acks: [],
    clockOffsetMs: 0,
    lastTs: { sec: 0, micro: 0 },
    seq: 0,
    onBotEvent: null,
    afterCall: new Map(),
    rateLimits: new SlackRateLimiter(options.rateLimits ?? {}),
    hung: new Set(),
  };
  const addChannel = (c: Pick<ChannelInfo, "id" | "name"> & Partial<ChannelInfo>) =>
    void state.channels.set(c.id, { type: c.id.startsWith("D") ? "im" : "channel", member: true, ...c });
  for (const c of options.channels ?? [
    { id: "C0001", name: "general" },
    { id: "C0002", name: "random" },
  ])
    addChannel(c);
  state.users.set(state.botUserId, "threadcanvas");

  const failures: Failures = new Map();
  const socket = createSocketMode(state);
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(promise: Promise<T>) => {
    inFlight.add(promise);
    void promise.finally(() => inFlight.delete(promise)).catch(() => {});
    return promise;
  };

  const server = createServer((req, res) => void handle(req, res, state, failures));
  server.on("upgrade", (req, sock, head) => socket.handleUpgrade(req, sock, head));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  state.baseUrl = `http://127.0.0.1:${port}`;

  const sendEvent = async (url: string, event: SlackEvent, opts: EventOptions = {}): Promise<EventResult> => {
    const envelope = eventEnvelope(state, event, opts.eventId);
    const request = {
      kind: "event" as const,
      id: envelope.event_id,
      body: JSON.stringify(envelope),
      contentType: "application/json",
      headers: retryHeaders(opts),
    };
    const ack = await deliver(state, url, request, opts);
    return { ...ack, eventId: envelope.event_id, envelope };
  };
  const socketEvent = async (event: SlackEvent, opts: SocketSendOptions & { eventId?: string } = {}) => {
    const envelope = eventEnvelope(state, event, opts.eventId);
    const ack = await socket.send("events_api", envelope, opts);
    return { ...ack, eventId: envelope.event_id, envelope };
  };
  const setEchoTarget = (target: string | "socket" | null) => {
    state.onBotEvent = !target
      ? null
      : (event) =>
          // Slack sends the event after answering the call that caused it.
          void track(
            new Promise((resolve) => setTimeout(resolve, 5)).then(() => {
              if (target !== "socket") return sendEvent(target, event);
              if (socket.connections > 0) return socketEvent(event);
            }),
          );
  };
  setEchoTarget(options.echoBotMessagesTo ?? null);

  const clear = (...lists: unknown[][]) => {
    for (const list of lists) list.length = 0;
  };

  return {
    botToken: state.botToken,
    appToken: state.appToken,
    signingSecret: state.signingSecret,
    verificationToken: state.verificationToken,
    teamId: state.teamId,
    teamDomain: state.teamDomain,
    teamName: state.teamName,
    botUserId: state.botUserId,
    botId: state.botId,
    appId: state.appId,
    apiUrl: `${state.baseUrl}/api/`,
    baseUrl: state.baseUrl,
    port,
    calls: state.calls,
    uploads: state.uploads,
    ephemerals: state.ephemerals,
    updates: state.updates,
    responseUrlPosts: state.responseUrlPosts,
    downloads: state.downloads,
    acks: state.acks,
    get ackFailures() {
      return state.acks.filter((ack) => !ack.ok && !ack.pending);
    },
    async settled() {
      while (state.acks.some((ack) => ack.pending)) await new Promise((resolve) => setTimeout(resolve, 10));
    },
    messages: (channel, threadTs) => listMessages(state, channel, threadTs),
    message: (channel, ts) => findMessage(state, channel, ts),
    addChannel,
    addUser: (id, name) => void state.users.set(id, name),
    addUserFile: (input) => hostFile(state, { ...input, user: input.user ?? "U0001" }),
    createResponseUrl: (target = {}) =>
      createResponseUrl(state, {
        channel: target.channel ?? "C0001",
        user: target.user ?? "U0001",
        ...target,
      }),
    userMessage: (input) => userMessage(state, input),
    appMention: (input) => appMention(state, input),
    otherBotMessage: (input) => otherBotMessage(state, input),
    messageChanged: (input) => messageChanged(state, input),
    messageDeleted: (input) => messageDeleted(state, input),
    messageEventFor(channel, ts) {
      const message = findMessage(state, channel, ts);
      if (!message) throw new Error(`fake Slack: no message ${ts} in ${channel}`);
      return messageEvent(state, channel, message);
    },
    blockActions: (input) => blockActions(state, input),
    ephemeralBlockActions: (input) => ephemeralBlockActions(state, input),

    async sendSlashCommand(url, input, opts) {
      const fields = slashCommandFields(state, input);
      const body = new URLSearchParams(fields).toString();
      const request = { kind: "slash_command" as const, id: fields.trigger_id ?? "", body };
      const ack = await deliver(
        state,
        url,
        { ...request, contentType: "application/x-www-form-urlencoded" },
        opts,
      );
      if (ack.ok) applyCommandAck(state, fields, ack.body);
      return { ...ack, responseUrl: fields.response_url ?? "", fields };
    },
    sendEvent,
    sendInteraction(url, payload, opts) {
      const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
      const id = String(payload.trigger_id ?? payload.action_ts ?? "");
      return deliver(
        state,
        url,
        { kind: "interaction", id, body, contentType: "application/x-www-form-urlencoded" },
        opts,
      );
    },
    async sendUrlVerification(url, opts) {
      const challenge = randomBytes(24).toString("base64url");
      const body = JSON.stringify({ token: state.verificationToken, challenge, type: "url_verification" });
      const ack = await deliver(
        state,
        url,
        { kind: "url_verification", id: challenge, body, contentType: "application/json" },
        opts,
      );
      const answered =
        typeof ack.body === "object" && ack.body ? (ack.body as { challenge?: unknown }).challenge : ack.body;
      return { ...ack, verified: ack.ok && answered === challenge };
    },

    socket: {
      get connections() {
        return socket.connections;
      },
      envelopes: socket.envelopes,
      unexpected: socket.unexpected,
      waitForConnection: (timeoutMs) => socket.waitForConnection(timeoutMs),
      disconnect: (reason) => socket.disconnect(reason),
      async sendSlashCommand(input, opts) {
        const fields = slashCommandFields(state, input);
        const ack = await socket.send("slash_commands", fields, opts);
        if (ack.ok) applyCommandAck(state, fields, ack.body);
        return { ...ack, responseUrl: fields.response_url ?? "", fields };
      },
      sendEvent: socketEvent,
      sendInteraction: (payload, opts) => socket.send("interactive", payload, opts),
    },

    afterNextCall: (method, hook) =>
      void state.afterCall.set(method, [...(state.afterCall.get(method) ?? []), hook]),
    failNext: (method, ...list) => void failures.set(method, [...(failures.get(method) ?? []), ...list]),
    setRateLimits: (limits) => state.rateLimits.configure(limits),
    get hungRequests() {
      return state.hung.size;
    },
    setEchoTarget,
    advanceClock: (ms) => {
      state.clockOffsetMs += ms;
    },
    reset() {
      state.clockOffsetMs = 0;
      clear(state.log, state.calls, state.uploads, state.ephemerals, state.updates, state.responseUrlPosts);
      clear(state.downloads, state.acks, socket.envelopes, socket.unexpected);
      for (const map of [
        state.files,
        state.pendingUploads,
        state.uploadTickets,
        state.responseUrls,
        state.afterCall,
        failures,
      ])
        map.clear();
      state.rateLimits.reset();
    },
    async close() {
      await Promise.allSettled([...inFlight]);
      socket.close();
      // A hung request would keep its connection, and close(), waiting for ever.
      for (const hung of state.hung) hung.destroy();
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, state: SlackState, failures: Failures) {
  res.on("error", () => {});
  const path = new URL(req.url ?? "/", "http://fake").pathname;
  try {
    const raw = await readBody(req);
    if (path.startsWith("/api/"))
      return await handleWebApi(state, METHODS, failures, path.slice(5), req, raw, res);
    if (path.startsWith("/upload/v1/"))
      return await handleUpload(state, failures, path.slice("/upload/v1/".length), req, raw, res);
    if (path.startsWith("/files-pri/") && (req.method === "GET" || req.method === "HEAD"))
      return serveFile(req, res, state, failures, path);
    if (path.startsWith("/respond/") && req.method === "POST") return respond(req, res, state, path, raw);
    res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
  } catch (error) {
    if (!(error instanceof RangeError)) console.error("[fake-slack]", error);
    if (!res.headersSent) res.writeHead(error instanceof RangeError ? 413 : 500).end();
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
