import type { WebClient } from "@slack/web-api";
import type { ImageParams, Thread, ThreadKey } from "../../src/domain.ts";
import type { Logger } from "../../src/logger.ts";
import type { ConversationEngine } from "../../src/ports.ts";
import { Once } from "../shared/once.ts";
import { allMessages, withRateLimits } from "./client.ts";
import { rootMessage } from "./render.ts";

/**
 * How Slack threads map to engine threads: their keys and aliases, the facts kept in a thread's meta, the
 * idempotency keys of Slack's events, and a /imagine thread's root message, posted once.
 */

/** Facts about a Slack thread kept in the thread's meta, so any instance can continue it after a restart. */
export interface SlackThreadMeta {
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
}

/** A thread whose root message exists: where replies, uploads and status messages go. */
export type RootedMeta = SlackThreadMeta & { rootTs: string };

/** What a /imagine root message shows, and where it goes. */
export interface NewRoot {
  team: string;
  channel: string;
  userId: string;
  prompt: string;
  params: Partial<ImageParams>;
  /** The first turn, whose Cancel button the root carries while it is queued. */
  turnId?: string;
}

/** A thread rooted at a message: a mention's thread by its key, a /imagine thread by its alias. */
export function slackThreadKey(team: string, channel: string, rootTs: string): ThreadKey {
  return `slack:${team}:${channel}:${rootTs}`;
}

/** A /imagine thread's key, fixed before its root message exists; the root's `slackThreadKey` becomes an alias. */
export function slackCommandThreadKey(team: string, channel: string, triggerId: string): ThreadKey {
  return `slack:${team}:${channel}:cmd-${triggerId}`;
}

/** Idempotency keys: Slack's retries of an event, or a repeated click, make one turn. */
export const commandKey = (triggerId: string) => `slack:cmd:${triggerId}`;
export const clickKey = (triggerId: string) => `slack:act:${triggerId}`;
export const messageKey = (team: string, channel: string, ts: string) => `slack:msg:${team}:${channel}:${ts}`;

function slackMeta(thread: Thread | null): SlackThreadMeta | null {
  const meta = thread?.meta;
  return meta && typeof meta.channel === "string" && typeof meta.team === "string"
    ? (meta as unknown as SlackThreadMeta)
    : null;
}

/** Message metadata on our root messages, so a root posted by a process that died is found, not posted again. */
const ROOT_EVENT_TYPE = "threadcanvas_root";

/**
 * The root message of each /imagine thread. It is posted after the command is acknowledged (it needs Slack, which
 * may be slow or rate limited under a burst); if the process dies first, the worker posts it when the turn runs,
 * after looking for one a dead process may have posted.
 */
export class SlackThreads {
  readonly #client: WebClient;
  readonly #posts: WebClient;
  readonly #engine: ConversationEngine;
  readonly #log: Logger;
  readonly #botUserId: () => string | undefined;
  readonly #once: Once;
  /** Root messages being posted by this process, by thread key. */
  readonly #rootPosts = new Map<string, Promise<RootedMeta | null>>();

  constructor(deps: {
    /** Reads (the Bolt app's client). */
    client: WebClient;
    /** Posts, never retried by the SDK (`client.ts`). */
    posts: WebClient;
    engine: ConversationEngine;
    logger: Logger;
    botUserId: () => string | undefined;
  }) {
    this.#client = deps.client;
    this.#posts = deps.posts;
    this.#engine = deps.engine;
    this.#log = deps.logger;
    this.#botUserId = deps.botUserId;
    this.#once = new Once(deps.engine.claims);
  }

  /** The engine thread a Slack thread belongs to (by its key or its alias), if it is one of ours. */
  known(team: string, channel: string, threadTs: string): Promise<Thread | null> {
    return this.#engine.getThread(slackThreadKey(team, channel, threadTs));
  }

  /**
   * The thread's meta once its root message exists, posting our root first if need be: once across every process
   * (claimed in the database; the others wait for its ts), and at most one attempt per thread in this process at
   * a time. Null for a thread that is not a Slack thread this adapter made.
   */
  rooted(threadKey: ThreadKey, fresh?: NewRoot): Promise<RootedMeta | null> {
    const pending = this.#rootPosts.get(threadKey);
    if (pending) return pending;
    const posting = this.#root(threadKey, fresh)
      .catch((error: unknown) => {
        this.#log.warn({ err: error, thread: threadKey }, "could not post the root message");
        throw error;
      })
      .finally(() => this.#rootPosts.delete(threadKey));
    this.#rootPosts.set(threadKey, posting);
    return posting;
  }

  /**
   * Right after /imagine was acknowledged (`fresh`) everything needed is at hand. Any other time (a worker, after
   * a restart) the thread is read back, and the root is built from its first turn. A process that takes over the
   * claim of one that died, or finds the thread marked as posting from before claims existed, looks for a root
   * already posted before posting one.
   */
  async #root(threadKey: ThreadKey, fresh: NewRoot | undefined): Promise<RootedMeta | null> {
    const thread = fresh ? null : await this.#engine.getThread(threadKey);
    const meta: SlackThreadMeta | null = fresh ? { ...fresh, rootIsOurs: true } : slackMeta(thread);
    if (!meta) return null;
    if (meta.rootTs) return meta as RootedMeta;
    const since = thread?.createdAt ?? new Date();
    const find = () => this.#findRoot(meta, threadKey, since);
    let root: NewRoot | undefined = fresh;
    if (!root) {
      const first = (await this.#engine.history(threadKey))?.turns[0];
      if (!first) return null;
      root = { ...meta, userId: first.userId, prompt: first.prompt, params: first.params, turnId: first.id };
    }
    const toPost = root;
    const rootTs = await this.#once.run(
      `slack:root:${threadKey}`,
      async () =>
        (!fresh && meta.rootPosting ? await find() : undefined) ?? this.#sendRoot(threadKey, toPost),
      find,
    );
    return this.#recordRoot(threadKey, meta, rootTs);
  }

  async #sendRoot(threadKey: ThreadKey, root: NewRoot): Promise<string> {
    const posted = await withRateLimits(() =>
      this.#posts.chat.postMessage({
        channel: root.channel,
        ...rootMessage(root, { state: "queued", position: 0 }, root.turnId),
        metadata: { event_type: ROOT_EVENT_TYPE, event_payload: { thread_key: threadKey } },
      }),
    );
    return String(posted.ts);
  }

  /** Replies in the root's thread find the thread by its alias; status and uploads go under the root. */
  async #recordRoot(threadKey: ThreadKey, meta: SlackThreadMeta, rootTs: string): Promise<RootedMeta> {
    await this.#engine.addThreadAlias(slackThreadKey(meta.team, meta.channel, rootTs), threadKey);
    await this.#engine.updateThreadMeta(threadKey, { rootTs });
    return { ...meta, rootTs };
  }

  /** Our root message for this thread, if one was posted: channel history since the thread began. */
  async #findRoot(meta: SlackThreadMeta, threadKey: ThreadKey, since: Date): Promise<string | undefined> {
    const oldest = (since.getTime() / 1000 - 60).toFixed(6);
    const history = allMessages((cursor) =>
      withRateLimits(() =>
        this.#client.conversations.history({
          channel: meta.channel,
          oldest,
          include_all_metadata: true,
          limit: 200,
          ...(cursor ? { cursor } : {}),
        }),
      ),
    );
    for await (const message of history) {
      const metadata = message.metadata as
        | { event_type?: string; event_payload?: { thread_key?: unknown } }
        | undefined;
      if (
        message.user === this.#botUserId() &&
        metadata?.event_type === ROOT_EVENT_TYPE &&
        metadata.event_payload?.thread_key === threadKey
      )
        return message.ts;
    }
    return undefined;
  }
}
