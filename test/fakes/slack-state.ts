import { randomBytes, randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import type { SlackRateLimiter } from "./slack-rate-limits.ts";

/**
 * The fake Slack workspace's state and its records: channels, users, the message log, hosted files, uploads,
 * response_urls and every call and acknowledgement, shared by the modules of the fake (slack-server.ts is the
 * entry point). Values follow Slack's own shapes so tests can assert on what a person would see.
 */

/** A message as Slack stores and returns it (`conversations.replies`, events, `chat.postMessage`'s `message`). */
export interface SlackMessage {
  type: "message";
  ts: string;
  text: string;
  subtype?: string;
  thread_ts?: string;
  user?: string;
  bot_id?: string;
  app_id?: string;
  team?: string;
  blocks?: unknown[];
  files?: SlackFileObject[];
  reply_count?: number;
  reply_users?: string[];
  latest_reply?: string;
  parent_user_id?: string;
  edited?: { user: string; ts: string };
  reactions?: Array<{ name: string; users: string[]; count: number }>;
  [field: string]: unknown;
}

/** A Slack file object: what `event.files[]`, `files.info` and `files.completeUploadExternal` carry. */
export interface SlackFileObject {
  id: string;
  created: number;
  timestamp: number;
  name: string;
  title: string;
  mimetype: string;
  filetype: string;
  pretty_type: string;
  user: string;
  user_team: string;
  size: number;
  mode: "hosted";
  is_external: false;
  is_public: boolean;
  url_private: string;
  url_private_download: string;
  permalink: string;
  original_w?: number;
  original_h?: number;
  alt_txt?: string;
  [field: string]: unknown;
}

export interface ChannelInfo {
  id: string;
  name: string;
  /** The `channel_type` of message events: public channel, private channel, DM, group DM. */
  type: "channel" | "group" | "im" | "mpim";
  /** Whether the bot is a member; when false, posting answers `not_in_channel`. */
  member: boolean;
}

export interface ApiCall {
  seq: number;
  method: string;
  /** The arguments as sent (form values are strings; JSON-valued fields stay strings); `token` is redacted. */
  args: Record<string, unknown>;
  contentType: string;
  tokenKind: "bot" | "app" | "invalid" | "none";
  ok: boolean;
  error?: string;
  at: number;
  /** Set when the fake refused the call with 429 over a rate limit: its method's tier, or a channel's posts. */
  rateLimited?: { scope: "method" | "channel"; retryAfterSeconds: number };
  /** Set when a scripted `hang` left the call unanswered; `processed` when it took effect first. */
  hung?: { processed: boolean };
}

export interface UploadRecord {
  fileId: string;
  filename: string;
  length: number;
  alt_text?: string;
  snippet_type?: string;
  /** The exact bytes the upload POST carried; null until it arrives. */
  bytes: Buffer | null;
  /** `multipart:<part name>` or `raw`. */
  encoding?: string;
  completed: boolean;
  title?: string;
  channel_id?: string;
  thread_ts?: string;
  initial_comment?: string;
  /** ts of the file_share message the completion posted (when shared into a channel). */
  messageTs?: string;
  /** Set when a scripted `hang` left the upload POST unanswered; `processed` when the bytes were stored first. */
  hung?: { processed: boolean };
}

export interface EphemeralRecord {
  channel: string;
  user: string;
  text?: string;
  blocks?: unknown[];
  thread_ts?: string;
  /** `chat.postEphemeral`, a `response_url` POST, or the body of a slash command's acknowledgement. */
  via: "chat.postEphemeral" | "response_url" | "ack";
  message_ts: string;
}

export interface UpdateRecord {
  channel: string;
  ts: string;
  text?: string;
  blocks?: unknown[];
  via: "chat.update" | "response_url";
}

export interface ResponseUrlPost {
  url: string;
  use: number;
  body: unknown;
  status: number;
  /** What Slack answered (`ok`, `expired_url`, `used_url`, `invalid_payload`, `no_text`). */
  answer: string;
}

export interface DownloadRecord {
  fileId: string;
  path: string;
  authorized: boolean;
}

/** One acknowledgement (or missed one) of something the fake delivered, over HTTP or Socket Mode. */
export interface AckRecord {
  transport: "http" | "socket";
  kind: "slash_command" | "event" | "interaction" | "url_verification";
  /** event_id, trigger_id or envelope_id. */
  id: string;
  /** Time to the answer (HTTP) or the ack frame (socket); null when none came before the fake gave up. */
  latencyMs: number | null;
  /** HTTP status of the answer; null for socket acks and timeouts. */
  status: number | null;
  /** The answer's body (HTTP) or the ack's `payload` (socket), parsed as JSON when it is JSON. */
  body: unknown;
  ok: boolean;
  /** Why it failed, in Slack's words: `operation_timeout`, `dispatch_failed`, `http_timeout`, `http_error`. */
  reason?: string;
  /** True while a Socket Mode envelope waits for its ack (neither acked nor past its deadline yet). */
  pending?: boolean;
}

export interface ResponseUrlEntry {
  url: string;
  channel: string;
  user: string;
  createdAt: number;
  uses: number;
  /** The message a block action came from, for `replace_original` / `delete_original`. */
  messageTs?: string;
  /** That message is an ephemeral one (only its user sees it; it is replaced in `ephemerals`). */
  ephemeral?: boolean;
}

export interface HostedFile {
  file: SlackFileObject;
  bytes: Buffer;
}

export interface SlackIdentity {
  botToken: string;
  appToken: string;
  signingSecret: string;
  /** The legacy verification token Slack still puts in every payload's `token`. */
  verificationToken: string;
  teamId: string;
  teamDomain: string;
  teamName: string;
  botUserId: string;
  botId: string;
  appId: string;
}

export interface SlackState extends SlackIdentity {
  baseUrl: string;
  ackTimeoutMs: number;
  channels: Map<string, ChannelInfo>;
  users: Map<string, string>;
  log: Array<{ channel: string; message: SlackMessage; deleted: boolean }>;
  files: Map<string, HostedFile>;
  pendingUploads: Map<string, UploadRecord>;
  uploadTickets: Map<string, string>;
  /** One-use tickets handed out by `apps.connections.open`. */
  socketTickets: Set<string>;
  responseUrls: Map<string, ResponseUrlEntry>;
  calls: ApiCall[];
  uploads: UploadRecord[];
  ephemerals: EphemeralRecord[];
  updates: UpdateRecord[];
  responseUrlPosts: ResponseUrlPost[];
  downloads: DownloadRecord[];
  acks: AckRecord[];
  clockOffsetMs: number;
  lastTs: { sec: number; micro: number };
  seq: number;
  /** Called with the event Slack would send for a message the bot itself caused (see `echoBotMessagesTo`). */
  onBotEvent: ((event: Record<string, unknown>) => void) | null;
  /** One-shot hooks run after a Web API method succeeded, before its answer is sent (see `afterNextCall`). */
  afterCall: Map<string, Array<() => void | Promise<void>>>;
  rateLimits: SlackRateLimiter;
  /** Sockets of requests a `hang` failure never answers; `close()` destroys them. */
  hung: Set<Socket>;
}

export function now(state: SlackState): number {
  return Date.now() + state.clockOffsetMs;
}

/** Message timestamps like Slack's: `<unix seconds>.<6 digits>`, strictly increasing. */
export function nextTs(state: SlackState): string {
  const sec = Math.floor(now(state) / 1000);
  if (sec > state.lastTs.sec) state.lastTs = { sec, micro: 100 };
  else if (state.lastTs.micro + 100 < 1_000_000) state.lastTs.micro += 100;
  else state.lastTs = { sec: state.lastTs.sec + 1, micro: 100 };
  return `${state.lastTs.sec}.${String(state.lastTs.micro).padStart(6, "0")}`;
}

const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
export function slackId(prefix: string, length = 10): string {
  const bytes = randomBytes(length);
  let id = prefix;
  for (const byte of bytes) id += ID_ALPHABET[byte % ID_ALPHABET.length];
  return id;
}

export function triggerId(): string {
  return `${Date.now()}.${Math.floor(Math.random() * 1e12)}.${randomBytes(16).toString("hex")}`;
}

export const envelopeId = (): string => randomUUID();

export function findMessage(state: SlackState, channel: string, ts: string): SlackMessage | undefined {
  return state.log.find((entry) => !entry.deleted && entry.channel === channel && entry.message.ts === ts)
    ?.message;
}

/**
 * Adds a message to the log and, when it is a reply, updates its parent the way Slack does (`thread_ts` on the
 * parent, `reply_count`, `reply_users`, `latest_reply`) and sets `parent_user_id` on the reply.
 */
export function appendMessage(state: SlackState, channel: string, message: SlackMessage): SlackMessage {
  if (message.thread_ts && message.thread_ts !== message.ts) {
    const parent = findMessage(state, channel, message.thread_ts);
    if (parent) {
      parent.thread_ts = parent.ts;
      parent.reply_count = (parent.reply_count ?? 0) + 1;
      const author = message.user ?? message.bot_id;
      if (author && !parent.reply_users?.includes(author))
        parent.reply_users = [...(parent.reply_users ?? []), author];
      parent.latest_reply = message.ts;
      if (parent.user) message.parent_user_id = parent.user;
    }
  }
  state.log.push({ channel, message, deleted: false });
  return message;
}

/** Top-level messages of a channel (what its history shows), or one thread (parent first) when `threadTs` is given. */
export function listMessages(state: SlackState, channel: string, threadTs?: string): SlackMessage[] {
  return state.log
    .filter((entry) => !entry.deleted && entry.channel === channel)
    .map((entry) => entry.message)
    .filter((message) =>
      threadTs === undefined
        ? !message.thread_ts || message.thread_ts === message.ts || message.subtype === "thread_broadcast"
        : message.ts === threadTs || message.thread_ts === threadTs,
    );
}

/** The bot's own message, shaped like Slack's answer to `chat.postMessage`. */
export function botMessage(state: SlackState, fields: Partial<SlackMessage> & { ts: string }): SlackMessage {
  return {
    type: "message",
    text: "",
    user: state.botUserId,
    bot_id: state.botId,
    app_id: state.appId,
    team: state.teamId,
    bot_profile: {
      id: state.botId,
      app_id: state.appId,
      name: "threadcanvas",
      deleted: false,
      team_id: state.teamId,
    },
    ...fields,
  };
}

/** The `message` event Slack sends for a message in the log (bot posts included: Bolt's ignoreSelf drops those). */
export function messageEvent(
  state: SlackState,
  channel: string,
  message: SlackMessage,
): Record<string, unknown> {
  const info = state.channels.get(channel);
  const { reply_count, reply_users, latest_reply, reactions, ...rest } = message;
  return { ...rest, channel, event_ts: message.ts, channel_type: info?.type ?? "channel" };
}

export function fileTypeOf(
  name: string,
  bytes: Buffer,
): { mimetype: string; filetype: string; pretty: string } {
  const ext = name.toLowerCase().split(".").pop() ?? "";
  const magic = bytes.subarray(0, 12);
  if (
    magic.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) ||
    ext === "png"
  )
    return { mimetype: "image/png", filetype: "png", pretty: "PNG" };
  if ((magic[0] === 0xff && magic[1] === 0xd8) || ext === "jpg" || ext === "jpeg")
    return { mimetype: "image/jpeg", filetype: "jpg", pretty: "JPEG" };
  if (
    (magic.subarray(0, 4).toString("latin1") === "RIFF" &&
      magic.subarray(8, 12).toString("latin1") === "WEBP") ||
    ext === "webp"
  )
    return { mimetype: "image/webp", filetype: "webp", pretty: "WebP" };
  if (magic.subarray(0, 3).toString("latin1") === "GIF" || ext === "gif")
    return { mimetype: "image/gif", filetype: "gif", pretty: "GIF" };
  if (ext === "txt") return { mimetype: "text/plain", filetype: "text", pretty: "Plain Text" };
  return { mimetype: "application/octet-stream", filetype: "binary", pretty: "Binary" };
}

/** Registers bytes as a file on the fake's file host (`/files-pri/T-F/name`), served only with the bot token. */
export function hostFile(
  state: SlackState,
  input: { bytes: Buffer; name: string; mimetype?: string; title?: string; user?: string; altText?: string },
  id = slackId("F"),
): SlackFileObject {
  const detected = fileTypeOf(input.name, input.bytes);
  const created = Math.floor(now(state) / 1000);
  const name = encodeURIComponent(input.name);
  const base = `${state.baseUrl}/files-pri/${state.teamId}-${id}`;
  const file: SlackFileObject = {
    id,
    created,
    timestamp: created,
    name: input.name,
    title: input.title ?? input.name,
    mimetype: input.mimetype ?? detected.mimetype,
    filetype: detected.filetype,
    pretty_type: detected.pretty,
    user: input.user ?? state.botUserId,
    user_team: state.teamId,
    editable: false,
    size: input.bytes.length,
    mode: "hosted",
    is_external: false,
    external_type: "",
    is_public: true,
    public_url_shared: false,
    display_as_bot: false,
    username: "",
    url_private: `${base}/${name}`,
    url_private_download: `${base}/download/${name}`,
    permalink: `https://${state.teamDomain}.slack.com/files/${input.user ?? state.botUserId}/${id}/${name}`,
    permalink_public: `https://slack-files.com/${state.teamId}-${id}-${randomBytes(5).toString("hex")}`,
    has_rich_preview: false,
    file_access: "visible",
  };
  if (input.altText !== undefined) file.alt_txt = input.altText;
  const size = pngSize(input.bytes);
  if (size) Object.assign(file, { original_w: size.width, original_h: size.height });
  state.files.set(id, { file, bytes: input.bytes });
  return file;
}

function pngSize(bytes: Buffer): { width: number; height: number } | null {
  if (bytes.length < 24 || bytes.readUInt32BE(0) !== 0x89504e47) return null;
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/** A response_url like Slack's (`/respond/T…/…/…`): 30 minutes, 5 uses; see slack-server.ts for the POSTs. */
export function createResponseUrl(
  state: SlackState,
  target: { channel: string; user: string; messageTs?: string; ephemeral?: boolean },
): string {
  const url = `${state.baseUrl}/respond/${state.teamId}/${Date.now()}${state.seq++}/${randomBytes(12).toString("hex")}`;
  state.responseUrls.set(new URL(url).pathname, { url, ...target, createdAt: now(state), uses: 0 });
  return url;
}
