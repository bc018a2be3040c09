import {
  AttachmentBuilder,
  type Client,
  type GuildTextBasedChannel,
  InteractionWebhook,
  MessageFlags,
  type MessageMentionOptions,
  RESTJSONErrorCodes,
} from "discord.js";
import { type ImageRecord, imageFileName, type Thread, type Turn } from "../../src/domain.ts";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine, FinishedEvent, ProgressEvent, Submitted } from "../../src/ports.ts";
import { TurnViews } from "../shared/delivery.ts";
import { Once } from "../shared/once.ts";
import { progressStatus, type StatusLine } from "../shared/render.ts";
import {
  errorCode,
  facts,
  isPermissionError,
  isTokenError,
  isTooLarge,
  type MessageFacts,
  NO_MENTIONS,
  REQUIRED_PERMISSIONS,
  tellPrivately,
  textChannel,
} from "./client.ts";
import { fitForUpload, previewCopy, uploadLimitForTier } from "./files.ts";
import {
  cancelComponents,
  customIdsIn,
  failureContent,
  headMovedContent,
  missingPermissionsText,
  previewFileName,
  progressContent,
  resultComponents,
  resultContent,
  STALE_REPLY_CONTENT,
  turnNonce,
  withLateNote,
} from "./render.ts";
import {
  type DiscordThreadMeta,
  type DiscordThreads,
  discordMeta,
  isReplyTurn,
  type MessagePlace,
  parsePlace,
  placeRef,
  replyUsable,
  withoutToken,
} from "./threads.ts";

export interface DeliveryOptions {
  client: Client;
  engine: ConversationEngine;
  threads: DiscordThreads;
  logger: Logger;
  /** Resolves once the gateway is ready (rejects after a while when it is not). */
  whenConnected: () => Promise<void>;
  /** Resolves once the event that made this turn was acknowledged in this process (at once elsewhere). */
  acknowledged: (turn: Turn) => Promise<void>;
  /** The bot's user id when no gateway session told it (ROLE=worker learns it over REST). */
  botId?: () => string | undefined;
}

/** A turn's status message is posted once, by whichever process claims it. */
const statusClaim = (turnId: string) => `discord:status:${turnId}`;
/** How long a delivery waits for a status message another process is posting. */
const STATUS_WAIT_MS = 20_000;

/**
 * Engine → Discord: progress and outcomes shown where each turn is shown (the /imagine reply, or the turn's
 * status message), the Discord thread started on the first result, and problems reported to the person who
 * asked. Everything it needs to continue after a restart is in the store (the thread's meta, turn_messages).
 *
 * Longer than our usual ~400 lines on purpose: where a turn is shown depends on the turn and on time (the
 * interaction's reply while its 15-minute token lives, a channel message after that, a status message in the
 * thread), and each place needs the same read-back before a redelivery and the same retry with smaller files
 * when the server's upload limit was not what we knew. Split, that one decision would be spread over files.
 */
export class DiscordDelivery {
  readonly #client: Client;
  readonly #engine: ConversationEngine;
  readonly #threads: DiscordThreads;
  readonly #log: Logger;
  readonly #whenConnected: () => Promise<void>;
  readonly #gateOf: (turn: Turn) => Promise<void>;
  /** Per turn: progress and delivery applied one at a time, in order (latest progress wins). */
  readonly #views: TurnViews;
  readonly #once: Once;
  readonly #restBotId: () => string | undefined;

  constructor(options: DeliveryOptions) {
    this.#client = options.client;
    this.#engine = options.engine;
    this.#threads = options.threads;
    this.#log = options.logger;
    this.#whenConnected = options.whenConnected;
    this.#gateOf = options.acknowledged;
    this.#once = new Once(options.engine.claims);
    this.#restBotId = options.botId ?? (() => undefined);
    this.#views = new TurnViews((error, turnId) =>
      this.#log.warn({ err: error, turnId }, "progress update failed"),
    );
  }

  get #botId(): string | undefined {
    return this.#client.user?.id ?? this.#restBotId();
  }

  /**
   * Progress edits the message showing the turn: the /imagine reply, or the turn's status message. Queued
   * synchronously, so a preview never lands after the result.
   */
  progress(event: ProgressEvent): void {
    const status = progressStatus(event);
    const preview = event.type === "partial" ? event.partial.bytes : null;
    this.#views.update(event.turn.id, () => this.#showProgress(event.turn, status, preview));
  }

  /**
   * Once the /imagine reply's turn is recorded as delivered, its interaction token is of no more use (and it is
   * a credential for that reply): it leaves the store. A token that expired first is dropped by `#deliverNow`.
   */
  async delivered({ turn, thread }: FinishedEvent): Promise<void> {
    const meta = discordMeta(await this.#engine.getThread(thread.key));
    if (meta?.interaction?.token && isReplyTurn(turn, meta)) await this.#forgetToken(thread.key, meta);
  }

  async #forgetToken(threadKey: string, meta: DiscordThreadMeta): Promise<void> {
    if (!meta.interaction) return;
    await this.#engine.updateThreadMeta(threadKey, { interaction: withoutToken(meta.interaction) });
  }

  deliver(event: FinishedEvent, signal?: AbortSignal): Promise<void> {
    return this.#views.finish(event.turn.id, () => {
      signal?.throwIfAborted(); // handed back while earlier progress edits were still going out
      return this.#deliverNow(event);
    });
  }

  /**
   * Posts a just-submitted turn's status message (a reply to the asking message when there is one) and records
   * where it is; the turn's progress and result are shown there.
   */
  async postStatus(submitted: Submitted, channelId: string, replyTo: string | null): Promise<void> {
    const { turn, position } = submitted;
    const channel = await textChannel(this.#client, channelId);
    if (!channel) return;
    const ref = await this.#once.run(statusClaim(turn.id), async () => {
      const posted = await channel.send({
        content: progressContent(turn, { state: "queued", position }),
        components: cancelComponents(turn.id, { state: "queued", position }),
        ...(replyTo ? { reply: { messageReference: replyTo, failIfNotExists: false } } : {}),
        allowedMentions: NO_MENTIONS,
        nonce: turnNonce(turn.id),
        enforceNonce: true,
      });
      return placeRef({ channelId, messageId: posted.id });
    });
    await this.#engine.saveTurnMessage(turn.id, "status", ref);
  }

  #statusPlace(turn: Turn): Promise<MessagePlace | null> {
    return this.#engine.turnMessage(turn.id, "status").then(parsePlace);
  }

  async #showProgress(turn: Turn, status: StatusLine, preview: Buffer | null): Promise<void> {
    await this.#whenConnected();
    await this.#gateOf(turn);
    const meta = discordMeta(await this.#engine.getThread(turn.threadKey));
    if (!meta) return;
    const body = {
      content: progressContent(turn, status),
      components: cancelComponents(turn.id, status),
      allowedMentions: NO_MENTIONS,
      ...(preview && status.state === "drawing" && status.preview
        ? await previewFiles(turn, status.preview, preview)
        : {}),
    };
    if (isReplyTurn(turn, meta)) {
      if (!replyUsable(meta)) return;
      await this.#webhook(meta).editMessage("@original", body);
      return;
    }
    if (status.state === "queued") return; // the status message was posted saying so
    const place = await this.#statusPlace(turn);
    const channel = place ? await textChannel(this.#client, place.channelId) : null;
    if (place && channel) await channel.messages.edit(place.messageId, body);
  }

  /**
   * The outcome, shown where the turn is shown: the /imagine reply (then the thread is started from it), or the
   * turn's status message, edited into the result. Edits make a redelivery safe: on a redelivery the message is
   * read back first and left alone when it already shows the result; messages posted fresh carry the turn as
   * their nonce, which Discord refuses twice. Missing permissions are reported to the person, not retried.
   */
  async #deliverNow(event: FinishedEvent): Promise<void> {
    await this.#whenConnected();
    await this.#gateOf(event.turn);
    // Read the thread again: the meta the engine read may predate the status message this process just posted.
    const thread = (await this.#engine.getThread(event.thread.key)) ?? event.thread;
    event = { ...event, thread };
    const { turn } = event;
    const meta = discordMeta(thread);
    if (!meta) {
      this.#log.warn({ thread: thread.key }, "not a thread this adapter made; nothing to deliver to");
      return;
    }
    // An expired token can do nothing any more: safe to drop whenever it is seen, delivered or not.
    if (meta.interaction?.token && !replyUsable(meta)) await this.#forgetToken(thread.key, meta);
    try {
      if (isReplyTurn(turn, meta)) await this.#deliverToReply(event, meta);
      else await this.#deliverInThread(event, meta);
      this.#log.info({ turnId: turn.id, status: turn.status, redelivery: event.redelivery }, "delivered");
    } catch (error) {
      if (!isPermissionError(error)) throw error;
      this.#log.warn({ err: error, turnId: turn.id }, "missing permissions; telling the person");
      const channel = await textChannel(this.#client, meta.channelId).catch(() => null);
      const me = this.#client.user;
      const missing = (me && channel?.permissionsFor(me)?.missing([...REQUIRED_PERMISSIONS])) || [];
      await this.#report(turn, meta, `✖ ${missingPermissionsText(meta.channelId, missing)}`);
    }
  }

  async #deliverToReply(event: FinishedEvent, meta: DiscordThreadMeta): Promise<void> {
    const { turn, thread, images, redelivery } = event;
    let shown: MessageFacts | null = null;
    if (replyUsable(meta)) {
      const webhook = this.#webhook(meta);
      try {
        if (redelivery) {
          const current = facts(await webhook.fetchMessage("@original"));
          const expected = await this.#finalBody(event, meta, "thread");
          if (showsAlready(current, expected)) shown = current;
        }
        shown ??= await this.#sendWithinLimit(event, meta, "thread", async (body) =>
          facts(await webhook.editMessage("@original", { ...body, attachments: [] })),
        );
      } catch (error) {
        if (!isTokenError(error)) throw error;
        this.#log.info({ turnId: turn.id, code: errorCode(error) }, "the reply can no longer be edited");
      }
    }
    shown ??= await this.#postInChannel(event, meta);
    if (turn.status !== "succeeded" || images.length === 0) return;
    if (meta.resultMessageId !== shown.id) {
      await this.#engine.updateThreadMeta(thread.key, { resultMessageId: shown.id });
    }
    const threadId = await this.#threads.ensure(thread.key);
    if (!threadId) this.#log.warn({ thread: thread.key }, "no thread started for the result");
  }

  /**
   * After the interaction token expired: the result as a channel message answering the reply, found instead of
   * posted again on a redelivery.
   */
  async #postInChannel(event: FinishedEvent, meta: DiscordThreadMeta) {
    const { turn } = event;
    const channel = await textChannel(this.#client, meta.channelId);
    if (!channel) throw new Error(`channel ${meta.channelId} is gone`);
    const expected = await this.#finalBody(event, meta, "thread");
    if (event.redelivery) {
      // A post from a run that died is among the newest messages (a redelivery follows within moments).
      const recent = await channel.messages.fetch({ limit: 100 }).catch(() => null);
      const found = [...(recent?.values() ?? [])]
        .map(facts)
        .find(
          (m) =>
            m.authorId === this.#botId &&
            m.id !== meta.replyMessageId &&
            (showsAlready(m, expected) || (meta.replyMessageId && m.referenceId === meta.replyMessageId)),
        );
      if (found) return found;
    }
    const posted = await this.#sendWithinLimit(event, meta, "thread", async (body) =>
      facts(
        await channel.send({
          ...body,
          ...(meta.replyMessageId
            ? { reply: { messageReference: meta.replyMessageId, failIfNotExists: false } }
            : {}),
          nonce: turnNonce(turn.id),
          enforceNonce: true,
        }),
      ),
    );
    if (meta.replyMessageId) {
      // Best effort: the reply would otherwise say "thinking…" forever.
      await channel.messages
        .edit(meta.replyMessageId, { content: STALE_REPLY_CONTENT, components: [], attachments: [] })
        .catch((error: unknown) => this.#log.info({ err: error }, "could not update the stale reply"));
    }
    return posted;
  }

  /** A turn from the thread (a message, a button): its status message becomes the result. */
  async #deliverInThread(event: FinishedEvent, meta: DiscordThreadMeta): Promise<void> {
    const { turn, redelivery } = event;
    const hint =
      turn.sourceMessageId && !turn.sourceMessageId.startsWith(`${meta.threadId}/`) ? "reply" : "thread";
    // The status message may be being posted by the process that took the message: wait for it rather than
    // post the result beside it (its nonce would make Discord hand back the status message unchanged).
    let place =
      (await this.#statusPlace(turn)) ??
      parsePlace(await this.#once.result(statusClaim(turn.id), STATUS_WAIT_MS)) ??
      (await this.#findStatus(turn));
    if (place) {
      const channel = await textChannel(this.#client, place.channelId);
      const existing = redelivery ? await channel?.messages.fetch(place.messageId).catch(() => null) : null;
      if (existing && showsAlready(facts(existing), await this.#finalBody(event, meta, hint))) return;
      try {
        await this.#sendWithinLimit(event, meta, hint, async (body) =>
          facts(
            await requireChannel(channel).messages.edit(place?.messageId ?? "", { ...body, attachments: [] }),
          ),
        );
        return;
      } catch (error) {
        if (errorCode(error) !== RESTJSONErrorCodes.UnknownMessage) throw error;
        place = null; // someone deleted the status message: post the result anew
      }
    }
    // No message shows the turn yet: a reply to the asking message, or (for a button) a message in the thread.
    const [sourceChannel, replyTo] = turn.sourceMessageId?.split("/") ?? [];
    const channelId = sourceChannel ?? (await this.#threads.ensure(turn.threadKey));
    const channel = channelId ? await textChannel(this.#client, channelId) : null;
    if (!channel) throw new Error(`nowhere to deliver turn ${turn.id}`);
    const posted = await this.#sendWithinLimit(event, meta, hint, async (body) =>
      facts(
        await channel.send({
          ...body,
          ...(replyTo ? { reply: { messageReference: replyTo, failIfNotExists: false } } : {}),
          nonce: turnNonce(turn.id),
          enforceNonce: true,
        }),
      ),
    );
    await this.#engine.saveTurnMessage(
      turn.id,
      "status",
      placeRef({ channelId: channel.id, messageId: posted.id }),
    );
  }

  /** A message turn whose status message was posted but not recorded (a crash in between): our reply to it. */
  async #findStatus(turn: Turn): Promise<MessagePlace | null> {
    const [channelId, sourceId] = turn.sourceMessageId?.split("/") ?? [];
    if (!channelId || !sourceId) return null;
    const channel = await textChannel(this.#client, channelId);
    const recent = await channel?.messages.fetch({ after: sourceId, limit: 100 }).catch(() => null);
    const found = [...(recent?.values() ?? [])].find(
      (m) => m.author.id === this.#botId && m.reference?.messageId === sourceId,
    );
    return found ? { channelId, messageId: found.id } : null;
  }

  /**
   * Sends a result, retrying with smaller copies when Discord says a file is too large (the limit we knew was
   * stale). Returns what the send returned.
   */
  async #sendWithinLimit(
    event: FinishedEvent,
    meta: DiscordThreadMeta,
    hint: "thread" | "reply",
    send: (body: FinalBody) => Promise<MessageFacts>,
  ): Promise<MessageFacts> {
    let limit = this.#uploadLimit(meta);
    for (let attempt = 0; ; attempt++) {
      const body = await this.#finalBody(event, meta, hint, limit);
      try {
        return await send(body);
      } catch (error) {
        if (!isTooLarge(error) || attempt >= 3 || body.files.length === 0) throw error;
        const largest = Math.max(...body.sizes);
        limit = Math.floor(Math.min(limit, largest) / 2);
        this.#log.warn({ turnId: event.turn.id, limit }, "upload too large for the server; compressing more");
      }
    }
  }

  /** What the message showing a finished turn should say and carry; late ones say so on top. */
  async #finalBody(
    event: FinishedEvent,
    meta: DiscordThreadMeta,
    hint: "thread" | "reply",
    limit = this.#uploadLimit(meta),
  ): Promise<FinalBody> {
    const body = await this.#onTimeBody(event, hint, limit);
    return event.late ? { ...body, content: withLateNote(body.content) } : body;
  }

  async #onTimeBody(event: FinishedEvent, hint: "thread" | "reply", limit: number): Promise<FinalBody> {
    const { turn, thread, images } = event;
    const none = { files: [], sizes: [], allowedMentions: NO_MENTIONS };
    if (turn.status !== "succeeded") return { ...none, content: failureContent(turn), components: [] };
    if (images.length === 0) {
      const head = await this.#headAfter(turn, thread);
      return {
        ...none,
        content: headMovedContent(turn, head?.position ?? null),
        components: head ? resultComponents([head.image]) : [],
      };
    }
    const compressed = new Set<number>();
    const files: AttachmentBuilder[] = [];
    const sizes: number[] = [];
    for (const image of images) {
      const upload = await fitForUpload(await this.#engine.imageBytes(image), image.format, limit);
      if (upload.compressed) compressed.add(image.index);
      sizes.push(upload.bytes.length);
      files.push(
        new AttachmentBuilder(upload.bytes, {
          name: imageFileName(turn.seq, image.index, upload.format),
          description: turn.prompt.slice(0, 1000) || thread.title.slice(0, 1000),
        }),
      );
    }
    return {
      content: resultContent(turn, images, { compressed, replyHint: hint }),
      components: resultComponents(images),
      files,
      sizes,
      allowedMentions: NO_MENTIONS,
    };
  }

  /** Where an undo or a choice moved the head (fixed by the turn, so a redelivery renders the same). */
  async #headAfter(
    turn: Turn,
    thread: Thread,
  ): Promise<{ image: ImageRecord; position: { seq: number; index: number } } | null> {
    let id: string | null = thread.headImageId;
    if (turn.kind === "select" && turn.targetImageId) id = turn.targetImageId;
    if (turn.kind === "undo" && turn.baseImageId)
      id = (await this.#engine.getImage(turn.baseImageId))?.parentId ?? id;
    const image = id ? await this.#engine.getImage(id) : null;
    if (!image) return null;
    const origin = await this.#engine.getTurn(image.turnId);
    return { image, position: { seq: origin?.seq ?? 0, index: image.index } };
  }

  #uploadLimit(meta: DiscordThreadMeta): number {
    if (meta.uploadLimit) return meta.uploadLimit;
    const guild = this.#client.guilds.cache.get(meta.guildId);
    return uploadLimitForTier(guild?.premiumTier ?? 0);
  }

  /** Tells the person who asked, privately: a follow-up while the reply's token works, else a direct message. */
  async #report(turn: Turn, meta: DiscordThreadMeta, content: string): Promise<void> {
    if (meta.interaction && replyUsable(meta)) {
      try {
        await this.#webhook(meta).send({
          content,
          flags: MessageFlags.Ephemeral,
          allowedMentions: NO_MENTIONS,
        });
        return;
      } catch (error) {
        this.#log.info({ err: error }, "could not follow up; trying a direct message");
      }
    }
    await tellPrivately(this.#client, this.#log, turn.userId, content);
  }

  #webhook(meta: DiscordThreadMeta): InteractionWebhook {
    const interaction = meta.interaction;
    if (!interaction?.token) throw new Error("no interaction token for this thread");
    return new InteractionWebhook(this.#client as Client<true>, interaction.applicationId, interaction.token);
  }
}

interface FinalBody {
  content: string;
  components: ReturnType<typeof resultComponents>;
  files: AttachmentBuilder[];
  /** Byte size of each file. */
  sizes: number[];
  allowedMentions: MessageMentionOptions;
}

function requireChannel(channel: GuildTextBasedChannel | null | undefined): GuildTextBasedChannel {
  if (!channel) throw new Error("the channel is gone");
  return channel;
}

async function previewFiles(turn: Turn, preview: number, bytes: Buffer) {
  const copy = await previewCopy(bytes);
  return {
    files: [new AttachmentBuilder(copy.bytes, { name: previewFileName(turn, preview, copy.format) })],
  };
}

function showsAlready(current: MessageFacts, expected: FinalBody): boolean {
  const ids = customIdsIn(expected.components);
  return (
    current.content === expected.content &&
    current.attachments === expected.files.length &&
    current.customIds.length === ids.length &&
    ids.every((id) => current.customIds.includes(id))
  );
}
