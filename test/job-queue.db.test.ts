import pino from "pino";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { Platform } from "../src/domain.ts";
import type { TurnJob } from "../src/ports.ts";
import { PgBossTurnQueue } from "../src/queue/job-queue.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * The turn queue on its own (pg-boss on PGlite, or PostgreSQL with TEST_DATABASE_URL): a process works only
 * the platforms it serves, the concurrency limit holds across them, and one thread's turns run one at a time in
 * the order they were sent.
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

it("runs at most `concurrency` turns at once across platforms, and a thread's turns in order", async () => {
  const keys = ["console:me:a", "console:me:b", "slack:T1:C1:2.1", "discord:G1:C1:i-1"];
  for (let n = 1; n <= 3; n++) for (const key of keys) await queue.enqueue(job(key, n));
  let running = 0;
  let peak = 0;
  const order = new Map<string, number[]>();
  await queue.work(async (j) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((resolve) => setTimeout(resolve, 30));
    order.set(j.threadKey, [...(order.get(j.threadKey) ?? []), Number(j.turnId.split("#")[1])]);
    running--;
  });
  await waitUntil(() => [...order.values()].flat().length === 12, "all twelve turns");
  expect(peak).toBe(2);
  for (const key of keys) expect(order.get(key)).toEqual([1, 2, 3]);
});
