import { and, asc, eq, sql } from "drizzle-orm";
import type { LedgerStatus, Platform, UsageEntry } from "../domain.ts";
import { AppError } from "../errors.ts";
import type { BudgetCap, CallOutcome, LedgerEntry, SpendQuery, SpendReport, SpendTotal } from "../ports.ts";
import { PRICE_VERSION } from "../provider/pricing.ts";
import { inWords, usd } from "../words.ts";
import type { Db, Tx } from "./database.ts";
import { ledger, threads, turns } from "./schema.ts";

/**
 * The bill and the budgets, on the same tables as the conversation store (`ledger`, and `turns.reserved_usd`):
 *
 * - Every HTTP request to the provider is a ledger row, written before it is sent and settled after (see
 *   provider/call-ledger.ts); a turn's cost is the sum of its rows.
 * - A budget's spend is its ledger rows since the period began plus the reservations of unfinished turns: a
 *   turn reserves its estimate when it is recorded, and the reservation is dropped when it ends (`settleTurn`),
 *   when its ledger rows have taken its place.
 * - Periods are UTC: a day starts at midnight UTC, a month on the 1st.
 */

/** The statements `recordTurn` and the turn's end run inside their own transactions. */
export const budgetSql = { checkBudgets, settleTurn, settleAbandonedCalls };

interface Payer {
  platform: Platform;
  userId: string;
  workspaceId: string | null;
  channelId: string | null;
}

/**
 * Throws `budget_exceeded` when `estimateUsd` more would take one of `caps` past its limit. Each cap is locked
 * (transaction-scoped, in one global order, after the thread's lock) before it is read, so concurrent submits —
 * in any process — are counted one after the other and never pass a limit together.
 */
async function checkBudgets(
  tx: Tx,
  payer: Payer,
  estimateUsd: number,
  caps: readonly BudgetCap[],
): Promise<void> {
  const scoped = caps
    .map((cap) => ({ cap, id: scopeId(payer, cap) }))
    .filter((c): c is { cap: BudgetCap; id: string } => c.id !== null)
    .sort((a, b) => lockKey(payer.platform, a).localeCompare(lockKey(payer.platform, b)));
  for (const entry of scoped) {
    await tx.execute(
      sql`select pg_advisory_xact_lock(hashtext('threadcanvas.spend'), hashtext(${lockKey(payer.platform, entry)}))`,
    );
  }
  for (const { cap, id } of scoped) {
    const total = await spendOf(tx, payer.platform, cap.scope, id, cap.period);
    if (total.usedUsd + estimateUsd <= cap.limitUsd + 1e-9) continue;
    throw new AppError("budget_exceeded", `${cap.scope} ${id} ${cap.period} budget: ${total.usedUsd} used`, {
      userMessage: refusal(cap, total, estimateUsd),
    });
  }
}

function scopeId(payer: Payer, cap: BudgetCap): string | null {
  if (cap.scope === "user") return payer.userId;
  return cap.scope === "channel" ? payer.channelId : payer.workspaceId;
}

function lockKey(platform: Platform, entry: { cap: BudgetCap; id: string }): string {
  return `${platform}:${entry.cap.scope}:${entry.cap.period}:${entry.id}`;
}

const WHOSE: Record<BudgetCap["scope"], string> = {
  user: "your",
  channel: "this channel's",
  workspace: "this workspace's",
};

function refusal(cap: BudgetCap, total: SpendTotal, estimateUsd: number): string {
  const period = cap.period === "day" ? "daily" : "monthly";
  const when = cap.period === "day" ? "today" : "this month";
  const resets =
    cap.period === "day"
      ? `It resets at midnight UTC, ${inWords(total.resetsInSeconds)} from now.`
      : `It resets on the 1st (UTC), ${inWords(total.resetsInSeconds)} from now.`;
  return (
    `That would go over ${WHOSE[cap.scope]} ${period} budget: ${usd(total.usedUsd)} of ${usd(cap.limitUsd)} ` +
    `is used ${when}, and this needs about ${usd(estimateUsd)}. ${resets}`
  );
}

/** Ledger rows since the period began, plus the reservations of unfinished turns, for one payer. */
async function spendOf(
  db: Db | Tx,
  platform: Platform,
  scope: BudgetCap["scope"],
  id: string,
  period: BudgetCap["period"],
): Promise<SpendTotal> {
  const ledgerColumn = { user: ledger.userId, channel: ledger.channelId, workspace: ledger.workspaceId }[
    scope
  ];
  const reservedColumn = { user: turns.userId, channel: threads.channelId, workspace: threads.workspaceId }[
    scope
  ];
  const unit = sql.raw(period === "day" ? "'day'" : "'month'");
  const step = sql.raw(period === "day" ? "interval '1 day'" : "interval '1 month'");
  const start = sql`date_trunc(${unit}, now(), 'UTC')`;
  const result = await db.execute<{ billed: string; reserved: string; resets_in: string }>(sql`
    select
      (select coalesce(sum(${ledger.costUsd}), 0) from ${ledger}
        where ${ledger.platform} = ${platform} and ${ledgerColumn} = ${id} and ${ledger.createdAt} >= ${start})::text as billed,
      (select coalesce(sum(${turns.reservedUsd}), 0) from ${turns}
        join ${threads} on ${threads.key} = ${turns.threadKey}
        where ${turns.reservedUsd} > 0 and ${threads.platform} = ${platform} and ${reservedColumn} = ${id})::text as reserved,
      ceil(extract(epoch from (${start} + ${step}) - now()))::text as resets_in`);
  const row = result.rows[0];
  const billedUsd = Number(row?.billed ?? 0);
  const reservedUsd = Number(row?.reserved ?? 0);
  return {
    billedUsd,
    reservedUsd,
    usedUsd: Math.round((billedUsd + reservedUsd) * 1e6) / 1e6,
    resetsInSeconds: Number(row?.resets_in ?? 0),
  };
}

/** Requests of this turn still pending (their process died mid-call) may have been billed: charged at estimate. */
async function settleAbandonedCalls(db: Db | Tx, turnId: string): Promise<void> {
  await db
    .update(ledger)
    .set({ status: "unknown", costUsd: sql`${ledger.estimateUsd}`, settledAt: sql`now()` })
    .where(and(eq(ledger.turnId, turnId), eq(ledger.status, "pending")));
}

/** The turn ended: its reservation is released, and its cost is what its ledger rows add up to. */
async function settleTurn(tx: Tx, turnId: string) {
  await settleAbandonedCalls(tx, turnId);
  return {
    reservedUsd: 0,
    costUsd: sql`(select coalesce(sum(${ledger.costUsd}), 0) from ${ledger} where ${ledger.turnId} = ${turnId})`,
  };
}

/** The ledger's own statements, for the provider's calls and for `/canvas usage`. */
export class LedgerQueries {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** A request about to be sent for a turn, charged to the turn's asker, channel and workspace. Idempotent. */
  async openCall(call: {
    clientRequestId: string;
    turnId: string;
    endpoint: string;
    retry: number;
    estimateUsd: number;
  }): Promise<void> {
    const inserted = await this.#db.execute(sql`
      insert into ${ledger} (client_request_id, turn_id, platform, user_id, workspace_id, channel_id, endpoint,
        retry, price_version, estimate_usd)
      select ${call.clientRequestId}, ${turns.id}, ${threads.platform}, ${turns.userId}, ${threads.workspaceId},
        ${threads.channelId}, ${call.endpoint}, ${call.retry}, ${PRICE_VERSION}, ${call.estimateUsd}
      from ${turns} join ${threads} on ${threads.key} = ${turns.threadKey}
      where ${turns.id} = ${call.turnId}
      on conflict (client_request_id) do nothing
      returning 1`);
    if (inserted.rows.length === 0) {
      const [existing] = await this.#db
        .select({ id: ledger.id })
        .from(ledger)
        .where(eq(ledger.clientRequestId, call.clientRequestId));
      if (!existing)
        throw new AppError("internal", `turn ${call.turnId} does not exist; no call is made for it`);
    }
  }

  /** Settles a pending request; one already settled (or counted unknown by a later attempt) is left as it is. */
  async settleCall(clientRequestId: string, outcome: CallOutcome): Promise<void> {
    const usage: UsageEntry[] = outcome.status === "billed" ? [...outcome.usage] : [];
    const billed = Math.round(usage.reduce((sum, entry) => sum + entry.costUsd, 0) * 1e6) / 1e6;
    await this.#db
      .update(ledger)
      .set({
        status: outcome.status,
        requestId: outcome.requestId,
        httpStatus: outcome.status === "not_billed" ? outcome.httpStatus : null,
        usage,
        costUsd:
          outcome.status === "billed"
            ? billed
            : outcome.status === "unknown"
              ? sql`${ledger.estimateUsd}`
              : 0,
        settledAt: sql`now()`,
      })
      .where(and(eq(ledger.clientRequestId, clientRequestId), eq(ledger.status, "pending")));
  }

  async ledgerEntries(turnId: string): Promise<LedgerEntry[]> {
    const rows = await this.#db
      .select()
      .from(ledger)
      .where(eq(ledger.turnId, turnId))
      .orderBy(asc(ledger.createdAt), asc(ledger.clientRequestId));
    return rows.map((row) => ({
      clientRequestId: row.clientRequestId,
      turnId: row.turnId,
      platform: row.platform,
      userId: row.userId,
      workspaceId: row.workspaceId,
      channelId: row.channelId,
      endpoint: row.endpoint,
      retry: row.retry,
      status: row.status as LedgerStatus,
      requestId: row.requestId,
      httpStatus: row.httpStatus,
      usage: row.usage,
      priceVersion: row.priceVersion,
      estimateUsd: row.estimateUsd,
      costUsd: row.costUsd,
      createdAt: row.createdAt,
    }));
  }

  /** What `/canvas usage` shows: this person's, channel's and workspace's spend, and for admins the top payers. */
  async spendReport(query: SpendQuery): Promise<SpendReport> {
    const { platform } = query;
    const report: SpendReport = {
      userToday: await spendOf(this.#db, platform, "user", query.userId, "day"),
      userMonth: await spendOf(this.#db, platform, "user", query.userId, "month"),
      channelToday: query.channelId
        ? await spendOf(this.#db, platform, "channel", query.channelId, "day")
        : null,
      workspaceMonth: query.workspaceId
        ? await spendOf(this.#db, platform, "workspace", query.workspaceId, "month")
        : null,
      topUsers: [],
      topChannels: [],
    };
    if (query.admin && query.workspaceId) {
      report.topUsers = await this.#top(platform, query.workspaceId, "user");
      report.topChannels = await this.#top(platform, query.workspaceId, "channel");
    }
    return report;
  }

  /** The workspace's biggest payers this month (UTC), by person or by channel. */
  async #top(platform: Platform, workspaceId: string, by: "user" | "channel") {
    const column = by === "user" ? ledger.userId : ledger.channelId;
    const rows = await this.#db
      .select({ id: column, usd: sql<string>`sum(${ledger.costUsd})::text` })
      .from(ledger)
      .where(
        and(
          eq(ledger.platform, platform),
          eq(ledger.workspaceId, workspaceId),
          sql`${ledger.createdAt} >= date_trunc('month', now(), 'UTC')`,
          sql`${column} is not null`,
        ),
      )
      .groupBy(column)
      .orderBy(sql`sum(${ledger.costUsd}) desc`, asc(column))
      .limit(5);
    return rows.map((row) => ({ id: row.id ?? "", usd: Number(row.usd) }));
  }
}
