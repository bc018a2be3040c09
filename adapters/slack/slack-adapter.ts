import { Server } from "node:http";
import { App, type Logger as BoltLogger, LogLevel } from "@slack/bolt";
import type { WebClient } from "@slack/web-api";
import { ACK_GUARD_MS, settle, withDeadline } from "../../src/deadline.ts";
import {
  type ImageInput,
  type ImageParams,
  imageFileName,
  type Thread,
  type ThreadKey,
  type Turn,
} from "../../src/domain.ts";
import type { ConversationEngine, Intent, TurnEvent } from "../../src/engine-types.ts";
import { AppError, asAppError } from "../../src/errors.ts";
import { parseImagineText } from "../../src/flags.ts";
import type { HttpRoute } from "../../src/http-server.ts";
import type { Logger } from "../../src/logger.ts";
import { allowedFileHosts, downloadSlackImage, type SlackFile } from "./files.ts";
import {
  ACTION_IDS,
  decodeButtonValue,
  failureMessage,
  headMovedMessage,
  resultMessage,
  rootMessage,
  type StatusLine,
  TURN_EVENT_TYPE,
  turnMetadata,
  turnStatusMessage,
} from "./render.ts";

export interface SlackAdapterOptions {
  engine: ConversationEngine;
  logger: Logger;
  botToken: string;
  signingSecret?: string;
  /** `xapp-…`: Socket Mode instead of HTTP. */
  appToken?: string;
  /** Base of Slack's Web API (tests and proxies); Slack's own by default. */
  apiUrl?: string;
  /** HTTP mode: where Bolt listens (`POST /slack/events`), with `routes` beside it. */
  port?: number;
  routes?: readonly HttpRoute[];
  /** Largest attachment used as a reference image. */
  maxAttachmentBytes?: number;
  /**
   * How long a command or click may take to be recorded before it is acknowledged anyway (Slack allows 3 s).
   * Only a burst on a busy database gets near it.
   */
  ackGuardMs?: number;
}

/** Facts about a Slack thread kept in the thread's meta, so any instance can continue it after a restart. */
interface SlackThreadMeta {
  team: string;
  channel: string;
  /**
   * The thread's root message: the user's own for a mention; ours for /imagine, posted just after the command
   * was acknowledged (absent until then).
   */
  rootTs?: string;
  /** True when the root is our message and shows the first turn's status. */
  rootIsOurs: boolean;
  /**
   * Set when the thread is recorded, before our root message is posted: while `rootTs` is missing, a post may
   * have reached Slack from a process that died, so the channel is searched before posting.
   */
  rootPosting?: boolean;
  /** `status:<turnId>` → ts of the message showing that turn's status. */
  [statusKey: `status:${string}`]: string;
}

/** What a /imagine root message shows, and where it goes. */
interface NewRoot {
  team: string;
  channel: string;
  userId: string;
  prompt: string;
  params: Partial<ImageParams>;
}

/** A thread whose root message exists: where replies, uploads and status messages go. */
type RootedMeta = SlackThreadMeta & { rootTs: string };

const statusKey = (turnId: string) => `status:${turnId}` as const;

/** A thread rooted at a message: a mention's thread by its key, a /imagine thread by its alias. */
export function slackThreadKey(team: string, channel: string, rootTs: string): ThreadKey {
  return `slack:${team}:${channel}:${rootTs}`;
}

/** A /imagine thread's key, fixed before its root message exists; the root's `slackThreadKey` becomes an alias. */
export function slackCommandThreadKey(team: string, channel: string, triggerId: string): ThreadKey {
  return `slack:${team}:${channel}:cmd-${triggerId}`;
}

/** Message metadata on our root messages, so a root posted by a process that died is found, not posted again. */
const ROOT_EVENT_TYPE = "threadcanvas_root";

/**
 * Slack in, engine intents out; engine results in, Slack messages out. Holds nothing that matters across a
 * restart: threads, status message ids and button targets live in the store or in the buttons themselves.
 */
export class SlackAdapter {
  readonly app: App;
  readonly #options: SlackAdapterOptions;
  readonly #engine: ConversationEngine;
  readonly #log: Logger;
  readonly #allowedHosts: Set<string>;
  /** Status messages being posted for turns submitted here; progress for a turn waits for its message. */
  readonly #statusPosts = new Map<string, Promise<void>>();
  /** Root messages being posted by this process, by thread key. */
  readonly #rootPosts = new Map<string, Promise<RootedMeta | null>>();
  #botUserId: string | undefined;

  constructor(options: SlackAdapterOptions) {
    this.#options = options;
    this.#engine = options.engine;
    this.#log = options.logger.child({ adapter: "slack" });
    this.#allowedHosts = allowedFileHosts(options.apiUrl);
    const socketMode = Boolean(options.appToken);
    this.app = new App({
      token: options.botToken,
      appToken: options.appToken,
      socketMode,
      signingSecret: socketMode ? undefined : options.signingSecret,
      // Over HTTP, Slack's request is answered only once the handlers are done, so an event is acknowledged
      // after its turn is recorded: a crash before that makes Slack retry it instead of losing it. (Socket
      // Mode acknowledges events before handlers run; Bolt offers no way to wait there.)
      processBeforeResponse: !socketMode,
      port: options.port,
      customRoutes: socketMode ? undefined : options.routes?.map((route) => ({ ...route })),
      clientOptions: options.apiUrl ? { slackApiUrl: options.apiUrl } : {},
      logger: boltLogger(this.#log),
      logLevel: LogLevel.INFO,
    });
    this.#registerHandlers();
    this.#engine.observe("slack", {
      progress: (event) => this.#onProgress(event),
      deliver: (event) => this.#deliver(event),
    });
  }

  /** Connects (Socket Mode) or listens (HTTP); returns the HTTP port, which matters when `port` was 0. */
  async start(): Promise<number | null> {
    this.#botUserId = (await this.#client.auth.test()).user_id;
    const started: unknown = await this.app.start(this.#options.port ?? 3000);
    const address = started instanceof Server ? started.address() : null;
    const port = address && typeof address === "object" ? address.port : null;
    this.#log.info({ socketMode: Boolean(this.#options.appToken), port }, "slack adapter started");
    return port;
  }

  async stop(): Promise<void> {
    await this.app.stop();
  }

  get #ackGuardMs(): number {
    return this.#options.ackGuardMs ?? ACK_GUARD_MS;
  }

  get #client(): WebClient {
    return this.app.client;
  }

  // -------------------------------------------------------------------------------------------------------
  // Slack → engine
  // -------------------------------------------------------------------------------------------------------

  #registerHandlers(): void {
    this.app.command("/imagine", async ({ command, ack, respond }) => {
      // Validate, record and enqueue, then acknowledge: nothing acknowledged is lost. Recording is fast, but a
      // burst on a busy database can approach Slack's 3 s; past `ackGuardMs` the command is acknowledged anyway
      // and the recording finishes behind it. The root message is posted after the acknowledgement (it needs
      // Slack, which may be slow or rate limited under a burst); if this process dies first, the worker posts it
      // when the turn runs.
      let parsed: ReturnType<typeof parseImagineText>;
      try {
        parsed = parseImagineText(command.text);
      } catch (error) {
        await ack({ response_type: "ephemeral", text: `✖ ${this.#userMessage(error, "imagine")}` });
        return;
      }
      const { prompt, params } = parsed;
      const threadKey = slackCommandThreadKey(command.team_id, command.channel_id, command.trigger_id);
      const recording = settle(
        this.#engine.submit({
          threadKey,
          kind: "generate",
          prompt,
          params,
          userId: command.user_id,
          idempotencyKey: `slack:cmd:${command.trigger_id}`,
          newThread: {
            title: prompt.slice(0, 200),
            meta: { team: command.team_id, channel: command.channel_id, rootIsOurs: true, rootPosting: true },
          },
        }),
      );
      const root: NewRoot = {
        team: command.team_id,
        channel: command.channel_id,
        userId: command.user_id,
        prompt,
        params,
      };
      const early = await withDeadline(recording, this.#ackGuardMs);
      if (early && !early.ok) {
        await ack({ response_type: "ephemeral", text: `✖ ${this.#userMessage(early.error, "imagine")}` });
        return;
      }
      await ack();
      // Over HTTP the acknowledgement is sent only when this handler returns: nothing after it is awaited here.
      void recording.then(async (outcome) => {
        if (outcome.ok) return this.#rooted(threadKey, root).catch(() => {}); // logged in #rooted
        await respond({
          response_type: "ephemeral",
          text: `✖ ${this.#userMessage(outcome.error, "imagine")}`,
        }).catch((error: unknown) => this.#log.warn({ err: error }, "could not explain a failed command"));
      });
    });

    this.app.event("app_mention", async ({ event, context, body }) => {
      // A mention inside one of our threads also arrives as a `message` event, which handles it.
      if (
        event.thread_ts &&
        (await this.#knownThread(context.teamId ?? body.team_id, event.channel, event.thread_ts))
      )
        return;
      const team = context.teamId ?? body.team_id;
      const text = stripMention(event.text ?? "", context.botUserId);
      await this.#submitFromMessage({
        team,
        channel: event.channel,
        user: event.user ?? "",
        ts: event.ts,
        threadKey: slackThreadKey(team, event.channel, event.ts),
        kind: "generate",
        text,
        files: (event as { files?: SlackFile[] }).files ?? [],
        newThread: {
          title: text.slice(0, 200),
          meta: { team, channel: event.channel, rootTs: event.ts, rootIsOurs: false },
        },
      });
    });

    this.app.event("message", async ({ event, context, body }) => {
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
      // Only people's new messages in a thread: no bots (ourselves included), no edits or deletions.
      if (message.subtype && message.subtype !== "file_share") return;
      if (message.bot_id || !message.user || message.user === context.botUserId) return;
      if (!message.thread_ts || message.thread_ts === message.ts) return;
      const team = context.teamId ?? body.team_id;
      const thread = await this.#knownThread(team, message.channel, message.thread_ts);
      if (!thread) return;
      await this.#submitFromMessage({
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

    this.app.action(/^tc_/, async ({ action, ack, body, respond }) => {
      const value = decodeButtonValue((action as { value?: string }).value);
      const actionId = (action as { action_id: string }).action_id;
      if (!value) return await ack();
      const explain = (error: unknown) =>
        respond({
          response_type: "ephemeral",
          replace_original: false,
          text: `✖ ${this.#userMessage(error, actionId)}`,
        }).catch((failure: unknown) => this.#log.warn({ err: failure }, "could not explain a failed click"));
      const triggerId = (body as { trigger_id?: string }).trigger_id ?? `${actionId}:${Date.now()}`;
      // Acknowledged once recorded, as for commands: a click is never acknowledged and then lost.
      const recording = settle(
        this.#intentForButton(actionId, value.t, value.i, body.user.id).then((intent) =>
          this.#submitAndReport({ ...intent, idempotencyKey: `slack:act:${triggerId}` }),
        ),
      );
      const early = await withDeadline(recording, this.#ackGuardMs);
      await ack();
      if (early) {
        if (!early.ok) await explain(early.error);
        return;
      }
      void recording.then((outcome) => (outcome.ok ? undefined : explain(outcome.error)));
    });
  }

  async #intentForButton(
    actionId: string,
    threadKey: string,
    imageId: string,
    userId: string,
  ): Promise<Intent> {
    if (actionId === ACTION_IDS.undo) return { threadKey, kind: "undo", userId };
    if (actionId === ACTION_IDS.variations)
      return { threadKey, kind: "variation", targetImageId: imageId, userId };
    if (actionId.startsWith(ACTION_IDS.use))
      return { threadKey, kind: "select", targetImageId: imageId, userId };
    if (actionId === ACTION_IDS.regenerate) {
      const image = await this.#engine.getImage(imageId);
      const origin = image ? await this.#engine.getTurn(image.turnId) : null;
      if (!origin)
        throw new AppError("image_not_found", `image ${imageId} is gone`, {
          userMessage: "That image is no longer available.",
        });
      return { threadKey, kind: "generate", prompt: origin.prompt, params: origin.params, userId };
    }
    throw new AppError("internal", `unknown action ${actionId}`);
  }

  async #submitFromMessage(request: {
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
  }): Promise<void> {
    try {
      const { prompt, params } = parseImagineText(request.text);
      const referenceImages: ImageInput[] = [];
      for (const file of request.files) {
        const bytes = await downloadSlackImage(file, {
          botToken: this.#options.botToken,
          allowedHosts: this.#allowedHosts,
          maxBytes: this.#options.maxAttachmentBytes ?? 20 * 1024 * 1024,
        });
        referenceImages.push({
          bytes,
          format: file.mimetype === "image/jpeg" ? "jpeg" : file.mimetype === "image/webp" ? "webp" : "png",
        });
      }
      await this.#submitAndReport({
        threadKey: request.threadKey,
        kind: request.kind,
        prompt,
        params,
        userId: request.user,
        sourceMessageId: request.ts,
        // The message itself, so Slack's retries of the same event (or a mention that is also a message) make one turn.
        idempotencyKey: `slack:msg:${request.team}:${request.channel}:${request.ts}`,
        referenceImages,
        newThread: request.newThread,
      });
    } catch (error) {
      await this.#client.chat
        .postEphemeral({
          channel: request.channel,
          user: request.user,
          thread_ts: request.kind === "edit" ? (request.threadTs ?? undefined) : undefined,
          text: `✖ ${this.#userMessage(error, "message")}`,
        })
        .catch((postError: unknown) => this.#log.warn({ err: postError }, "could not post ephemeral error"));
    }
  }

  /**
   * Submits, then posts the turn's status line in the thread (queued, and how many are ahead) without holding
   * up the acknowledgement. Progress for the turn waits for that message; its ts goes into the thread's meta so
   * any instance can keep it current.
   */
  async #submitAndReport(intent: Intent): Promise<void> {
    const { turn, created, position } = await this.#engine.submit(intent);
    if (!created) return;
    const posting = this.#postStatus(turn, position)
      .catch((error: unknown) =>
        this.#log.warn({ err: error, turnId: turn.id }, "could not post turn status"),
      )
      .finally(() => this.#statusPosts.delete(turn.id));
    this.#statusPosts.set(turn.id, posting);
  }

  async #postStatus(turn: Turn, position: number): Promise<void> {
    const meta = await this.#rooted(turn.threadKey);
    if (!meta) return;
    const posted = await this.#client.chat.postMessage({
      channel: meta.channel,
      thread_ts: meta.rootTs,
      ...turnStatusMessage(turn, { state: "queued", position }),
    });
    await this.#engine.updateThreadMeta(turn.threadKey, { [statusKey(turn.id)]: String(posted.ts) });
  }

  /**
   * The thread's meta once its root message exists, posting our root first if need be (at most one post per
   * thread in this process at a time). Null for a thread that is not a Slack thread this adapter made.
   */
  #rooted(threadKey: ThreadKey, fresh?: NewRoot): Promise<RootedMeta | null> {
    const pending = this.#rootPosts.get(threadKey);
    if (pending) return pending;
    const posting = (fresh ? this.#postNewRoot(threadKey, fresh) : this.#postRoot(threadKey))
      .catch((error: unknown) => {
        this.#log.warn({ err: error, thread: threadKey }, "could not post the root message");
        throw error;
      })
      .finally(() => this.#rootPosts.delete(threadKey));
    this.#rootPosts.set(threadKey, posting);
    return posting;
  }

  /** Right after /imagine was acknowledged: everything needed is at hand, and nothing can have been posted yet. */
  async #postNewRoot(threadKey: ThreadKey, root: NewRoot): Promise<RootedMeta> {
    const rootTs = await this.#sendRoot(threadKey, root);
    return this.#recordRoot(threadKey, { ...root, rootIsOurs: true }, rootTs);
  }

  /** Any other time (a worker, after a restart): read the thread, and look for a root posted before posting one. */
  async #postRoot(threadKey: ThreadKey): Promise<RootedMeta | null> {
    const thread = await this.#engine.getThread(threadKey);
    const meta = slackMeta(thread);
    if (!thread || !meta) return null;
    if (meta.rootTs) return meta as RootedMeta;
    const first = (await this.#engine.history(thread.key))?.turns[0];
    if (!first) return null;
    const rootTs =
      (meta.rootPosting ? await this.#findRoot(meta, thread) : undefined) ??
      (await this.#sendRoot(thread.key, {
        ...meta,
        userId: first.userId,
        prompt: first.prompt,
        params: first.params,
      }));
    return this.#recordRoot(thread.key, meta, rootTs);
  }

  async #sendRoot(threadKey: ThreadKey, root: NewRoot): Promise<string> {
    const posted = await this.#client.chat.postMessage({
      channel: root.channel,
      ...rootMessage(root, { state: "queued", position: 0 }),
      metadata: { event_type: ROOT_EVENT_TYPE, event_payload: { thread_key: threadKey } },
    });
    return String(posted.ts);
  }

  /** Replies in the root's thread find the thread by its alias; status and uploads go under the root. */
  async #recordRoot(threadKey: ThreadKey, meta: SlackThreadMeta, rootTs: string): Promise<RootedMeta> {
    await this.#engine.addThreadAlias(slackThreadKey(meta.team, meta.channel, rootTs), threadKey);
    await this.#engine.updateThreadMeta(threadKey, { rootTs });
    return { ...meta, rootTs };
  }

  /** Our root message for this thread, if one was posted: channel history since the thread began. */
  async #findRoot(meta: SlackThreadMeta, thread: Thread): Promise<string | undefined> {
    const oldest = (thread.createdAt.getTime() / 1000 - 60).toFixed(6);
    let cursor: string | undefined;
    do {
      const page = await this.#client.conversations.history({
        channel: meta.channel,
        oldest,
        include_all_metadata: true,
        limit: 200,
        ...(cursor ? { cursor } : {}),
      });
      for (const message of page.messages ?? []) {
        const metadata = message.metadata as
          | { event_type?: string; event_payload?: { thread_key?: unknown } }
          | undefined;
        if (
          message.user === this.#botUserId &&
          metadata?.event_type === ROOT_EVENT_TYPE &&
          metadata.event_payload?.thread_key === thread.key
        )
          return message.ts;
      }
      cursor = page.response_metadata?.next_cursor || undefined;
    } while (cursor);
    return undefined;
  }

  async #knownThread(team: string, channel: string, threadTs: string): Promise<Thread | null> {
    return this.#engine.getThread(slackThreadKey(team, channel, threadTs));
  }

  #userMessage(error: unknown, where: string): string {
    const appError = asAppError(error);
    if (appError.code === "internal") this.#log.error({ err: error, where }, "slack request failed");
    return appError.userMessage;
  }

  // -------------------------------------------------------------------------------------------------------
  // Engine → Slack
  // -------------------------------------------------------------------------------------------------------

  async #onProgress(event: Exclude<TurnEvent, { type: "finished" }>): Promise<void> {
    if (event.type === "queued") return; // shown when the turn was submitted
    const status: StatusLine =
      event.type === "running"
        ? { state: "drawing" }
        : event.type === "partial"
          ? { state: "drawing", previews: event.partial.index + 1 }
          : { state: "retrying", reason: event.reason, retryInMs: event.retryInMs };
    await this.#updateStatus(event.turn, status);
  }

  /**
   * Uploads the images into the thread, then posts the closing message (buttons, or why it failed) carrying the
   * turn's metadata, then updates the status line. A redelivery first reads the thread back and skips what is
   * already there, so a crash anywhere in here ends with each image and each message posted once.
   */
  async #deliver({
    turn,
    thread,
    images,
    redelivery,
  }: Extract<TurnEvent, { type: "finished" }>): Promise<void> {
    const meta = await this.#rooted(thread.key);
    if (!meta) return;
    const inThread = { channel: meta.channel, thread_ts: meta.rootTs, metadata: turnMetadata(turn) };
    const already = redelivery
      ? await this.#alreadyPosted(meta, turn)
      : { files: new Set<string>(), closed: false };
    if (turn.status !== "succeeded") {
      if (!already.closed) await this.#client.chat.postMessage({ ...inThread, text: failureMessage(turn) });
      await this.#updateStatus(turn, { state: "failed", reason: turn.errorMessage ?? "failed" });
      return;
    }
    if (images.length === 0) {
      if (!already.closed) await this.#client.chat.postMessage({ ...inThread, text: headMovedMessage(turn) });
      await this.#updateStatus(turn, { state: "done", images: 0 });
      return;
    }
    const missing = images.filter(
      (image) => !already.files.has(imageFileName(turn.seq, image.index, image.format)),
    );
    if (missing.length > 0) {
      const origin = turn.prompt || thread.title;
      await this.#client.files.uploadV2({
        channel_id: meta.channel,
        thread_ts: meta.rootTs,
        file_uploads: await Promise.all(
          missing.map(async (image) => ({
            file: await this.#engine.imageBytes(image),
            filename: imageFileName(turn.seq, image.index, image.format),
            title: imageFileName(turn.seq, image.index, image.format),
            alt_text: origin.slice(0, 1000),
          })),
        ),
      });
    }
    if (!already.closed)
      await this.#client.chat.postMessage({ ...inThread, ...resultMessage(thread, turn, images) });
    await this.#updateStatus(turn, { state: "done", images: images.length });
  }

  /**
   * What an earlier delivery of this turn already put in the thread: our files (named by version, which is
   * unique in a thread) and the closing message (found by its metadata).
   */
  async #alreadyPosted(meta: RootedMeta, turn: Turn): Promise<{ files: Set<string>; closed: boolean }> {
    const files = new Set<string>();
    let closed = false;
    let cursor: string | undefined;
    do {
      const page = await this.#client.conversations.replies({
        channel: meta.channel,
        ts: meta.rootTs,
        include_all_metadata: true,
        limit: 200,
        ...(cursor ? { cursor } : {}),
      });
      for (const message of page.messages ?? []) {
        if (!this.#botUserId || message.user !== this.#botUserId) continue;
        for (const file of message.files ?? []) if (file.name) files.add(file.name);
        const metadata = message.metadata as
          | { event_type?: string; event_payload?: { turn_id?: unknown } }
          | undefined;
        if (metadata?.event_type === TURN_EVENT_TYPE && metadata.event_payload?.turn_id === turn.id)
          closed = true;
      }
      cursor = page.response_metadata?.next_cursor || undefined;
    } while (cursor);
    this.#log.info({ turnId: turn.id, files: files.size, closed }, "redelivery: read back the thread");
    return { files, closed };
  }

  async #updateStatus(turn: Turn, status: StatusLine): Promise<void> {
    await this.#statusPosts.get(turn.id);
    let meta = await this.#rooted(turn.threadKey);
    // A status message posted by another instance (or before a restart) is known only to the stored meta.
    if (meta && !statusTsOf(meta, turn))
      meta = slackMeta(await this.#engine.getThread(turn.threadKey)) as RootedMeta;
    const ts = statusTsOf(meta, turn);
    if (!meta || !ts) return;
    const isRoot = meta.rootIsOurs && ts === meta.rootTs;
    const message = isRoot
      ? rootMessage({ userId: turn.userId, prompt: turn.prompt, params: turn.params }, status)
      : turnStatusMessage(turn, status);
    await this.#client.chat.update({ channel: meta.channel, ts, ...message });
  }
}

/** The message showing a turn's status: its own reply, or the root for the turn a /imagine started. */
function statusTsOf(meta: RootedMeta | null, turn: Turn): string | undefined {
  if (!meta) return undefined;
  return meta[statusKey(turn.id)] ?? (meta.rootIsOurs && turn.seq === 1 ? meta.rootTs : undefined);
}

function slackMeta(thread: Thread | null): SlackThreadMeta | null {
  const meta = thread?.meta;
  return meta && typeof meta.channel === "string" && typeof meta.team === "string"
    ? (meta as unknown as SlackThreadMeta)
    : null;
}

/** `<@U0BOT> make it blue` → `make it blue`. */
function stripMention(text: string, botUserId: string | undefined): string {
  return botUserId ? text.replaceAll(`<@${botUserId}>`, "").trim() : text.trim();
}

/** Bolt logs through our pino logger, so secrets are redacted the same way everywhere. */
function boltLogger(logger: Logger): BoltLogger {
  let level = LogLevel.INFO;
  const child = logger.child({ component: "bolt" });
  return {
    debug: (...msg: unknown[]) => child.debug(msg.map(String).join(" ")),
    info: (...msg: unknown[]) => child.info(msg.map(String).join(" ")),
    warn: (...msg: unknown[]) => child.warn(msg.map(String).join(" ")),
    error: (...msg: unknown[]) => child.error(msg.map(String).join(" ")),
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => {},
  };
}
