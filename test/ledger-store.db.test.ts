import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { DEFAULT_PARAMS, type UsageEntry } from "../src/domain.ts";
import type { BudgetCap, NewTurn, Place } from "../src/ports.ts";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { type DbHandle, openDatabase } from "../src/store/database.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";

/**
 * The ledger and the budgets, on PGlite and PostgreSQL: what a refusal says and leaves behind, how reservations
 * become ledger rows, how a request whose outcome never came back is charged, and that concurrent submits —
 * through one connection pool or two (two processes) — never take a cap past its limit.
 */

let h: TestDatabase;
let store: PostgresConversationStore;

beforeAll(async () => {
  h = await openTestDatabase();
  store = new PostgresConversationStore(h.db);
});

afterAll(async () => {
  await h?.close();
});

const noJob = async () => {};

/** Every test pays from its own workspace and channel, so budgets never see another test's spend. */
function place(): Place {
  const id = randomUUID().slice(0, 8).toUpperCase();
  return { workspaceId: `T${id}`, channelId: `C${id}` };
}

function turnIn(where: Place, overrides: Partial<NewTurn> = {}): NewTurn {
  return {
    threadKey: `slack:${where.workspaceId}:${where.channelId}:${randomUUID()}`,
    kind: "generate",
    prompt: "a lighthouse at dusk",
    params: DEFAULT_PARAMS,
    userId: person(where, 1),
    place: where,
    ...overrides,
  };
}

function usage(costUsd: number): UsageEntry {
  return {
    model: "gpt-image-2",
    inputTokens: 10,
    inputTextTokens: 10,
    inputImageTokens: 0,
    outputTokens: 1056,
    outputImageTokens: 1056,
    reasoningTokens: 0,
    totalTokens: 1066,
    costUsd,
  };
}

/** Person `n` of a test: nobody's spend carries from one test to another. */
const person = (where: Place, n: number) => `U${n}${where.workspaceId}`;

const userDaily = (limitUsd: number): BudgetCap => ({ scope: "user", period: "day", limitUsd });

async function turnCount(where: Place): Promise<number> {
  const result = await h.db.execute<{ n: number }>(
    sql`select count(*)::int as n from turns t join threads th on th.key = t.thread_key
        where th.workspace_id = ${where.workspaceId}`,
  );
  return Number(result.rows[0]?.n ?? -1);
}

/** A turn recorded, started and billed `costs` (one request each), then completed without images. */
async function billedTurn(where: Place, userId: string, costs: number[]): Promise<string> {
  const { turn } = await store.recordTurn(turnIn(where, { userId, estimateUsd: 0.2 }), noJob);
  await store.startTurn(turn.id);
  for (const [i, cost] of costs.entries()) {
    const id = `${turn.id}.${i}`;
    await store.openCall({
      clientRequestId: id,
      turnId: turn.id,
      endpoint: "images.generate",
      retry: i,
      estimateUsd: 0.2,
    });
    await store.settleCall(id, { status: "billed", requestId: `req_${i}`, usage: [usage(cost)] });
  }
  await store.failTurn(turn.id, "provider_unavailable", "stop here");
  return turn.id;
}

describe("budgets", () => {
  test("a submit past a cap is refused with which cap, what is used and when it resets; nothing is written", async () => {
    const where = place();
    await billedTurn(where, person(where, 1), [0.75]);
    const refused = store.recordTurn(
      turnIn(where, { userId: person(where, 1), estimateUsd: 0.3, budgets: [userDaily(1)] }),
      noJob,
    );
    await expect(refused).rejects.toMatchObject({
      code: "budget_exceeded",
      userMessage: expect.stringMatching(
        /^That would go over your daily budget: \$0\.75 of \$1\.00 is used today, and this needs about \$0\.30\. It resets at midnight UTC, (\d+ h \d+ min|\d+ h|\d+ min) from now\.$/,
      ),
    });
    expect(await turnCount(where)).toBe(1);
    // Someone else in the same channel has their own daily budget.
    const other = await store.recordTurn(
      turnIn(where, { userId: person(where, 2), estimateUsd: 0.3, budgets: [userDaily(1)] }),
      noJob,
    );
    expect(other.created).toBe(true);
  });

  test("an unfinished turn's estimate is held until it ends; then what it was billed counts instead", async () => {
    const where = place();
    const caps = [userDaily(1)];
    const { turn } = await store.recordTurn(turnIn(where, { estimateUsd: 0.6, budgets: caps }), noJob);
    expect(turn.estimateUsd).toBe(0.6);
    // 0.6 held + 0.6 more > 1.00
    await expect(
      store.recordTurn(turnIn(where, { estimateUsd: 0.6, budgets: caps }), noJob),
    ).rejects.toMatchObject({
      code: "budget_exceeded",
    });
    await store.startTurn(turn.id);
    await store.openCall({
      clientRequestId: `${turn.id}.0`,
      turnId: turn.id,
      endpoint: "images.generate",
      retry: 0,
      estimateUsd: 0.6,
    });
    await store.settleCall(`${turn.id}.0`, { status: "billed", requestId: "req_1", usage: [usage(0.25)] });
    const { turn: done } = await store.completeTurn(turn.id, {
      images: [],
      head: { imageId: null },
      baseImageId: null,
      usage: [usage(0.25)],
      providerRequestId: "req_1",
    });
    expect(done.costUsd).toBe(0.25);
    // 0.25 billed + 0.6 ≤ 1.00
    const next = await store.recordTurn(turnIn(where, { estimateUsd: 0.6, budgets: caps }), noJob);
    expect(next.created).toBe(true);
    const report = await store.spendReport({
      platform: "slack",
      userId: person(where, 1),
      ...where,
      admin: false,
    });
    expect(report.userToday).toMatchObject({ billedUsd: 0.25, reservedUsd: 0.6, usedUsd: 0.85 });
  });

  test("channel and workspace caps count everyone in them, and say so", async () => {
    const where = place();
    await billedTurn(where, person(where, 1), [0.5]);
    await billedTurn(where, person(where, 2), [0.5]);
    const channel: BudgetCap = { scope: "channel", period: "day", limitUsd: 1 };
    await expect(
      store.recordTurn(
        turnIn(where, { userId: person(where, 3), estimateUsd: 0.05, budgets: [channel] }),
        noJob,
      ),
    ).rejects.toMatchObject({
      userMessage: expect.stringMatching(
        /^That would go over this channel's daily budget: \$1\.00 of \$1\.00 is used today/,
      ),
    });
    const workspace: BudgetCap = { scope: "workspace", period: "month", limitUsd: 1.02 };
    await expect(
      store.recordTurn(
        turnIn(
          { ...where, channelId: "COTHER" },
          { userId: person(where, 3), estimateUsd: 0.05, budgets: [workspace] },
        ),
        noJob,
      ),
    ).rejects.toMatchObject({
      userMessage: expect.stringMatching(
        /^That would go over this workspace's monthly budget: \$1\.00 of \$1\.02 is used this month, and this needs about \$0\.05\. It resets on the 1st \(UTC\), .* from now\.$/,
      ),
    });
  });

  test("a hundred concurrent submits never take a cap past its limit", async () => {
    const where = place();
    const caps: BudgetCap[] = [userDaily(1), { scope: "workspace", period: "month", limitUsd: 1 }];
    const results = await Promise.allSettled(
      Array.from({ length: 100 }, () =>
        store.recordTurn(turnIn(where, { estimateUsd: 0.07, budgets: caps }), noJob),
      ),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(14); // 14 × 0.07 = 0.98
    for (const r of results)
      if (r.status === "rejected") expect(r.reason).toMatchObject({ code: "budget_exceeded" });
    expect(await turnCount(where)).toBe(14);
  });

  if (process.env.TEST_DATABASE_URL) {
    test("…nor do a hundred split over two processes' connection pools", async () => {
      const second: DbHandle = await openDatabase({ databaseUrl: h.databaseUrl });
      try {
        const other = new PostgresConversationStore(second.db);
        const where = place();
        const caps: BudgetCap[] = [{ scope: "channel", period: "day", limitUsd: 2 }];
        const results = await Promise.allSettled(
          Array.from({ length: 100 }, (_, i) =>
            (i % 2 ? store : other).recordTurn(
              turnIn(where, { userId: person(where, 100 + i), estimateUsd: 0.3, budgets: caps }),
              noJob,
            ),
          ),
        );
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(6); // 6 × 0.3 = 1.8
        expect(await turnCount(where)).toBe(6);
      } finally {
        await second.close();
      }
    });
  }
});

describe("the ledger", () => {
  test("each request is a row: billed at its tokens, an error answer at nothing, no answer at the estimate", async () => {
    const where = place();
    const { turn } = await store.recordTurn(
      turnIn(where, { userId: person(where, 9), estimateUsd: 0.4 }),
      noJob,
    );
    await store.startTurn(turn.id);
    const open = (id: string, retry: number) =>
      store.openCall({
        clientRequestId: id,
        turnId: turn.id,
        endpoint: "images.generate",
        retry,
        estimateUsd: 0.4,
      });
    await open("a", 0);
    await store.settleCall("a", { status: "not_billed", requestId: "req_a", httpStatus: 429 });
    await open("a.r1", 1);
    await store.settleCall("a.r1", { status: "unknown", requestId: null });
    await open("a.r2", 2);
    await store.settleCall("a.r2", { status: "billed", requestId: "req_c", usage: [usage(0.11)] });
    // Settling twice changes nothing: the first outcome stands.
    await store.settleCall("a.r2", { status: "not_billed", requestId: null, httpStatus: 500 });
    const { turn: done } = await store.completeTurn(turn.id, {
      images: [],
      head: { imageId: null },
      baseImageId: null,
      usage: [usage(0.11)],
      providerRequestId: "req_c",
    });
    expect(done.costUsd).toBe(0.51);
    const rows = await store.ledgerEntries(turn.id);
    expect(
      rows.map((r) => [r.clientRequestId, r.retry, r.status, r.requestId, r.httpStatus, r.costUsd]),
    ).toEqual([
      ["a", 0, "not_billed", "req_a", 429, 0],
      ["a.r1", 1, "unknown", null, null, 0.4],
      ["a.r2", 2, "billed", "req_c", null, 0.11],
    ]);
    // Charged to the asker, the thread's channel and workspace, at today's price table.
    expect(rows[2]).toMatchObject({
      platform: "slack",
      userId: person(where, 9),
      ...where,
      priceVersion: "2026-11-28",
    });
  });

  test("a request left pending by a crash is charged at its estimate when the turn runs again", async () => {
    const where = place();
    const { turn } = await store.recordTurn(turnIn(where, { estimateUsd: 0.3 }), noJob);
    await store.startTurn(turn.id);
    await store.openCall({
      clientRequestId: `${turn.id}.x`,
      turnId: turn.id,
      endpoint: "responses",
      retry: 0,
      estimateUsd: 0.15,
    });
    expect((await store.ledgerEntries(turn.id))[0]).toMatchObject({ status: "pending", costUsd: 0 });
    await store.startTurn(turn.id); // the next attempt, after the crash
    expect((await store.ledgerEntries(turn.id))[0]).toMatchObject({ status: "unknown", costUsd: 0.15 });
    // A late settle of that request does not undo it.
    await store.settleCall(`${turn.id}.x`, { status: "billed", requestId: "r", usage: [usage(0.01)] });
    expect((await store.ledgerEntries(turn.id))[0]).toMatchObject({ status: "unknown", costUsd: 0.15 });
    const failed = await store.failTurn(turn.id, "gave_up", "no");
    expect(failed.costUsd).toBe(0.15);
  });

  test("a request for a turn that does not exist is refused (nothing is sent without a row)", async () => {
    await expect(
      store.openCall({
        clientRequestId: randomUUID(),
        turnId: randomUUID(),
        endpoint: "responses",
        retry: 0,
        estimateUsd: 1,
      }),
    ).rejects.toMatchObject({ code: "internal" });
  });

  test("the usage report shows a person's, channel's and workspace's spend, and the top payers to admins", async () => {
    const where = place();
    await billedTurn(where, person(where, 1), [0.1, 0.2]);
    await billedTurn(where, person(where, 2), [0.5]);
    await billedTurn({ ...where, channelId: "CSECOND" }, person(where, 2), [0.05]);
    const mine = await store.spendReport({
      platform: "slack",
      userId: person(where, 1),
      ...where,
      admin: false,
    });
    expect(mine.userToday).toMatchObject({ billedUsd: 0.3, reservedUsd: 0, usedUsd: 0.3 });
    expect(mine.channelToday).toMatchObject({ billedUsd: 0.8, reservedUsd: 0 });
    expect(mine.workspaceMonth).toMatchObject({ billedUsd: 0.85 });
    expect(mine.topUsers).toEqual([]);
    const admin = await store.spendReport({
      platform: "slack",
      userId: person(where, 1),
      ...where,
      admin: true,
    });
    expect(admin.topUsers).toEqual([
      { id: person(where, 2), usd: 0.55 },
      { id: person(where, 1), usd: 0.3 },
    ]);
    expect(admin.topChannels).toEqual([
      { id: where.channelId, usd: 0.8 },
      { id: "CSECOND", usd: 0.05 },
    ]);
  });
});
