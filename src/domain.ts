/**
 * The platform-neutral model: threads, turns, images and their parameters. The ports the engine talks through
 * are in `ports.ts`.
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
  /** The workspace (Slack team, Discord server) and channel the thread's spend is counted in. */
  workspaceId: string | null;
  channelId: string | null;
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
  /** What the turn cost (the sum of its ledger rows), once it ended. */
  costUsd: number | null;
  /** What it was expected to cost when accepted; held against the budgets until it ends. */
  estimateUsd: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  deliveredAt: Date | null;
  /** Delivery attempts that failed (the platform down, a timeout); provider retries are counted in `attempts`. */
  deliveryAttempts: number;
  /** When the quick delivery retries ran out; the turn is then retried slowly until it goes out, late. */
  deliveryLateAt: Date | null;
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

/**
 * A provider call in the ledger: `pending` until its outcome is known; `billed` (its tokens' price), `not_billed`
 * (answered with an error, which OpenAI does not bill), or `unknown` (no answer: charged at the turn's estimate).
 */
export type LedgerStatus = "pending" | "billed" | "not_billed" | "unknown";

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
