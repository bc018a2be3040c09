import pino from "pino";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { Platform } from "../src/domain.ts";
import type { TurnJob } from "../src/ports.ts";
import { PgBossTurnQueue } from "../src/queue/job-queue.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * The turn queue on its own (pg-boss on PGlite, or PostgreSQL with TEST_DATABASE_URL): a process works only
 * the platforms it serves, each platform with its own concurrency, one thread's turns run one at a time in the
 * order they were sent, and a stop lets running turns finish, then hands back the rest.
 */
let database: TestDatabase;
let queue: PgBossTurnQueue;

beforeEach(async () => {
  database = await openTestDatabase();
  queue = new PgBossTurnQueue(
    { pglite: database.pglite, url: database.databaseUrl },
    { concurrency: 2, pollingIntervalSeconds: 0.5 },
    pino({ level: "silent" }),
  );
  await queue.start();
});
afterEach(async () => {
  await queue?.stop(1_000);
  await database?.close();
});

const job = (threadKey: string, n: number): TurnJob => ({ turnId: `${threadKey}#${n}`, threadKey });

it("works only the platforms it is given; another process's turns wait for it", async () => {
  await queue.enqueue(job("slack:T1:C1:1.1", 1));
  await queue.enqueue(job("console:me:a", 1));
  const ran: string[] = [];
  const handler = async (j: TurnJob) => void ran.push(j.turnId);
  await queue.work(handler, ["console"]);
  await waitUntil(() => ran.length === 1, "the console turn");
  await new Promise((resolve) => setTimeout(resolve, 1_200)); // a couple of polls: the Slack turn stays queued
  expect(ran).toEqual(["console:me:a#1"]);
  await queue.work(handler, ["slack"] satisfies Platform[]);
  await waitUntil(() => ran.length === 2, "the slack turn");
  expect(ran).toEqual(["console:me:a#1", "slack:T1:C1:1.1#1"]);
});

it("runs at most `concurrency` turns of each platform at once, and a thread's turns in order", async () => {
  const keys = ["console:me:a", "console:me:b", "console:me:c", "slack:T1:C1:2.1", "slack:T1:C1:2.2"];
  for (let n = 1; n <= 3; n++) for (const key of keys) await queue.enqueue(job(key, n));
  const running = new Map<string, number>();
  const peak = new Map<string, number>();
  const order = new Map<string, number[]>();
  await queue.work(async (j) => {
    const platform = j.threadKey.split(":")[0] ?? "";
    running.set(platform, (running.get(platform) ?? 0) + 1);
    peak.set(platform, Math.max(peak.get(platform) ?? 0, running.get(platform) ?? 0));
    await new Promise((resolve) => setTimeout(resolve, 30));
    order.set(j.threadKey, [...(order.get(j.threadKey) ?? []), Number(j.turnId.split("#")[1])]);
    running.set(platform, (running.get(platform) ?? 0) - 1);
  });
  await waitUntil(() => [...order.values()].flat().length === 15, "all fifteen turns");
  expect(Object.fromEntries(peak)).toEqual({ console: 2, slack: 2 });
  for (const key of keys) expect(order.get(key)).toEqual([1, 2, 3]);
});

it("turns stuck delivering to one platform never hold another platform's turns", async () => {
  // Slack is down: each of its turns hangs in delivery, filling every Slack worker this process has.
  for (let n = 1; n <= 3; n++) await queue.enqueue(job(`slack:T1:C1:${n}.1`, 1));
  for (let n = 1; n <= 4; n++) await queue.enqueue(job(`discord:G1:C1:i-${n}`, 1));
  const stuck: string[] = [];
  const done: string[] = [];
  await queue.work(async (j, attempt) => {
    if (j.threadKey.startsWith("slack:")) {
      stuck.push(j.turnId);
      await new Promise((resolve) => attempt.signal.addEventListener("abort", resolve, { once: true }));
      throw new Error("handed back");
    }
    done.push(j.turnId);
  });
  await waitUntil(() => done.length === 4, "every Discord turn, while Slack's are stuck");
  // Both Slack workers take a turn (the second may start after the Discord turns are done), and no third.
  await waitUntil(() => stuck.length === 2, "both Slack workers busy");
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(stuck).toHaveLength(2); // the Slack workers are all busy; the third Slack turn waits
});

it("stop lets running turns finish within the grace, then aborts the rest, which hand themselves back", async () => {
  await queue.enqueue(job("console:me:quick", 1));
  await queue.enqueue(job("console:me:slow", 1));
  const finished: string[] = [];
  const aborted: string[] = [];
  const started: string[] = [];
  await queue.work(async (j, attempt) => {
    started.push(j.turnId);
    const ms = j.threadKey.endsWith("quick") ? 300 : 60_000;
    await new Promise<void>((resolve) => {
      const onAbort = () => {
        clearTimeout(timer);
        aborted.push(j.turnId);
        resolve();
      };
      const timer = setTimeout(() => {
        attempt.signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      attempt.signal.addEventListener("abort", onAbort, { once: true });
    });
    if (attempt.signal.aborted) throw new Error("handed back");
    finished.push(j.turnId);
  });
  await waitUntil(() => started.length === 2, "both turns started");
  await queue.enqueue(job("console:me:later", 1));
  const stopping = Date.now();
  await queue.stop(1_000);
  expect(Date.now() - stopping).toBeLessThan(5_000);
  expect(finished).toEqual(["console:me:quick#1"]);
  expect(aborted).toEqual(["console:me:slow#1"]);
  expect(started).not.toContain("console:me:later#1"); // nothing new is taken while stopping

  // The next process finds the handed-back turn, and the one that waited, still queued.
  const next = new PgBossTurnQueue(
    { pglite: database.pglite, url: database.databaseUrl },
    { concurrency: 2, pollingIntervalSeconds: 0.5, retryDelaySeconds: 1 },
    pino({ level: "silent" }),
  );
  await next.start();
  const ran: string[] = [];
  await next.work(async (j) => void ran.push(j.turnId));
  await waitUntil(() => ran.length === 2, "the handed-back and the waiting turn", 20_000);
  expect(ran.sort()).toEqual(["console:me:later#1", "console:me:slow#1"]);
  await next.stop(1_000);
});

it("a job pg-boss gave up on is taken out, so its thread's later turns run", {
  timeout: 30_000,
}, async () => {
  const strict = new PgBossTurnQueue(
    { pglite: database.pglite, url: database.databaseUrl },
    { concurrency: 2, pollingIntervalSeconds: 0.5, retryDelaySeconds: 1, retryLimit: 1 },
    pino({ level: "silent" }),
  );
  await strict.start();
  try {
    await strict.enqueue(job("console:me:stuck", 1));
    await strict.enqueue(job("console:me:stuck", 2));
    const tries: string[] = [];
    await strict.work(async (j) => {
      tries.push(j.turnId);
      if (j.turnId.endsWith("#1")) throw new Error("always fails");
    });
    await waitUntil(() => tries.length === 2, "the first turn's two tries", 15_000);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(tries).toEqual(["console:me:stuck#1", "console:me:stuck#1"]); // the second waits behind the failed one
    expect(await strict.takeAbandoned(["slack"])).toEqual([]);
    expect(await strict.takeAbandoned(["console"])).toEqual([job("console:me:stuck", 1)]);
    await waitUntil(() => tries.includes("console:me:stuck#2"), "the thread's next turn", 10_000);
    expect(await strict.takeAbandoned(["console"])).toEqual([]);
  } finally {
    await strict.stop(1_000);
  }
});
