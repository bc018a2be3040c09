import type { App, Context } from "@slack/bolt";
import type { WebClient } from "@slack/web-api";
import { type AccessPolicy, notEnabled } from "../../src/access.ts";
import type { ThreadKey } from "../../src/domain.ts";
import { AppError, asAppError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { WorkMetrics } from "../../src/metrics.ts";
import type { ConversationEngine, ImageInput, InboxEntry, Intent } from "../../src/ports.ts";
import { parseImagineText } from "../../src/request/flags.ts";
import { imageFormatOf } from "../shared/files.ts";
import { ANSWERED, type ButtonAction, buttonIntent, NOT_YOURS, userMessage } from "../shared/inbound.ts";
import type { InboxWorker } from "../shared/inbox.ts";
import { TURN_ID } from "../shared/render.ts";
import { usageText } from "../shared/usage.ts";
import { respondPrivately, withRateLimits } from "./client.ts";
import type { SlackDelivery } from "./delivery.ts";
import { downloadSlackImage, type SlackFile } from "./files.ts";
import {
  buttonActionOf,
  CANCEL_ACTION,
  CONFIRM_ACTION,
  confirmBlocks,
  DECLINE_ACTION,
  decodeButtonValue,
  decodeConfirmValue,
} from "./render.ts";
import {
  clickKey,
  commandKey,
  messageKey,
  type NewRoot,
  type SlackThreads,
  slackCommandThreadKey,
  slackThreadKey,
} from "./threads.ts";

/**
 * Slack → engine: `/imagine`, mentions, replies in our threads and clicks on our buttons become intents. Each is
 * written to the inbox, then acknowledged, then worked from the inbox (`shared/inbox.ts`): downloads, checks
 * and recording the turn happen after Slack has its answer, and are taken over by another pass if this process
 * dies first. Bad input is answered privately (ephemeral) and records nothing: flags at once, in the
 * acknowledgement; anything found while working through `response_url` or an ephemeral message.
 *
 * A little past our usual ~400 lines: besides the four ways in, the answers to our own questions and statuses
 * (`/canvas usage`, "Draw it" / Cancel on a confirmation, Cancel on a turn) are registered here, beside the
 * access check and the private replies they share.
 */

export interface SlackInboundOptions {
  /** Posts, never retried by the SDK (`client.ts`). */
  posts: WebClient;
  engine: ConversationEngine;
  threads: SlackThreads;
  delivery: SlackDelivery;
  logger: Logger;
  /** Sent with attachment downloads, and only to `allowedHosts`. */
  botToken: string;
  allowedHosts: ReadonlySet<string>;
  maxAttachmentBytes: number;
  /** Which teams and channels the bot serves. */
  access: AccessPolicy;
  /** Times each recorded event's acknowledgement (`/metrics`). */
  metrics?: Pick<WorkMetrics, "acknowledged"> | undefined;
}

/** Where the middleware below notes when an event reached the process (`performance.now()`). */
const ARRIVED = "threadcanvasArrivedAt";

const CANVAS_HELP =
  "`/canvas usage`: what you, this channel and this workspace have spent, against the budgets.";

/** What a person's message asks for: a new thread (a mention) or an edit (a reply in one of our threads). */
interface MessageRequest {
  team: string;
  channel: string;
  user: string;
  ts: string;
  threadKey: ThreadKey;
  /** The thread's root ts, for replies: where an error about this message is shown. */
  threadTs?: string;
  kind: "generate" | "edit";
  text: string;
  files: SlackFile[];
  newThread?: Intent["newThread"];
  /** Set by the inbox when the person answered "Draw it". */
  confirmed?: boolean;
}

interface CommandRequest {
  team: string;
  channel: string;
  user: string;
  text: string;
  triggerId: string;
  responseUrl: string;
  confirmed?: boolean;
}

interface ClickRequest {
  action: ButtonAction;
  actionId: string;
  imageId: string;
  user: string;
  triggerId: string;
  responseUrl?: string;
  confirmed?: boolean;
}

/** What the inbox keeps of each Slack event: enough to work it from the database alone. */
type SlackEvent =
  | { kind: "command"; payload: CommandRequest }
  | { kind: "message"; payload: MessageRequest }
  | { kind: "click"; payload: ClickRequest };

export class SlackInbound {
  readonly #options: SlackInboundOptions;
  readonly #log: Logger;
  #inbox: InboxWorker | undefined;

  constructor(options: SlackInboundOptions) {
    this.#options = options;
    this.#log = options.logger;
  }

  /** The listeners on `app`; events are recorded in `inbox`, and worked by `work`. */
  register(app: App, inbox: InboxWorker): void {
    this.#inbox = inbox;
    const { threads } = this.#options;
    const log = this.#log;

    // First, before any listener reads the database: when the event arrived, for the acknowledgement's latency.
    app.use(async ({ context, next }) => {
      context[ARRIVED] = performance.now();
      await next();
    });

    app.command("/imagine", async ({ command, ack, context }) => {
      try {
        if (!this.#allowed(command.team_id, command.channel_id)) throw notEnabled();
        parseImagineText(command.text);
      } catch (error) {
        await ack({ response_type: "ephemeral", text: `✖ ${userMessage(error, log, "imagine")}` });
        return;
      }
      await this.#receive(
        {
          kind: "command",
          payload: {
            team: command.team_id,
            channel: command.channel_id,
            user: command.user_id,
            text: command.text,
            triggerId: command.trigger_id,
            responseUrl: command.response_url,
          },
        },
        commandKey(command.trigger_id),
        context,
        () => ack(),
      );
    });

    // `/canvas usage`: read-only, answered in the acknowledgement itself (nothing to record, nothing to lose).
    app.command("/canvas", async ({ command, ack }) => {
      let text: string;
      try {
        if (!this.#allowed(command.team_id, command.channel_id)) throw notEnabled();
        const words = command.text.trim().toLowerCase();
        if (words === "" || words === "help") text = CANVAS_HELP;
        else if (words === "usage") {
          const answer = await this.#options.engine.usage({
            platform: "slack",
            userId: command.user_id,
            workspaceId: command.team_id,
            channelId: command.channel_id,
          });
          text = usageText(answer);
        } else text = `✖ Unknown subcommand "${command.text.trim().slice(0, 40)}".\n${CANVAS_HELP}`;
      } catch (error) {
        text = `✖ ${userMessage(error, log, "canvas")}`;
      }
      await ack({ response_type: "ephemeral", text });
    });

    app.event("app_mention", async ({ event, context, body }) => {
      // Bots (another integration quoting us, a workflow) never start a thread: only people spend the key.
      if (event.bot_id || !event.user) return;
      const team = context.teamId ?? body.team_id;
      // A mention inside one of our threads also arrives as a `message` event, which handles it.
      if (event.thread_ts && (await threads.known(team, event.channel, event.thread_ts))) return;
      // Inside someone else's thread, that thread becomes ours: the result goes there, and later replies in it
      // (which carry its thread_ts) find it by its key.
      const rootTs = event.thread_ts ?? event.ts;
      const text = stripMention(event.text ?? "", context.botUserId);
      if (!this.#allowed(team, event.channel)) {
        await this.#tellNotEnabled(event.channel, event.user, event.thread_ts);
        return;
      }
      await this.#receiveMessage(context, {
        team,
        channel: event.channel,
        user: event.user,
        ts: event.ts,
        threadKey: slackThreadKey(team, event.channel, rootTs),
        kind: "generate",
        text,
        files: filesOf(event),
        newThread: {
          title: text.slice(0, 200),
          meta: { team, channel: event.channel, rootTs, rootIsOurs: false },
        },
      });
    });

    app.event("message", async ({ event, context, body }) => {
      const message = event as {
        subtype?: string;
        bot_id?: string;
        user?: string;
        text?: string;
        ts: string;
        thread_ts?: string;
        channel: string;
        files?: SlackFile[];
      };
      // Only people's new messages in a thread: no bots (ourselves included), no edits or deletions. A reply also
      // sent to the channel ("thread_broadcast") is a reply like any other.
      if (message.subtype && !REPLY_SUBTYPES.has(message.subtype)) return;
      if (message.bot_id || !message.user || message.user === context.botUserId) return;
      if (!message.thread_ts || message.thread_ts === message.ts) return;
      const team = context.teamId ?? body.team_id;
      const thread = await threads.known(team, message.channel, message.thread_ts);
      if (!thread) return;
      if (!this.#allowed(team, message.channel)) {
        await this.#tellNotEnabled(message.channel, message.user, message.thread_ts);
        return;
      }
      await this.#receiveMessage(context, {
        team,
        channel: message.channel,
        user: message.user,
        ts: message.ts,
        threadKey: thread.key,
        threadTs: message.thread_ts,
        kind: "edit",
        text: stripMention(message.text ?? "", context.botUserId),
        files: filesOf(message),
      });
    });

    this.#registerConfirmations(app);

    // Cancel on a turn's status: done before the acknowledgement (one update); a refusal is said privately.
    app.action(CANCEL_ACTION, async ({ action, ack, body, respond }) => {
      const turnId = (action as { value?: string }).value ?? "";
      const where = body as { team?: { id?: string } | null; channel?: { id?: string } };
      try {
        if (!TURN_ID.test(turnId)) throw new AppError("turn_not_found", `bad turn id ${turnId}`);
        if (!this.#allowed(where.team?.id ?? "", where.channel?.id ?? "")) throw notEnabled();
        await this.#options.engine.cancel(turnId, body.user.id);
      } catch (error) {
        if (asAppError(error).code === "internal") throw error; // not acknowledged: Slack shows the failure
        await ack();
        await respond({
          response_type: "ephemeral",
          replace_original: false,
          text: `✖ ${userMessage(error, log, "cancel")}`,
        }).catch((failure: unknown) => log.warn({ err: failure }, "could not say why a cancel was refused"));
        return;
      }
      await ack();
    });

    app.action(/^tc_/, async ({ action, ack, body, context }) => {
      const actionId = (action as { action_id: string }).action_id;
      const value = decodeButtonValue((action as { value?: string }).value);
      const buttonAction = buttonActionOf(actionId);
      if (!value || !buttonAction) return await ack();
      const triggerId = (body as { trigger_id?: string }).trigger_id ?? `${actionId}:${Date.now()}`;
      const responseUrl = (body as { response_url?: string }).response_url;
      const where = body as { team?: { id?: string } | null; channel?: { id?: string } };
      if (!this.#allowed(where.team?.id ?? "", where.channel?.id ?? "")) {
        await ack();
        if (responseUrl)
          await respondPrivately(responseUrl, `✖ ${notEnabled().userMessage}`, { keepOriginal: true }).catch(
            (error: unknown) => log.warn({ err: error }, "could not say the bot is not enabled here"),
          );
        return;
      }
      await this.#receive(
        {
          kind: "click",
          payload: {
            action: buttonAction,
            actionId,
            imageId: value.i,
            user: body.user.id,
            triggerId,
            ...(responseUrl ? { responseUrl } : {}),
          },
        },
        clickKey(triggerId),
        context,
        () => ack(),
      );
    });
  }

  /**
   * "Draw it" / "Cancel" under "Draw it for about $X?": only the person asked may answer, once; the question is
   * replaced by what happens. The parked event is worked after the acknowledgement.
   */
  #registerConfirmations(app: App): void {
    const log = this.#log;
    app.action(
      new RegExp(`^(${CONFIRM_ACTION}|${DECLINE_ACTION})$`),
      async ({ action, ack, body, respond }) => {
        await ack();
        const actionId = (action as { action_id: string }).action_id;
        const value = decodeConfirmValue((action as { value?: string }).value);
        const say = (text: string, replace: boolean) =>
          respond({ response_type: "ephemeral", replace_original: replace, text }).catch((error: unknown) =>
            log.warn({ err: error }, "could not answer a confirmation"),
          );
        if (!value) return;
        if (body.user.id !== value.user) return void (await say(`✖ ${NOT_YOURS}`, false));
        const inbox = this.#inboxWorker();
        if (actionId === DECLINE_ACTION) {
          const declined = await inbox.decline(value.entryId);
          return void (await say(declined ? "Not drawn." : `✖ ${ANSWERED}`, true));
        }
        const confirmed = await inbox.confirm(value.entryId);
        await say(confirmed ? "✔ Drawing it." : `✖ ${ANSWERED}`, true);
      },
    );
  }

  /**
   * Records the event, acknowledges it (over HTTP and in Socket Mode the acknowledgement leaves when the
   * handler returns, `client.ts`), then works it without holding the handler.
   */
  async #receive(event: SlackEvent, key: string, context: Context, ack?: () => Promise<void>): Promise<void> {
    const inbox = this.#inboxWorker();
    const entry = await inbox.receive(event.kind, key, event.payload);
    await ack?.();
    // An event without `ack` is acknowledged as this returns, just after.
    const arrived = context[ARRIVED];
    if (typeof arrived === "number")
      this.#options.metrics?.acknowledged("slack", (performance.now() - arrived) / 1000);
    if (entry) void inbox.work(entry);
  }

  #allowed(team: string, channel: string): boolean {
    return this.#options.access.allows("slack", { workspaceId: team, channelId: channel });
  }

  /** Tells a person, privately, that the bot does not serve this channel. */
  async #tellNotEnabled(channel: string, user: string, threadTs: string | undefined): Promise<void> {
    await withRateLimits(() =>
      this.#options.posts.chat.postEphemeral({
        channel,
        user,
        thread_ts: threadTs,
        text: `✖ ${notEnabled().userMessage}`,
      }),
    ).catch((error: unknown) => this.#log.warn({ err: error }, "could not say the bot is not enabled here"));
  }

  #receiveMessage(context: Context, request: MessageRequest): Promise<void> {
    // The message itself is the key, so Slack's retries of the same event (or a mention that is also a
    // message) make one turn.
    return this.#receive(
      { kind: "message", payload: request },
      messageKey(request.team, request.channel, request.ts),
      context,
    );
  }

  #inboxWorker(): InboxWorker {
    if (!this.#inbox) throw new Error("SlackInbound.register was not called");
    return this.#inbox;
  }

  /** Works one recorded event (see `InboxWorkerOptions.work`): downloads, checks, records its turn. */
  async work(entry: InboxEntry): Promise<void> {
    const event = { kind: entry.kind, payload: entry.payload } as SlackEvent;
    switch (event.kind) {
      case "command":
        return await this.#workCommand(event.payload, entry.key);
      case "message":
        return await this.#workMessage(event.payload, entry.key);
      case "click":
        return await this.#workClick(event.payload, entry.key);
      default:
        this.#log.warn({ kind: entry.kind }, "unknown slack event in the inbox");
    }
  }

  /** Says privately, to whoever sent the event, why it came to nothing. */
  async explain(entry: InboxEntry, error: AppError): Promise<void> {
    const event = { kind: entry.kind, payload: entry.payload } as SlackEvent;
    await this.#tell(event, `✖ ${userMessage(error, this.#log, event.kind)}`);
  }

  async #workCommand(command: CommandRequest, key: string): Promise<void> {
    const { engine, threads } = this.#options;
    const { prompt, params } = parseImagineText(command.text);
    const threadKey = slackCommandThreadKey(command.team, command.channel, command.triggerId);
    const { turn } = await engine.submit({
      threadKey,
      kind: "generate",
      prompt,
      params,
      userId: command.user,
      idempotencyKey: key,
      place: { workspaceId: command.team, channelId: command.channel },
      confirmed: command.confirmed === true,
      newThread: {
        title: prompt.slice(0, 200),
        meta: { team: command.team, channel: command.channel, rootIsOurs: true, rootPosting: true },
      },
    });
    // The root message follows the recording; if this process dies first, the worker posts it.
    const root: NewRoot = {
      team: command.team,
      channel: command.channel,
      userId: command.user,
      prompt,
      params,
      turnId: turn.id,
    };
    void threads.rooted(threadKey, root).catch(() => {});
  }

  async #workMessage(request: MessageRequest, key: string): Promise<void> {
    const { prompt, params } = parseImagineText(request.text);
    const referenceImages: ImageInput[] = [];
    for (const file of request.files) {
      const bytes = await downloadSlackImage(file, {
        botToken: this.#options.botToken,
        allowedHosts: this.#options.allowedHosts,
        maxBytes: this.#options.maxAttachmentBytes,
      });
      // The download refuses any other type; the engine checks the bytes themselves.
      referenceImages.push({ bytes, format: imageFormatOf(file.mimetype) ?? "png" });
    }
    await this.#submitAndShow({
      threadKey: request.threadKey,
      kind: request.kind,
      prompt,
      params,
      userId: request.user,
      sourceMessageId: request.ts,
      idempotencyKey: key,
      referenceImages,
      newThread: request.newThread,
      place: { workspaceId: request.team, channelId: request.channel },
      confirmed: request.confirmed === true,
    });
  }

  async #workClick(click: ClickRequest, key: string): Promise<void> {
    // The image decides the thread.
    const { intent } = await buttonIntent(this.#options.engine, {
      action: click.action,
      imageId: click.imageId,
      userId: click.user,
      platform: "slack",
    });
    await this.#submitAndShow({ ...intent, idempotencyKey: key, confirmed: click.confirmed === true });
  }

  /** Submits, then shows the new turn's status line in its thread. */
  async #submitAndShow(intent: Intent): Promise<void> {
    const { turn, created, position } = await this.#options.engine.submit(intent);
    if (created) this.#options.delivery.showQueued(turn, position);
  }

  /** "Draw it for about $X?" with Draw it / Cancel, privately to the sender; throws when it cannot be asked. */
  async ask(entry: InboxEntry, question: AppError): Promise<void> {
    const event = { kind: entry.kind, payload: entry.payload } as SlackEvent;
    const text = question.userMessage;
    const blocks = confirmBlocks(text, entry.id, event.payload.user);
    switch (event.kind) {
      case "command":
        return respondPrivately(event.payload.responseUrl, text, { blocks });
      case "click":
        if (!event.payload.responseUrl) throw new Error("a click without a response_url cannot be answered");
        return respondPrivately(event.payload.responseUrl, text, { keepOriginal: true, blocks });
      case "message": {
        const request = event.payload;
        await withRateLimits(() =>
          this.#options.posts.chat.postEphemeral({
            channel: request.channel,
            user: request.user,
            thread_ts: request.kind === "edit" ? (request.threadTs ?? undefined) : undefined,
            text,
            blocks,
          }),
        );
      }
    }
  }

  async #tell(event: SlackEvent, text: string): Promise<void> {
    const log = this.#log;
    const failed = (error: unknown) => log.warn({ err: error }, "could not explain a failed request");
    switch (event.kind) {
      case "command":
        await respondPrivately(event.payload.responseUrl, text).catch(failed);
        return;
      case "click":
        if (event.payload.responseUrl)
          await respondPrivately(event.payload.responseUrl, text, { keepOriginal: true }).catch(failed);
        return;
      case "message": {
        const request = event.payload;
        await withRateLimits(() =>
          this.#options.posts.chat.postEphemeral({
            channel: request.channel,
            user: request.user,
            thread_ts: request.kind === "edit" ? (request.threadTs ?? undefined) : undefined,
            text,
          }),
        ).catch(failed);
      }
    }
  }
}

/** The files of a message, as much of each as a download needs. */
function filesOf(message: { files?: SlackFile[] }): SlackFile[] {
  return (message.files ?? []).map(({ id, name, mimetype, size, url_private, url_private_download }) => ({
    id,
    name,
    mimetype,
    size,
    url_private,
    url_private_download,
  }));
}

/** Message subtypes that are still a person's new reply: with files, or also sent to the channel. */
const REPLY_SUBTYPES = new Set(["file_share", "thread_broadcast"]);

/** `<@U0BOT> make it blue` → `make it blue`. */
function stripMention(text: string, botUserId: string | undefined): string {
  return botUserId ? text.replaceAll(`<@${botUserId}>`, "").trim() : text.trim();
}
