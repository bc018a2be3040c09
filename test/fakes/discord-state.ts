import { randomBytes } from "node:crypto";
import type { EventEmitter } from "node:events";
import type { RateLimitRecord } from "./discord-rate-limits.ts";

/**
 * The fake Discord's state and records, shared by its modules (discord-server.ts is the entry point): one guild
 * with its roles, members and channels (threads included), the message store with every attachment's bytes,
 * interactions and their responses, registered commands, the REST call log and the attachment downloads; the
 * fake clock, snowflakes and Discord's permission computation. The JSON objects are built in discord-objects.ts.
 */

// ---------------------------------------------------------------------------------------------------------
// Ids, clock, permission bits
// ---------------------------------------------------------------------------------------------------------

const DISCORD_EPOCH = 1_420_070_400_000n;

/** Permission bits used by the fake (Discord's "Permissions" table). */
export const Permission = {
  CreateInstantInvite: 1n << 0n,
  Administrator: 1n << 3n,
  AddReactions: 1n << 6n,
  ViewChannel: 1n << 10n,
  SendMessages: 1n << 11n,
  ManageMessages: 1n << 13n,
  EmbedLinks: 1n << 14n,
  AttachFiles: 1n << 15n,
  ReadMessageHistory: 1n << 16n,
  MentionEveryone: 1n << 17n,
  UseExternalEmojis: 1n << 18n,
  UseApplicationCommands: 1n << 31n,
  ManageThreads: 1n << 34n,
  CreatePublicThreads: 1n << 35n,
  CreatePrivateThreads: 1n << 36n,
  SendMessagesInThreads: 1n << 38n,
} as const;

/** What the fake's bot role has by default: what a typical invite link for an image bot grants. */
export const DEFAULT_BOT_PERMISSIONS =
  Permission.ViewChannel |
  Permission.SendMessages |
  Permission.SendMessagesInThreads |
  Permission.CreatePublicThreads |
  Permission.EmbedLinks |
  Permission.AttachFiles |
  Permission.ReadMessageHistory |
  Permission.AddReactions |
  Permission.UseExternalEmojis |
  Permission.UseApplicationCommands;

/** @everyone in a new server can read, write, react, thread and use commands. */
export const DEFAULT_EVERYONE_PERMISSIONS =
  Permission.CreateInstantInvite |
  Permission.AddReactions |
  Permission.ViewChannel |
  Permission.SendMessages |
  Permission.EmbedLinks |
  Permission.AttachFiles |
  Permission.ReadMessageHistory |
  Permission.UseExternalEmojis |
  Permission.UseApplicationCommands |
  Permission.CreatePublicThreads |
  Permission.CreatePrivateThreads |
  Permission.SendMessagesInThreads;

export const Intent = {
  Guilds: 1 << 0,
  GuildMembers: 1 << 1,
  GuildPresences: 1 << 8,
  GuildMessages: 1 << 9,
  DirectMessages: 1 << 12,
  MessageContent: 1 << 15,
} as const;

/** Message flags the fake sets or reads. */
export const MessageFlag = {
  HasThread: 1 << 5,
  Ephemeral: 1 << 6,
  Loading: 1 << 7,
  SuppressNotifications: 1 << 12,
  IsComponentsV2: 1 << 15,
} as const;

export interface Clock {
  offsetMs: number;
  lastSnowflakeMs: bigint;
  increment: number;
}

// ---------------------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------------------

export interface DiscordUser {
  id: string;
  username: string;
  discriminator: "0";
  global_name: string | null;
  avatar: null;
  bot?: boolean;
  system?: boolean;
  public_flags: number;
}

export interface Overwrite {
  id: string;
  /** 0 role, 1 member. */
  type: 0 | 1;
  allow: bigint;
  deny: bigint;
}

export interface ChannelRecord {
  id: string;
  /** 0 text, 11 public thread, 12 private thread. */
  type: 0 | 11 | 12;
  name: string;
  position: number;
  overwrites: Overwrite[];
  lastMessageId: string | null;
  /** Threads only. */
  parentId?: string;
  ownerId?: string;
  archived?: boolean;
  locked?: boolean;
  autoArchiveDuration?: number;
  createdAt?: string;
  messageCount?: number;
  totalMessageSent?: number;
  memberIds?: string[];
}

export interface Role {
  id: string;
  name: string;
  permissions: bigint;
  position: number;
  managed: boolean;
  botId?: string;
}

export interface StoredAttachment {
  id: string;
  filename: string;
  size: number;
  content_type: string;
  /** Signed like Discord's CDN links (`ex`, `is`, `hm`), served by the fake until `ex`. */
  url: string;
  proxy_url: string;
  width?: number;
  height?: number;
  description?: string;
  title?: string;
  ephemeral?: boolean;
  /** The exact bytes that were uploaded. */
  bytes: Buffer;
}

/** One version of a message: its creation, then one per edit. */
export interface MessageSnapshot {
  at: number;
  content: string;
  flags: number;
  components: unknown[];
  embeds: unknown[];
  attachments: StoredAttachment[];
  /** What produced it: `POST /channels/…`, `callback:4`, `PATCH /webhooks/…/@original`, `driver`… */
  via: string;
}

export interface StoredMessage {
  id: string;
  channelId: string;
  /** 0 default, 19 reply, 20 chat input command, 21 thread starter message. */
  type: number;
  author: DiscordUser;
  content: string;
  flags: number;
  components: unknown[];
  embeds: unknown[];
  attachments: StoredAttachment[];
  timestamp: string;
  editedTimestamp: string | null;
  messageReference?: { message_id: string; channel_id: string; guild_id: string; type: 0 };
  webhookId?: string;
  applicationId?: string;
  interactionMetadata?: Record<string, unknown>;
  /** The id of the thread started from this message (the thread's id equals the message's). */
  threadId?: string;
  /** The `nonce` it was created with (Create Message only); `enforce_nonce` looks for it. */
  nonce?: string | number;
  reactions: Map<string, Set<string>>;
  deleted: boolean;
  /** Every version, first to last: a test can read what each edit carried. */
  history: MessageSnapshot[];
}

export interface ApiCall {
  seq: number;
  method: string;
  /** Decoded path below `/api/v10`, e.g. `/webhooks/123/tok/messages/@original`. */
  path: string;
  /** The matched route, e.g. `PATCH /webhooks/{application}/{token}/messages/@original`; null if none. */
  route: string | null;
  query: Record<string, string>;
  auth: "bot" | "invalid" | "none";
  contentType: string;
  /** The JSON body, or the parsed `payload_json` of a multipart body. */
  body: unknown;
  files: Array<{ field: string; filename: string; size: number; contentType: string }>;
  status: number;
  /** Discord's JSON error code for failed calls. */
  code?: number;
  error?: string;
  at: number;
  /** The rate-limit bucket the call was counted in (absent for routes without one, or with throttling off). */
  rateLimit?: RateLimitRecord;
  /**
   * Set when a scripted `hang` left the call unanswered; `processed` when it took effect first (then `status` is
   * what the fake would have answered, otherwise 0).
   */
  hung?: { processed: boolean };
}

export interface DownloadRecord {
  attachmentId: string;
  path: string;
  status: number;
  at: number;
}

export interface CallbackRecord {
  /** 4 message, 5 deferred message, 6 deferred update, 7 update, 8 autocomplete result, 9 modal. */
  type: number;
  /** ms from the dispatch to the callback's arrival. */
  latencyMs: number;
  at: number;
  ephemeral: boolean;
  data: Record<string, unknown> | undefined;
  files: number;
}

export interface InteractionRecord {
  id: string;
  token: string;
  /** 2 application command, 3 message component. */
  type: 2 | 3;
  channelId: string;
  userId: string;
  commandName?: string;
  customId?: string;
  /** The message a component was clicked on. */
  sourceMessageId?: string;
  dispatchedAt: number;
  /** The INTERACTION_CREATE `d` that was dispatched. */
  payload: Record<string, unknown>;
  ack: CallbackRecord | null;
  /** Callbacks Discord refused (late, second, malformed), with the error code. */
  rejected: Array<{ type: number | null; at: number; latencyMs: number; status: number; code: number }>;
  originalMessageId: string | null;
  followUpIds: string[];
}

export interface CommandRecord {
  id: string;
  application_id: string;
  version: string;
  type: number;
  name: string;
  description: string;
  guild_id?: string;
  [field: string]: unknown;
}

/** A one-shot hook run after a REST call succeeded, before its answer is sent (see `afterNextCall`). */
export interface AfterCallHook {
  /** Which successful call of the route it waits for; the first match takes it. */
  match: (call: ApiCall) => boolean;
  run: (call: ApiCall) => void | Promise<void>;
}

export interface UserHandle {
  id: string;
  username: string;
}

export interface DiscordState {
  baseUrl: string;
  /** Shards `GET /gateway/bot` recommends; with more than one, IDENTIFY must name its shard (else 4011). */
  shardCount: number;
  botToken: string;
  applicationId: string;
  bot: DiscordUser;
  guildId: string;
  guildName: string;
  /** Other servers the bot was added to (`addBotToGuild`): id → name. */
  otherGuilds: Map<string, string>;
  /** Servers the bot left (`DELETE /users/@me/guilds/{guild}`). */
  leftGuilds: Set<string>;
  /** Guild id → command name+type → command. Global commands are under "". */
  commands: Map<string, CommandRecord[]>;
  users: Map<string, DiscordUser>;
  roles: Role[];
  /** Role ids of each member (user id → roles); @everyone is implicit. */
  memberRoles: Map<string, string[]>;
  channels: Map<string, ChannelRecord>;
  messages: Map<string, StoredMessage>;
  interactions: Map<string, InteractionRecord>;
  interactionsByToken: Map<string, InteractionRecord>;
  /** Attachments served by the fake: attachment id → attachment (user uploads and bot uploads). */
  hosted: Map<string, StoredAttachment>;
  cdnSecret: Buffer;
  calls: ApiCall[];
  downloads: DownloadRecord[];
  /** Hooks per route (`"PATCH /channels/{channel}/messages/{message}"`), taken by the first matching success. */
  afterCall: Map<string, AfterCallHook[]>;
  ackDeadlineMs: number;
  interactionTokenTtlMs: number;
  attachmentSizeLimit: number;
  clock: Clock;
  seq: number;
  /** Sends a gateway dispatch to every live session (set by discord-gateway.ts). */
  dispatch: (event: string, data: Record<string, unknown>) => void;
  /** Fires "change" after anything a test may wait for. */
  events: EventEmitter;
}

export function now(state: DiscordState): number {
  return Date.now() + state.clock.offsetMs;
}

export const iso = (ms: number) => new Date(ms).toISOString();

/** A snowflake for the fake clock's current time, strictly increasing, so discord.js can read its timestamp. */
export function snowflake(state: DiscordState): string {
  const ms = BigInt(now(state));
  if (ms > state.clock.lastSnowflakeMs) {
    state.clock.lastSnowflakeMs = ms;
    state.clock.increment = 0;
  } else if (++state.clock.increment > 0xfff) {
    state.clock.lastSnowflakeMs += 1n;
    state.clock.increment = 0;
  }
  return String(((state.clock.lastSnowflakeMs - DISCORD_EPOCH) << 22n) | BigInt(state.clock.increment));
}

export function changed(state: DiscordState): void {
  state.events.emit("change");
}

// ---------------------------------------------------------------------------------------------------------
// Permissions (Discord's "Permission Overwrites" algorithm)
// ---------------------------------------------------------------------------------------------------------

const ALL_PERMISSIONS = (1n << 53n) - 1n;

export function basePermissions(state: DiscordState, userId: string): bigint {
  const everyone = state.roles.find((role) => role.id === state.guildId);
  let permissions = everyone?.permissions ?? 0n;
  for (const roleId of state.memberRoles.get(userId) ?? [])
    permissions |= state.roles.find((role) => role.id === roleId)?.permissions ?? 0n;
  return permissions & Permission.Administrator ? ALL_PERMISSIONS : permissions;
}

/** A member's permissions in a channel; threads use their parent's overwrites. */
export function channelPermissions(state: DiscordState, userId: string, channelId: string): bigint {
  const base = basePermissions(state, userId);
  if (base === ALL_PERMISSIONS) return base;
  const channel = state.channels.get(channelId);
  const source = channel?.parentId ? state.channels.get(channel.parentId) : channel;
  if (!source) return 0n;
  let permissions = base;
  const everyone = source.overwrites.find((o) => o.id === state.guildId);
  if (everyone) permissions = (permissions & ~everyone.deny) | everyone.allow;
  const roles = state.memberRoles.get(userId) ?? [];
  let allow = 0n;
  let deny = 0n;
  for (const o of source.overwrites)
    if (o.type === 0 && roles.includes(o.id)) {
      allow |= o.allow;
      deny |= o.deny;
    }
  permissions = (permissions & ~deny) | allow;
  const member = source.overwrites.find((o) => o.type === 1 && o.id === userId);
  if (member) permissions = (permissions & ~member.deny) | member.allow;
  // Without View Channel nothing else applies; without Send Messages, neither do the rights that go with sending.
  if (!(permissions & Permission.ViewChannel)) return 0n;
  if (!(permissions & Permission.SendMessages))
    permissions &= ~(Permission.MentionEveryone | Permission.EmbedLinks | Permission.AttachFiles);
  return permissions;
}

export function randomToken(prefix: string): string {
  return Buffer.from(`${prefix}:${randomBytes(48).toString("base64url")}`).toString("base64url");
}

/** Resolves with the predicate's first truthy value, checked now and after every change; rejects after the timeout. */
export function waitFor<T>(
  state: DiscordState,
  predicate: () => T | undefined | null | false,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const first = predicate();
  if (first) return Promise.resolve(first);
  return new Promise((resolve, reject) => {
    const onChange = () => {
      const value = predicate();
      if (!value) return;
      cleanup();
      resolve(value);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`fake Discord: timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      state.events.off("change", onChange);
    };
    state.events.on("change", onChange);
  });
}
