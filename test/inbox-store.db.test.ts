import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { PostgresInbox } from "../src/store/inbox-store.ts";
import { inbox as inboxTable } from "../src/store/schema.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";

/**
 * The Inbox contract, on PGlite and (project `pg`) on PostgreSQL: one row per event key, held by whoever
 * received or took it, taken over by anyone once the hold lapses, and forgotten (payload first) once finished.
 * Each test starts from an empty table.
 */

let h: TestDatabase;
let inbox: PostgresInbox;

beforeAll(async () => {
  h = await openTestDatabase();
  inbox = new PostgresInbox(h.db);
});
afterAll(async () => {
  await h?.close();
});
beforeEach(async () => {
  await h.db.delete(inboxTable);
});

const event = (key = `slack:msg:${randomUUID()}`, platform: "slack" | "discord" = "slack") => ({
  platform,
  key,
  kind: "message",
  payload: { text: "make it blue", files: [{ id: "F1" }] },
});

/** Moves every hold into the past, as if `ms` had gone by. */
const age = (ms: number) =>
  h.db.execute(sql`update inbox set claimed_until = claimed_until - ${ms}::int * interval '1 millisecond'`);

describe("receive", () => {
  test("records an event once: the same key again is a replay", async () => {
    const first = await inbox.receive(event("slack:msg:T1:C1:1.0"), 60_000);
    expect(first).toMatchObject({
      platform: "slack",
      key: "slack:msg:T1:C1:1.0",
      kind: "message",
      payload: { text: "make it blue", files: [{ id: "F1" }] },
      attempts: 1,
    });
    expect(first?.receivedAt).toBeInstanceOf(Date);
    expect(await inbox.receive(event("slack:msg:T1:C1:1.0"), 60_000)).toBeNull();
    expect((await h.db.select().from(inboxTable)).map((r) => r.key)).toEqual(["slack:msg:T1:C1:1.0"]);
    expect(await inbox.receive(event("slack:msg:T1:C1:2.0"), 60_000)).not.toBeNull();
  });

  test("a hundred receipts of one key at once make one row", async () => {
    const key = "discord:m:1234";
    const results = await Promise.all(
      Array.from({ length: 100 }, () => inbox.receive(event(key, "discord"), 60_000)),
    );
    expect(results.filter((r) => r !== null)).toHaveLength(1);
    expect(await h.db.select().from(inboxTable)).toHaveLength(1);
  });
});

describe("takeLapsed", () => {
  test("takes only unfinished events of the platform whose hold lapsed, oldest first, and holds them again", async () => {
    const held = await inbox.receive(event(), 60_000);
    const lapsedA = await inbox.receive(event(), 1_000);
    const lapsedB = await inbox.receive(event(), 1_000);
    const finished = await inbox.receive(event(), 1_000);
    const otherPlatform = await inbox.receive(event(undefined, "discord"), 1_000);
    await inbox.finish(finished?.id ?? 0, "done");
    await age(2_000);

    const taken = await inbox.takeLapsed("slack", 60_000, 10);
    expect(taken.map((e) => e.id)).toEqual([lapsedA?.id, lapsedB?.id]);
    expect(taken.map((e) => e.attempts)).toEqual([2, 2]);
    expect(taken[0]?.payload).toEqual(lapsedA?.payload);
    // Held again: a second sweep finds nothing, until that hold lapses too.
    expect(await inbox.takeLapsed("slack", 60_000, 10)).toEqual([]);
    expect(held).not.toBeNull();
    expect((await inbox.takeLapsed("discord", 60_000, 10)).map((e) => e.id)).toEqual([otherPlatform?.id]);
  });

  test("two sweeps at once never take the same event", async () => {
    for (let i = 0; i < 30; i += 1) await inbox.receive(event(), 0);
    const [a, b] = await Promise.all([
      inbox.takeLapsed("slack", 60_000, 20),
      inbox.takeLapsed("slack", 60_000, 20),
    ]);
    const ids = [...(a ?? []), ...(b ?? [])].map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(30);
  });

  test("respects the limit", async () => {
    for (let i = 0; i < 5; i += 1) await inbox.receive(event(), 0);
    expect(await inbox.takeLapsed("slack", 60_000, 3)).toHaveLength(3);
    expect(await inbox.takeLapsed("slack", 60_000, 3)).toHaveLength(2);
  });
});

describe("finish and prune", () => {
  test("a finished event is never taken again, keeps its key, and loses its payload", async () => {
    const entry = await inbox.receive(event(), 0);
    await inbox.finish(entry?.id ?? 0, "gave_up");
    await age(1_000);
    expect(await inbox.takeLapsed("slack", 60_000, 10)).toEqual([]);
    const [row] = await h.db.select().from(inboxTable);
    expect(row).toMatchObject({ outcome: "gave_up", payload: null });
    expect(row?.finishedAt).toBeInstanceOf(Date);
    expect(await inbox.receive(event(entry?.key), 0)).toBeNull();
    // Finishing twice changes nothing.
    await inbox.finish(entry?.id ?? 0, "done");
    expect((await h.db.select().from(inboxTable))[0]?.outcome).toBe("gave_up");
  });

  test("prune forgets finished events older than the date, never unfinished ones", async () => {
    const old = await inbox.receive(event(), 0);
    const fresh = await inbox.receive(event(), 0);
    const unfinished = await inbox.receive(event(), 0);
    await inbox.finish(old?.id ?? 0, "done");
    await inbox.finish(fresh?.id ?? 0, "done");
    await h.db.execute(
      sql`update inbox set finished_at = now() - interval '8 days' where id = ${old?.id ?? 0}`,
    );
    expect(await inbox.prune(new Date(Date.now() - 7 * 24 * 3600_000))).toBe(1);
    const left = (await h.db.select().from(inboxTable)).map((r) => r.id).sort((a, b) => a - b);
    expect(left).toEqual([fresh?.id, unfinished?.id]);
  });
});
