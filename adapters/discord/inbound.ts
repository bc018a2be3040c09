import type { EventEmitter } from "node:events";
import {
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Client,
  Events,
  MessageFlags,
} from "discord.js";
import type { ImageParams, ImageRecord, Turn } from "../../src/domain.ts";
import { AppError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine, ImageInput, Intent } from "../../src/ports.ts";
import { FLAG_HELP, parseImagineText } from "../../src/request/flags.ts";
import { buttonImage, buttonIntent, recordThenAcknowledge, userMessage } from "../shared/inbound.ts";
import {
  acknowledgeInteraction,
  type DiscordFile,
  fromMessage,
  fromRaw,
  type IncomingMessage,
  isPermissionError,
  missingPermissions,
  NO_MENTIONS,
  type RawMessage,
  REQUIRED_PERMISSIONS,
  replyPrivately,
  THREAD_PERMISSIONS,
  tellPrivately,
  textChannel,
  toFile,
} from "./client.ts";
import type { DiscordDelivery } from "./delivery.ts";
import { checkAttachment, type DownloadOptions, downloadAttachment } from "./files.ts";
import {
  type ButtonTarget,
  decodeCustomId,
  imageIdFromComponents,
  missingPermissionsText,
} from "./render.ts";
import { imagineParams } from "./setup.ts";
import {
  clickKey,
  commandKey,
  type DiscordThreadMeta,
  type DiscordThreads,
  discordCommandThreadKey,
  discordMeta,
  messageKey,
} from "./threads.ts";

/**
 * Discord → engine: `/imagine`, clicks on our buttons, and people's messages in our threads (or replies to our
 * images) become intents. Each is recorded, then acknowledged; bad input gets an ephemeral answer (or a reply
 * to the message) and records nothing.
 *
 * Longer than our usual ~400 lines on purpose: three ways in, each with Discord's own rules (an interaction's
 * 3 s and ephemeral replies; a message's order within its channel, and messages from threads discord.js has not
 * cached, read from the raw gateway packet), sharing the acknowledgement gates at the end of the file.
 */

export interface DiscordInboundOptions {
  client: Client;
  engine: ConversationEngine;
  threads: DiscordThreads;
  delivery: DiscordDelivery;
  gates: AcknowledgementGates;
  logger: Logger;
  /** Serve only this server; every server by default. */
  guildId?: string;
  download: DownloadOptions;
  /** How long a command may take to be recorded before it is acknowledged anyway (Discord allows 3 s). */
  ackGuardMs?: number;
}

export class DiscordInbound {
  readonly #client: Client;
  readonly #engine: ConversationEngine;
  readonly #threads: DiscordThreads;
  readonly #delivery: DiscordDelivery;
  readonly #gates: AcknowledgementGates;
  readonly #log: Logger;
  readonly #options: DiscordInboundOptions;
  /** Per channel: people's messages are submitted in the order they were sent. */
  readonly #channelQueues = new Map<string, Promise<void>>();

  constructor(options: DiscordInboundOptions) {
    this.#options = options;
    this.#client = options.client;
    this.#engine = options.engine;
    this.#threads = options.threads;
    this.#delivery = options.delivery;
    this.#gates = options.gates;
    this.#log = options.logger;
  }

  get #botId(): string | undefined {
    return this.#client.user?.id;
  }

  register(): void {
    // discord.js does not catch what a listener throws: every handler ends in a log line, never a crash.
    const guard = (what: string, run: () => Promise<void>) =>
      void run().catch((error: unknown) => this.#log.error({ err: error, what }, "discord handler failed"));

    this.#client.on(Events.InteractionCreate, (interaction) => {
      if (!this.#servesGuild(interaction.guildId)) return;
      if (interaction.isChatInputCommand() && interaction.commandName === "imagine")
        guard("imagine", () => this.#onImagine(interaction));
      else if (interaction.isButton() && decodeCustomId(interaction.customId))
        guard("button", () => this.#onButton(interaction));
    });
    this.#client.on(Events.MessageCreate, (message) => {
      guard("message", () => this.#onMessage(fromMessage(message)));
    });
    // discord.js drops MESSAGE_CREATE for a channel it has not cached (a thread archived before a restart is
    // not in GUILD_CREATE); the raw packet arrives just before that, so those messages are taken from it.
    (this.#client as unknown as EventEmitter).on(Events.Raw, (packet: { t?: string; d?: unknown }) => {
      if (packet.t !== "MESSAGE_CREATE" || !this.#client.isReady()) return;
      const data = packet.d as RawMessage;
      if (this.#client.channels.cache.has(data.channel_id)) return;
      guard("uncached message", () => this.#onUncachedMessage(data));
    });
  }

  #servesGuild(guildId: string | null): guildId is string {
    return guildId !== null && (!this.#options.guildId || guildId === this.#options.guildId);
  }

  // -------------------------------------------------------------------------------------------------------
  // /imagine
  // -------------------------------------------------------------------------------------------------------

  /**
   * `/imagine`: validate, record the turn, then acknowledge (defer) — so an acknowledged command is never lost:
   * a crash before the turn is recorded leaves Discord saying "did not respond" (and the person tries again)
   * instead of "thinking…" forever with nothing behind it. Invalid input is answered with an ephemeral reply
   * before anything is recorded.
   */
  async #onImagine(interaction: ChatInputCommandInteraction<"cached" | "raw" | undefined>): Promise<void> {
    const receivedAt = Date.now();
    const guildId = interaction.guildId ?? "";
    let request: ImagineRequest;
    try {
      request = this.#readImagine(interaction);
    } catch (error) {
      if (error instanceof HelpRequested) {
        await replyPrivately(interaction, this.#log, `\`\`\`\n${FLAG_HELP}\n\`\`\``);
        return;
      }
      await this.#replyEphemeral(interaction, error, "imagine");
      return;
    }
    const key = commandKey(interaction.id);
    const gate = this.#gates.open(key);
    try {
      const meta: DiscordThreadMeta = {
        guildId,
        channelId: interaction.channelId,
        uploadLimit: interaction.attachmentSizeLimit,
        interaction: {
          id: interaction.id,
          token: interaction.token,
          applicationId: interaction.applicationId,
          receivedAt,
        },
      };
      const { acknowledged: replyMessageId, outcome } = await recordThenAcknowledge({
        recording: (async () => {
          const references = request.attachment
            ? [await downloadAttachment(request.attachment, this.#options.download)]
            : [];
          return this.#engine.submit({
            threadKey: discordCommandThreadKey(guildId, interaction.channelId, interaction.id),
            kind: "generate",
            prompt: request.prompt,
            params: request.params,
            userId: interaction.user.id,
            idempotencyKey: key,
            referenceImages: references,
            newThread: { title: request.prompt.slice(0, 200), meta: { ...meta } },
          });
        })(),
        guardMs: this.#options.ackGuardMs,
        refuse: (error) => this.#replyEphemeral(interaction, error, "imagine"),
        acknowledge: () =>
          acknowledgeInteraction(interaction, this.#log, () =>
            interaction.deferReply({ withResponse: true }).then((r) => r.resource?.message?.id ?? null),
          ),
        // Acknowledged before the recording failed: take the public "thinking…" back, explain privately.
        explainLate: async (error) => {
          await interaction.deleteReply().catch(() => {});
          await interaction
            .followUp({
              content: `✖ ${userMessage(error, this.#log, "imagine")}`,
              flags: MessageFlags.Ephemeral,
            })
            .catch((failure: unknown) =>
              this.#log.warn({ err: failure }, "could not explain a failed command"),
            );
        },
      });
      const recorded = await outcome;
      if (recorded.ok && replyMessageId)
        await this.#engine.updateThreadMeta(recorded.value.turn.threadKey, { replyMessageId });
    } finally {
      gate.open();
    }
  }

  /** The prompt, flags and options of a /imagine, checked; throws AppError for the person to read. */
  #readImagine(interaction: ChatInputCommandInteraction<"cached" | "raw" | undefined>): ImagineRequest {
    const text = interaction.options.getString("prompt", true);
    if (text.trim().toLowerCase() === "help") throw new HelpRequested();
    if (interaction.channel?.isThread()) {
      throw new AppError("unauthorized_channel", "imagine in a thread", {
        userMessage:
          "Use /imagine in a text channel: each image gets its own thread. Inside a thread of mine, just write what to change.",
      });
    }
    const missing = interaction.appPermissions?.missing([...REQUIRED_PERMISSIONS]) ?? [];
    if (missing.length > 0) {
      throw new AppError("unauthorized_channel", `missing ${missing.join(", ")}`, {
        userMessage: missingPermissionsText(interaction.channelId, missing),
      });
    }
    const parsed = parseImagineText(text);
    const params = imagineParams(interaction, parsed.params);
    const image = interaction.options.getAttachment("image");
    const attachment = image ? toFile(image) : undefined;
    if (attachment) checkAttachment(attachment, this.#options.download);
    return { prompt: parsed.prompt, params, ...(attachment ? { attachment } : {}) };
  }

  // -------------------------------------------------------------------------------------------------------
  // Buttons
  // -------------------------------------------------------------------------------------------------------

  /** A click on one of our buttons: record the intent, acknowledge silently; the result goes to the thread. */
  async #onButton(interaction: ButtonInteraction<"cached" | "raw" | undefined>): Promise<void> {
    const target = decodeCustomId(interaction.customId);
    if (!target) return;
    const key = clickKey(interaction.id);
    const gate = this.#gates.open(key);
    try {
      const { outcome } = await recordThenAcknowledge({
        recording: this.#intentForButton(target, interaction).then((intent) =>
          this.#engine.submit({ ...intent, idempotencyKey: key }),
        ),
        guardMs: this.#options.ackGuardMs,
        refuse: (error) => this.#replyEphemeral(interaction, error, "button"),
        acknowledge: () =>
          acknowledgeInteraction(interaction, this.#log, () => interaction.deferUpdate().then(() => "ok")),
        explainLate: async (error, acknowledged) => {
          if (!acknowledged) return;
          await interaction
            .followUp({
              content: `✖ ${userMessage(error, this.#log, "button")}`,
              flags: MessageFlags.Ephemeral,
            })
            .catch(() => {});
        },
      });
      const recorded = await outcome;
      if (!recorded.ok) return;
      const { turn } = recorded.value;
      if (interaction.attachmentSizeLimit)
        await this.#engine.updateThreadMeta(turn.threadKey, { uploadLimit: interaction.attachmentSizeLimit });
      if (recorded.value.created) {
        const threadId = await this.#threads.ensure(turn.threadKey);
        if (threadId) await this.#delivery.postStatus(recorded.value, threadId, null);
      }
    } catch (error) {
      this.#log.warn({ err: error }, "button: could not post the status message");
    } finally {
      gate.open();
    }
  }

  async #intentForButton(
    target: ButtonTarget,
    interaction: ButtonInteraction<"cached" | "raw" | undefined>,
  ): Promise<Intent> {
    const { image, intent } = await buttonIntent(this.#engine, {
      ...target,
      userId: interaction.user.id,
      platform: "discord",
    });
    const meta = discordMeta(await this.#engine.getThread(image.threadKey));
    // A button copied into another server acts on nothing there.
    if (!meta || meta.guildId !== interaction.guildId)
      throw new AppError("image_not_found", "other server", {
        userMessage: "That image is no longer available.",
      });
    const missing = interaction.appPermissions?.missing([...THREAD_PERMISSIONS]) ?? [];
    if (missing.length > 0) {
      throw new AppError("unauthorized_channel", `missing ${missing.join(", ")}`, {
        userMessage: missingPermissionsText(interaction.channelId, missing),
      });
    }
    return intent;
  }

  // -------------------------------------------------------------------------------------------------------
  // Messages
  // -------------------------------------------------------------------------------------------------------

  async #onUncachedMessage(data: RawMessage): Promise<void> {
    if (data.author?.bot || data.webhook_id || !this.#servesGuild(data.guild_id ?? null)) return;
    const channel = await this.#client.channels.fetch(data.channel_id).catch(() => null);
    if (!channel) return;
    await this.#onMessage(fromRaw(data, channel.isThread()));
  }

  /**
   * A person's message: in one of our threads it edits the thread's image; a reply to one of our image messages
   * (anywhere) edits that image, branching from it. Everything else is not for us.
   */
  async #onMessage(message: IncomingMessage): Promise<void> {
    if (message.automated || message.authorId === this.#botId || !this.#servesGuild(message.guildId)) return;
    if (message.type !== 0 && message.type !== 19) return;
    if (!message.inThread && !message.referenceId) return;
    // One channel's messages are submitted in the order they were sent, whatever their downloads take.
    const previous = this.#channelQueues.get(message.channelId) ?? Promise.resolve();
    const current = previous.then(() => this.#handleMessage(message));
    const settled = current.catch(() => {});
    this.#channelQueues.set(message.channelId, settled);
    void settled.then(() => {
      if (this.#channelQueues.get(message.channelId) === settled)
        this.#channelQueues.delete(message.channelId);
    });
    await current;
  }

  async #handleMessage(message: IncomingMessage): Promise<void> {
    const guildId = message.guildId ?? "";
    const thread = message.inThread ? await this.#threads.ofChannel(guildId, message.channelId) : null;
    const target = message.referenceId ? await this.#imageShownBy(message) : null;
    const threadKey = target?.threadKey ?? thread?.key;
    if (!threadKey) return;
    if (target && discordMeta(await this.#engine.getThread(target.threadKey))?.guildId !== guildId) return;

    const key = messageKey(message.id);
    const gate = this.#gates.open(key);
    try {
      const channel = await textChannel(this.#client, message.channelId);
      const missing = channel ? missingPermissions(this.#client, channel) : [];
      if (missing.length > 0) {
        await tellPrivately(
          this.#client,
          this.#log,
          message.authorId,
          `✖ ${missingPermissionsText(message.channelId, missing)}`,
        );
        return;
      }
      const { prompt, params } = parseEdit(message.content);
      const options = this.#options.download;
      for (const file of message.attachments) checkAttachment(file, options);
      const referenceImages: ImageInput[] = [];
      for (const file of message.attachments) referenceImages.push(await downloadAttachment(file, options));
      const submitted = await this.#engine.submit({
        threadKey,
        kind: "edit",
        prompt,
        params,
        userId: message.authorId,
        sourceMessageId: `${message.channelId}/${message.id}`,
        idempotencyKey: key,
        targetImageId: target?.id ?? null,
        referenceImages,
      });
      if (submitted.created) await this.#delivery.postStatus(submitted, message.channelId, message.id);
    } catch (error) {
      await this.#replyError(message, error);
    } finally {
      gate.open();
    }
  }

  /** The image one of our messages shows (read from its buttons), or null for anything else. */
  async #imageShownBy(message: IncomingMessage): Promise<ImageRecord | null> {
    let referenced = message.referenced;
    if (!referenced && message.referenceId) {
      const channel = await textChannel(this.#client, message.channelId);
      const fetched = await channel?.messages.fetch(message.referenceId).catch(() => null);
      referenced = fetched ? { authorId: fetched.author.id, components: fetched.components } : null;
    }
    if (!referenced || referenced.authorId !== this.#botId) return null;
    const imageId = imageIdFromComponents(referenced.components);
    return imageId ? buttonImage(this.#engine, imageId, "discord").catch(() => null) : null;
  }

  // -------------------------------------------------------------------------------------------------------
  // Answers
  // -------------------------------------------------------------------------------------------------------

  async #replyEphemeral(
    interaction: ChatInputCommandInteraction | ButtonInteraction,
    error: unknown,
    where: string,
  ): Promise<void> {
    await replyPrivately(interaction, this.#log, `✖ ${userMessage(error, this.#log, where)}`);
  }

  /** A message's problem (bad flag, bad attachment) is answered in a reply where it was written. */
  async #replyError(message: IncomingMessage, error: unknown): Promise<void> {
    const noPermission = `✖ ${missingPermissionsText(message.channelId, [])}`;
    if (isPermissionError(error)) {
      await tellPrivately(this.#client, this.#log, message.authorId, noPermission);
      return;
    }
    const channel = await textChannel(this.#client, message.channelId);
    await channel
      ?.send({
        content: `✖ ${userMessage(error, this.#log, "message")}`,
        reply: { messageReference: message.id, failIfNotExists: false },
        allowedMentions: NO_MENTIONS,
        // One answer per message, even when the REST client sends it again after a timeout.
        nonce: `e${message.id}`.slice(0, 25),
        enforceNonce: true,
      })
      .catch(async (sendError: unknown) => {
        if (isPermissionError(sendError))
          await tellPrivately(this.#client, this.#log, message.authorId, noPermission);
        else this.#log.warn({ err: sendError }, "could not reply with an error");
      });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Acknowledgement gates
// ---------------------------------------------------------------------------------------------------------

/**
 * Per event (idempotency key), a gate that opens once the event is acknowledged and its status message posted:
 * the turn's progress and delivery wait for it, so nothing edits a reply Discord has not created yet. A replay
 * of the event arriving meanwhile waits for the first one's gate too.
 */
export class AcknowledgementGates {
  readonly #gates = new Map<string, { promise: Promise<void> }>();

  open(key: string): { open: () => void } {
    let open: () => void = () => {};
    const own = new Promise<void>((resolve) => {
      open = resolve;
    });
    const earlier = this.#gates.get(key)?.promise;
    const promise = earlier ? Promise.all([earlier, own]).then(() => {}) : own;
    this.#gates.set(key, { promise });
    return {
      open: () => {
        open();
        setTimeout(() => {
          if (this.#gates.get(key)?.promise === promise) this.#gates.delete(key);
        }, 60_000).unref();
      },
    };
  }

  /** Waits until the event that made this turn was acknowledged here (it is already, in another process). */
  async passed(turn: Turn): Promise<void> {
    const gate = turn.idempotencyKey ? this.#gates.get(turn.idempotencyKey) : undefined;
    if (gate)
      await Promise.race([gate.promise, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

interface ImagineRequest {
  prompt: string;
  params: Partial<ImageParams>;
  attachment?: DiscordFile;
}

class HelpRequested extends Error {}

/** A message in a thread: what to change, and any flags; "say what to change" when there is only an image. */
function parseEdit(text: string): ReturnType<typeof parseImagineText> {
  try {
    return parseImagineText(text);
  } catch (error) {
    if (error instanceof AppError && error.code === "prompt_empty")
      throw new AppError("prompt_empty", "empty edit", {
        userMessage:
          "Say what to change, e.g. “make the sky orange” (attached images are used as references).",
      });
    throw error;
  }
}
