import { type ChatPostMessageArguments, WebAPIRateLimitedError, type WebClient } from "@slack/web-api";
import { imageFileName, type Turn } from "../../src/domain.ts";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine, FinishedEvent, ProgressEvent } from "../../src/ports.ts";
import { TurnViews } from "../shared/delivery.ts";
import { Once } from "../shared/once.ts";
import { progressStatus, type StatusLine } from "../shared/render.ts";
import { allMessages, withRateLimits } from "./client.ts";
import {
  failureMessage,
  headMovedMessage,
  resultMessage,
  rootMessage,
  TURN_EVENT_TYPE,
  turnMetadata,
  turnStatusMessage,
  withLateNote,
} from "./render.ts";
import type { RootedMeta, SlackThreads } from "./threads.ts";

/** A turn's status reply is posted once, by whichever process claims it. */
const statusClaim = (turnId: string) => `slack:status:${turnId}`;
/** How long a final status waits for a status reply another process is posting. */
const STATUS_WAIT_MS = 20_000;

/**
 * Engine → Slack: each turn's status line kept current (the /imagine root message, or the turn's own status
 * reply), then the images uploaded into the thread and a closing message with the buttons, or why it failed.
 * Everything it needs after a restart is in the store; a redelivery reads the thread back and posts only what
 * is missing.
 */
export class SlackDelivery {
  readonly #client: WebClient;
  readonly #posts: WebClient;
  readonly #engine: ConversationEngine;
  readonly #threads: SlackThreads;
  readonly #log: Logger;
  readonly #botUserId: () => string | undefined;
  /** Status messages being posted for turns submitted here; progress for a turn waits for its message. */
  readonly #statusPosts = new Map<string, Promise<void>>();
  /** Per turn: progress and delivery applied one at a time, in order (latest progress wins). */
  readonly #views: TurnViews;
  readonly #once: Once;

  constructor(deps: {
    /** Reads and edits (the Bolt app's client). */
    client: WebClient;
    /** Posts, never retried by the SDK (`client.ts`). */
    posts: WebClient;
    engine: ConversationEngine;
    threads: SlackThreads;
    logger: Logger;
    botUserId: () => string | undefined;
  }) {
    this.#client = deps.client;
    this.#posts = deps.posts;
    this.#engine = deps.engine;
    this.#threads = deps.threads;
    this.#log = deps.logger;
    this.#botUserId = deps.botUserId;
    this.#once = new Once(deps.engine.claims);
    this.#views = new TurnViews((error, turnId) =>
      this.#log.warn({ err: error, turnId }, "progress update failed"),
    );
  }

  /**
   * Posts a just-submitted turn's status line in its thread (queued, and how many are ahead) without holding up
   * the acknowledgement. Progress for the turn waits for that message.
   */
  showQueued(turn: Turn, position: number): void {
    const posting = this.#postStatus(turn, position)
      .catch((error: unknown) =>
        this.#log.warn({ err: error, turnId: turn.id }, "could not post turn status"),
      )
      .finally(() => this.#statusPosts.delete(turn.id));
    this.#statusPosts.set(turn.id, posting);
  }

  async #postStatus(turn: Turn, position: number): Promise<void> {
    const meta = await this.#threads.rooted(turn.threadKey);
    if (!meta) return;
    const ts = await this.#once.run(statusClaim(turn.id), async () => {
      const posted = await withRateLimits(() =>
        this.#posts.chat.postMessage({
          channel: meta.channel,
          thread_ts: meta.rootTs,
          ...turnStatusMessage(turn, { state: "queued", position }),
        }),
      );
      return String(posted.ts);
    });
    await this.#engine.saveTurnMessage(turn.id, "status", ts);
  }

  /**
   * Progress edits the turn's status line, one edit at a time and only the newest when Slack is slow. Stream
   * previews are not counted on Slack (it shows no preview images): `chat.update` is a Tier 3 method, 50 edits a
   * minute for the whole workspace, and the edits that say "done" need them more.
   */
  progress(event: ProgressEvent): void {
    if (event.type === "queued" || event.type === "partial") return; // queued: shown when it was submitted
    this.#views.update(event.turn.id, () =>
      this.#updateStatus(event.turn, progressStatus(event), "progress"),
    );
  }

  /**
   * Uploads the images into the thread, then posts the closing message (buttons, or why it failed) carrying the
   * turn's metadata, then updates the status line. A redelivery first reads the thread back and skips what is
   * already there, so a crash anywhere in here ends with each image and each message posted once.
   */
  deliver(event: FinishedEvent, signal?: AbortSignal): Promise<void> {
    return this.#views.finish(event.turn.id, () => {
      signal?.throwIfAborted(); // handed back while earlier progress edits were still going out
      return this.#deliverNow(event, signal);
    });
  }

  async #deliverNow(
    { turn, thread, images, redelivery, late }: FinishedEvent,
    signal?: AbortSignal,
  ): Promise<void> {
    const meta = await this.#threads.rooted(thread.key);
    if (!meta) return;
    const inThread = { channel: meta.channel, thread_ts: meta.rootTs, metadata: turnMetadata(turn) };
    const closing = <M extends { text: string; blocks?: unknown[] }>(message: M) =>
      this.#postInThread({ ...inThread, ...(late ? withLateNote(message) : message) }, signal);
    const already = redelivery
      ? await this.#alreadyPosted(meta, turn)
      : { files: new Set<string>(), closed: false };
    if (turn.status !== "succeeded") {
      if (!already.closed) await closing({ text: failureMessage(turn) });
      await this.#updateStatus(turn, { state: "failed", reason: turn.errorMessage ?? "failed" });
      return;
    }
    if (images.length === 0) {
      if (!already.closed) await closing({ text: headMovedMessage(turn) });
      await this.#updateStatus(turn, { state: "done", images: 0 });
      return;
    }
    const missing = images.filter(
      (image) => !already.files.has(imageFileName(turn.seq, image.index, image.format)),
    );
    if (missing.length > 0) {
      const origin = turn.prompt || thread.title;
      const files = await Promise.all(
        missing.map(async (image) => ({
          file: await this.#engine.imageBytes(image),
          filename: imageFileName(turn.seq, image.index, image.format),
          title: imageFileName(turn.seq, image.index, image.format),
          alt_text: origin.slice(0, 1000),
        })),
      );
      await withRateLimits(
        () =>
          this.#posts.files.uploadV2({
            channel_id: meta.channel,
            thread_ts: meta.rootTs,
            file_uploads: files,
          }),
        signal,
      );
    }
    signal?.throwIfAborted(); // handed back between the upload and the closing message: the read-back resumes here
    if (!already.closed) await closing(resultMessage(thread, turn, images));
    await this.#updateStatus(turn, { state: "done", images: images.length });
  }

  #postInThread(message: ChatPostMessageArguments, signal: AbortSignal | undefined) {
    return withRateLimits(() => this.#posts.chat.postMessage(message), signal);
  }

  /**
   * What an earlier delivery of this turn already put in the thread: our files (named by version, which is
   * unique in a thread) and the closing message (found by its metadata).
   */
  async #alreadyPosted(meta: RootedMeta, turn: Turn): Promise<{ files: Set<string>; closed: boolean }> {
    const files = new Set<string>();
    let closed = false;
    const replies = allMessages((cursor) =>
      withRateLimits(() =>
        this.#client.conversations.replies({
          channel: meta.channel,
          ts: meta.rootTs,
          include_all_metadata: true,
          limit: 200,
          ...(cursor ? { cursor } : {}),
        }),
      ),
    );
    const botUserId = this.#botUserId();
    for await (const message of replies) {
      if (!botUserId || message.user !== botUserId) continue;
      for (const file of message.files ?? []) if (file.name) files.add(file.name);
      const metadata = message.metadata as
        | { event_type?: string; event_payload?: { turn_id?: unknown } }
        | undefined;
      if (metadata?.event_type === TURN_EVENT_TYPE && metadata.event_payload?.turn_id === turn.id)
        closed = true;
    }
    this.#log.info({ turnId: turn.id, files: files.size, closed }, "redelivery: read back the thread");
    return { files, closed };
  }

  /**
   * Edits the message showing the turn: its status reply, or the root for the turn a /imagine started. A final
   * status waits out rate limits; a progress edit that is rate limited is skipped (the next one, or the final
   * one, says more anyway).
   */
  async #updateStatus(turn: Turn, status: StatusLine, kind: "progress" | "final" = "final"): Promise<void> {
    await this.#statusPosts.get(turn.id);
    const meta = await this.#threads.rooted(turn.threadKey);
    if (!meta) return;
    // The status reply may be being posted by the process that took the request: a final status waits for it.
    const ts =
      (await this.#engine.turnMessage(turn.id, "status")) ??
      (meta.rootIsOurs && turn.seq === 1 ? meta.rootTs : null) ??
      (kind === "final" ? await this.#once.result(statusClaim(turn.id), STATUS_WAIT_MS) : null);
    if (!ts) return;
    const isRoot = meta.rootIsOurs && ts === meta.rootTs;
    const message = isRoot
      ? rootMessage({ userId: turn.userId, prompt: turn.prompt, params: turn.params }, status, turn.id)
      : turnStatusMessage(turn, status);
    const edit = () => this.#client.chat.update({ channel: meta.channel, ts, ...message });
    if (kind === "final") await withRateLimits(edit);
    else
      await edit().catch((error: unknown) => {
        if (!(error instanceof WebAPIRateLimitedError)) throw error;
        this.#log.debug({ turnId: turn.id }, "progress edit skipped: rate limited");
      });
  }
}
