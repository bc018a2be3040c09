import { sql } from "drizzle-orm";
import {
  type AnyPgColumn,
  bigint,
  check,
  index,
  integer,
  jsonb,
  numeric,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uuid,
} from "drizzle-orm/pg-core";
import {
  type BlobRef,
  type ImageParams,
  type LedgerStatus,
  type OutputFormat,
  PLATFORMS,
  type Platform,
  type TurnKind,
  type TurnStatus,
  type UsageEntry,
} from "../domain.ts";
import type { TurnMessageRole } from "../ports.ts";

/**
 * The tables behind `PostgresConversationStore`. `migrations/` is generated from this file with
 * `npm run db:generate -- --name <change>`; nothing creates tables at run time except those migrations.
 *
 * Everything here must run on PostgreSQL 15 (the oldest server we support) and on PGlite (PostgreSQL 18):
 * `gen_random_uuid()` yes, `uuidv7()` no.
 *
 * Enumerations are `text` with a CHECK rather than `pgEnum`: adding a value to a CHECK is an ordinary,
 * transactional migration, while `ALTER TYPE … ADD VALUE` cannot be used in the transaction that adds it.
 */

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();

/** `'a', 'b'` for a CHECK … IN (…); the values are our own constants, never user input. */
function sqlList(values: readonly string[]) {
  return sql.raw(values.map((value) => `'${value}'`).join(", "));
}

const TURN_KINDS: readonly TurnKind[] = ["generate", "edit", "variation", "undo", "select"];
const TURN_STATUSES: readonly TurnStatus[] = ["queued", "running", "succeeded", "failed", "canceled"];
const FORMATS: readonly OutputFormat[] = ["png", "jpeg", "webp"];
const LEDGER_STATUSES: readonly LedgerStatus[] = ["pending", "billed", "not_billed", "unknown"];
const TURN_MESSAGE_ROLES: readonly TurnMessageRole[] = ["status"];

export const threads = pgTable(
  "threads",
  {
    key: text("key").primaryKey(),
    platform: text("platform").$type<Platform>().notNull(),
    /** The image the next edit starts from. The FK is circular (images → threads), so drizzle-kit adds it after both tables. */
    headImageId: uuid("head_image_id").references((): AnyPgColumn => images.id, { onDelete: "set null" }),
    title: text("title").notNull().default(""),
    createdBy: text("created_by").notNull(),
    /**
     * Who pays for the thread's turns, besides the person who asks: the workspace (Slack team, Discord server)
     * and the channel (a Discord thread's parent channel). Set when the thread is made; budgets count by them.
     */
    workspaceId: text("workspace_id"),
    channelId: text("channel_id"),
    meta: jsonb("meta").$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check("threads_platform_check", sql`${t.platform} in (${sqlList(PLATFORMS)})`),
    // listThreads(platform): most recently updated first.
    index("threads_platform_updated_idx").on(t.platform, t.updatedAt.desc()),
  ],
);

/**
 * Other names for a thread, for platforms that learn a thread's public id only after it was created: a Slack
 * /imagine thread is recorded before its root message exists, then found by that message's ts.
 */
export const threadAliases = pgTable("thread_aliases", {
  alias: text("alias").primaryKey(),
  threadKey: text("thread_key")
    .notNull()
    .references(() => threads.key, { onDelete: "cascade" }),
  createdAt: createdAt(),
});

export const turns = pgTable(
  "turns",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    threadKey: text("thread_key")
      .notNull()
      .references(() => threads.key, { onDelete: "cascade" }),
    seq: integer("seq").notNull(),
    kind: text("kind").$type<TurnKind>().notNull(),
    status: text("status").$type<TurnStatus>().notNull().default("queued"),
    prompt: text("prompt").notNull(),
    params: jsonb("params").$type<ImageParams>().notNull(),
    userId: text("user_id").notNull(),
    sourceMessageId: text("source_message_id"),
    /** Unique when present; NULLs never collide, so turns without a key are unconstrained. */
    idempotencyKey: text("idempotency_key").unique("turns_idempotency_key_unique"),
    targetImageId: uuid("target_image_id").references((): AnyPgColumn => images.id, { onDelete: "set null" }),
    referenceImages: jsonb("reference_images").$type<BlobRef[]>().notNull().default([]),
    baseImageId: uuid("base_image_id").references((): AnyPgColumn => images.id, { onDelete: "set null" }),
    providerRequestId: text("provider_request_id"),
    errorCode: text("error_code"),
    errorMessage: text("error_message"),
    attempts: integer("attempts").notNull().default(0),
    /** What the turn cost: the sum of its ledger rows, set when it ends (exact decimal, summed in SQL). */
    costUsd: numeric("cost_usd", { mode: "number" }),
    /** What the turn was expected to cost when it was accepted (see provider/pricing.ts `estimateTurnUsd`). */
    estimateUsd: numeric("estimate_usd", { mode: "number" }).notNull().default(0),
    /** Held against the budgets while the turn is unfinished; 0 once it ends and its ledger rows count instead. */
    reservedUsd: numeric("reserved_usd", { mode: "number" }).notNull().default(0),
    createdAt: createdAt(),
    startedAt: timestamp("started_at", { withTimezone: true }),
    finishedAt: timestamp("finished_at", { withTimezone: true }),
    deliveredAt: timestamp("delivered_at", { withTimezone: true }),
    deliveryAttempts: integer("delivery_attempts").notNull().default(0),
    deliveryLateAt: timestamp("delivery_late_at", { withTimezone: true }),
    /** When the next slow retry of a late delivery is due; null once delivered, or while quick retries run. */
    deliveryRetryAt: timestamp("delivery_retry_at", { withTimezone: true }),
  },
  (t) => [
    unique("turns_thread_seq_unique").on(t.threadKey, t.seq),
    check("turns_kind_check", sql`${t.kind} in (${sqlList(TURN_KINDS)})`),
    check("turns_status_check", sql`${t.status} in (${sqlList(TURN_STATUSES)})`),
    check("turns_attempts_check", sql`${t.attempts} >= 0`),
    // Recovery after a crash scans only the few unfinished turns, oldest first.
    index("turns_unfinished_idx").on(t.status, t.createdAt).where(sql`${t.status} in ('queued', 'running')`),
    // How many turns are ahead of a new one in its thread, without walking a long thread's finished turns.
    // The sweep for late deliveries reads only the few turns waiting for one.
    index("turns_delivery_retry_idx").on(t.deliveryRetryAt).where(sql`${t.deliveryRetryAt} is not null`),
    // A person's turns of the last hour, for RATE_USER_PER_HOUR.
    index("turns_user_created_idx").on(t.userId, t.createdAt),
    // Budgets add up the reservations of unfinished turns: few rows.
    index("turns_reserved_idx").on(t.createdAt).where(sql`${t.reservedUsd} > 0`),
    index("turns_thread_unfinished_idx")
      .on(t.threadKey, t.seq)
      .where(sql`${t.status} in ('queued', 'running')`),
  ],
);

export const images = pgTable(
  "images",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    threadKey: text("thread_key")
      .notNull()
      .references(() => threads.key, { onDelete: "cascade" }),
    turnId: uuid("turn_id")
      .notNull()
      .references(() => turns.id, { onDelete: "cascade" }),
    /** What this image was edited from: each thread's history is a tree. */
    parentId: uuid("parent_id").references((): AnyPgColumn => images.id, { onDelete: "set null" }),
    idx: integer("idx").notNull(),
    sha256: text("sha256").notNull(),
    byteSize: integer("byte_size").notNull(),
    format: text("format").$type<OutputFormat>().notNull(),
    width: integer("width").notNull(),
    height: integer("height").notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    unique("images_turn_idx_unique").on(t.turnId, t.idx),
    check("images_format_check", sql`${t.format} in (${sqlList(FORMATS)})`),
    check("images_sha256_check", sql`${t.sha256} ~ '^[0-9a-f]{64}$'`),
    index("images_thread_idx").on(t.threadKey, t.createdAt),
    index("images_parent_idx").on(t.parentId),
    // Blob garbage collection and "is this blob still used?" look images up by hash.
    index("images_sha256_idx").on(t.sha256),
  ],
);

/**
 * The platform messages that show a turn (its status message, …), one row per turn and role: an adapter finds
 * where a turn is shown without reading or rewriting anything that grows with the thread. `ref` is the
 * platform's address of the message (a Slack ts; `channel/message` on Discord).
 */
export const turnMessages = pgTable(
  "turn_messages",
  {
    turnId: uuid("turn_id")
      .notNull()
      .references(() => turns.id, { onDelete: "cascade" }),
    role: text("role").$type<TurnMessageRole>().notNull(),
    ref: text("ref").notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.turnId, t.role] }),
    check("turn_messages_role_check", sql`${t.role} in (${sqlList(TURN_MESSAGE_ROLES)})`),
  ],
);

/**
 * What the provider returned for a turn, saved the moment it answered (its images already in the blob store):
 * a turn that fails or is interrupted after that (bad bytes, the database, a shutdown) is finished from here on
 * its next attempt, and the image is never bought twice.
 */
export const providerResults = pgTable("provider_results", {
  turnId: uuid("turn_id")
    .primaryKey()
    .references(() => turns.id, { onDelete: "cascade" }),
  images: jsonb("images").$type<BlobRef[]>().notNull(),
  usage: jsonb("usage").$type<UsageEntry[]>().notNull(),
  requestId: text("request_id"),
  revisedPrompt: text("revised_prompt"),
  createdAt: createdAt(),
});

/**
 * Platform events as they arrived (a Slack command, event or click; a Discord interaction or message), written
 * with one insert before the platform is acknowledged: an acknowledged event is never lost, whatever happens
 * to the process while it is downloaded, checked and recorded as a turn. `key` is the event's idempotency key
 * (a platform's retry of the event finds its row); the payload is dropped once the event is finished, since it
 * can carry short-lived reply tokens. See `store/inbox-store.ts`.
 */
export const inbox = pgTable(
  "inbox",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    platform: text("platform").$type<Platform>().notNull(),
    key: text("key").notNull(),
    kind: text("kind").notNull(),
    payload: jsonb("payload").$type<unknown>(),
    receivedAt: timestamp("received_at", { withTimezone: true }).notNull().defaultNow(),
    /** Until when the process working the event holds it; after that, any process's sweep takes it over. */
    claimedUntil: timestamp("claimed_until", { withTimezone: true }).notNull(),
    /** How many times it was taken (the first, at arrival, included). */
    attempts: integer("attempts").notNull().default(1),
    finishedAt: timestamp("finished_at", { withTimezone: true }),
    /** How it ended: `done` (recorded, or answered), `gave_up`; `waiting` for its sender to confirm, `declined`. */
    outcome: text("outcome"),
  },
  (t) => [
    unique("inbox_key_unique").on(t.key),
    check("inbox_platform_check", sql`${t.platform} in (${sqlList(PLATFORMS)})`),
    index("inbox_unfinished_idx").on(t.claimedUntil).where(sql`${t.finishedAt} is null`),
    index("inbox_finished_idx").on(t.finishedAt).where(sql`${t.finishedAt} is not null`),
  ],
);

/** One row per model call of a turn (a "think" turn calls the planner and the image model). */
export const usage = pgTable(
  "usage",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    turnId: uuid("turn_id")
      .notNull()
      .references(() => turns.id, { onDelete: "cascade" }),
    model: text("model").notNull(),
    inputTokens: integer("input_tokens").notNull().default(0),
    inputTextTokens: integer("input_text_tokens").notNull().default(0),
    inputImageTokens: integer("input_image_tokens").notNull().default(0),
    outputTokens: integer("output_tokens").notNull().default(0),
    outputImageTokens: integer("output_image_tokens").notNull().default(0),
    reasoningTokens: integer("reasoning_tokens").notNull().default(0),
    totalTokens: integer("total_tokens").notNull().default(0),
    costUsd: numeric("cost_usd", { mode: "number" }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index("usage_turn_idx").on(t.turnId)],
);

/**
 * The bill: one row per HTTP request to the provider, written before it is sent (so a crash mid-call leaves it)
 * and settled when its outcome is known. `billed` rows cost what their tokens cost at `price_version`; `unknown`
 * rows (the connection broke, the process died, the call was aborted after it was sent) cost the turn's estimate,
 * since OpenAI may have billed them; `not_billed` rows (an error answer) cost nothing. A turn's cost is the sum of
 * its rows. The person, channel and workspace charged are copied from the turn and its thread, so the ledger
 * reads alone.
 */
export const ledger = pgTable(
  "ledger",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    /** Sent as `X-Client-Request-Id`: OpenAI logs it, so a call can be traced even when no answer came back. */
    clientRequestId: text("client_request_id").notNull().unique("ledger_client_request_id_unique"),
    turnId: uuid("turn_id").references(() => turns.id, { onDelete: "set null" }),
    platform: text("platform").$type<Platform>().notNull(),
    userId: text("user_id").notNull(),
    workspaceId: text("workspace_id"),
    channelId: text("channel_id"),
    /** `images.generate`, `images.edit`, `responses`. */
    endpoint: text("endpoint").notNull(),
    /** The SDK's own retry count for this request (`x-stainless-retry-count`). */
    retry: integer("retry").notNull().default(0),
    status: text("status").$type<LedgerStatus>().notNull().default("pending"),
    requestId: text("request_id"),
    httpStatus: integer("http_status"),
    usage: jsonb("usage").$type<UsageEntry[]>().notNull().default([]),
    priceVersion: text("price_version").notNull(),
    estimateUsd: numeric("estimate_usd", { mode: "number" }).notNull(),
    costUsd: numeric("cost_usd", { mode: "number" }).notNull().default(0),
    createdAt: createdAt(),
    settledAt: timestamp("settled_at", { withTimezone: true }),
  },
  (t) => [
    check("ledger_platform_check", sql`${t.platform} in (${sqlList(PLATFORMS)})`),
    check("ledger_status_check", sql`${t.status} in (${sqlList(LEDGER_STATUSES)})`),
    index("ledger_turn_idx").on(t.turnId),
    // Spend by person, channel and workspace since a day or month began.
    index("ledger_user_idx").on(t.platform, t.userId, t.createdAt),
    index("ledger_channel_idx").on(t.platform, t.channelId, t.createdAt),
    index("ledger_workspace_idx").on(t.platform, t.workspaceId, t.createdAt),
  ],
);

export type ThreadRow = typeof threads.$inferSelect;
export type TurnRow = typeof turns.$inferSelect;
export type ImageRow = typeof images.$inferSelect;
export type UsageRow = typeof usage.$inferSelect;
export type InboxRow = typeof inbox.$inferSelect;
export type LedgerRow = typeof ledger.$inferSelect;

/**
 * Things an adapter does once across every process (a thread's root message, a turn's status message): the
 * process that inserts the row does it, keeps the claim alive while it works, and records what it made (`ref`,
 * the platform's address for it); the others wait for `ref`, or take the claim over once it has expired (its
 * holder died). Rows are only needed while the work is in flight and are pruned after a day.
 */
export const claims = pgTable(
  "claims",
  {
    key: text("key").primaryKey(),
    holder: text("holder").notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    ref: text("ref"),
    createdAt: createdAt(),
  },
  (t) => [index("claims_created_idx").on(t.createdAt)],
);
