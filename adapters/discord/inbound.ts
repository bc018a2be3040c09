import type { EventEmitter } from "node:events";
import {
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Client,
  Events,
  InteractionWebhook,
  MessageFlags,
  SnowflakeUtil,
} from "discord.js";
import { type AccessPolicy, notEnabled } from "../../src/access.ts";
import type { ImageParams, ImageRecord } from "../../src/domain.ts";
import { AppError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { WorkMetrics } from "../../src/metrics.ts";
import type { ConversationEngine, ImageInput, InboxEntry } from "../../src/ports.ts";
import { FLAG_HELP, parseImagineText } from "../../src/request/flags.ts";
import { ANSWERED, buttonImage, buttonIntent, NOT_YOURS, userMessage } from "../shared/inbound.ts";
import type { InboxWorker } from "../shared/inbox.ts";
import { TURN_ID } from "../shared/render.ts";
import { usageText } from "../shared/usage.ts";
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
import type { AcknowledgementGates } from "./gates.ts";
import {
  type ButtonTarget,
  confirmComponents,
  decodeConfirmId,
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
 * images) become intents. Each is written to the inbox, then acknowledged (an interaction is deferred), then
 * worked from the inbox (`shared/inbox.ts`): downloads, checks and recording the turn happen after Discord has
 * its answer, and are taken over by another pass if this process dies first. Bad options get an ephemeral
 * answer at once and record nothing; what is found while working is told privately (or in a reply to the
 * message). Messages written in our threads while the bot was down are read back when it connects.
 *
 * Longer than our usual ~400 lines on purpose: three ways in, each with Discord's own rules (an interaction's
 * 3 s and ephemeral replies; a message's order within its channel, messages from threads discord.js has not
 * cached, read from the raw gateway packet, and those written while no process was connected, read back at
 * start), each in two halves — what is checked before the inbox insert and what is worked from it — that read
 * best side by side. The answers to our own questions and statuses ("Draw it" / Cancel on a confirmation,
 * Cancel on a turn, `/canvas usage`) sit here too, since they share the serving checks and the private replies;
 * they are the first part to move into a module of their own if the class grows.
 */

export interface DiscordInboundOptions {
  client: Client;
  engine: ConversationEngine;
  threads: DiscordThreads;
  delivery: DiscordDelivery;
  gates: AcknowledgementGates;
  logger: Logger;
  /** Which servers and channels the bot serves. */
  access: AccessPolicy;
  download: DownloadOptions;
  /** Times each recorded interaction's acknowledgement (`/metrics`). */
  metrics?: Pick<WorkMetrics, "acknowledged"> | undefined;
}

/** What every interaction's entry keeps: enough to answer it (its token lives 15 minutes) after a restart. */
interface InteractionFacts {
  id: string;
  token: string;
  applicationId: string;
  guildId: string;
  channelId: string;
  userId: string;
  receivedAt: number;
  uploadLimit: number | null;
}

interface CommandEvent extends InteractionFacts, ImagineRequest {
  /** The deferred reply, when this process deferred it (not kept in the inbox: learned after the insert). */
  replyMessageId?: string;
}

interface ClickEvent extends InteractionFacts {
  target: ButtonTarget;
}

interface MessageEvent {
  message: Omit<IncomingMessage, "referenced">;
  threadKey: string;
  /** A reply to one of our images edits that image. */
  targetImageId: string | null;
}

/** Set by the inbox when the person answered "Draw it" to "Draw it for about $X?". */
interface Confirmed {
  confirmed?: boolean;
}

/** What the inbox keeps of each Discord event. */
type DiscordEvent =
  | { kind: "command"; payload: CommandEvent & Confirmed }
  | { kind: "click"; payload: ClickEvent & Confirmed }
  | { kind: "message"; payload: MessageEvent & Confirmed };

/** When the bot connects, messages written in its threads active this recently are read back. */
const CATCH_UP_MS = 24 * 3600_000;
const CATCH_UP_THREADS = 50;

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
  #inbox: InboxWorker | undefined;

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

  get #worker(): InboxWorker {
    if (!this.#inbox) throw new Error("DiscordInbound.register was not called");
    return this.#inbox;
  }

  /** The listeners on the client; events are recorded in `inbox`, and worked by `work`. */
  register(inbox: InboxWorker): void {
    this.#inbox = inbox;
    // discord.js does not catch what a listener throws: every handler ends in a log line, never a crash.
    const guard = (what: string, run: () => Promise<void>) =>
      void run().catch((error: unknown) => this.#log.error({ err: error, what }, "discord handler failed"));

    this.#client.on(Events.InteractionCreate, (interaction) => {
      if (interaction.guildId === null) return; // direct messages: the bot works in servers only
      if (interaction.isChatInputCommand() && interaction.commandName === "imagine")
        guard("imagine", () => this.#onImagine(interaction));
      else if (interaction.isChatInputCommand() && interaction.commandName === "canvas")
        guard("canvas", () => this.#onCanvas(interaction));
      else if (interaction.isButton() && decodeCustomId(interaction.customId))
        guard("button", () => this.#onButton(interaction));
      else if (interaction.isButton() && decodeConfirmId(interaction.customId))
        guard("confirm", () => this.#onConfirm(interaction));
      else if (interaction.isButton() && interaction.customId.startsWith("tcx:"))
        guard("cancel", () => this.#onCancel(interaction));
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
    return guildId !== null && this.#options.access.servesWorkspace("discord", guildId);
  }

  /** Whether the bot serves this channel of this server; a thread is judged by its parent channel. */
  async #serves(guildId: string, channelId: string): Promise<boolean> {
    const access = this.#options.access;
    if (!access.servesWorkspace("discord", guildId)) return false;
    if (!access.restrictsChannels("discord")) return true;
    const channel =
      this.#client.channels.cache.get(channelId) ??
      (await this.#client.channels.fetch(channelId).catch(() => null));
    const parentId = channel?.isThread() ? channel.parentId : null;
    return access.allows("discord", { workspaceId: guildId, channelId: parentId ?? channelId });
  }

  /** Works one recorded event (see `InboxWorkerOptions.work`): downloads, checks, records its turn. */
  async work(entry: InboxEntry): Promise<void> {
    const event = { kind: entry.kind, payload: entry.payload } as DiscordEvent;
    // Progress and delivery of the turn wait until its status message is posted (or the reply's id known).
    const gate = this.#gates.open(entry.key);
    try {
      switch (event.kind) {
        case "command":
          return await this.#workCommand(event.payload, entry.key);
        case "click":
          return await this.#workClick(event.payload, entry.key);
        case "message":
          return await this.#workMessage(event.payload, entry.key);
        default:
          this.#log.warn({ kind: entry.kind }, "unknown discord event in the inbox");
      }
    } catch (error) {
      // Missing permissions will not pass by trying again: say so (`explain`) instead.
      if (!isPermissionError(error)) throw error;
      const channelId = event.kind === "message" ? event.payload.message.channelId : event.payload.channelId;
      throw new AppError("unauthorized_channel", "missing permissions", {
        userMessage: missingPermissionsText(channelId, []),
        cause: error,
      });
    } finally {
      gate.open();
    }
  }

  /**
   * Messages written in our threads while the bot was down (or while it reconnected): the threads active in
   * the last day are read back from their last known message, and what is new is worked like any message.
   */
  async catchUp(): Promise<void> {
    const since = Date.now() - CATCH_UP_MS;
    let read = 0;
    for (const thread of await this.#engine.listThreads("discord", CATCH_UP_THREADS)) {
      if (thread.updatedAt.getTime() < since) break;
      const meta = discordMeta(thread);
      if (!meta?.threadId) continue;
      // A thread in a channel the bot no longer serves is not read: its messages would be refused at every start.
      if (!this.#options.access.allows("discord", { workspaceId: meta.guildId, channelId: meta.channelId }))
        continue;
      const channel = await this.#client.channels.fetch(meta.threadId).catch(() => null);
      if (!channel?.isThread()) continue;
      const after = SnowflakeUtil.generate({ timestamp: since });
      const fetched = await channel.messages
        .fetch({
          after: (after > BigInt(meta.threadId) ? after : BigInt(meta.threadId)).toString(),
          limit: 100,
        })
        .catch(() => null);
      if (!fetched) continue;
      // Oldest first (by id: two messages can share a millisecond), so a thread's edits are recorded in the
      // order they were written.
      for (const message of [...fetched.values()].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1))) {
        read += 1;
        await this.#onMessage(fromMessage(message));
      }
    }
    this.#log.info({ read }, "read back the messages written in our threads");
  }

  // -------------------------------------------------------------------------------------------------------
  // "Draw it for about $X?"
  // -------------------------------------------------------------------------------------------------------

  /**
   * Asks before a costly request: a /imagine's "thinking…" reply becomes the question (and, once answered, the
   * image); a click is asked privately; a message is answered in its thread. Only the asker's answer counts.
   */
  async ask(entry: InboxEntry, question: AppError): Promise<void> {
    const event = { kind: entry.kind, payload: entry.payload } as DiscordEvent;
    if (event.kind === "message") {
      const { message } = event.payload;
      const channel = await textChannel(this.#client, message.channelId);
      if (!channel) throw new Error(`channel ${message.channelId} is gone`);
      await channel.send({
        content: `<@${message.authorId}> ${question.userMessage}`,
        components: confirmComponents(entry.id, message.authorId),
        reply: { messageReference: message.id, failIfNotExists: false },
        allowedMentions: { users: [message.authorId] },
        nonce: `q${message.id}`.slice(0, 25),
        enforceNonce: true,
      });
      return;
    }
    const { applicationId, token, userId } = event.payload;
    const webhook = new InteractionWebhook(this.#client as Client<true>, applicationId, token);
    const components = confirmComponents(entry.id, userId);
    if (event.kind === "command")
      await webhook.editMessage("@original", { content: question.userMessage, components });
    else await webhook.send({ content: question.userMessage, components, flags: MessageFlags.Ephemeral });
  }

  async #onConfirm(interaction: ButtonInteraction): Promise<void> {
    const target = decodeConfirmId(interaction.customId);
    if (!target) return;
    if (interaction.user.id !== target.userId) {
      await replyPrivately(interaction, this.#log, `✖ ${NOT_YOURS}`);
      return;
    }
    const answered = (content: string) =>
      interaction
        .update({ content, components: [] })
        .catch((error: unknown) => this.#log.warn({ err: error }, "could not answer a confirmation"));
    if (target.answer === "decline") {
      const declined = await this.#worker.decline(target.entryId);
      await answered(declined ? "Not drawn." : `✖ ${ANSWERED}`);
      return;
    }
    // The answer first: the work that follows edits this same message (a /imagine's reply) into the image.
    const confirmed = await this.#worker.confirm(target.entryId);
    await answered(confirmed ? "✔ Drawing it." : `✖ ${ANSWERED}`);
  }

  /**
   * Cancel on a turn's status: done before the acknowledgement (one update), which then changes nothing — the
   * engine's delivery shows the turn canceled. A refusal is said privately.
   */
  async #onCancel(interaction: ButtonInteraction): Promise<void> {
    const turnId = interaction.customId.slice("tcx:".length);
    if (!TURN_ID.test(turnId)) return;
    try {
      if (!(await this.#serves(interaction.guildId ?? "", interaction.channelId))) throw notEnabled();
      await this.#engine.cancel(turnId, interaction.user.id);
    } catch (error) {
      await this.#replyEphemeral(interaction, error, "cancel");
      return;
    }
    await interaction
      .deferUpdate()
      .catch((error: unknown) => this.#log.warn({ err: error }, "could not acknowledge a cancel"));
  }

  // -------------------------------------------------------------------------------------------------------
  // /canvas usage
  // -------------------------------------------------------------------------------------------------------

  /** `/canvas usage`: read-only, answered privately at once (nothing to record). A thread counts as its channel. */
  async #onCanvas(interaction: ChatInputCommandInteraction<"cached" | "raw" | undefined>): Promise<void> {
    const guildId = interaction.guildId ?? "";
    if (!(await this.#serves(guildId, interaction.channelId))) {
      await this.#replyEphemeral(interaction, notEnabled(), "canvas");
      return;
    }
    try {
      const channel = interaction.channel;
      const answer = await this.#engine.usage({
        platform: "discord",
        userId: interaction.user.id,
        workspaceId: guildId,
        channelId: (channel?.isThread() ? channel.parentId : null) ?? interaction.channelId,
      });
      await replyPrivately(interaction, this.#log, usageText(answer));
    } catch (error) {
      await this.#replyEphemeral(interaction, error, "canvas");
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // /imagine
  // -------------------------------------------------------------------------------------------------------

  /**
   * `/imagine`: validate, write it to the inbox, then acknowledge (defer) and work it — so an acknowledged
   * command is never lost: a crash before the insert leaves Discord saying "did not respond" (and the person
   * tries again); after it, the command is recorded whatever happens next. Invalid input is answered with an
   * ephemeral reply before anything is written.
   */
  async #onImagine(interaction: ChatInputCommandInteraction<"cached" | "raw" | undefined>): Promise<void> {
    const receivedAt = Date.now();
    const arrived = performance.now();
    if (!(await this.#serves(interaction.guildId ?? "", interaction.channelId))) {
      await this.#replyEphemeral(interaction, notEnabled(), "imagine");
      return;
    }
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
    const event: CommandEvent = { ...interactionFacts(interaction, receivedAt), ...request };
    const entry = await this.#worker.receive("command", commandKey(interaction.id), event);
    const replyMessageId = await acknowledgeInteraction(interaction, this.#log, () =>
      interaction.deferReply({ withResponse: true }).then((r) => r.resource?.message?.id ?? null),
    );
    this.#acknowledged(arrived);
    if (entry)
      await this.#worker.work({
        ...entry,
        payload: { ...event, ...(replyMessageId ? { replyMessageId } : {}) },
      });
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

  async #workCommand(command: CommandEvent & Confirmed, key: string): Promise<void> {
    const references = command.attachment
      ? [await downloadAttachment(command.attachment, this.#options.download)]
      : [];
    const meta: DiscordThreadMeta = {
      guildId: command.guildId,
      channelId: command.channelId,
      ...(command.uploadLimit ? { uploadLimit: command.uploadLimit } : {}),
      interaction: {
        id: command.id,
        token: command.token,
        applicationId: command.applicationId,
        receivedAt: command.receivedAt,
      },
    };
    const { turn } = await this.#engine.submit({
      threadKey: discordCommandThreadKey(command.guildId, command.channelId, command.id),
      kind: "generate",
      prompt: command.prompt,
      params: command.params,
      userId: command.userId,
      idempotencyKey: key,
      referenceImages: references,
      newThread: { title: command.prompt.slice(0, 200), meta: { ...meta } },
      place: { workspaceId: command.guildId, channelId: command.channelId },
      confirmed: command.confirmed === true,
    });
    if (command.replyMessageId)
      await this.#engine.updateThreadMeta(turn.threadKey, { replyMessageId: command.replyMessageId });
  }

  // -------------------------------------------------------------------------------------------------------
  // Buttons
  // -------------------------------------------------------------------------------------------------------

  /** A click on one of our buttons: written to the inbox, acknowledged silently; the result goes to the thread. */
  async #onButton(interaction: ButtonInteraction<"cached" | "raw" | undefined>): Promise<void> {
    const arrived = performance.now();
    const target = decodeCustomId(interaction.customId);
    if (!target) return;
    if (!(await this.#serves(interaction.guildId ?? "", interaction.channelId))) {
      await this.#replyEphemeral(interaction, notEnabled(), "button");
      return;
    }
    const missing = interaction.appPermissions?.missing([...THREAD_PERMISSIONS]) ?? [];
    if (missing.length > 0) {
      const refusal = new AppError("unauthorized_channel", `missing ${missing.join(", ")}`, {
        userMessage: missingPermissionsText(interaction.channelId, missing),
      });
      await this.#replyEphemeral(interaction, refusal, "button");
      return;
    }
    const event: ClickEvent = { ...interactionFacts(interaction, Date.now()), target };
    const entry = await this.#worker.receive("click", clickKey(interaction.id), event);
    await acknowledgeInteraction(interaction, this.#log, () => interaction.deferUpdate().then(() => "ok"));
    this.#acknowledged(arrived);
    if (entry) await this.#worker.work(entry);
  }

  /** An interaction recorded in the inbox was acknowledged (or Discord refused it, too late): how long it took. */
  #acknowledged(arrived: number): void {
    this.#options.metrics?.acknowledged("discord", (performance.now() - arrived) / 1000);
  }

  async #workClick(click: ClickEvent & Confirmed, key: string): Promise<void> {
    const { image, intent } = await buttonIntent(this.#engine, {
      ...click.target,
      userId: click.userId,
      platform: "discord",
    });
    const meta = discordMeta(await this.#engine.getThread(image.threadKey));
    // A button copied into another server acts on nothing there.
    if (!meta || meta.guildId !== click.guildId)
      throw new AppError("image_not_found", "other server", {
        userMessage: "That image is no longer available.",
      });
    const submitted = await this.#engine.submit({
      ...intent,
      idempotencyKey: key,
      confirmed: click.confirmed === true,
    });
    const { turn } = submitted;
    if (click.uploadLimit)
      await this.#engine.updateThreadMeta(turn.threadKey, { uploadLimit: click.uploadLimit });
    if (!submitted.created) return;
    try {
      const threadId = await this.#threads.ensure(turn.threadKey);
      if (threadId) await this.#delivery.postStatus(submitted, threadId, null);
    } catch (error) {
      this.#log.warn({ err: error }, "button: could not post the status message");
    }
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
    const current = previous.then(() => this.#receiveMessage(message));
    const settled = current.catch(() => {});
    this.#channelQueues.set(message.channelId, settled);
    void settled.then(() => {
      if (this.#channelQueues.get(message.channelId) === settled)
        this.#channelQueues.delete(message.channelId);
    });
    await current;
  }

  /** Which thread a message edits (if any); then into the inbox, and worked. */
  async #receiveMessage(message: IncomingMessage): Promise<void> {
    const guildId = message.guildId ?? "";
    const thread = message.inThread ? await this.#threads.ofChannel(guildId, message.channelId) : null;
    const target = message.referenceId ? await this.#imageShownBy(message) : null;
    const threadKey = target?.threadKey ?? thread?.key;
    if (!threadKey) return;
    if (target && discordMeta(await this.#engine.getThread(target.threadKey))?.guildId !== guildId) return;
    if (!(await this.#serves(guildId, message.channelId))) {
      await tellPrivately(this.#client, this.#log, message.authorId, `✖ ${notEnabled().userMessage}`);
      return;
    }
    const { referenced: _read, ...kept } = message;
    const event: MessageEvent = { message: kept, threadKey, targetImageId: target?.id ?? null };
    const entry = await this.#worker.receive("message", messageKey(message.id), event);
    if (entry) await this.#worker.work(entry);
  }

  async #workMessage(event: MessageEvent & Confirmed, key: string): Promise<void> {
    const { message } = event;
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
      threadKey: event.threadKey,
      kind: "edit",
      prompt,
      params,
      userId: message.authorId,
      sourceMessageId: `${message.channelId}/${message.id}`,
      idempotencyKey: key,
      targetImageId: event.targetImageId,
      referenceImages,
      confirmed: event.confirmed === true,
    });
    if (submitted.created) await this.#delivery.postStatus(submitted, message.channelId, message.id);
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

  /**
   * Tells the person why an event they sent came to nothing: privately through the interaction's token (a
   * command's public "thinking…" is taken back first), or, for a message, in a reply where it was written.
   */
  async explain(entry: InboxEntry, error: AppError): Promise<void> {
    const event = { kind: entry.kind, payload: entry.payload } as DiscordEvent;
    if (event.kind === "message") return this.#replyError(event.payload.message, error);
    const content = `✖ ${userMessage(error, this.#log, event.kind)}`;
    const { applicationId, token } = event.payload;
    const webhook = new InteractionWebhook(this.#client as Client<true>, applicationId, token);
    if (event.kind === "command") await webhook.deleteMessage("@original").catch(() => {});
    await webhook
      .send({ content, flags: MessageFlags.Ephemeral })
      .catch((failure: unknown) => this.#log.warn({ err: failure }, "could not explain a failed request"));
  }

  /**
   * A message's problem (bad flag, bad attachment) is answered in a reply where it was written; where the bot
   * may not post, by direct message.
   */
  async #replyError(message: MessageEvent["message"], error: AppError): Promise<void> {
    const noPermission = `✖ ${missingPermissionsText(message.channelId, [])}`;
    if (error.code === "unauthorized_channel") {
      await tellPrivately(this.#client, this.#log, message.authorId, `✖ ${error.userMessage}`);
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

/** The facts of an interaction the inbox keeps. */
function interactionFacts(
  interaction: ChatInputCommandInteraction | ButtonInteraction,
  receivedAt: number,
): InteractionFacts {
  return {
    id: interaction.id,
    token: interaction.token,
    applicationId: interaction.applicationId,
    guildId: interaction.guildId ?? "",
    channelId: interaction.channelId,
    userId: interaction.user.id,
    receivedAt,
    uploadLimit: interaction.attachmentSizeLimit ?? null,
  };
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
