import { and, asc, desc, eq, gt, inArray, isNotNull, isNull, like, lt, lte, sql } from "drizzle-orm";
import {
  type ImageRecord,
  type Platform,
  platformOf,
  type Thread,
  type ThreadKey,
  type Turn,
  type TurnStatus,
} from "../domain.ts";
import { AppError } from "../errors.ts";
import type {
  CallOutcome,
  ConversationStore,
  LedgerEntry,
  NewTurn,
  SavedProviderResult,
  SpendQuery,
  SpendReport,
  SqlExecutor,
  StoreStats,
  ThreadHistory,
  TurnMessageRole,
  TurnOutcome,
} from "../ports.ts";
import { type Db, sqlExecutor, type Tx } from "./database.ts";
import { budgetSql, LedgerQueries } from "./ledger-store.ts";
import {
  type ImageRow,
  images,
  ledger,
  providerResults,
  type ThreadRow,
  type TurnRow,
  threadAliases,
  threads,
  turnMessages,
  turns,
  usage,
} from "./schema.ts";

const UNFINISHED: TurnStatus[] = ["queued", "running"];
const IDEMPOTENCY_CONSTRAINT = "turns_idempotency_key_unique";

/**
 * The conversation store on PostgreSQL, through drizzle. The same code runs on a `pg` Pool and on embedded
 * PGlite: it uses only typed drizzle queries (identical values on both drivers) and casts any raw aggregate in
 * SQL (int8 arrives as a string from pg and as a number from PGlite).
 *
 * Longer than our usual ~400 lines on purpose: every statement the app runs against its own tables is here, so
 * the locks and transactions that keep a thread consistent (recordTurn, completeTurn) read as one piece.
 */
export class PostgresConversationStore implements ConversationStore {
  readonly #db: Db;
  readonly #ledger: LedgerQueries;

  constructor(db: Db) {
    this.#db = db;
    this.#ledger = new LedgerQueries(db);
  }

  async recordTurn(
    input: NewTurn,
    enqueue: (turn: Turn, tx: SqlExecutor) => Promise<void>,
  ): Promise<{ turn: Turn; created: boolean }> {
    const platform = platformOf(input.threadKey); // a bad key fails here, before anything is written
    const idempotencyKey = input.idempotencyKey ?? null;
    try {
      return await this.#db.transaction(async (tx) => {
        // One writer per thread: makes `seq` gap-free and ordered, and makes a replayed event wait for the
        // first delivery's transaction, then find its turn below instead of failing on the unique key.
        await lockThread(tx, input.threadKey);
        if (idempotencyKey !== null) {
          const existing = await findByIdempotencyKey(tx, idempotencyKey);
          if (existing) return { turn: existing, created: false };
        }
        if (input.hourlyLimit !== undefined)
          await checkHourlyLimit(tx, platform, input.userId, input.hourlyLimit);
        const [thread] = await tx
          .insert(threads)
          .values({
            key: input.threadKey,
            platform,
            title: input.newThread?.title ?? "",
            createdBy: input.userId,
            workspaceId: input.place?.workspaceId ?? null,
            channelId: input.place?.channelId ?? null,
            meta: input.newThread?.meta ?? {},
          })
          .onConflictDoUpdate({ target: threads.key, set: { updatedAt: sql`now()` } })
          .returning({ workspaceId: threads.workspaceId, channelId: threads.channelId });
        const estimateUsd = input.estimateUsd ?? 0;
        if (input.budgets?.length) {
          const payer = { platform, userId: input.userId, ...required(thread, "thread") };
          await budgetSql.checkBudgets(tx, payer, estimateUsd, input.budgets);
        }
        const [next] = await tx
          .select({ seq: sql<number>`coalesce(max(${turns.seq}), 0)::int + 1`.mapWith(Number) })
          .from(turns)
          .where(eq(turns.threadKey, input.threadKey));
        const [row] = await tx
          .insert(turns)
          .values({
            threadKey: input.threadKey,
            seq: next?.seq ?? 1,
            kind: input.kind,
            status: "queued",
            prompt: input.prompt,
            params: input.params,
            userId: input.userId,
            sourceMessageId: input.sourceMessageId ?? null,
            idempotencyKey,
            targetImageId: input.targetImageId ?? null,
            referenceImages: input.referenceImages ?? [],
            estimateUsd,
            reservedUsd: estimateUsd,
          })
          .returning();
        const turn = toTurn(required(row, "inserted turn"));
        // The job is written by the same transaction: if enqueueing fails, the turn (and a new thread) roll back.
        await enqueue(turn, sqlExecutor(tx));
        return { turn, created: true };
      });
    } catch (error) {
      // The same key reused in another thread is not serialized by the thread lock; the unique index decides.
      if (idempotencyKey !== null && uniqueViolation(error) === IDEMPOTENCY_CONSTRAINT) {
        const existing = await findByIdempotencyKey(this.#db, idempotencyKey);
        if (existing) return { turn: existing, created: false };
      }
      throw error;
    }
  }

  async getThread(key: ThreadKey): Promise<Thread | null> {
    const [row] = await this.#db.select().from(threads).where(eq(threads.key, key));
    return row ? toThread(row) : null;
  }

  async findThread(keyOrAlias: string): Promise<Thread | null> {
    const direct = await this.getThread(keyOrAlias);
    if (direct) return direct;
    const [row] = await this.#db
      .select({ thread: threads })
      .from(threadAliases)
      .innerJoin(threads, eq(threads.key, threadAliases.threadKey))
      .where(eq(threadAliases.alias, keyOrAlias));
    return row ? toThread(row.thread) : null;
  }

  async addThreadAlias(alias: string, threadKey: ThreadKey): Promise<void> {
    // One statement: a new alias is inserted, the same one again is a no-op update, another thread's is kept.
    const [row] = await this.#db
      .insert(threadAliases)
      .values({ alias, threadKey })
      .onConflictDoUpdate({
        target: threadAliases.alias,
        set: { alias: sql`excluded.alias` },
        setWhere: eq(threadAliases.threadKey, threadKey),
      })
      .returning({ threadKey: threadAliases.threadKey });
    if (!row)
      throw new AppError("alias_taken", `alias ${alias} already names another thread than ${threadKey}`);
  }

  /** Shallow merge: keys in `meta` replace the stored ones, others stay. Throws when the thread does not exist. */
  async updateThreadMeta(key: ThreadKey, meta: Record<string, unknown>): Promise<void> {
    const updated = await this.#db
      .update(threads)
      .set({ meta: sql`${threads.meta} || ${JSON.stringify(meta)}::jsonb`, updatedAt: sql`now()` })
      .where(eq(threads.key, key))
      .returning({ key: threads.key });
    if (updated.length === 0) throw new AppError("thread_not_found", `thread ${key} does not exist`);
  }

  async listThreads(platform: Platform, limit: number): Promise<Thread[]> {
    const rows = await this.#db
      .select()
      .from(threads)
      .where(eq(threads.platform, platform))
      .orderBy(desc(threads.updatedAt), asc(threads.key))
      .limit(limit);
    return rows.map(toThread);
  }

  async getTurn(id: string): Promise<Turn | null> {
    const [row] = await this.#db.select().from(turns).where(eq(turns.id, id));
    return row ? toTurn(row) : null;
  }

  async stats(): Promise<StoreStats> {
    const byStatus = await this.#db
      .select({ status: turns.status, count: sql<number>`count(*)::int` })
      .from(turns)
      .groupBy(turns.status);
    const turnsByStatus: StoreStats["turnsByStatus"] = {
      queued: 0,
      running: 0,
      succeeded: 0,
      failed: 0,
      canceled: 0,
    };
    for (const row of byStatus) turnsByStatus[row.status as TurnStatus] = Number(row.count);
    const [spend] = await this.#db
      .select({ total: sql<string>`coalesce(sum(${ledger.costUsd}), 0)::text` })
      .from(ledger);
    const lateDeliveries = await this.#db.$count(
      turns,
      and(isNotNull(turns.deliveryLateAt), isNull(turns.deliveredAt)),
    );
    return {
      turnsByStatus,
      images: await this.#db.$count(images),
      costUsd: Number(spend?.total ?? 0),
      lateDeliveries,
    };
  }

  async turnsAhead(turn: Turn): Promise<number> {
    return this.#db.$count(
      turns,
      and(eq(turns.threadKey, turn.threadKey), lt(turns.seq, turn.seq), inArray(turns.status, UNFINISHED)),
    );
  }

  async startTurn(id: string): Promise<Turn | null> {
    // A request an earlier attempt left pending (the process died mid-call) may have been billed.
    await budgetSql.settleAbandonedCalls(this.#db, id);
    // `running` is allowed too: a job that crashed mid-run starts again, and counts another attempt.
    const [row] = await this.#db
      .update(turns)
      .set({ status: "running", attempts: sql`${turns.attempts} + 1`, startedAt: sql`now()` })
      .where(and(eq(turns.id, id), inArray(turns.status, UNFINISHED)))
      .returning();
    return row ? toTurn(row) : null;
  }

  /**
   * A failed or canceled turn is returned unchanged with no images (check `turn.status`): a job that finishes
   * after the user canceled must not bring the turn back.
   */
  async completeTurn(id: string, outcome: TurnOutcome): Promise<{ turn: Turn; images: ImageRecord[] }> {
    return this.#db.transaction(async (tx) => {
      // Row lock: a job that runs twice at once completes once; the second sees `succeeded` below.
      const [current] = await tx.select().from(turns).where(eq(turns.id, id)).for("update");
      if (!current) throw new AppError("internal", `turn ${id} does not exist`);
      if (current.status === "succeeded") return { turn: toTurn(current), images: await turnImages(tx, id) };
      if (!UNFINISHED.includes(current.status)) return { turn: toTurn(current), images: [] };

      const inserted = outcome.images.length
        ? await tx
            .insert(images)
            .values(
              outcome.images.map((image) => ({
                threadKey: current.threadKey,
                turnId: id,
                parentId: image.parentId,
                idx: image.index,
                sha256: image.sha256,
                byteSize: image.byteSize,
                format: image.format,
                width: image.width,
                height: image.height,
              })),
            )
            .returning()
        : [];
      const records = inserted.map(toImage).sort((a, b) => a.index - b.index);

      if (outcome.usage.length) {
        await tx.insert(usage).values(
          outcome.usage.map((entry) => ({
            turnId: id,
            model: entry.model,
            inputTokens: entry.inputTokens,
            inputTextTokens: entry.inputTextTokens,
            inputImageTokens: entry.inputImageTokens,
            outputTokens: entry.outputTokens,
            outputImageTokens: entry.outputImageTokens,
            reasoningTokens: entry.reasoningTokens,
            totalTokens: entry.totalTokens,
            costUsd: entry.costUsd,
          })),
        );
      }

      const headImageId = await resolveHead(tx, current.threadKey, outcome.head, records);
      const [row] = await tx
        .update(turns)
        .set({
          status: "succeeded",
          finishedAt: sql`now()`,
          providerRequestId: outcome.providerRequestId,
          baseImageId: outcome.baseImageId,
          // The sum of its ledger rows, as numeric in SQL, so many small float costs do not drift.
          ...(await budgetSql.settleTurn(tx, id)),
          errorCode: null,
          errorMessage: null,
        })
        .where(eq(turns.id, id))
        .returning();
      await tx
        .update(threads)
        .set({ headImageId, updatedAt: sql`now()` })
        .where(eq(threads.key, current.threadKey));
      return { turn: toTurn(required(row, "completed turn")), images: records };
    });
  }

  async failTurn(
    id: string,
    code: string,
    message: string,
    status: "failed" | "canceled" = "failed",
  ): Promise<Turn> {
    return this.#db.transaction(async (tx) => {
      const [row] = await tx
        .update(turns)
        .set({
          status,
          errorCode: code,
          errorMessage: message,
          finishedAt: sql`now()`,
          ...(await budgetSql.settleTurn(tx, id)),
        })
        .where(and(eq(turns.id, id), inArray(turns.status, UNFINISHED)))
        .returning();
      if (row) {
        await tx.update(threads).set({ updatedAt: sql`now()` }).where(eq(threads.key, row.threadKey));
        return toTurn(row);
      }
      const [terminal] = await tx.select().from(turns).where(eq(turns.id, id));
      if (!terminal) throw new AppError("internal", `turn ${id} does not exist`);
      return toTurn(terminal);
    });
  }

  async saveProviderResult(turnId: string, result: SavedProviderResult): Promise<void> {
    await this.#db
      .insert(providerResults)
      .values({ turnId, ...result })
      .onConflictDoNothing({ target: providerResults.turnId });
  }

  async providerResult(turnId: string): Promise<SavedProviderResult | null> {
    const [row] = await this.#db.select().from(providerResults).where(eq(providerResults.turnId, turnId));
    return row
      ? { images: row.images, usage: row.usage, requestId: row.requestId, revisedPrompt: row.revisedPrompt }
      : null;
  }

  /** Keeps the first delivery time: a re-delivery after a crash does not move it. */
  async markDelivered(id: string): Promise<void> {
    await this.#db
      .update(turns)
      .set({ deliveredAt: sql`coalesce(${turns.deliveredAt}, now())`, deliveryRetryAt: null })
      .where(eq(turns.id, id));
  }

  async recordDeliveryFailure(id: string): Promise<number> {
    const [row] = await this.#db
      .update(turns)
      .set({ deliveryAttempts: sql`${turns.deliveryAttempts} + 1` })
      .where(eq(turns.id, id))
      .returning({ attempts: turns.deliveryAttempts });
    return row?.attempts ?? 0;
  }

  async deferDelivery(id: string, retryAt: Date): Promise<void> {
    await this.#db
      .update(turns)
      .set({ deliveryLateAt: sql`coalesce(${turns.deliveryLateAt}, now())`, deliveryRetryAt: retryAt })
      .where(and(eq(turns.id, id), isNull(turns.deliveredAt)));
  }

  /**
   * Claims the late deliveries of these platforms that are due, moving each one's next retry to `nextRetryAt`,
   * in one statement: processes sweeping at once claim different turns, and a sweep never picks one twice.
   */
  async claimDueDeliveries(
    platforms: readonly Platform[],
    nextRetryAt: Date,
    limit: number,
  ): Promise<Turn[]> {
    if (platforms.length === 0) return [];
    const due = this.#db
      .select({ id: turns.id })
      .from(turns)
      .innerJoin(threads, eq(threads.key, turns.threadKey))
      .where(
        and(
          lte(turns.deliveryRetryAt, sql`now()`),
          isNull(turns.deliveredAt),
          inArray(threads.platform, [...platforms]),
        ),
      )
      .orderBy(asc(turns.deliveryRetryAt))
      .limit(limit)
      .for("update", { of: turns, skipLocked: true });
    const rows = await this.#db
      .update(turns)
      .set({ deliveryRetryAt: nextRetryAt })
      .where(inArray(turns.id, due))
      .returning();
    return rows.map(toTurn);
  }

  /** The newest `ref` wins: a status message posted again (the first one deleted) replaces the old one. */
  async saveTurnMessage(turnId: string, role: TurnMessageRole, ref: string): Promise<void> {
    await this.#db
      .insert(turnMessages)
      .values({ turnId, role, ref })
      .onConflictDoUpdate({ target: [turnMessages.turnId, turnMessages.role], set: { ref } });
  }

  async turnMessage(turnId: string, role: TurnMessageRole): Promise<string | null> {
    const [row] = await this.#db
      .select({ ref: turnMessages.ref })
      .from(turnMessages)
      .where(and(eq(turnMessages.turnId, turnId), eq(turnMessages.role, role)));
    return row?.ref ?? null;
  }

  async getImage(id: string): Promise<ImageRecord | null> {
    const [row] = await this.#db.select().from(images).where(eq(images.id, id));
    return row ? toImage(row) : null;
  }

  async getTurnImages(turnId: string): Promise<ImageRecord[]> {
    return turnImages(this.#db, turnId);
  }

  async history(key: ThreadKey): Promise<ThreadHistory | null> {
    // One snapshot for all three reads, so the head and every image's turn are in the same picture.
    return this.#db.transaction(
      async (tx) => {
        const [thread] = await tx.select().from(threads).where(eq(threads.key, key));
        if (!thread) return null;
        const turnRows = await tx
          .select()
          .from(turns)
          .where(eq(turns.threadKey, key))
          .orderBy(asc(turns.seq));
        const imageRows = await tx
          .select()
          .from(images)
          .where(eq(images.threadKey, key))
          .orderBy(asc(images.createdAt), asc(images.idx));
        return { thread: toThread(thread), turns: turnRows.map(toTurn), images: imageRows.map(toImage) };
      },
      { isolationLevel: "repeatable read", accessMode: "read only" },
    );
  }

  openCall(call: Parameters<LedgerQueries["openCall"]>[0]): Promise<void> {
    return this.#ledger.openCall(call);
  }

  settleCall(clientRequestId: string, outcome: CallOutcome): Promise<void> {
    return this.#ledger.settleCall(clientRequestId, outcome);
  }

  ledgerEntries(turnId: string): Promise<LedgerEntry[]> {
    return this.#ledger.ledgerEntries(turnId);
  }

  spendReport(query: SpendQuery): Promise<SpendReport> {
    return this.#ledger.spendReport(query);
  }

  async unfinishedTurns(limit: number, threadKey?: ThreadKey): Promise<Turn[]> {
    const rows = await this.#db
      .select()
      .from(turns)
      .where(
        and(
          inArray(turns.status, UNFINISHED),
          threadKey === undefined ? undefined : eq(turns.threadKey, threadKey),
        ),
      )
      .orderBy(asc(turns.createdAt), asc(turns.seq))
      .limit(limit);
    return rows.map(toTurn);
  }
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Transaction-scoped, released at commit or rollback. The two-key form keeps our lock space apart from
 * single-key advisory locks (pg-boss uses those), so a hash collision can never make us wait on the queue.
 */
/** The turns that call the provider: what a person's hourly limit counts. */
const DRAWING_KINDS = ["generate", "edit", "variation"] as const;

/**
 * Throws `quota_exceeded` when this user already started `limit` drawing turns on this platform in the last
 * hour. Holds a per-user lock until the transaction ends (always taken after the thread's lock, so the two
 * never deadlock), so concurrent submits count each other.
 */
async function checkHourlyLimit(tx: Tx, platform: Platform, userId: string, limit: number): Promise<void> {
  await tx.execute(
    sql`select pg_advisory_xact_lock(hashtext('threadcanvas.user'), hashtext(${`${platform}:${userId}`}))`,
  );
  const [window] = await tx
    .select({
      started: sql<number>`count(*)::int`.mapWith(Number),
      freeInSeconds:
        sql<number>`coalesce(ceil(extract(epoch from min(${turns.createdAt}) + interval '1 hour' - now())), 0)::int`.mapWith(
          Number,
        ),
    })
    .from(turns)
    .where(
      and(
        eq(turns.userId, userId),
        like(turns.threadKey, `${platform}:%`),
        inArray(turns.kind, [...DRAWING_KINDS]),
        gt(turns.createdAt, sql`now() - interval '1 hour'`),
      ),
    );
  const started = window?.started ?? 0;
  if (started < limit) return;
  const minutes = Math.max(1, Math.ceil((window?.freeInSeconds ?? 0) / 60));
  throw new AppError("quota_exceeded", `${platform}:${userId} started ${started} turns in the last hour`, {
    userMessage: `You have started ${started} images in the past hour, the most one person may (${limit}). You can start another in ${minutes} minute${minutes === 1 ? "" : "s"}.`,
  });
}

async function lockThread(tx: Tx, key: ThreadKey): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext('threadcanvas.thread'), hashtext(${key}))`);
}

async function findByIdempotencyKey(db: Db | Tx, key: string): Promise<Turn | null> {
  const [row] = await db.select().from(turns).where(eq(turns.idempotencyKey, key));
  return row ? toTurn(row) : null;
}

async function turnImages(db: Db | Tx, turnId: string): Promise<ImageRecord[]> {
  const rows = await db.select().from(images).where(eq(images.turnId, turnId)).orderBy(asc(images.idx));
  return rows.map(toImage);
}

/** The image id the thread's head moves to; an existing image must belong to the same thread. */
async function resolveHead(
  tx: Tx,
  threadKey: ThreadKey,
  head: TurnOutcome["head"],
  created: ImageRecord[],
): Promise<string | null> {
  if ("newImageIndex" in head) {
    const image = created.find((candidate) => candidate.index === head.newImageIndex);
    if (!image)
      throw new AppError("internal", `head index ${head.newImageIndex} is not one of the new images`);
    return image.id;
  }
  if (head.imageId === null) return null;
  const [image] = await tx
    .select({ id: images.id })
    .from(images)
    .where(and(eq(images.id, head.imageId), eq(images.threadKey, threadKey)));
  if (!image) throw new AppError("image_not_found", `image ${head.imageId} is not in thread ${threadKey}`);
  return image.id;
}

/** The constraint a unique violation (SQLSTATE 23505) hit, looking through drizzle's DrizzleQueryError wrapper. */
function uniqueViolation(error: unknown): string | undefined {
  for (let cause = error, depth = 0; cause && depth < 5; depth++) {
    const candidate = cause as { code?: unknown; constraint?: unknown; cause?: unknown };
    if (candidate.code === "23505")
      return typeof candidate.constraint === "string" ? candidate.constraint : "";
    cause = candidate.cause;
  }
  return undefined;
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new AppError("internal", `${what}: the database returned no row`);
  return value;
}

function toThread(row: ThreadRow): Thread {
  return {
    key: row.key,
    platform: row.platform,
    headImageId: row.headImageId,
    title: row.title,
    createdBy: row.createdBy,
    workspaceId: row.workspaceId,
    channelId: row.channelId,
    meta: row.meta,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

function toTurn(row: TurnRow): Turn {
  return {
    id: row.id,
    threadKey: row.threadKey,
    seq: row.seq,
    kind: row.kind,
    status: row.status,
    prompt: row.prompt,
    params: row.params,
    userId: row.userId,
    sourceMessageId: row.sourceMessageId,
    idempotencyKey: row.idempotencyKey,
    targetImageId: row.targetImageId,
    referenceImages: row.referenceImages,
    baseImageId: row.baseImageId,
    providerRequestId: row.providerRequestId,
    errorCode: row.errorCode,
    errorMessage: row.errorMessage,
    attempts: row.attempts,
    costUsd: row.costUsd,
    estimateUsd: row.estimateUsd,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    deliveredAt: row.deliveredAt,
    deliveryAttempts: row.deliveryAttempts,
    deliveryLateAt: row.deliveryLateAt,
  };
}

function toImage(row: ImageRow): ImageRecord {
  return {
    id: row.id,
    threadKey: row.threadKey,
    turnId: row.turnId,
    parentId: row.parentId,
    index: row.idx,
    sha256: row.sha256,
    byteSize: row.byteSize,
    format: row.format,
    width: row.width,
    height: row.height,
    createdAt: row.createdAt,
  };
}
