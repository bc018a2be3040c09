import type { App } from "@slack/bolt";
import type { WebClient } from "@slack/web-api";
import type { ThreadKey } from "../../src/domain.ts";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine, ImageInput, Intent } from "../../src/ports.ts";
import { parseImagineText } from "../../src/request/flags.ts";
import { imageFormatOf } from "../shared/files.ts";
import { buttonIntent, recordThenAcknowledge, userMessage } from "../shared/inbound.ts";
import { respondPrivately, withRateLimits } from "./client.ts";
import type { SlackDelivery } from "./delivery.ts";
import { downloadSlackImage, type SlackFile } from "./files.ts";
import { buttonActionOf, decodeButtonValue } from "./render.ts";
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
 * recorded, then acknowledged; bad input is answered privately (ephemeral) and records nothing.
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
  /** How long a command or click may take to be recorded before it is acknowledged anyway (Slack allows 3 s). */
  ackGuardMs?: number;
}

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
}

export function registerSlackInbound(app: App, options: SlackInboundOptions): void {
  const { engine, threads, delivery } = options;
  const log = options.logger;
  const guardMs = options.ackGuardMs;
  const posts = options.posts;

  /** Submits, then shows the new turn's status line in its thread. */
  const submitAndShow = async (intent: Intent): Promise<void> => {
    const { turn, created, position } = await engine.submit(intent);
    if (created) delivery.showQueued(turn, position);
  };

  const submitFromMessage = async (request: MessageRequest): Promise<void> => {
    try {
      const { prompt, params } = parseImagineText(request.text);
      const referenceImages: ImageInput[] = [];
      for (const file of request.files) {
        const bytes = await downloadSlackImage(file, {
          botToken: options.botToken,
          allowedHosts: options.allowedHosts,
          maxBytes: options.maxAttachmentBytes,
        });
        // The download refuses any other type; the engine checks the bytes themselves.
        referenceImages.push({ bytes, format: imageFormatOf(file.mimetype) ?? "png" });
      }
      await submitAndShow({
        threadKey: request.threadKey,
        kind: request.kind,
        prompt,
        params,
        userId: request.user,
        sourceMessageId: request.ts,
        // The message itself, so Slack's retries of the same event (or a mention that is also a message) make one turn.
        idempotencyKey: messageKey(request.team, request.channel, request.ts),
        referenceImages,
        newThread: request.newThread,
      });
    } catch (error) {
      await withRateLimits(() =>
        posts.chat.postEphemeral({
          channel: request.channel,
          user: request.user,
          thread_ts: request.kind === "edit" ? (request.threadTs ?? undefined) : undefined,
          text: `✖ ${userMessage(error, log, "message")}`,
        }),
      ).catch((postError: unknown) => log.warn({ err: postError }, "could not post ephemeral error"));
    }
  };

  app.command("/imagine", async ({ command, ack }) => {
    let parsed: ReturnType<typeof parseImagineText>;
    try {
      parsed = parseImagineText(command.text);
    } catch (error) {
      await ack({ response_type: "ephemeral", text: `✖ ${userMessage(error, log, "imagine")}` });
      return;
    }
    const { prompt, params } = parsed;
    const threadKey = slackCommandThreadKey(command.team_id, command.channel_id, command.trigger_id);
    const root: NewRoot = {
      team: command.team_id,
      channel: command.channel_id,
      userId: command.user_id,
      prompt,
      params,
    };
    const { outcome } = await recordThenAcknowledge({
      recording: engine.submit({
        threadKey,
        kind: "generate",
        prompt,
        params,
        userId: command.user_id,
        idempotencyKey: commandKey(command.trigger_id),
        newThread: {
          title: prompt.slice(0, 200),
          meta: { team: command.team_id, channel: command.channel_id, rootIsOurs: true, rootPosting: true },
        },
      }),
      guardMs,
      refuse: (error) => ack({ response_type: "ephemeral", text: `✖ ${userMessage(error, log, "imagine")}` }),
      acknowledge: () => ack(),
      explainLate: (error) =>
        respondPrivately(command.response_url, `✖ ${userMessage(error, log, "imagine")}`).catch(
          (failure: unknown) => log.warn({ err: failure }, "could not explain a failed command"),
        ),
    });
    // Over HTTP the acknowledgement is sent only when this handler returns: nothing after it is awaited here.
    // The root message follows the acknowledgement; if this process dies first, the worker posts it.
    void outcome.then((recorded) =>
      recorded.ok ? threads.rooted(threadKey, root).catch(() => {}) : undefined,
    );
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
    await submitFromMessage({
      team,
      channel: event.channel,
      user: event.user,
      ts: event.ts,
      threadKey: slackThreadKey(team, event.channel, rootTs),
      kind: "generate",
      text,
      files: (event as { files?: SlackFile[] }).files ?? [],
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
    await submitFromMessage({
      team,
      channel: message.channel,
      user: message.user,
      ts: message.ts,
      threadKey: thread.key,
      threadTs: message.thread_ts,
      kind: "edit",
      text: stripMention(message.text ?? "", context.botUserId),
      files: message.files ?? [],
    });
  });

  app.action(/^tc_/, async ({ action, ack, body }) => {
    const actionId = (action as { action_id: string }).action_id;
    const value = decodeButtonValue((action as { value?: string }).value);
    const buttonAction = buttonActionOf(actionId);
    if (!value || !buttonAction) return await ack();
    const responseUrl = (body as { response_url?: string }).response_url;
    const explain = async (error: unknown) => {
      const text = `✖ ${userMessage(error, log, actionId)}`;
      if (!responseUrl) return;
      await respondPrivately(responseUrl, text, { keepOriginal: true }).catch((failure: unknown) =>
        log.warn({ err: failure }, "could not explain a failed click"),
      );
    };
    const triggerId = (body as { trigger_id?: string }).trigger_id ?? `${actionId}:${Date.now()}`;
    const recording = (async () => {
      // The image decides the thread (a value's `t` names it too, for buttons posted by older versions).
      const { intent } = await buttonIntent(engine, {
        action: buttonAction,
        imageId: value.i,
        userId: body.user.id,
        platform: "slack",
      });
      await submitAndShow({ ...intent, idempotencyKey: clickKey(triggerId) });
    })();
    // A click gets no visible acknowledgement, so a refusal is an acknowledgement and an explanation.
    await recordThenAcknowledge({
      recording,
      guardMs,
      refuse: async (error) => {
        await ack();
        await explain(error);
      },
      acknowledge: () => ack(),
      explainLate: explain,
    });
  });
}

/** Message subtypes that are still a person's new reply: with files, or also sent to the channel. */
const REPLY_SUBTYPES = new Set(["file_share", "thread_broadcast"]);

/** `<@U0BOT> make it blue` → `make it blue`. */
function stripMention(text: string, botUserId: string | undefined): string {
  return botUserId ? text.replaceAll(`<@${botUserId}>`, "").trim() : text.trim();
}
