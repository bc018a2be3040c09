import { createHmac } from "node:crypto";
import {
  type ChannelRecord,
  changed,
  type DiscordState,
  type DiscordUser,
  iso,
  MessageFlag,
  type MessageSnapshot,
  now,
  type Role,
  type StoredAttachment,
  type StoredMessage,
  snowflake,
} from "./discord-state.ts";

/**
 * Discord's API v10 objects as the fake builds them (users, members, roles, channels, messages, attachments), the
 * message store's write path, and the CDN side of attachments: each hosted file gets a signed, expiring URL like
 * Discord's (`?ex=…&is=…&hm=…`), checked when it is downloaded (discord-server.ts).
 */

// ---------------------------------------------------------------------------------------------------------
// Attachments: hosting with CDN-style signed URLs
// ---------------------------------------------------------------------------------------------------------

const CDN_LINK_TTL_MS = 24 * 60 * 60 * 1000;

export function sniffContentType(bytes: Buffer, filename: string): string {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])))
    return "image/png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "image/jpeg";
  if (bytes.toString("latin1", 0, 4) === "RIFF" && bytes.toString("latin1", 8, 12) === "WEBP")
    return "image/webp";
  if (bytes.toString("latin1", 0, 4) === "GIF8") return "image/gif";
  if (filename.toLowerCase().endsWith(".txt")) return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

function imageSize(bytes: Buffer): { width: number; height: number } | null {
  if (bytes.length >= 24 && bytes.readUInt32BE(0) === 0x89504e47)
    return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
  return null;
}

/** The `hm` of a CDN link: Discord signs path, expiry and issue time; links without a valid one are refused. */
export function cdnSignature(state: DiscordState, path: string, ex: string, is: string): string {
  return createHmac("sha256", state.cdnSecret).update(`${path}\n${ex}\n${is}`).digest("hex");
}

function signedUrl(state: DiscordState, path: string): string {
  const issued = Math.floor(now(state) / 1000);
  const ex = Math.floor((now(state) + CDN_LINK_TTL_MS) / 1000).toString(16);
  const is = issued.toString(16);
  return `${state.baseUrl}${path}?ex=${ex}&is=${is}&hm=${cdnSignature(state, path, ex, is)}&`;
}

/**
 * Stores bytes as an attachment served by the fake: `/attachments/{channel}/{id}/{name}` for message attachments,
 * `/ephemeral-attachments/{application}/{id}/{name}` for slash-command attachment options, as Discord's CDN does.
 */
export function hostAttachment(
  state: DiscordState,
  input: {
    bytes: Buffer;
    filename: string;
    contentType?: string;
    description?: string;
    title?: string;
    ephemeral?: boolean;
  },
  where: { channelId: string } | { ephemeralFor: string },
): StoredAttachment {
  const id = snowflake(state);
  const name = encodeURIComponent(input.filename.replace(/[^\w.-]/g, "_"));
  const path =
    "channelId" in where
      ? `/attachments/${where.channelId}/${id}/${name}`
      : `/ephemeral-attachments/${where.ephemeralFor}/${id}/${name}`;
  const url = signedUrl(state, path);
  const attachment: StoredAttachment = {
    id,
    filename: input.filename,
    size: input.bytes.length,
    content_type: input.contentType ?? sniffContentType(input.bytes, input.filename),
    url,
    proxy_url: url.replace("/attachments/", "/media-proxy/attachments/"),
    bytes: input.bytes,
  };
  const size = imageSize(input.bytes);
  if (size) Object.assign(attachment, size);
  if (input.description !== undefined) attachment.description = input.description;
  if (input.title !== undefined) attachment.title = input.title;
  if (input.ephemeral) attachment.ephemeral = true;
  state.hosted.set(id, attachment);
  return attachment;
}

export function attachmentJson(attachment: StoredAttachment): Record<string, unknown> {
  const { bytes: _bytes, ...json } = attachment;
  return json;
}

// ---------------------------------------------------------------------------------------------------------
// JSON shapes
// ---------------------------------------------------------------------------------------------------------

export function userJson(user: DiscordUser): Record<string, unknown> {
  return { ...user };
}

export function memberJson(state: DiscordState, userId: string, withUser: boolean): Record<string, unknown> {
  const user = state.users.get(userId);
  return {
    ...(withUser && user ? { user: userJson(user) } : {}),
    roles: state.memberRoles.get(userId) ?? [],
    joined_at: "2026-01-01T00:00:00.000000+00:00",
    nick: null,
    avatar: null,
    premium_since: null,
    deaf: false,
    mute: false,
    pending: false,
    flags: 0,
    communication_disabled_until: null,
  };
}

/** The server as `GET /guilds/{id}` returns it; GUILD_CREATE adds members, channels and the rest. */
export function guildJson(state: DiscordState): Record<string, unknown> {
  return {
    id: state.guildId,
    name: state.guildName,
    icon: null,
    splash: null,
    discovery_splash: null,
    banner: null,
    description: null,
    owner_id: [...state.users.values()].find((u) => u.username === "owner")?.id ?? state.bot.id,
    afk_channel_id: null,
    afk_timeout: 300,
    verification_level: 0,
    default_message_notifications: 0,
    explicit_content_filter: 0,
    mfa_level: 0,
    nsfw_level: 0,
    premium_tier: 0,
    premium_subscription_count: 0,
    premium_progress_bar_enabled: false,
    preferred_locale: "en-US",
    features: [],
    application_id: null,
    system_channel_id: null,
    system_channel_flags: 0,
    rules_channel_id: null,
    public_updates_channel_id: null,
    safety_alerts_channel_id: null,
    vanity_url_code: null,
    max_members: 500000,
    max_video_channel_users: 25,
    roles: state.roles.map(roleJson),
    emojis: [],
    stickers: [],
  };
}

export function roleJson(role: Role): Record<string, unknown> {
  return {
    id: role.id,
    name: role.name,
    color: 0,
    colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
    hoist: false,
    icon: null,
    unicode_emoji: null,
    position: role.position,
    permissions: String(role.permissions),
    managed: role.managed,
    mentionable: false,
    flags: 0,
    ...(role.botId ? { tags: { bot_id: role.botId } } : {}),
  };
}

export function channelJson(state: DiscordState, channel: ChannelRecord): Record<string, unknown> {
  const common = {
    id: channel.id,
    type: channel.type,
    guild_id: state.guildId,
    name: channel.name,
    last_message_id: channel.lastMessageId,
    rate_limit_per_user: 0,
    flags: 0,
  };
  if (channel.type === 0)
    return {
      ...common,
      position: channel.position,
      parent_id: null,
      topic: null,
      nsfw: false,
      permission_overwrites: channel.overwrites.map((o) => ({
        id: o.id,
        type: o.type,
        allow: String(o.allow),
        deny: String(o.deny),
      })),
    };
  return {
    ...common,
    parent_id: channel.parentId,
    owner_id: channel.ownerId,
    thread_metadata: {
      archived: channel.archived ?? false,
      auto_archive_duration: channel.autoArchiveDuration ?? 4320,
      archive_timestamp: channel.createdAt,
      locked: channel.locked ?? false,
      create_timestamp: channel.createdAt,
      ...(channel.type === 12 ? { invitable: true } : {}),
    },
    message_count: channel.messageCount ?? 0,
    total_message_sent: channel.totalMessageSent ?? 0,
    // Discord stops counting thread members at 50.
    member_count: Math.min(50, channel.memberIds?.length ?? 0),
  };
}

/** The `mentions` array: the users named by `<@id>` in the content. */
function mentions(state: DiscordState, content: string): Record<string, unknown>[] {
  const ids = new Set([...content.matchAll(/<@!?(\d{17,20})>/g)].map((m) => m[1] ?? ""));
  return [...ids].flatMap((id) => {
    const user = state.users.get(id);
    return user ? [userJson(user)] : [];
  });
}

/**
 * A Message object as REST answers it; `gateway` adds what MESSAGE_CREATE carries (guild_id, member), `nonce` the
 * nonce it was created with (only the create's answer and MESSAGE_CREATE carry it).
 */
export function messageJson(
  state: DiscordState,
  message: StoredMessage,
  options: { gateway?: boolean; depth?: number; nonce?: boolean } = {},
): Record<string, unknown> {
  const channel = state.channels.get(message.channelId);
  const json: Record<string, unknown> = {
    type: message.type,
    content: message.content,
    mentions: mentions(state, message.content),
    mention_roles: [],
    attachments: message.attachments.map(attachmentJson),
    embeds: message.embeds,
    timestamp: message.timestamp,
    edited_timestamp: message.editedTimestamp,
    flags: message.flags,
    components: message.components,
    id: message.id,
    channel_id: message.channelId,
    author: userJson(message.author),
    pinned: false,
    mention_everyone: false,
    tts: false,
  };
  if (options.nonce && message.nonce !== undefined) json.nonce = message.nonce;
  if (message.webhookId) json.webhook_id = message.webhookId;
  if (message.applicationId) json.application_id = message.applicationId;
  if (message.interactionMetadata) json.interaction_metadata = message.interactionMetadata;
  if (message.messageReference) {
    json.message_reference = message.messageReference;
    const referenced = state.messages.get(message.messageReference.message_id);
    if (message.type === 19)
      json.referenced_message =
        referenced && !referenced.deleted && (options.depth ?? 0) < 1
          ? messageJson(state, referenced, { depth: 1 })
          : null;
  }
  if (channel?.parentId) json.position = channelMessageIndex(state, message);
  if (message.threadId) {
    const thread = state.channels.get(message.threadId);
    if (thread) json.thread = channelJson(state, thread);
  }
  if (message.reactions.size > 0)
    json.reactions = [...message.reactions].map(([emoji, users]) => ({
      emoji: emojiJson(emoji),
      count: users.size,
      count_details: { burst: 0, normal: users.size },
      burst_colors: [],
      me_burst: false,
      burst_me: false,
      me: users.has(state.bot.id),
      burst_count: 0,
    }));
  if (options.gateway) {
    json.guild_id = state.guildId;
    json.channel_type = channel?.type ?? 0;
    if (!message.webhookId || message.interactionMetadata)
      json.member = memberJson(state, message.author.id, false);
  }
  return json;
}

function channelMessageIndex(state: DiscordState, message: StoredMessage): number {
  let index = 0;
  for (const other of state.messages.values()) {
    if (other.id === message.id) return index;
    if (other.channelId === message.channelId && other.type !== 21) index++;
  }
  return index;
}

function emojiJson(emoji: string): Record<string, unknown> {
  const custom = /^(?:a:)?(\w+):(\d+)$/.exec(emoji);
  return custom ? { id: custom[2], name: custom[1] } : { id: null, name: emoji };
}

/** Creates a message in a channel: bumps the thread counters and `last_message_id`, keeps the first snapshot. */
export function storeMessage(
  state: DiscordState,
  fields: Omit<
    StoredMessage,
    "id" | "timestamp" | "editedTimestamp" | "reactions" | "deleted" | "history"
  > & {
    id?: string;
  },
  via: string,
): StoredMessage {
  const id = fields.id ?? snowflake(state);
  const at = now(state);
  const message: StoredMessage = {
    ...fields,
    id,
    timestamp: iso(at),
    editedTimestamp: null,
    reactions: new Map(),
    deleted: false,
    history: [],
  };
  message.history.push(snapshot(message, at, via));
  state.messages.set(id, message);
  const channel = state.channels.get(message.channelId);
  if (channel && !(message.flags & MessageFlag.Ephemeral)) {
    channel.lastMessageId = id;
    if (channel.parentId && message.type !== 21) {
      channel.messageCount = (channel.messageCount ?? 0) + 1;
      channel.totalMessageSent = (channel.totalMessageSent ?? 0) + 1;
    }
  }
  changed(state);
  return message;
}

export function snapshot(message: StoredMessage, at: number, via: string): MessageSnapshot {
  return {
    at,
    content: message.content,
    flags: message.flags,
    components: structuredClone(message.components),
    embeds: structuredClone(message.embeds),
    attachments: [...message.attachments],
    via,
  };
}

export function listMessages(state: DiscordState, channelId: string): StoredMessage[] {
  return [...state.messages.values()].filter((m) => m.channelId === channelId && !m.deleted);
}
