import { randomBytes, randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { fromPglite, PgBoss } from "pg-boss";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { DEFAULT_PARAMS, type Turn, type UsageEntry } from "../src/domain.ts";
import type { NewImage, NewTurn, SqlExecutor, TurnOutcome } from "../src/ports.ts";
import { sha256Hex } from "../src/store/blob-store.ts";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { countAppliedMigrations } from "../src/store/database.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";

/**
 * The ConversationStore contract. Runs on PGlite (project `pglite`) and on PostgreSQL (project `pg`, when
 * TEST_DATABASE_URL is set); every test uses its own thread keys, so tests share one database per file.
 *
 * Jobs are rows in a scratch `test_jobs` table written through the executor `recordTurn` hands to `enqueue`,
 * so "enqueued exactly once" and "rolled back with the turn" are checked on rows, not on spies.
 */

let h: TestDatabase;
let store: PostgresConversationStore;

beforeAll(async () => {
  h = await openTestDatabase();
  store = new PostgresConversationStore(h.db);
  await h.db.execute(sql`create table test_jobs (turn_id uuid primary key, thread_key text not null)`);
});

afterAll(async () => {
  await h?.close();
});

const enqueueJob = async (turn: Turn, tx: SqlExecutor) => {
  await tx.executeSql("insert into test_jobs (turn_id, thread_key) values ($1, $2)", [
    turn.id,
    turn.threadKey,
  ]);
};

function threadKey(platform = "slack"): string {
  return `${platform}:T1:C1:${randomUUID()}`;
}

function newTurn(key: string, overrides: Partial<NewTurn> = {}): NewTurn {
  return {
    threadKey: key,
    kind: "generate",
    prompt: "a lighthouse at dusk",
    params: DEFAULT_PARAMS,
    userId: "U1",
    ...overrides,
  };
}

async function record(key: string, overrides: Partial<NewTurn> = {}): Promise<Turn> {
  return (await store.recordTurn(newTurn(key, overrides), enqueueJob)).turn;
}

async function count(query: ReturnType<typeof sql>): Promise<number> {
  const [row] = (await h.db.execute<{ n: number }>(sql`select (${query})::int as n`)).rows;
  return row?.n ?? -1;
}

const jobsFor = (key: string) => count(sql`select count(*) from test_jobs where thread_key = ${key}`);
const turnsIn = (key: string) => count(sql`select count(*) from turns where thread_key = ${key}`);

function fakeImage(index: number, parentId: string | null = null): NewImage {
  return {
    parentId,
    index,
    sha256: sha256Hex(randomBytes(16)),
    byteSize: 1000 + index,
    format: "png",
    width: 1024,
    height: 1024,
  };
}

function usageEntry(model: string, costUsd: number): UsageEntry {
  return {
    model,
    inputTokens: 50,
    inputTextTokens: 40,
    inputImageTokens: 10,
    outputTokens: 4160,
    outputImageTokens: 4160,
    reasoningTokens: 0,
    totalTokens: 4210,
    costUsd,
  };
}

function outcome(
  images: NewImage[],
  head: TurnOutcome["head"],
  extra: Partial<TurnOutcome> = {},
): TurnOutcome {
  return { images, head, baseImageId: null, usage: [], providerRequestId: null, ...extra };
}

/** Records, starts and completes a generate turn with `n` images; the head moves to the first. */
async function generated(key: string, n = 1) {
  const turn = await record(key);
  await store.startTurn(turn.id);
  const images = Array.from({ length: n }, (_, index) => fakeImage(index));
  return store.completeTurn(turn.id, outcome(images, { newImageIndex: 0 }));
}

describe("recordTurn", () => {
  test("creates the thread on the first turn, with the platform from the key", async () => {
    const key = threadKey("discord");
    const before = new Date(Date.now() - 60_000);
    const { turn, created } = await store.recordTurn(
      newTurn(key, {
        params: { ...DEFAULT_PARAMS, size: "1536x1024", n: 2, think: true },
        sourceMessageId: "M1",
        referenceImages: [{ sha256: "a".repeat(64), format: "webp" }],
        newThread: { title: "Launch poster", meta: { channelId: "C9", rootMessageId: "M0" } },
      }),
      enqueueJob,
    );
    expect(created).toBe(true);
    expect(turn).toMatchObject({
      threadKey: key,
      seq: 1,
      kind: "generate",
      status: "queued",
      params: { ...DEFAULT_PARAMS, size: "1536x1024", n: 2, think: true },
      userId: "U1",
      sourceMessageId: "M1",
      idempotencyKey: null,
      targetImageId: null,
      referenceImages: [{ sha256: "a".repeat(64), format: "webp" }],
      attempts: 0,
      costUsd: null,
      startedAt: null,
      finishedAt: null,
      deliveredAt: null,
    });
    expect(turn.createdAt).toBeInstanceOf(Date);
    expect(turn.createdAt.getTime()).toBeGreaterThan(before.getTime());

    const thread = await store.getThread(key);
    expect(thread).toMatchObject({
      key,
      platform: "discord",
      headImageId: null,
      title: "Launch poster",
      createdBy: "U1",
      meta: { channelId: "C9", rootMessageId: "M0" },
    });
    expect(thread?.updatedAt).toBeInstanceOf(Date);
    expect(await store.getTurn(turn.id)).toEqual(turn);
    expect(await jobsFor(key)).toBe(1);
  });

  test("numbers turns 1, 2, 3 within a thread and keeps the thread's title", async () => {
    const key = threadKey();
    const seqs = [];
    for (const title of ["first", "second", "third"])
      seqs.push((await record(key, { newThread: { title } })).seq);
    expect(seqs).toEqual([1, 2, 3]);
    expect((await store.getThread(key))?.title).toBe("first");
    expect((await record(threadKey())).seq).toBe(1);
  });

  test("rejects a key without a known platform and writes nothing", async () => {
    await expect(store.recordTurn(newTurn("irc:#chan"), enqueueJob)).rejects.toThrow(/known platform/);
    expect(await store.getThread("irc:#chan")).toBeNull();
  });

  test("the same idempotency key twice gives one turn and one job", async () => {
    const key = threadKey();
    const first = await store.recordTurn(newTurn(key, { idempotencyKey: `evt-${key}` }), enqueueJob);
    const second = await store.recordTurn(
      newTurn(key, { idempotencyKey: `evt-${key}`, prompt: "other" }),
      enqueueJob,
    );
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.turn).toEqual(first.turn);
    expect(await turnsIn(key)).toBe(1);
    expect(await jobsFor(key)).toBe(1);
  });

  test("five concurrent deliveries of one event make one turn", async () => {
    const key = threadKey();
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        store.recordTurn(newTurn(key, { idempotencyKey: `evt-${key}` }), enqueueJob),
      ),
    );
    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(new Set(results.map((result) => result.turn.id)).size).toBe(1);
    expect(await turnsIn(key)).toBe(1);
    expect(await jobsFor(key)).toBe(1);
  });

  test("one event key delivered concurrently to two threads still makes one turn", async () => {
    const idempotencyKey = `evt-${randomUUID()}`;
    const keys = [threadKey(), threadKey(), threadKey()];
    const results = await Promise.all(
      keys.map((key) => store.recordTurn(newTurn(key, { idempotencyKey }), enqueueJob)),
    );
    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(new Set(results.map((result) => result.turn.id)).size).toBe(1);
  });

  test("concurrent new turns in one thread get distinct, gap-free seqs", async () => {
    const key = threadKey();
    const turns = await Promise.all(Array.from({ length: 6 }, (_, i) => record(key, { prompt: `p${i}` })));
    expect(turns.map((turn) => turn.seq).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await jobsFor(key)).toBe(6);
  });

  test("an enqueue that throws rolls back the turn and the new thread", async () => {
    const key = threadKey();
    const failing = async (turn: Turn, tx: SqlExecutor) => {
      await enqueueJob(turn, tx);
      throw new Error("queue is down");
    };
    await expect(store.recordTurn(newTurn(key, { idempotencyKey: `evt-${key}` }), failing)).rejects.toThrow(
      "queue is down",
    );
    expect(await store.getThread(key)).toBeNull();
    expect(await turnsIn(key)).toBe(0);
    expect(await jobsFor(key)).toBe(0);

    // The thread now exists; a failing enqueue leaves it as it was and consumes no seq, nor the event key.
    await record(key);
    await expect(store.recordTurn(newTurn(key, { idempotencyKey: `evt-${key}` }), failing)).rejects.toThrow();
    expect(await turnsIn(key)).toBe(1);
    const retried = await store.recordTurn(newTurn(key, { idempotencyKey: `evt-${key}` }), enqueueJob);
    expect(retried).toMatchObject({ created: true, turn: { seq: 2 } });
  });

  test("enqueue through a real pg-boss send({ db }) is atomic with the turn", async () => {
    const boss = h.pglite
      ? new PgBoss({ db: fromPglite(h.pglite), backend: "pglite", supervise: false, schedule: false })
      : new PgBoss({ connectionString: h.databaseUrl, max: 2, supervise: false, schedule: false });
    boss.on("error", () => {});
    await boss.start();
    try {
      await boss.createQueue("turns");
      let jobId: string | null = null;
      const viaBoss = async (turn: Turn, tx: SqlExecutor) => {
        jobId = await boss.send("turns", { turnId: turn.id }, { db: tx });
      };
      const { turn } = await store.recordTurn(newTurn(threadKey()), viaBoss);
      const job = await boss.getJobById<{ turnId: string }>("turns", jobId ?? "");
      expect(job?.data).toEqual({ turnId: turn.id });

      const key = threadKey();
      await expect(
        store.recordTurn(newTurn(key), async (t, tx) => {
          await viaBoss(t, tx);
          throw new Error("after send");
        }),
      ).rejects.toThrow("after send");
      expect(await boss.getJobById("turns", jobId ?? "")).toBeNull();
      expect(await store.getThread(key)).toBeNull();
    } finally {
      await boss.stop({ graceful: false, close: !h.pglite });
    }
  });
});

describe("recordTurn within an hourly limit", () => {
  test("thirty concurrent submits by one person, over many threads, record exactly the limit", async () => {
    const user = `U${randomUUID().slice(0, 8)}`;
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, () => record(threadKey(), { userId: user, hourlyLimit: 5 })),
    );
    const recorded = results.filter((r) => r.status === "fulfilled");
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    expect(recorded).toHaveLength(5);
    expect(refused).toHaveLength(25);
    for (const error of refused) {
      expect(error).toMatchObject({
        code: "quota_exceeded",
        userMessage:
          "You have started 5 images in the past hour, the most one person may (5). You can start another in 60 minutes.",
      });
    }
    // Nothing of a refused submit was written: no turn, no job.
    expect(await count(sql`select count(*) from turns where user_id = ${user}`)).toBe(5);
    expect(
      await count(
        sql`select count(*) from test_jobs j join turns t on t.id = j.turn_id where t.user_id = ${user}`,
      ),
    ).toBe(5);
  });

  test("counts only the person's drawing turns on that platform in the last hour", async () => {
    const user = `U${randomUUID().slice(0, 8)}`;
    const key = threadKey();
    await record(key, { userId: user, hourlyLimit: 2 });
    // An hour and a minute ago: outside the window.
    await h.db.execute(
      sql`update turns set created_at = now() - interval '61 minutes' where user_id = ${user} and thread_key = ${key}`,
    );
    await record(threadKey(), { userId: user, hourlyLimit: 2 });
    // Undo is not a drawing turn, and the same id on another platform is another person.
    await record(key, { userId: user, kind: "undo", hourlyLimit: 2 });
    await record(threadKey("discord"), { userId: user, hourlyLimit: 1 });
    await record(threadKey(), { userId: user, hourlyLimit: 2 });
    await expect(record(threadKey(), { userId: user, hourlyLimit: 2 })).rejects.toMatchObject({
      code: "quota_exceeded",
    });
    // Another person is not held back.
    await record(threadKey(), { userId: `${user}x`, hourlyLimit: 2 });
  });

  test("a replayed event returns its turn even past the limit", async () => {
    const user = `U${randomUUID().slice(0, 8)}`;
    const first = await record(threadKey(), { userId: user, hourlyLimit: 1, idempotencyKey: `k-${user}` });
    const again = await store.recordTurn(
      newTurn(threadKey(), { userId: user, hourlyLimit: 1, idempotencyKey: `k-${user}` }),
      enqueueJob,
    );
    expect(again).toMatchObject({ created: false, turn: { id: first.id } });
  });
});

describe("turn lifecycle", () => {
  test("startTurn: queued → running, counting attempts; null once terminal or unknown", async () => {
    const turn = await record(threadKey());
    const first = await store.startTurn(turn.id);
    expect(first).toMatchObject({ status: "running", attempts: 1 });
    expect(first?.startedAt).toBeInstanceOf(Date);
    expect(await store.startTurn(turn.id)).toMatchObject({ status: "running", attempts: 2 });
    await store.failTurn(turn.id, "provider_unavailable", "try later");
    expect(await store.startTurn(turn.id)).toBeNull();
    expect(await store.startTurn(randomUUID())).toBeNull();
  });

  test("completeTurn stores images, usage and cost (its ledger rows' sum), and moves the head", async () => {
    const key = threadKey();
    const turn = await record(key);
    await store.startTurn(turn.id);
    const call = { turnId: turn.id, endpoint: "responses", retry: 0, estimateUsd: 0.5 };
    await store.openCall({ ...call, clientRequestId: `c-${turn.id}` });
    await store.settleCall(`c-${turn.id}`, {
      status: "billed",
      requestId: "req_123",
      usage: [usageEntry("gpt-5.5", 0.1), usageEntry("gpt-image-2", 0.2)],
    });
    const { turn: done, images } = await store.completeTurn(
      turn.id,
      outcome(
        [fakeImage(0), fakeImage(1)],
        { newImageIndex: 1 },
        {
          usage: [usageEntry("gpt-5.5", 0.1), usageEntry("gpt-image-2", 0.2)],
          providerRequestId: "req_123",
        },
      ),
    );
    expect(done).toMatchObject({ status: "succeeded", providerRequestId: "req_123", baseImageId: null });
    expect(done.costUsd).toBe(0.3); // summed as numeric: not 0.30000000000000004
    expect(done.finishedAt).toBeInstanceOf(Date);
    expect(images.map((image) => [image.index, image.parentId, image.turnId, image.threadKey])).toEqual([
      [0, null, turn.id, key],
      [1, null, turn.id, key],
    ]);
    expect((await store.getThread(key))?.headImageId).toBe(images[1]?.id);
    expect(await store.getTurnImages(turn.id)).toEqual(images);
    expect(await store.getImage(images[0]?.id ?? "")).toEqual(images[0]);
    expect(await store.getImage(randomUUID())).toBeNull();
    const [usageRow] = (
      await h.db.execute<{ n: number; tokens: number }>(
        sql`select count(*)::int as n, sum(total_tokens)::int as tokens from usage where turn_id = ${turn.id}`,
      )
    ).rows;
    expect(usageRow).toEqual({ n: 2, tokens: 8420 });

    // An edit of the head records its parent and moves the head on.
    const edit = await record(key, { kind: "edit", prompt: "make it purple" });
    await store.startTurn(edit.id);
    const base = images[1]?.id ?? null;
    const edited = await store.completeTurn(
      edit.id,
      outcome([fakeImage(0, base)], { newImageIndex: 0 }, { baseImageId: base }),
    );
    expect(edited.turn).toMatchObject({ baseImageId: base, costUsd: 0 });
    expect(edited.images[0]?.parentId).toBe(base);
    expect((await store.getThread(key))?.headImageId).toBe(edited.images[0]?.id);
  });

  test("completing twice (a job that ran twice) adds nothing", async () => {
    const key = threadKey();
    const turn = await record(key);
    await store.startTurn(turn.id);
    const result = outcome(
      [fakeImage(0), fakeImage(1)],
      { newImageIndex: 0 },
      { usage: [usageEntry("m", 0.04)] },
    );
    const first = await store.completeTurn(turn.id, result);
    const again = await store.completeTurn(turn.id, outcome([fakeImage(0)], { newImageIndex: 0 }));
    expect(again).toEqual(first);
    expect(await count(sql`select count(*) from images where turn_id = ${turn.id}`)).toBe(2);
    expect(await count(sql`select count(*) from usage where turn_id = ${turn.id}`)).toBe(1);

    const racing = await record(key);
    await store.startTurn(racing.id);
    const both = await Promise.all(
      [1, 2].map(() => store.completeTurn(racing.id, outcome([fakeImage(0)], { newImageIndex: 0 }))),
    );
    expect(both[1]).toEqual(both[0]);
    expect(await count(sql`select count(*) from images where turn_id = ${racing.id}`)).toBe(1);
  });

  test("undo and select move the head to an existing image", async () => {
    const key = threadKey();
    const first = await generated(key);
    const root = first.images[0]?.id ?? null;
    const edit = await record(key, { kind: "edit" });
    await store.startTurn(edit.id);
    const second = await store.completeTurn(edit.id, outcome([fakeImage(0, root)], { newImageIndex: 0 }));

    const undo = await record(key, { kind: "undo", prompt: "" });
    await store.startTurn(undo.id);
    const undone = await store.completeTurn(
      undo.id,
      outcome([], { imageId: root }, { baseImageId: second.images[0]?.id ?? null }),
    );
    expect(undone.images).toEqual([]);
    expect(undone.turn.status).toBe("succeeded");
    expect((await store.getThread(key))?.headImageId).toBe(root);

    const select = await record(key, {
      kind: "select",
      prompt: "",
      targetImageId: second.images[0]?.id ?? null,
    });
    expect(select.targetImageId).toBe(second.images[0]?.id);
    await store.startTurn(select.id);
    await store.completeTurn(select.id, outcome([], { imageId: second.images[0]?.id ?? null }));
    expect((await store.getThread(key))?.headImageId).toBe(second.images[0]?.id);

    // Undoing the very first image leaves the thread without a head.
    const undoAll = await record(key, { kind: "undo", prompt: "" });
    await store.completeTurn(undoAll.id, outcome([], { imageId: null }));
    expect((await store.getThread(key))?.headImageId).toBeNull();
  });

  test("a head in another thread is refused and changes nothing", async () => {
    const other = await generated(threadKey());
    const key = threadKey();
    await generated(key);
    const select = await record(key, { kind: "select", prompt: "" });
    await store.startTurn(select.id);
    await expect(
      store.completeTurn(select.id, outcome([fakeImage(0)], { imageId: other.images[0]?.id ?? null })),
    ).rejects.toMatchObject({ code: "image_not_found" });
    expect(await store.getTurn(select.id)).toMatchObject({ status: "running" });
    expect(await store.getTurnImages(select.id)).toEqual([]);
  });

  test("failTurn records the error once; terminal turns stay as they are", async () => {
    const turn = await record(threadKey());
    await store.startTurn(turn.id);
    const failed = await store.failTurn(turn.id, "moderation_blocked", "The request was blocked.");
    expect(failed).toMatchObject({
      status: "failed",
      errorCode: "moderation_blocked",
      errorMessage: "The request was blocked.",
    });
    expect(failed.finishedAt).toBeInstanceOf(Date);
    expect(await store.failTurn(turn.id, "internal", "later", "canceled")).toEqual(failed);
    const late = await store.completeTurn(turn.id, outcome([fakeImage(0)], { newImageIndex: 0 }));
    expect(late).toEqual({ turn: failed, images: [] });

    const canceled = await store.failTurn(
      (await record(threadKey())).id,
      "canceled",
      "Canceled by U1.",
      "canceled",
    );
    expect(canceled.status).toBe("canceled");
    await expect(store.failTurn(randomUUID(), "internal", "x")).rejects.toThrow(/does not exist/);
  });

  test("markDelivered keeps the first delivery time", async () => {
    const { turn } = await generated(threadKey());
    await store.markDelivered(turn.id);
    const delivered = (await store.getTurn(turn.id))?.deliveredAt;
    expect(delivered).toBeInstanceOf(Date);
    await store.markDelivered(turn.id);
    expect((await store.getTurn(turn.id))?.deliveredAt).toEqual(delivered);
  });

  test("turnsAhead counts unfinished earlier turns of the same thread", async () => {
    const key = threadKey();
    const [a, b, c] = [await record(key), await record(key), await record(key)];
    await record(threadKey()); // another thread does not count
    if (!a || !b || !c) throw new Error("unreachable");
    expect(await store.turnsAhead(a)).toBe(0);
    expect(await store.turnsAhead(c)).toBe(2);
    await store.startTurn(a.id);
    expect(await store.turnsAhead(c)).toBe(2);
    await store.completeTurn(a.id, outcome([fakeImage(0)], { newImageIndex: 0 }));
    expect(await store.turnsAhead(c)).toBe(1);
    await store.failTurn(b.id, "internal", "x");
    expect(await store.turnsAhead(c)).toBe(0);
  });

  test("unfinishedTurns lists queued and running turns, oldest first", async () => {
    const key = threadKey();
    const queued = await record(key);
    const running = await record(key);
    await store.startTurn(running.id);
    const done = await record(key);
    await store.completeTurn(done.id, outcome([fakeImage(0)], { newImageIndex: 0 }));
    const failed = await record(key);
    await store.failTurn(failed.id, "internal", "x");

    const ours = (await store.unfinishedTurns(10_000)).filter((turn) => turn.threadKey === key);
    expect(ours.map((turn) => [turn.id, turn.status])).toEqual([
      [queued.id, "queued"],
      [running.id, "running"],
    ]);
    expect(await store.unfinishedTurns(1)).toHaveLength(1);
    expect((await store.unfinishedTurns(10, key)).map((turn) => turn.id)).toEqual([queued.id, running.id]);
    expect(await store.unfinishedTurns(1, key)).toEqual([ours[0]]);
    expect(await store.unfinishedTurns(10, threadKey())).toEqual([]);
  });
});

describe("threads", () => {
  test("history is the thread's tree: turns by seq, images with their parents", async () => {
    const key = threadKey();
    const gen = await generated(key, 2);
    const [a, b] = gen.images;
    if (!a || !b) throw new Error("expected two images");
    const editB = await record(key, { kind: "edit", prompt: "brighter" });
    const fromB = await store.completeTurn(editB.id, outcome([fakeImage(0, b.id)], { newImageIndex: 0 }));
    const editA = await record(key, { kind: "edit", prompt: "darker", targetImageId: a.id });
    const fromA = await store.completeTurn(editA.id, outcome([fakeImage(0, a.id)], { newImageIndex: 0 }));
    const pending = await record(key, { kind: "edit", prompt: "queued still" });

    const history = await store.history(key);
    expect(history?.thread.headImageId).toBe(fromA.images[0]?.id);
    expect(history?.turns.map((turn) => [turn.seq, turn.id])).toEqual([
      [1, gen.turn.id],
      [2, editB.id],
      [3, editA.id],
      [4, pending.id],
    ]);
    const parentOf = new Map(history?.images.map((image) => [image.id, image.parentId]));
    expect(history?.images.map((image) => image.id)).toEqual([
      a.id,
      b.id,
      fromB.images[0]?.id,
      fromA.images[0]?.id,
    ]);
    expect(parentOf.get(a.id)).toBeNull();
    expect(parentOf.get(b.id)).toBeNull();
    expect(parentOf.get(fromB.images[0]?.id ?? "")).toBe(b.id);
    expect(parentOf.get(fromA.images[0]?.id ?? "")).toBe(a.id);
    expect(await store.history(threadKey())).toBeNull();
  });

  test("listThreads: one platform, most recently updated first", async () => {
    const [first, second, third] = [threadKey("console"), threadKey("console"), threadKey("console")];
    for (const key of [first, second, third]) await record(key);
    await record(threadKey("discord"));
    const order = async () =>
      (await store.listThreads("console", 10_000))
        .map((thread) => thread.key)
        .filter((key) => [first, second, third].includes(key));
    expect(await order()).toEqual([third, second, first]);
    await record(first); // new activity brings a thread to the top
    expect(await order()).toEqual([first, third, second]);
    expect(
      (await store.listThreads("console", 10_000)).every((thread) => thread.platform === "console"),
    ).toBe(true);
    expect(await store.listThreads("console", 2)).toHaveLength(2);
  });

  test("updateThreadMeta merges into the stored meta", async () => {
    const key = threadKey();
    await record(key, { newThread: { title: "t", meta: { channelId: "C1", progressMessageId: "P1" } } });
    await store.updateThreadMeta(key, { progressMessageId: "P2", rootTs: "1712.0001" });
    expect((await store.getThread(key))?.meta).toEqual({
      channelId: "C1",
      progressMessageId: "P2",
      rootTs: "1712.0001",
    });
    await expect(store.updateThreadMeta(threadKey(), { a: 1 })).rejects.toMatchObject({
      code: "thread_not_found",
    });
  });

  test("turn messages: one per turn and role, replaced when saved again, gone with the turn", async () => {
    const key = threadKey();
    const [a, b] = [await record(key), await record(key)];
    expect(await store.turnMessage(a.id, "status")).toBeNull();
    await store.saveTurnMessage(a.id, "status", "1712.0002");
    await store.saveTurnMessage(b.id, "status", "1712.0003");
    expect(await store.turnMessage(a.id, "status")).toBe("1712.0002");
    expect(await store.turnMessage(b.id, "status")).toBe("1712.0003");
    await store.saveTurnMessage(a.id, "status", "1712.0009"); // posted again after the first was deleted
    expect(await store.turnMessage(a.id, "status")).toBe("1712.0009");
    expect((await store.getThread(key))?.meta).toEqual({}); // nothing grows in the thread's meta
    await expect(store.saveTurnMessage(randomUUID(), "status", "x")).rejects.toThrow();
    await h.db.execute(sql`delete from threads where key = ${key}`);
    expect(await store.turnMessage(b.id, "status")).toBeNull();
  });

  test("an alias finds its thread; it is idempotent and cannot be taken twice", async () => {
    const [key, other] = [threadKey(), threadKey()];
    await record(key);
    await record(other);
    const alias = `slack:T1:C1:${Date.now()}.000100`;
    expect(await store.findThread(alias)).toBeNull();
    await store.addThreadAlias(alias, key);
    await store.addThreadAlias(alias, key);
    expect((await store.findThread(alias))?.key).toBe(key);
    expect((await store.findThread(key))?.key).toBe(key);
    expect(await store.getThread(alias)).toBeNull(); // getThread stays exact: turns are recorded by key only
    await expect(store.addThreadAlias(alias, other)).rejects.toMatchObject({ code: "alias_taken" });
    expect((await store.findThread(alias))?.key).toBe(key);
    await expect(store.addThreadAlias("slack:T1:C1:nowhere", threadKey())).rejects.toThrow();
  });

  test("unicode prompts, titles and meta round-trip byte for byte", async () => {
    const samples = [
      "一只猫坐在窗台上，水彩风格", // CJK
      "שלט ניאון בעברית: \u202Bשלום\u202C", // RTL with embedding controls
      "مدينة عربية عند الغروب ١٢٣",
      "👩🏽‍🚀 on 🌕 with 🏳️‍🌈 and 🇯🇵", // ZWJ sequences, skin tone, flags
      "Zalgo: Z̴̡͔̈́a̶̛͎l̷̰̓g̸̱̈́o̵̬͌ and e\u0301 vs é", // combining marks; NFD and NFC must stay distinct
      "tabs\tand\nnewlines\r\n and 'quotes' \"double\" \\backslash $1 %s",
    ];
    for (const prompt of samples) {
      const key = threadKey();
      const turn = await record(key, { prompt, newThread: { title: prompt, meta: { prompt } } });
      const stored = await store.getTurn(turn.id);
      expect(Buffer.from(stored?.prompt ?? "")).toEqual(Buffer.from(prompt));
      const thread = await store.getThread(key);
      expect(Buffer.from(thread?.title ?? "")).toEqual(Buffer.from(prompt));
      expect(thread?.meta).toEqual({ prompt });
      expect(await count(sql`select octet_length(prompt) from turns where id = ${turn.id}`)).toBe(
        Buffer.byteLength(prompt),
      );
    }
  });
});

describe("database", () => {
  test("migrate() on an up-to-date database is a no-op", async () => {
    const before = await countAppliedMigrations(h.db);
    expect(before).toBeGreaterThan(0);
    await h.migrate();
    await h.migrate();
    expect(await countAppliedMigrations(h.db)).toBe(before);
    expect(await count(sql`select count(*) from threads`)).toBeGreaterThan(0); // data untouched
  });
});
