/**
 * The platform-neutral model: threads, turns, images, and the ports the engine talks through.
 * Nothing here imports a platform SDK or a database driver.
 */

export type Platform = "console" | "slack" | "discord";
export const PLATFORMS: readonly Platform[] = ["console", "slack", "discord"];

/** A thread's stable key carries its platform first: `slack:T1:C2:1712.0001`, `discord:G1:THREAD`, `console:…`. */
export type ThreadKey = string;

export function platformOf(key: ThreadKey): Platform {
  const platform = key.slice(0, key.indexOf(":"));
  if (platform === "console" || platform === "slack" || platform === "discord") return platform;
  throw new Error(`thread key ${JSON.stringify(key)} does not start with a known platform`);
}

export type Quality = "low" | "medium" | "high" | "auto";
export type OutputFormat = "png" | "jpeg" | "webp";
export type Background = "transparent" | "opaque" | "auto";

/** Everything that shapes a provider call. `size` is `auto` or a validated `WxH`. */
export interface ImageParams {
  size: string;
  quality: Quality;
  n: number;
  format: OutputFormat;
  background: Background;
  think: boolean;
}

export const DEFAULT_PARAMS: ImageParams = {
  size: "auto",
  quality: "auto",
  n: 1,
  format: "png",
  background: "auto",
  think: false,
};

/**
 * - generate: a new image from the prompt.
 * - edit: the thread's head (or `targetImageId`) edited by the prompt, plus any reference images.
 * - variation: new images from the target image's prompt, starting from the target image.
 * - undo: the head moves to its parent.
 * - select: the head moves to `targetImageId` (a branch from an earlier version, or "use this one").
 */
export type TurnKind = "generate" | "edit" | "variation" | "undo" | "select";
export type TurnStatus = "queued" | "running" | "succeeded" | "failed" | "canceled";

export const TERMINAL_STATUSES: readonly TurnStatus[] = ["succeeded", "failed", "canceled"];

/** An image given by a user (an attachment), already in the blob store. */
export interface BlobRef {
  sha256: string;
  format: OutputFormat;
}

export interface Thread {
  key: ThreadKey;
  platform: Platform;
  /** The image the next edit starts from; null until the first image exists. */
  headImageId: string | null;
  title: string;
  createdBy: string;
  /** Adapter-owned facts needed to continue the thread after a restart (channel ids, root message, …). */
  meta: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

export interface Turn {
  id: string;
  threadKey: ThreadKey;
  /** 1, 2, 3 … within the thread, in the order the requests were accepted. */
  seq: number;
  kind: TurnKind;
  status: TurnStatus;
  prompt: string;
  params: ImageParams;
  userId: string;
  /** The platform message this turn answers (a slash command, a reply), for threading the result. */
  sourceMessageId: string | null;
  /** Dedupes a platform event that arrives twice (Slack retries, gateway replays). */
  idempotencyKey: string | null;
  /** The image to start from or move to; null means "the thread's head when the turn runs". */
  targetImageId: string | null;
  referenceImages: BlobRef[];
  /** The image the turn actually started from, fixed when it runs. */
  baseImageId: string | null;
  providerRequestId: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  attempts: number;
  costUsd: number | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  deliveredAt: Date | null;
}

export interface ImageRecord {
  id: string;
  threadKey: ThreadKey;
  turnId: string;
  /** What this image was edited from; null for a fresh generation. */
  parentId: string | null;
  /** Position among the turn's outputs (0 … n-1). */
  index: number;
  sha256: string;
  byteSize: number;
  format: OutputFormat;
  width: number;
  height: number;
  createdAt: Date;
}

/**
 * Every adapter names an image file after its version — v3-1.png, v3-2.jpg — so a person can tell versions
 * apart, and a delivery that runs again can find what was already posted by name. `format` may differ from the
 * stored image's (a compressed copy).
 */
export function imageFileName(seq: number, index: number, format: OutputFormat): string {
  return `v${seq}-${index + 1}.${fileExtension(format)}`;
}

export function fileExtension(format: OutputFormat): string {
  return format === "jpeg" ? "jpg" : format;
}

export interface UsageEntry {
  model: string;
  inputTokens: number;
  inputTextTokens: number;
  inputImageTokens: number;
  outputTokens: number;
  outputImageTokens: number;
  reasoningTokens: number;
  totalTokens: number;
  /** Estimated from the published per-token prices; see src/provider/pricing.ts. */
  costUsd: number;
}

// ---------------------------------------------------------------------------------------------------------
// Ports
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

export interface BlobStore {
  /** Stores the bytes once; returns their SHA-256 (hex). Putting the same bytes again is a no-op. */
  put(bytes: Uint8Array): Promise<string>;
  get(sha256: string): Promise<Buffer>;
  has(sha256: string): Promise<boolean>;
}

/** pg-boss's database port: lets a job be enqueued inside the store's transaction. */
export interface SqlExecutor {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

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
}

export interface NewImage {
  parentId: string | null;
  index: number;
  sha256: string;
  byteSize: number;
  format: OutputFormat;
  width: number;
  height: number;
}

export interface TurnOutcome {
  images: NewImage[];
  /** Where the thread's head moves: one of the new images (by index), or an existing image (undo/select). */
  head: { newImageIndex: number } | { imageId: string | null };
  baseImageId: string | null;
  usage: UsageEntry[];
  providerRequestId: string | null;
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
}

export interface ConversationStore {
  /**
   * Records a turn (creating the thread when needed) and, in the same transaction, calls `enqueue` so the
   * job exists exactly when the turn does. A repeated `idempotencyKey` returns the existing turn with
   * `created: false` and enqueues nothing.
   */
  recordTurn(
    input: NewTurn,
    enqueue: (turn: Turn, tx: SqlExecutor) => Promise<void>,
  ): Promise<{ turn: Turn; created: boolean }>;
  getThread(key: ThreadKey): Promise<Thread | null>;
  /** A thread by its key, or else by an alias given to it with `addThreadAlias`. */
  findThread(keyOrAlias: string): Promise<Thread | null>;
  /**
   * Gives a thread another name (idempotent). Throws `alias_taken` when the alias already names another thread.
   * `findThread` prefers keys, so an alias should not look like a key (platforms' ids and keys differ in form).
   */
  addThreadAlias(alias: string, threadKey: ThreadKey): Promise<void>;
  updateThreadMeta(key: ThreadKey, meta: Record<string, unknown>): Promise<void>;
  listThreads(platform: Platform, limit: number): Promise<Thread[]>;
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
  markDelivered(id: string): Promise<void>;
  getImage(id: string): Promise<ImageRecord | null>;
  getTurnImages(turnId: string): Promise<ImageRecord[]>;
  history(key: ThreadKey): Promise<ThreadHistory | null>;
  /** Totals for monitoring: turns by status, images stored, estimated spend. */
  stats(): Promise<StoreStats>;
  /** Turns left queued or running (e.g. by a crash), oldest first; only that thread's when `threadKey` is given. */
  unfinishedTurns(limit: number, threadKey?: ThreadKey): Promise<Turn[]>;
}
