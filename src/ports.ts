/**
 * The ports: every interface the engine talks through, and the engine's own interface as adapters see it.
 * Read this file first. Implementations live in `store/` (PostgreSQL/PGlite through drizzle; image bytes by
 * SHA-256), `queue/` (pg-boss), `provider/` (OpenAI) and `engine/`; `app.ts` wires them. Nothing here imports a
 * platform SDK, a database driver or pg-boss.
 *
 * Past our usual ~400 lines on purpose: it is the one page that shows every contract between the parts (the
 * engine, the provider, the blob store, the queue, the inbox, the store and its ledger), so a reader sees the
 * whole system's seams without opening the implementations.
 */
import type {
  BlobRef,
  ImageParams,
  ImageRecord,
  LedgerStatus,
  OutputFormat,
  Platform,
  Thread,
  ThreadKey,
  Turn,
  TurnKind,
  TurnStatus,
  UsageEntry,
} from "./domain.ts";

// ---------------------------------------------------------------------------------------------------------
// The engine, as adapters see it
// ---------------------------------------------------------------------------------------------------------

/** What an adapter asks the engine for. Validated by `submit`; nothing is written when it is invalid. */
export interface Intent {
  threadKey: ThreadKey;
  kind: TurnKind;
  /** For generate and edit. Ignored for undo/select; variation reuses the target image's prompt when empty. */
  prompt?: string;
  /** Flags the user gave; the rest come from defaults (generate) or from the turn that made the base image (edit). */
  params?: Partial<ImageParams>;
  userId: string;
  sourceMessageId?: string | null;
  /** A platform event id (Slack `event_id`, Discord interaction id): the same key twice makes one turn. */
  idempotencyKey?: string | null;
  /**
   * edit/variation: start from this image instead of the head. select: the image to make the head. undo: go back
   * from this image (the one the button sits under) to its parent, instead of from the head.
   */
  targetImageId?: string | null;
  /** Extra images (attachments) sent with an edit, after the image being edited. */
  referenceImages?: readonly ImageInput[];
  /** Title and adapter facts for a thread this intent creates. */
  newThread?: { title?: string; meta?: Record<string, unknown> };
  /** The workspace and channel a thread this intent creates is counted in for budgets. */
  place?: Place;
  /** The person said yes to "Draw it for about $X?": no question is asked, whatever the estimate. */
  confirmed?: boolean;
  /**
   * Regenerate: draw this turn again as it was asked (its kind, prompt, settings, base image and references);
   * `kind`, `prompt`, `params`, `targetImageId` and `referenceImages` given here are replaced by the turn's.
   */
  repeatOf?: string;
}

export interface Submitted {
  turn: Turn;
  /** false when the idempotency key was seen before: the existing turn is returned, nothing new is queued. */
  created: boolean;
  /** How many turns in the same thread are ahead of this one. */
  position: number;
}

export type TurnEvent =
  | { type: "queued"; turn: Turn; position: number }
  | { type: "running"; turn: Turn }
  | { type: "partial"; turn: Turn; partial: PartialImage }
  /** A retryable failure; the turn will run again after `retryInMs`. */
  | { type: "retrying"; turn: Turn; reason: string; retryInMs: number | null }
  | {
      type: "finished";
      turn: Turn;
      thread: Thread;
      images: ImageRecord[];
      /**
       * True when this turn's outcome was saved by an earlier run whose delivery did not get recorded (the
       * process died, or delivering threw part-way): some of it may already be on the platform, so the observer
       * should check what is there before posting again.
       */
      redelivery: boolean;
      /** True when the quick delivery retries ran out earlier (the platform was down): say it arrives late. */
      late: boolean;
    };

export type ProgressEvent = Exclude<TurnEvent, { type: "finished" }>;
export type FinishedEvent = Extract<TurnEvent, { type: "finished" }>;

/**
 * How results get back to a platform. One observer per platform, registered by its adapter; after a restart the
 * new process's adapter receives the turns it did not deliver yet. `deliver` must be idempotent for a given
 * turn: it may be called again if the process died between delivering and recording the delivery.
 */
export interface TurnObserver {
  /** Progress (queued, running, partial previews, retrying). Best effort: errors are logged, not retried. */
  progress?(event: ProgressEvent): void | Promise<void>;
  /**
   * The final outcome, success or failure (see `turn.status`, `turn.errorCode`, `turn.errorMessage`). `signal`
   * aborts when the process is handing the turn back (a shutdown past its grace): stop between steps.
   */
  deliver(event: FinishedEvent, signal: AbortSignal): Promise<void>;
  /**
   * Once the delivery is recorded (so it will never run again): forget what was kept only to deliver, such as
   * a short-lived reply token. Best effort: errors are logged.
   */
  delivered?(event: FinishedEvent): Promise<void>;
}

/** The platform messages an adapter keeps per turn. */
export type TurnMessageRole = "status";

/** Whose spend `/canvas usage` asks about: the person, and the channel and workspace they ask from. */
export interface UsageQuery {
  platform: Platform;
  userId: string;
  workspaceId: string | null;
  channelId: string | null;
}

export interface UsageAnswer {
  report: SpendReport;
  caps: readonly BudgetCap[];
  /** Admins are not limited, and the report lists the workspace's top payers. */
  admin: boolean;
}

export interface ConversationEngine {
  submit(intent: Intent): Promise<Submitted>;
  /** Cancels a queued or running turn for the person who asked or an admin; throws an AppError to show otherwise. */
  cancel(turnId: string, userId: string): Promise<Turn>;
  usage(query: UsageQuery): Promise<UsageAnswer>;
  observe(platform: Platform, observer: TurnObserver): void;
  history(threadKey: ThreadKey): Promise<ThreadHistory | null>;
  listThreads(platform: Platform, limit?: number): Promise<Thread[]>;
  /** A thread by its key, or by an alias an adapter gave it (a platform's own id for the thread). */
  getThread(keyOrAlias: string): Promise<Thread | null>;
  /** Lets `getThread` find the thread by the platform's own id for it, once the platform has one. */
  addThreadAlias(alias: string, threadKey: ThreadKey): Promise<void>;
  getTurn(turnId: string): Promise<Turn | null>;
  getImage(imageId: string): Promise<ImageRecord | null>;
  /** Merges adapter facts about the whole thread (channel, root message, …) into the thread's meta. */
  updateThreadMeta(threadKey: ThreadKey, meta: Record<string, unknown>): Promise<void>;
  /** Remembers which platform message shows a turn (`ref` is the platform's address for it). */
  saveTurnMessage(turnId: string, role: TurnMessageRole, ref: string): Promise<void>;
  turnMessage(turnId: string, role: TurnMessageRole): Promise<string | null>;
  /** What an adapter does once per thread or turn across every process is claimed here first. */
  readonly claims: ClaimStore;
  imageBytes(image: ImageRecord): Promise<Buffer>;
  /** Turns of this platform still queued or running (a crash leaves them so until a worker picks them up). */
  unfinishedTurns(platform: Platform): Promise<Turn[]>;
}

// ---------------------------------------------------------------------------------------------------------
// ImageProvider: OpenAI's gpt-image-2 (provider/openai-images.ts)
// ---------------------------------------------------------------------------------------------------------

export interface ImageInput {
  bytes: Buffer;
  format: OutputFormat;
}

export interface PartialImage {
  /** 0-based index of the partial within the stream. */
  index: number;
  bytes: Buffer;
  format: OutputFormat;
}

export interface ImageRequest {
  prompt: string;
  params: ImageParams;
  /** Called for each streamed partial image; when absent the provider does not stream. */
  onPartialImage?: (partial: PartialImage) => void;
  /** Stable, non-identifying end-user id for the provider's abuse monitoring. */
  safetyIdentifier?: string;
  /** Where every HTTP request of this call is written before it is sent, and settled once its outcome is known. */
  ledger?: CallLedger;
}

/** What one HTTP request to the provider came to (see `LedgerStatus` in domain.ts). */
export type CallOutcome =
  | { status: "billed"; requestId: string | null; usage: readonly UsageEntry[] }
  | { status: "not_billed"; requestId: string | null; httpStatus: number | null }
  | { status: "unknown"; requestId: string | null };

/**
 * The turn's side of the bill. `open` runs before a request is sent (if it throws, nothing is sent); `settle`
 * once the request's outcome is known. A request never settled (the process died) is counted as `unknown`.
 */
export interface CallLedger {
  open(request: { clientRequestId: string; endpoint: string; retry: number }): Promise<void>;
  settle(clientRequestId: string, outcome: CallOutcome): Promise<void>;
}

export interface EditRequest extends ImageRequest {
  /** The image being edited first, then any reference images. */
  images: readonly ImageInput[];
  mask?: ImageInput;
}

export interface ProviderImage {
  bytes: Buffer;
  format: OutputFormat;
}

export interface ImageResult {
  images: ProviderImage[];
  usage: UsageEntry[];
  requestId: string | null;
  /** What a "think" turn's planner actually asked the image model for, if it rewrote the prompt. */
  revisedPrompt: string | null;
}

export interface ImageProvider {
  generate(request: ImageRequest, signal?: AbortSignal): Promise<ImageResult>;
  edit(request: EditRequest, signal?: AbortSignal): Promise<ImageResult>;
}

// ---------------------------------------------------------------------------------------------------------
// BlobStore: image bytes by SHA-256 (store/blob-store.ts)
// ---------------------------------------------------------------------------------------------------------

export interface BlobStore {
  /** Stores the bytes once; returns their SHA-256 (hex). Putting the same bytes again is a no-op. */
  put(bytes: Uint8Array): Promise<string>;
  get(sha256: string): Promise<Buffer>;
  has(sha256: string): Promise<boolean>;
}

// ---------------------------------------------------------------------------------------------------------
// TurnQueue: durable jobs in the same database (queue/job-queue.ts)
// ---------------------------------------------------------------------------------------------------------

/**
 * SQL run inside a transaction the store has open (pg-boss's one-method database port): the queue writes a
 * turn's job through it, so the job commits or rolls back with the turn.
 */
export interface SqlExecutor {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** The durable unit of work behind a turn. */
export interface TurnJob {
  turnId: string;
  threadKey: string;
}

export interface JobAttempt {
  /** 0 on the first attempt, then 1, 2, … (an attempt lost to a crash counts too). */
  retryCount: number;
  signal: AbortSignal;
}

export interface TurnQueue {
  /** Enqueues a turn; with `tx`, inside the store's transaction. */
  enqueue(job: TurnJob, tx?: SqlExecutor): Promise<void>;
  /**
   * Jobs of these platforms the queue gave up on (past its own retry limit), taken out of it so their threads'
   * later turns can run.
   */
  takeAbandoned(platforms: readonly Platform[]): Promise<TurnJob[]>;
}

// ---------------------------------------------------------------------------------------------------------
// Inbox: platform events, recorded as they arrive (store/inbox-store.ts)
// ---------------------------------------------------------------------------------------------------------

/** An event as a platform sent it, kept so it can be worked from the database alone. */
export interface InboxEvent {
  platform: Platform;
  /** The event's idempotency key (`slack:cmd:<trigger>`, `discord:m:<message>`, …): one row per event. */
  key: string;
  /** What the adapter needs to know to read `payload` (`command`, `message`, …). */
  kind: string;
  /** JSON: the adapter's own digest of the event. */
  payload: unknown;
}

export interface InboxEntry extends InboxEvent {
  id: number;
  /** How many times the event was taken, the first (at arrival) included. */
  attempts: number;
  receivedAt: Date;
}

/**
 * Where an adapter writes each event before acknowledging it (one insert), so that an acknowledged event is
 * worked to its end even if the process dies while downloading, checking or recording it: whichever process
 * sweeps next takes over events whose hold lapsed.
 */
export interface Inbox {
  /** Records an event, held by the caller for `holdMs`. Null when its key was recorded before (a replay). */
  receive(event: InboxEvent, holdMs: number): Promise<InboxEntry | null>;
  /** Unfinished events of this platform whose hold lapsed, oldest first, each now held for `holdMs`. */
  takeLapsed(platform: Platform, holdMs: number, limit: number): Promise<InboxEntry[]>;
  /** The event is worked: it will not be taken again, and its payload is dropped. */
  finish(id: number, outcome: "done" | "gave_up"): Promise<void>;
  /** Forgets events finished before `before` (their keys then no longer catch replays); returns how many. */
  prune(before: Date): Promise<number>;
  /**
   * The event waits for its sender's answer ("Draw it for about $X?"): no sweep takes it, and its payload is
   * kept until it is answered or pruned.
   */
  park(id: number): Promise<void>;
  /**
   * The sender said yes: a parked event (parked less than `answerWithinMs` ago) is held again for `holdMs`, its
   * payload marked `confirmed: true`, and returned to be worked. Null when it was answered before, or too late.
   */
  resume(id: number, holdMs: number, answerWithinMs: number): Promise<InboxEntry | null>;
  /** The sender said no: a parked event is finished (its payload dropped). False when it was answered before. */
  decline(id: number): Promise<boolean>;
}

// ---------------------------------------------------------------------------------------------------------
// ConversationStore: threads, turns, images, usage (store/conversation-store.ts)
// ---------------------------------------------------------------------------------------------------------

export interface NewTurn {
  threadKey: ThreadKey;
  kind: TurnKind;
  prompt: string;
  params: ImageParams;
  userId: string;
  sourceMessageId?: string | null;
  idempotencyKey?: string | null;
  targetImageId?: string | null;
  referenceImages?: BlobRef[];
  /** Used only when the thread does not exist yet. */
  newThread?: { title: string; meta?: Record<string, unknown> };
  /** The workspace and channel a new thread's spend is counted in (ignored when the thread exists). */
  place?: Place;
  /** What the turn is expected to cost: reserved against `budgets` until it ends. */
  estimateUsd?: number;
  /** Caps the estimate must fit under, with everything already spent or reserved; checked as `hourlyLimit` is. */
  budgets?: readonly BudgetCap[];
  /**
   * At most this many turns with `countsTowardLimit` may be started by this user (on this platform) in a
   * rolling hour, this one included; checked and recorded in one transaction per user, so concurrent submits,
   * in any process, never pass it. Throws `quota_exceeded` with the wait in its message.
   */
  hourlyLimit?: number;
}

/** Where a thread lives, for budgets: the Slack team or Discord server, and the channel. */
export interface Place {
  workspaceId: string;
  channelId: string;
}

/** A spend cap (`BUDGET_*`): one person a day, one channel a day, or one workspace a month (UTC periods). */
export interface BudgetCap {
  scope: "user" | "channel" | "workspace";
  period: "day" | "month";
  limitUsd: number;
}

/** One payer's spend in the current period: billed ledger rows plus what unfinished turns hold. */
export interface SpendTotal {
  billedUsd: number;
  reservedUsd: number;
  usedUsd: number;
  resetsInSeconds: number;
}

export interface SpendQuery {
  platform: Platform;
  userId: string;
  workspaceId: string | null;
  channelId: string | null;
  /** Adds the workspace's top people and channels this month. */
  admin: boolean;
}

export interface SpendReport {
  userToday: SpendTotal;
  userMonth: SpendTotal;
  channelToday: SpendTotal | null;
  workspaceMonth: SpendTotal | null;
  topUsers: Array<{ id: string; usd: number }>;
  topChannels: Array<{ id: string; usd: number }>;
}

/** A ledger row (schema.ts `ledger`). */
export interface LedgerEntry {
  clientRequestId: string;
  turnId: string | null;
  platform: Platform;
  userId: string;
  workspaceId: string | null;
  channelId: string | null;
  endpoint: string;
  retry: number;
  status: LedgerStatus;
  requestId: string | null;
  httpStatus: number | null;
  usage: UsageEntry[];
  priceVersion: string;
  estimateUsd: number;
  costUsd: number;
  createdAt: Date;
}

/** An image a turn made, as it is handed to the store (which gives it its id, thread, turn and time). */
export type NewImage = Omit<ImageRecord, "id" | "threadKey" | "turnId" | "createdAt">;

export interface TurnOutcome {
  images: NewImage[];
  /** Where the thread's head moves: one of the new images (by index), or an existing image (undo/select). */
  head: { newImageIndex: number } | { imageId: string | null };
  baseImageId: string | null;
  usage: UsageEntry[];
  providerRequestId: string | null;
}

/** What the provider returned for a turn, its images in the blob store (see `TurnStore.saveProviderResult`). */
export interface SavedProviderResult {
  images: BlobRef[];
  usage: UsageEntry[];
  requestId: string | null;
  revisedPrompt: string | null;
}

export interface ThreadHistory {
  thread: Thread;
  turns: Turn[];
  images: ImageRecord[];
}

export interface StoreStats {
  turnsByStatus: Record<TurnStatus, number>;
  images: number;
  costUsd: number;
  /** Finished turns whose delivery ran out of quick retries and has not gone out yet. */
  lateDeliveries: number;
}

/** Threads: their keys and aliases, the adapter's facts about each, and their history. */
export interface ThreadStore {
  getThread(key: ThreadKey): Promise<Thread | null>;
  /** A thread by its key, or else by an alias given to it with `addThreadAlias`. */
  findThread(keyOrAlias: string): Promise<Thread | null>;
  /**
   * Gives a thread another name (idempotent). Throws `alias_taken` when the alias already names another thread.
   * `findThread` prefers keys, so an alias should not look like a key (platforms' ids and keys differ in form).
   */
  addThreadAlias(alias: string, threadKey: ThreadKey): Promise<void>;
  /** Shallow merge into the thread's meta. Throws `thread_not_found` when the thread does not exist. */
  updateThreadMeta(key: ThreadKey, meta: Record<string, unknown>): Promise<void>;
  listThreads(platform: Platform, limit: number): Promise<Thread[]>;
  history(key: ThreadKey): Promise<ThreadHistory | null>;
}

/** Turns through their life (queued → running → succeeded | failed | canceled), and the images they made. */
export interface TurnStore {
  /**
   * Records a turn (creating the thread when needed) and, in the same transaction, calls `enqueue` so the
   * job exists exactly when the turn does (within `hourlyLimit`, when given). A repeated `idempotencyKey` returns the existing turn with
   * `created: false` and enqueues nothing.
   */
  recordTurn(
    input: NewTurn,
    enqueue: (turn: Turn, tx: SqlExecutor) => Promise<void>,
  ): Promise<{ turn: Turn; created: boolean }>;
  getTurn(id: string): Promise<Turn | null>;
  /** Non-terminal turns accepted before this one in its thread. */
  turnsAhead(turn: Turn): Promise<number>;
  /** queued|running → running, attempts + 1. Returns null when the turn is already terminal. */
  startTurn(id: string): Promise<Turn | null>;
  /**
   * running → succeeded: inserts the images, records usage and moves the head, all in one transaction.
   * Idempotent: a turn already succeeded is returned unchanged with its images.
   */
  completeTurn(id: string, outcome: TurnOutcome): Promise<{ turn: Turn; images: ImageRecord[] }>;
  /** → failed (or canceled) with a code and the message a user sees. No-op on a terminal turn. */
  failTurn(id: string, code: string, message: string, status?: "failed" | "canceled"): Promise<Turn>;
  /**
   * Keeps what the provider returned for a running turn, before anything else is done with it, so a later
   * attempt finishes the turn from it instead of calling the provider again. The first result saved wins.
   */
  saveProviderResult(turnId: string, result: SavedProviderResult): Promise<void>;
  providerResult(turnId: string): Promise<SavedProviderResult | null>;
  markDelivered(id: string): Promise<void>;
  /** Counts a failed delivery attempt; returns how many have failed. */
  recordDeliveryFailure(id: string): Promise<number>;
  /** The quick retries ran out: the turn is late, and its delivery is tried again from `retryAt`. */
  deferDelivery(id: string, retryAt: Date): Promise<void>;
  /** Late deliveries of these platforms that are due, each claimed until `nextRetryAt` (see the store). */
  claimDueDeliveries(platforms: readonly Platform[], nextRetryAt: Date, limit: number): Promise<Turn[]>;
  /** Turns left queued or running (e.g. by a crash), oldest first; only that thread's when `threadKey` is given. */
  unfinishedTurns(limit: number, threadKey?: ThreadKey): Promise<Turn[]>;
  getImage(id: string): Promise<ImageRecord | null>;
  getTurnImages(turnId: string): Promise<ImageRecord[]>;
}

/**
 * Which platform message shows a turn: one row per turn and role, so the thousandth turn of a thread costs
 * what the first does. `ref` is the platform's address of the message (a Slack ts; `channel/message` on
 * Discord).
 */
export interface TurnMessageStore {
  saveTurnMessage(turnId: string, role: TurnMessageRole, ref: string): Promise<void>;
  turnMessage(turnId: string, role: TurnMessageRole): Promise<string | null>;
}

/** The bill (one row per provider request) and what it adds up to for each payer. */
export interface LedgerStore {
  /** Before a request is sent for a turn; charged to the turn's asker and its thread's channel and workspace. */
  openCall(call: {
    clientRequestId: string;
    turnId: string;
    endpoint: string;
    retry: number;
    estimateUsd: number;
  }): Promise<void>;
  settleCall(clientRequestId: string, outcome: CallOutcome): Promise<void>;
  ledgerEntries(turnId: string): Promise<LedgerEntry[]>;
  spendReport(query: SpendQuery): Promise<SpendReport>;
}

/**
 * Where a claim stands. `taken`: it is yours, do the work, then `settleClaim` (`tookOver`: an earlier holder's
 * claim had expired, so it may have done part of the work before it died: look before doing it again). `held`:
 * another process is doing it until `until` (unless it renews). `done`: it was done, and `ref` is what was made.
 */
export type Claim =
  | { state: "taken"; tookOver: boolean }
  | { state: "held"; until: Date }
  | { state: "done"; ref: string };

/**
 * Exactly once across processes: what an adapter must do once per thread or per turn (post a thread's root
 * message, a turn's status message) is claimed here first (`adapters/shared/once.ts` drives it).
 */
export interface ClaimStore {
  /** Takes the claim for `holder` for `ttlMs`, unless someone else holds it unexpired or it is done. */
  claim(key: string, holder: string, ttlMs: number): Promise<Claim>;
  /** Keeps a claim alive while its holder works; false when it is no longer this holder's. */
  renewClaim(key: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Records what the work made; the claim is then `done` for everyone. */
  settleClaim(key: string, holder: string, ref: string): Promise<void>;
  /** Gives an unsettled claim back (the work failed), so the next try, here or elsewhere, need not wait. */
  releaseClaim(key: string, holder: string): Promise<void>;
  /** Where a claim stands without taking it; null when nobody holds it (never claimed, released or expired). */
  readClaim(key: string): Promise<Exclude<Claim, { state: "taken" }> | null>;
  /** Drops claims made before `before` (done or abandoned: by then their result is recorded elsewhere). */
  pruneClaims(before: Date): Promise<number>;
}

/** Totals for monitoring: turns by status, images stored, estimated spend. */
export interface StatsSource {
  stats(): Promise<StoreStats>;
}

export type ConversationStore = ThreadStore & TurnStore & TurnMessageStore & LedgerStore & StatsSource;
