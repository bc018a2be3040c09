import type { EventEmitter } from "node:events";
import {
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  Client,
  Events,
  GatewayIntentBits,
  type Message,
  MessageFlags,
  RESTJSONErrorCodes,
} from "discord.js";
import { ACK_GUARD_MS, settle, withDeadline } from "../../src/deadline.ts";
import type { ImageInput, ImageParams, ImageRecord, Thread, Turn } from "../../src/domain.ts";
import { platformOf } from "../../src/domain.ts";
import type { ConversationEngine, Intent, Submitted } from "../../src/engine-types.ts";
import { AppError, asAppError } from "../../src/errors.ts";
import { FLAG_HELP, parseImagineText } from "../../src/flags.ts";
import { sizeForAspect, validateSize } from "../../src/image-size.ts";
import type { Logger } from "../../src/logger.ts";
import {
  clickKey,
  commandKey,
  type DiscordThreadMeta,
  discordCommandThreadKey,
  discordMeta,
  discordThreadAlias,
  errorCode,
  isPermissionError,
  messageKey,
  NO_MENTIONS,
  REQUIRED_PERMISSIONS,
  statusKey,
  THREAD_PERMISSIONS,
} from "./common.ts";
import { DiscordDelivery } from "./delivery.ts";
import { allowedFileHosts, checkAttachment, type DiscordFile, downloadAttachment } from "./files.ts";
import {
  type ButtonTarget,
  decodeCustomId,
  imageIdFromComponents,
  missingPermissionsText,
  progressContent,
  turnNonce,
} from "./render.ts";

export { discordCommandThreadKey, discordThreadAlias } from "./common.ts";

export interface DiscordAdapterOptions {
  engine: ConversationEngine;
  logger: Logger;
  token: string;
  /** Base of Discord's REST API (`DISCORD_API_URL`); the gateway URL comes from `GET /gateway/bot`. */
  apiUrl?: string;
  /** Serve only this server (where `/imagine` was registered with DISCORD_GUILD_ID); every server by default. */
  guildId?: string;
  /** Largest attachment used as a reference image. */
  maxAttachmentBytes?: number;
  /**
   * How long a command may take to be recorded before it is acknowledged anyway (Discord allows 3 s). Only a
   * slow download or database gets near it.
   */
  ackGuardMs?: number;
}

/**
 * Discord in, engine intents out; engine results in, Discord messages out. Holds nothing that matters across a
 * restart: threads, reply tokens and status messages live in the thread's meta, button targets in custom_ids.
 */
export class DiscordAdapter {
  readonly client: Client;
  readonly #options: DiscordAdapterOptions;
  readonly #engine: ConversationEngine;
  readonly #log: Logger;
  readonly #allowedHosts: Set<string>;
  readonly #ready: Promise<void>;
  #markReady: () => void = () => {};
  /** Per idempotency key: opens once the event's turn is acknowledged and its status message posted. */
  readonly #gates = new Map<string, { promise: Promise<void>; open: () => void }>();
  /** Per channel: people's messages are submitted in the order they were sent. */
  readonly #channelQueues = new Map<string, Promise<void>>();
  readonly #delivery: DiscordDelivery;

  constructor(options: DiscordAdapterOptions) {
    this.#options = options;
    this.#engine = options.engine;
    this.#log = options.logger.child({ adapter: "discord" });
    this.#allowedHosts = allowedFileHosts(options.apiUrl);
    this.#ready = new Promise((resolve) => {
      this.#markReady = resolve;
    });
    this.client = new Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
      rest: options.apiUrl ? { api: options.apiUrl } : {},
      allowedMentions: NO_MENTIONS,
    });
    this.#delivery = new DiscordDelivery({
      client: this.client,
      engine: this.#engine,
      logger: this.#log,
      whenConnected: () => this.#whenConnected(),
      acknowledged: (turn) => this.#gateOf(turn),
    });
    this.#registerHandlers();
    this.#engine.observe("discord", {
      progress: (event) => this.#delivery.progress(event),
      deliver: (event) => this.#delivery.deliver(event),
    });
  }

  /** Logs in and resolves once the gateway is ready (guilds and channels cached). */
  async start(): Promise<void> {
    const ready = new Promise<void>((resolve) => this.client.once(Events.ClientReady, () => resolve()));
    await this.client.login(this.#options.token);
    await ready;
    this.#markReady();
    this.#log.info({ user: this.client.user?.id, guilds: this.client.guilds.cache.size }, "discord ready");
  }

  async stop(): Promise<void> {
    await this.client.destroy();
  }

  get #botId(): string | undefined {
    return this.client.user?.id;
  }

  // -------------------------------------------------------------------------------------------------------
  // Discord → engine
  // -------------------------------------------------------------------------------------------------------

  #registerHandlers(): void {
    // discord.js does not catch what a listener throws: every handler ends in a log line, never a crash.
    const guard = (what: string, run: () => Promise<void>) =>
      void run().catch((error: unknown) => this.#log.error({ err: error, what }, "discord handler failed"));

    this.client.on(Events.InteractionCreate, (interaction) => {
      if (!this.#servesGuild(interaction.guildId)) return;
      if (interaction.isChatInputCommand() && interaction.commandName === "imagine")
        guard("imagine", () => this.#onImagine(interaction));
      else if (interaction.isButton() && decodeCustomId(interaction.customId))
        guard("button", () => this.#onButton(interaction));
    });
    this.client.on(Events.MessageCreate, (message) => {
      guard("message", () => this.#onMessage(fromMessage(message)));
    });
    // discord.js drops MESSAGE_CREATE for a channel it has not cached (a thread archived before a restart is
    // not in GUILD_CREATE); the raw packet arrives just before that, so those messages are taken from it.
    (this.client as unknown as EventEmitter).on(Events.Raw, (packet: { t?: string; d?: unknown }) => {
      if (packet.t !== "MESSAGE_CREATE" || !this.client.isReady()) return;
      const data = packet.d as RawMessage;
      if (this.client.channels.cache.has(data.channel_id)) return;
      guard("uncached message", () => this.#onUncachedMessage(data));
    });
  }

  #servesGuild(guildId: string | null): guildId is string {
    return guildId !== null && (!this.#options.guildId || guildId === this.#options.guildId);
  }

  /**
   * `/imagine`: validate, record the turn, then acknowledge (defer) — in that order, so an acknowledged command
   * is never lost: a crash before the turn is recorded leaves Discord saying "did not respond" (and the person
   * tries again) instead of "thinking…" forever with nothing behind it. Recording is fast (no provider call);
   * only downloading a large reference image or a struggling database could approach Discord's 3 s, so after
   * `ackGuardMs` the command is acknowledged anyway and the recording finishes behind the "thinking…" reply.
   * Invalid input is answered with an ephemeral reply before anything is recorded.
   */
  async #onImagine(interaction: ChatInputCommandInteraction<"cached" | "raw" | undefined>): Promise<void> {
    const receivedAt = Date.now();
    const guildId = interaction.guildId ?? "";
    let request: ImagineRequest;
    try {
      request = this.#readImagine(interaction);
    } catch (error) {
      if (error instanceof HelpRequested) {
        await interaction.reply({ content: `\`\`\`\n${FLAG_HELP}\n\`\`\``, flags: MessageFlags.Ephemeral });
        return;
      }
      await this.#replyEphemeral(interaction, error, "imagine");
      return;
    }
    const key = commandKey(interaction.id);
    const gate = this.#openGate(key);
    try {
      const submitting = settle(
        (async () => {
          const references = request.attachment
            ? [await downloadAttachment(request.attachment, this.#downloadOptions())]
            : [];
          return this.#engine.submit({
            threadKey: discordCommandThreadKey(guildId, interaction.channelId, interaction.id),
            kind: "generate",
            prompt: request.prompt,
            params: request.params,
            userId: interaction.user.id,
            idempotencyKey: key,
            referenceImages: references,
            newThread: {
              title: request.prompt.slice(0, 200),
              meta: {
                guildId,
                channelId: interaction.channelId,
                uploadLimit: interaction.attachmentSizeLimit,
                interaction: {
                  id: interaction.id,
                  token: interaction.token,
                  applicationId: interaction.applicationId,
                  receivedAt,
                },
              } satisfies DiscordThreadMeta,
            },
          });
        })(),
      );
      const early = await withDeadline(submitting, this.#options.ackGuardMs ?? ACK_GUARD_MS);
      if (early && !early.ok) return await this.#replyEphemeral(interaction, early.error, "imagine");
      const replyMessageId = await this.#acknowledge(interaction, () =>
        interaction.deferReply({ withResponse: true }).then((r) => r.resource?.message?.id ?? null),
      );
      const outcome = early ?? (await submitting);
      if (!outcome.ok) {
        // Acknowledged before the recording failed: take the public "thinking…" back, explain privately.
        await interaction.deleteReply().catch(() => {});
        await interaction
          .followUp({
            content: `✖ ${this.#userMessage(outcome.error, "imagine")}`,
            flags: MessageFlags.Ephemeral,
          })
          .catch((error: unknown) => this.#log.warn({ err: error }, "could not explain a failed command"));
        return;
      }
      if (replyMessageId)
        await this.#engine.updateThreadMeta(outcome.value.turn.threadKey, { replyMessageId });
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
    const options: Partial<ImageParams> = {};
    const aspect = interaction.options.getString("aspect");
    const size = interaction.options.getString("size");
    if (aspect && size) throw invalid("Use aspect or size, not both: aspect picks a shape and its size.");
    if (aspect) options.size = sizeForAspect(aspect);
    if (size) options.size = validateSize(size);
    const quality = interaction.options.getString("quality");
    if (quality) options.quality = quality as ImageParams["quality"];
    const count = interaction.options.getInteger("count");
    if (count !== null) options.n = count;
    const format = interaction.options.getString("format");
    if (format) options.format = format as ImageParams["format"];
    const think = interaction.options.getBoolean("think");
    if (think !== null) options.think = think;
    const params = mergeParams(parsed.params, options);
    const image = interaction.options.getAttachment("image");
    const attachment = image ? toFile(image) : undefined;
    if (attachment) checkAttachment(attachment, this.#downloadOptions());
    return { prompt: parsed.prompt, params, ...(attachment ? { attachment } : {}) };
  }

  /** A click on one of our buttons: record the intent, acknowledge silently; the result goes to the thread. */
  async #onButton(interaction: ButtonInteraction<"cached" | "raw" | undefined>): Promise<void> {
    const target = decodeCustomId(interaction.customId);
    if (!target) return;
    const key = clickKey(interaction.id);
    const gate = this.#openGate(key);
    try {
      const submitting = settle(
        this.#intentForButton(target, interaction).then((intent) =>
          this.#engine.submit({ ...intent, idempotencyKey: key }),
        ),
      );
      const early = await withDeadline(submitting, this.#options.ackGuardMs ?? ACK_GUARD_MS);
      if (early && !early.ok) return await this.#replyEphemeral(interaction, early.error, "button");
      const acknowledged = await this.#acknowledge(interaction, () =>
        interaction.deferUpdate().then(() => "ok"),
      );
      const outcome = early ?? (await submitting);
      if (!outcome.ok) {
        if (acknowledged)
          await interaction
            .followUp({
              content: `✖ ${this.#userMessage(outcome.error, "button")}`,
              flags: MessageFlags.Ephemeral,
            })
            .catch(() => {});
        return;
      }
      const { turn } = outcome.value;
      if (interaction.attachmentSizeLimit)
        await this.#engine.updateThreadMeta(turn.threadKey, { uploadLimit: interaction.attachmentSizeLimit });
      if (outcome.value.created) {
        const threadId = await this.#delivery.ensureThread(turn.threadKey);
        if (threadId) await this.#postStatus(outcome.value, threadId, null);
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
    const gone = () =>
      new AppError("image_not_found", `image ${target.imageId} not found`, {
        userMessage: "That image is no longer available.",
      });
    const image = await this.#engine.getImage(target.imageId);
    if (!image || platformOf(image.threadKey) !== "discord") throw gone();
    const meta = discordMeta(await this.#engine.getThread(image.threadKey));
    if (!meta || meta.guildId !== interaction.guildId) throw gone();
    const missing = interaction.appPermissions?.missing([...THREAD_PERMISSIONS]) ?? [];
    if (missing.length > 0) {
      throw new AppError("unauthorized_channel", `missing ${missing.join(", ")}`, {
        userMessage: missingPermissionsText(interaction.channelId, missing),
      });
    }
    const base = { threadKey: image.threadKey, userId: interaction.user.id };
    switch (target.action) {
      case "undo":
        return { ...base, kind: "undo" };
      case "variations":
        return { ...base, kind: "variation", targetImageId: image.id };
      case "use":
        return { ...base, kind: "select", targetImageId: image.id };
      case "regenerate": {
        const origin = await this.#engine.getTurn(image.turnId);
        if (!origin) throw gone();
        return { ...base, kind: "generate", prompt: origin.prompt, params: origin.params };
      }
    }
  }

  async #onUncachedMessage(data: RawMessage): Promise<void> {
    if (data.author?.bot || data.webhook_id || !this.#servesGuild(data.guild_id ?? null)) return;
    const channel = await this.client.channels.fetch(data.channel_id).catch(() => null);
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
    const thread = message.inThread ? await this.#threadOfChannel(guildId, message.channelId) : null;
    const target = message.referenceId ? await this.#imageShownBy(message) : null;
    const threadKey = target?.threadKey ?? thread?.key;
    if (!threadKey) return;
    if (target && discordMeta(await this.#engine.getThread(target.threadKey))?.guildId !== guildId) return;

    const key = messageKey(message.id);
    const gate = this.#openGate(key);
    try {
      const channel = await this.#delivery.channel(message.channelId);
      const missing = channel ? this.#delivery.missingPermissions(channel) : [];
      if (missing.length > 0) {
        await this.#delivery.tellPrivately(
          message.authorId,
          `✖ ${missingPermissionsText(message.channelId, missing)}`,
        );
        return;
      }
      const { prompt, params } = parseEdit(message.content);
      const options = this.#downloadOptions();
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
      if (submitted.created) await this.#postStatus(submitted, message.channelId, message.id);
    } catch (error) {
      await this.#replyError(message, error);
    } finally {
      gate.open();
    }
  }

  /**
   * The engine thread of a Discord thread: by its alias, or — when a message comes in before the alias is
   * recorded (a thread being started, or a process that died in between) — from the thread's starter message,
   * which is our result message (a thread started from a message has the message's id). The alias is then added.
   */
  async #threadOfChannel(guildId: string, channelId: string): Promise<Thread | null> {
    const alias = discordThreadAlias(guildId, channelId);
    const known = await this.#engine.getThread(alias);
    if (known) return known;
    const channel = await this.#delivery.channel(channelId);
    if (!channel?.isThread() || channel.ownerId !== this.#botId || !channel.parentId) return null;
    await this.#delivery.threadStartsSettled();
    const parent = await this.#delivery.channel(channel.parentId);
    const starter = await parent?.messages.fetch(channelId).catch(() => null);
    if (!starter || starter.author.id !== this.#botId) return this.#engine.getThread(alias);
    const imageId = imageIdFromComponents(starter.components);
    const image = imageId ? await this.#engine.getImage(imageId) : null;
    const thread = image ? await this.#engine.getThread(image.threadKey) : null;
    const meta = discordMeta(thread);
    if (!thread || !meta || meta.guildId !== guildId || meta.resultMessageId !== channelId) return null;
    await this.#engine.addThreadAlias(alias, thread.key);
    if (!meta.threadId) await this.#engine.updateThreadMeta(thread.key, { threadId: channelId });
    return thread;
  }

  /** The image one of our messages shows (read from its buttons), or null for anything else. */
  async #imageShownBy(message: IncomingMessage): Promise<ImageRecord | null> {
    let referenced = message.referenced;
    if (!referenced && message.referenceId) {
      const channel = await this.#delivery.channel(message.channelId);
      const fetched = await channel?.messages.fetch(message.referenceId).catch(() => null);
      referenced = fetched ? { authorId: fetched.author.id, components: fetched.components } : null;
    }
    if (!referenced || referenced.authorId !== this.#botId) return null;
    const imageId = imageIdFromComponents(referenced.components);
    const image = imageId ? await this.#engine.getImage(imageId) : null;
    return image && platformOf(image.threadKey) === "discord" ? image : null;
  }

  /** Posts a turn's status message (a reply to the asking message when there is one) and records where it is. */
  async #postStatus(submitted: Submitted, channelId: string, replyTo: string | null): Promise<void> {
    const { turn, position } = submitted;
    const channel = await this.#delivery.channel(channelId);
    if (!channel) return;
    const posted = await channel.send({
      content: progressContent(turn, { state: "queued", position }),
      ...(replyTo ? { reply: { messageReference: replyTo, failIfNotExists: false } } : {}),
      allowedMentions: NO_MENTIONS,
      nonce: turnNonce(turn.id),
      enforceNonce: true,
    });
    await this.#engine.updateThreadMeta(turn.threadKey, {
      [statusKey(turn.id)]: `${channelId}/${posted.id}`,
    });
  }

  /** Acknowledges an interaction; a replayed event (already acknowledged) or a missed deadline is logged. */
  async #acknowledge<T>(
    interaction: ChatInputCommandInteraction | ButtonInteraction,
    ack: () => Promise<T>,
  ): Promise<T | null> {
    try {
      return await ack();
    } catch (error) {
      const code = errorCode(error);
      if (code === RESTJSONErrorCodes.InteractionHasAlreadyBeenAcknowledged)
        this.#log.info(
          { interaction: interaction.id },
          "interaction already acknowledged (a replayed event)",
        );
      else if (code === RESTJSONErrorCodes.UnknownInteraction)
        this.#log.warn({ interaction: interaction.id }, "acknowledged too late; the result follows anyway");
      else this.#log.error({ err: error, interaction: interaction.id }, "could not acknowledge");
      return null;
    }
  }

  async #replyEphemeral(
    interaction: ChatInputCommandInteraction | ButtonInteraction,
    error: unknown,
    where: string,
  ): Promise<void> {
    await interaction
      .reply({ content: `✖ ${this.#userMessage(error, where)}`, flags: MessageFlags.Ephemeral })
      .catch((replyError: unknown) =>
        this.#log.warn({ err: replyError }, "could not send an ephemeral error"),
      );
  }

  /** A message's problem (bad flag, bad attachment) is answered in a reply where it was written. */
  async #replyError(message: IncomingMessage, error: unknown): Promise<void> {
    const text = `✖ ${this.#userMessage(error, "message")}`;
    if (isPermissionError(error)) {
      await this.#delivery.tellPrivately(
        message.authorId,
        `✖ ${missingPermissionsText(message.channelId, [])}`,
      );
      return;
    }
    const channel = await this.#delivery.channel(message.channelId);
    await channel
      ?.send({
        content: text,
        reply: { messageReference: message.id, failIfNotExists: false },
        allowedMentions: NO_MENTIONS,
      })
      .catch(async (sendError: unknown) => {
        if (isPermissionError(sendError))
          await this.#delivery.tellPrivately(
            message.authorId,
            `✖ ${missingPermissionsText(message.channelId, [])}`,
          );
        else this.#log.warn({ err: sendError }, "could not reply with an error");
      });
  }

  #userMessage(error: unknown, where: string): string {
    const appError = asAppError(error);
    if (appError.code === "internal") this.#log.error({ err: error, where }, "discord request failed");
    return appError.userMessage;
  }

  #downloadOptions() {
    return {
      allowedHosts: this.#allowedHosts,
      maxBytes: this.#options.maxAttachmentBytes ?? 25 * 1024 * 1024,
    };
  }

  // -------------------------------------------------------------------------------------------------------
  // Acknowledgement gates
  // -------------------------------------------------------------------------------------------------------

  async #whenConnected(): Promise<void> {
    const timeout = new Promise<never>((_, reject) => {
      const timer = setTimeout(() => reject(new Error("discord is not connected yet")), 30_000);
      timer.unref();
      void this.#ready.then(() => clearTimeout(timer));
    });
    await Promise.race([this.#ready, timeout]);
  }

  /**
   * A gate for an event's turn: progress and delivery wait until it opens (the event acknowledged, its status
   * message posted). A replay of the event arriving meanwhile waits for the first one's gate too.
   */
  #openGate(key: string): { open: () => void } {
    let open: () => void = () => {};
    const own = new Promise<void>((resolve) => {
      open = resolve;
    });
    const earlier = this.#gates.get(key)?.promise;
    const promise = earlier ? Promise.all([earlier, own]).then(() => {}) : own;
    this.#gates.set(key, { promise, open });
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
  async #gateOf(turn: Turn): Promise<void> {
    const gate = turn.idempotencyKey ? this.#gates.get(turn.idempotencyKey) : undefined;
    if (gate)
      await Promise.race([gate.promise, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/** A message from a person, from discord.js or from a raw gateway payload (a thread discord.js does not cache). */
interface IncomingMessage {
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

function invalid(message: string): AppError {
  return new AppError("invalid_flag", message);
}

/** Which option and which typed flag set each parameter. */
const SETTINGS: Partial<Record<keyof ImageParams, { option: string; flag: string }>> = {
  size: { option: "aspect/size", flag: "--ar/--size" },
  quality: { option: "quality", flag: "--quality" },
  n: { option: "count", flag: "--n" },
  format: { option: "format", flag: "--format" },
  think: { option: "think", flag: "--think" },
};

/** Options and flags typed into the prompt together; the same setting given both ways must agree. */
function mergeParams(typed: Partial<ImageParams>, options: Partial<ImageParams>): Partial<ImageParams> {
  for (const [name, value] of Object.entries(options) as Array<[keyof ImageParams, unknown]>) {
    const flag = typed[name];
    if (flag === undefined || flag === value) continue;
    const setting = SETTINGS[name] ?? { option: name, flag: `--${name}` };
    throw invalid(
      `The ${setting.option} option (${String(value)}) and ${setting.flag} in the prompt (${String(flag)}) disagree; give it once.`,
    );
  }
  return { ...typed, ...options };
}

function toFile({ name, url, contentType, size }: DiscordFile): DiscordFile {
  return { name, url, contentType, size };
}

function fromMessage(message: Message): IncomingMessage {
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
interface RawMessage {
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

function fromRaw(data: RawMessage, inThread: boolean): IncomingMessage {
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
