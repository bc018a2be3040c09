import { type Client, RESTJSONErrorCodes, type TextChannel } from "discord.js";
import type { Thread, ThreadKey, Turn } from "../../src/domain.ts";
import type { ConversationEngine } from "../../src/ports.ts";
import { errorCode, textChannel } from "./client.ts";
import { imageIdFromComponents, threadName } from "./render.ts";

/**
 * How Discord threads map to engine threads: their keys and aliases, the facts kept in a thread's meta, the
 * idempotency keys of Discord's events, and the Discord thread started on a thread's first result, once.
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
  /**
   * The `/imagine` interaction whose reply shows the first turn. Its token works for 15 minutes and is kept only
   * until that turn's delivery is recorded, or until it expired (`withoutToken`).
   */
  interaction?: { id: string; token?: string; applicationId: string; receivedAt: number };
  /** The reply's message id, once deferred. */
  replyMessageId?: string;
  /** The message with the first image (the reply, or a channel message once the token expired). */
  resultMessageId?: string;
  /** The Discord thread started from the result message (its id is the message's). */
  threadId?: string;
}

/** Interaction tokens last 15 minutes; keep a margin for the upload itself. */
const INTERACTION_TOKEN_MS = 14 * 60 * 1000 + 30 * 1000;

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

/** Idempotency keys: a replayed gateway event makes one turn. */
export const commandKey = (interactionId: string) => `discord:i:${interactionId}`;
export const clickKey = (interactionId: string) => `discord:c:${interactionId}`;
export const messageKey = (messageId: string) => `discord:m:${messageId}`;

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
  return (
    meta.interaction?.token !== undefined && Date.now() - meta.interaction.receivedAt < INTERACTION_TOKEN_MS
  );
}

/** The interaction's facts without its token: what the meta keeps once the token is of no more use. */
export function withoutToken(interaction: NonNullable<DiscordThreadMeta["interaction"]>) {
  const { token: _forgotten, ...rest } = interaction;
  return rest;
}

/** Where a message is, as kept in the store: `<channelId>/<messageId>`. */
export interface MessagePlace {
  channelId: string;
  messageId: string;
}

export function placeRef(place: MessagePlace): string {
  return `${place.channelId}/${place.messageId}`;
}

export function parsePlace(ref: string | null): MessagePlace | null {
  const [channelId, messageId] = ref?.split("/") ?? [];
  return channelId && messageId ? { channelId, messageId } : null;
}

/**
 * The Discord thread of each engine thread: started from its first result (at most once per thread in this
 * process at a time, and found rather than started again after a crash), and found again from any message in it.
 */
export class DiscordThreads {
  readonly #client: Client;
  readonly #engine: ConversationEngine;
  /** Threads being started, by thread key. */
  readonly #starts = new Map<string, Promise<string | null>>();

  constructor(client: Client, engine: ConversationEngine) {
    this.#client = client;
    this.#engine = engine;
  }

  /** Settles once every thread this process is starting has been started (or failed to). */
  async startsSettled(): Promise<void> {
    await Promise.allSettled([...this.#starts.values()]);
  }

  /**
   * The Discord thread of an engine thread, started from its first result if need be; idempotent (a thread
   * started by a process that died is found by its id, which is the message's). Null until there is a result.
   */
  ensure(threadKey: ThreadKey): Promise<string | null> {
    const pending = this.#starts.get(threadKey);
    if (pending) return pending;
    const starting = this.#start(threadKey).finally(() => this.#starts.delete(threadKey));
    this.#starts.set(threadKey, starting);
    return starting;
  }

  async #start(threadKey: ThreadKey): Promise<string | null> {
    const thread = await this.#engine.getThread(threadKey);
    const meta = discordMeta(thread);
    if (!thread || !meta) return null;
    if (meta.threadId) return meta.threadId;
    if (!meta.resultMessageId) return null;
    const channel = (await textChannel(this.#client, meta.channelId)) as TextChannel | null;
    if (!channel) return null;
    let threadId: string;
    try {
      const started = await channel.threads.create({
        startMessage: meta.resultMessageId,
        name: threadName(thread.title),
      });
      threadId = started.id;
    } catch (error) {
      if (errorCode(error) !== RESTJSONErrorCodes.ThreadAlreadyCreatedForMessage) throw error;
      threadId = meta.resultMessageId;
      await this.#client.channels.fetch(threadId).catch(() => null); // cache it, or its messages are dropped
    }
    await this.#engine.addThreadAlias(discordThreadAlias(meta.guildId, threadId), threadKey);
    await this.#engine.updateThreadMeta(threadKey, { threadId });
    return threadId;
  }

  /**
   * The engine thread of a Discord thread: by its alias, or — when a message comes in before the alias is
   * recorded (a thread being started, or a process that died in between) — from the thread's starter message,
   * which is our result message (a thread started from a message has the message's id). The alias is then added.
   */
  async ofChannel(guildId: string, channelId: string): Promise<Thread | null> {
    const alias = discordThreadAlias(guildId, channelId);
    const known = await this.#engine.getThread(alias);
    if (known) return known;
    const botId = this.#client.user?.id;
    const channel = await textChannel(this.#client, channelId);
    if (!channel?.isThread() || channel.ownerId !== botId || !channel.parentId) return null;
    await this.startsSettled();
    const parent = await textChannel(this.#client, channel.parentId);
    const starter = await parent?.messages.fetch(channelId).catch(() => null);
    if (!starter || starter.author.id !== botId) return this.#engine.getThread(alias);
    const imageId = imageIdFromComponents(starter.components);
    const image = imageId ? await this.#engine.getImage(imageId) : null;
    const thread = image ? await this.#engine.getThread(image.threadKey) : null;
    const meta = discordMeta(thread);
    if (!thread || !meta || meta.guildId !== guildId || meta.resultMessageId !== channelId) return null;
    await this.#engine.addThreadAlias(alias, thread.key);
    if (!meta.threadId) await this.#engine.updateThreadMeta(thread.key, { threadId: channelId });
    return thread;
  }
}
