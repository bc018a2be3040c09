import { DiscordAPIError, type MessageMentionOptions, RESTJSONErrorCodes } from "discord.js";
import type { Thread, ThreadKey, Turn } from "../../src/domain.ts";

/**
 * What both directions of the Discord adapter share: how threads are keyed and named, the facts kept in a
 * thread's meta, the mention policy, the permissions the bot needs, and Discord's error codes that change what
 * it does.
 */

/**
 * Facts about a Discord thread kept in the engine thread's meta, so any process can continue it after a restart.
 */
export interface DiscordThreadMeta {
  guildId: string;
  /** The text channel `/imagine` was used in: the Discord thread's parent. */
  channelId: string;
  /** The server's per-file upload limit, from the newest interaction in the thread. */
  uploadLimit?: number;
  /** The `/imagine` interaction whose reply shows the first turn; its token works for 15 minutes. */
  interaction?: { id: string; token: string; applicationId: string; receivedAt: number };
  /** The reply's message id, once deferred. */
  replyMessageId?: string;
  /** The message with the first image (the reply, or a channel message once the token expired). */
  resultMessageId?: string;
  /** The Discord thread started from the result message (its id is the message's). */
  threadId?: string;
  /** `status:<turnId>` → `<channelId>/<messageId>` of the message showing that turn. */
  [status: `status:${string}`]: string;
}

/** Prompts may contain @everyone or role mentions: nothing we post pings anyone. */
export const NO_MENTIONS: MessageMentionOptions = { parse: [], repliedUser: false };

/** Interaction tokens last 15 minutes; keep a margin for the upload itself. */
export const INTERACTION_TOKEN_MS = 14 * 60 * 1000 + 30 * 1000;

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
export const CHANNEL_PERMISSIONS = [
  "ViewChannel",
  "SendMessages",
  "AttachFiles",
  "ReadMessageHistory",
] as const;

/** A thread's key, fixed before anything is posted: the /imagine interaction names it. */
export function discordCommandThreadKey(
  guildId: string,
  channelId: string,
  interactionId: string,
): ThreadKey {
  return `discord:${guildId}:${channelId}:i-${interactionId}`;
}

/** The alias under which a Discord thread (a channel) finds its engine thread: `discord:<guild>:<thread>`. */
export function discordThreadAlias(guildId: string, threadChannelId: string): string {
  return `discord:${guildId}:${threadChannelId}`;
}

export const commandKey = (interactionId: string) => `discord:i:${interactionId}`;
export const clickKey = (interactionId: string) => `discord:c:${interactionId}`;
export const messageKey = (messageId: string) => `discord:m:${messageId}`;
export const statusKey = (turnId: string) => `status:${turnId}` as const;

export function discordMeta(thread: Thread | null): DiscordThreadMeta | null {
  const meta = thread?.meta;
  return meta && typeof meta.guildId === "string" && typeof meta.channelId === "string"
    ? (meta as unknown as DiscordThreadMeta)
    : null;
}

/** The turn the /imagine reply shows: the one its interaction made. */
export function isReplyTurn(turn: Turn, meta: DiscordThreadMeta): boolean {
  return meta.interaction !== undefined && turn.idempotencyKey === commandKey(meta.interaction.id);
}

export function replyUsable(meta: DiscordThreadMeta): boolean {
  return meta.interaction !== undefined && Date.now() - meta.interaction.receivedAt < INTERACTION_TOKEN_MS;
}

export function statusPlace(
  meta: DiscordThreadMeta,
  turn: Turn,
): { channelId: string; messageId: string } | null {
  const [channelId, messageId] = meta[statusKey(turn.id)]?.split("/") ?? [];
  return channelId && messageId ? { channelId, messageId } : null;
}

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
