import {
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Client,
  type ClientOptions,
  DiscordAPIError,
  GatewayIntentBits,
  type GuildTextBasedChannel,
  type Message,
  MessageFlags,
  type MessageMentionOptions,
  RESTJSONErrorCodes,
  Routes,
} from "discord.js";
import type { Logger } from "../../src/logger.ts";
import { customIdsIn } from "./render.ts";

/**
 * Discord's side of the wire: the client's intents and mention policy, the permissions the bot needs, the error
 * codes that change what it does, channel look-ups, and the shapes of the messages it reads (from discord.js, or
 * raw from the gateway or a webhook).
 */

/** Guilds (channels, permissions), their messages, and what people write in them. */
export const INTENTS = [
  GatewayIntentBits.Guilds,
  GatewayIntentBits.GuildMessages,
  GatewayIntentBits.MessageContent,
];

/**
 * Every REST call gives up after 15 s and is tried at most three times in all on a timeout or a 5xx (rate limits
 * are waited out by discord.js as Discord says). A retried create cannot show twice: every message the bot
 * creates carries a nonce with `enforce_nonce`, so Discord returns the first one; edits, thread starts and
 * interaction responses are safe to repeat (a repeat is refused as already done, which the adapter expects).
 */
export const REST_POLICY = {
  timeout: 15_000,
  retries: 2,
  /**
   * Through Node's own fetch, not discord.js's copy of undici. Loading a newer undici (Bolt's Socket Mode client
   * brings v8) installs that one's agent as the process-wide dispatcher, which discord.js's undici 6 then uses
   * too, and undici 8 refuses the FormData of every upload ("body must be a FormData created by this undici
   * package instance"): with Slack and Discord in one process, no image reached Discord. Node's fetch builds
   * its FormData and request itself, so it works whichever agent is installed. (`test/rate-limit.test.ts` runs
   * both adapters in one process.)
   */
  makeRequest: ((url: string, init: unknown) => fetch(url, init as RequestInit)) as RestMakeRequest,
};

type RestMakeRequest = NonNullable<NonNullable<ClientOptions["rest"]>["makeRequest"]>;

/** Prompts may contain @everyone or role mentions: nothing we post pings anyone. */
export const NO_MENTIONS: MessageMentionOptions = { parse: [], repliedUser: false };

/** What the bot needs where it works: read, post, upload, start threads and post in them. */
export const REQUIRED_PERMISSIONS = [
  "ViewChannel",
  "SendMessages",
  "SendMessagesInThreads",
  "CreatePublicThreads",
  "AttachFiles",
  "ReadMessageHistory",
] as const;
export const THREAD_PERMISSIONS = [
  "ViewChannel",
  "SendMessagesInThreads",
  "AttachFiles",
  "ReadMessageHistory",
] as const;
const CHANNEL_PERMISSIONS = ["ViewChannel", "SendMessages", "AttachFiles", "ReadMessageHistory"] as const;

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

export function errorCode(error: unknown): number | string | undefined {
  return error instanceof DiscordAPIError ? error.code : undefined;
}

export function isPermissionError(error: unknown): boolean {
  const code = errorCode(error);
  return code === RESTJSONErrorCodes.MissingPermissions || code === RESTJSONErrorCodes.MissingAccess;
}

/** The interaction's webhook no longer works: expired (50027), or the interaction was never acknowledged. */
export function isTokenError(error: unknown): boolean {
  const code = errorCode(error);
  return (
    code === RESTJSONErrorCodes.InvalidWebhookToken ||
    code === RESTJSONErrorCodes.UnknownWebhook ||
    code === RESTJSONErrorCodes.UnknownMessage ||
    code === RESTJSONErrorCodes.UnknownInteraction
  );
}

export function isTooLarge(error: unknown): boolean {
  return (
    errorCode(error) === RESTJSONErrorCodes.RequestEntityTooLarge ||
    (error as { status?: number } | null)?.status === 413
  );
}

// ---------------------------------------------------------------------------------------------------------
// Interactions
// ---------------------------------------------------------------------------------------------------------

type AnswerableInteraction = ChatInputCommandInteraction | ButtonInteraction;

/** Acknowledges an interaction; a replayed event (already acknowledged) or a missed deadline is logged. */
export async function acknowledgeInteraction<T>(
  interaction: AnswerableInteraction,
  log: Logger,
  ack: () => Promise<T>,
): Promise<T | null> {
  try {
    return await ack();
  } catch (error) {
    const code = errorCode(error);
    if (code === RESTJSONErrorCodes.InteractionHasAlreadyBeenAcknowledged)
      log.info({ interaction: interaction.id }, "interaction already acknowledged (a replayed event)");
    else if (code === RESTJSONErrorCodes.UnknownInteraction)
      log.warn({ interaction: interaction.id }, "acknowledged too late; the result follows anyway");
    else log.error({ err: error, interaction: interaction.id }, "could not acknowledge");
    return null;
  }
}

/** An ephemeral reply: only the person who used the command or button sees it. */
export async function replyPrivately(
  interaction: AnswerableInteraction,
  log: Logger,
  content: string,
): Promise<void> {
  await interaction
    .reply({ content, flags: MessageFlags.Ephemeral })
    .catch((error: unknown) => log.warn({ err: error }, "could not send an ephemeral reply"));
}

// ---------------------------------------------------------------------------------------------------------
// Channels and people
// ---------------------------------------------------------------------------------------------------------

/** A server text channel or thread, from the cache or fetched; null when it is gone or not one. */
export async function textChannel(client: Client, channelId: string): Promise<GuildTextBasedChannel | null> {
  const channel = client.channels.cache.get(channelId) ?? (await fetchChannel(client, channelId));
  return channel && "messages" in channel && !channel.isDMBased() ? (channel as GuildTextBasedChannel) : null;
}

/**
 * A channel the cache lacks, over REST. discord.js builds a server's channel only when it knows the server, and a
 * process without a gateway session (ROLE=worker) knows none: it reads the channel's server first (once per
 * server; cached after that).
 */
async function fetchChannel(client: Client, channelId: string) {
  const channel = await client.channels.fetch(channelId).catch(() => null);
  if (channel) return channel;
  const raw = (await client.rest.get(Routes.channel(channelId)).catch(() => null)) as {
    guild_id?: string;
  } | null;
  if (!raw?.guild_id) return null;
  // Another call may have read the server meanwhile: then only the channel is read again.
  if (!client.guilds.cache.has(raw.guild_id)) await client.guilds.fetch(raw.guild_id).catch(() => null);
  return client.channels.fetch(channelId).catch(() => null);
}

/** What the bot lacks to answer in a channel: post (in threads: post in threads), upload, read history. */
export function missingPermissions(client: Client, channel: GuildTextBasedChannel): string[] {
  const me = client.user;
  const permissions = me ? channel.permissionsFor(me) : null;
  if (!permissions) return [];
  return permissions.missing(channel.isThread() ? [...THREAD_PERMISSIONS] : [...CHANNEL_PERMISSIONS]);
}

/** A direct message: where the bot may not post, this is the only way left to tell someone why. */
export async function tellPrivately(
  client: Client,
  log: Logger,
  userId: string,
  content: string,
): Promise<void> {
  try {
    const user = await client.users.fetch(userId);
    await user.send({ content, allowedMentions: NO_MENTIONS });
  } catch (error) {
    log.warn({ err: error, userId }, "could not send a direct message");
  }
}

// ---------------------------------------------------------------------------------------------------------
// Messages people write
// ---------------------------------------------------------------------------------------------------------

/** What we need of an attachment (discord.js `Attachment`, or the raw JSON of a MESSAGE_CREATE). */
export interface DiscordFile {
  name: string;
  url: string;
  contentType: string | null;
  size: number;
}

/** A message from a person, from discord.js or from a raw gateway payload (a thread discord.js does not cache). */
export interface IncomingMessage {
  id: string;
  channelId: string;
  guildId: string | null;
  type: number;
  authorId: string;
  /** Bots, webhooks and system messages. */
  automated: boolean;
  content: string;
  attachments: DiscordFile[];
  referenceId: string | null;
  /** The replied-to message when the event carried it. */
  referenced: { authorId: string; components: readonly unknown[] } | null;
  inThread: boolean;
}

export function toFile({ name, url, contentType, size }: DiscordFile): DiscordFile {
  return { name, url, contentType, size };
}

export function fromMessage(message: Message): IncomingMessage {
  const cached = message.reference?.messageId
    ? message.channel.messages.cache.get(message.reference.messageId)
    : undefined;
  return {
    id: message.id,
    channelId: message.channelId,
    guildId: message.guildId,
    type: message.type,
    authorId: message.author.id,
    automated: message.author.bot || message.webhookId !== null || message.system,
    content: message.content,
    attachments: [...message.attachments.values()].map(toFile),
    referenceId: message.reference?.messageId ?? null,
    referenced: cached ? { authorId: cached.author.id, components: cached.components } : null,
    inThread: message.channel.isThread(),
  };
}

/** The MESSAGE_CREATE fields we read. */
export interface RawMessage {
  id: string;
  channel_id: string;
  guild_id?: string;
  type: number;
  webhook_id?: string;
  author?: { id: string; bot?: boolean; system?: boolean };
  content?: string;
  attachments?: Array<{ filename: string; url: string; content_type?: string; size: number }>;
  message_reference?: { message_id?: string };
  referenced_message?: { author?: { id: string }; components?: unknown[] } | null;
}

export function fromRaw(data: RawMessage, inThread: boolean): IncomingMessage {
  const referenced = data.referenced_message;
  return {
    id: data.id,
    channelId: data.channel_id,
    guildId: data.guild_id ?? null,
    type: data.type,
    authorId: data.author?.id ?? "",
    automated: Boolean(data.author?.bot || data.author?.system || data.webhook_id),
    content: data.content ?? "",
    attachments: (data.attachments ?? []).map((a) => ({
      name: a.filename,
      url: a.url,
      contentType: a.content_type ?? null,
      size: a.size,
    })),
    referenceId: data.message_reference?.message_id ?? null,
    referenced: referenced?.author
      ? { authorId: referenced.author.id, components: referenced.components ?? [] }
      : null,
    inThread,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Messages we posted, read back
// ---------------------------------------------------------------------------------------------------------

/** What a message shows, from discord.js or from raw JSON (webhook calls return raw JSON for uncached channels). */
export interface MessageFacts {
  id: string;
  authorId: string | undefined;
  content: string;
  attachments: number;
  customIds: string[];
  referenceId: string | undefined;
}

export function facts(message: Message | Record<string, unknown>): MessageFacts {
  const m = message as Record<string, unknown> & Partial<Message>;
  const attachments = m.attachments as unknown;
  return {
    id: String(m.id),
    authorId: (m.author as { id?: string } | undefined)?.id,
    content: String(m.content ?? ""),
    attachments: Array.isArray(attachments)
      ? attachments.length
      : ((attachments as { size?: number })?.size ?? 0),
    customIds: customIdsIn((m.components as unknown[] | undefined) ?? []),
    referenceId:
      (m.reference as { messageId?: string } | undefined)?.messageId ??
      (m.message_reference as { message_id?: string } | undefined)?.message_id,
  };
}
