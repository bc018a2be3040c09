import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "drizzle-orm";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type App, createApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { operationalRoutes, startHttpServer } from "../src/http/http-server.ts";
import type { FinishedEvent, Intent } from "../src/ports.ts";
import { createOpenAIImageProvider } from "../src/provider/openai-images.ts";
import { PgBossTurnQueue } from "../src/queue/job-queue.ts";
import { type FakeOpenAI, startFakeOpenAI } from "./fakes/openai-server.ts";
import { createTestDataDir, openTestDatabase } from "./support/database.ts";

/**
 * `/healthz` and `/metrics` of a whole app (`createApp`, as `npm start` builds it) running real turns: the
 * engine, pg-boss and the openai SDK against the fake OpenAI, on PGlite or (TEST_DATABASE_URL) PostgreSQL.
 * The tests run in order: the last ones stop the queue and close the database.
 */

let app: App;
let fake: FakeOpenAI;
let server: { port: number; close(): Promise<void> };
const cleanups: Array<() => Promise<void>> = [];
const logs: Array<Record<string, unknown>> = [];
const delivered = new Map<string, FinishedEvent>();
const waiting = new Map<string, (event: FinishedEvent) => void>();
/** What the process's "slack" and "discord" connections answer, as the platform checks see them. */
let slack: "up" | "down" = "up";
let discord: "up" | "throws" | "hangs" = "up";

beforeAll(async () => {
  fake = await startFakeOpenAI();
  const blobDir = await mkdtemp(path.join(tmpdir(), "tc-http-"));
  cleanups.push(() => rm(blobDir, { recursive: true, force: true }));
  const env: Record<string, string> = { DATA_DIR: blobDir };
  if (process.env.TEST_DATABASE_URL?.trim()) {
    // A fresh clone for the app to connect to; closing the handle drops it.
    const database = await openTestDatabase();
    cleanups.push(() => database.close());
    env.DATABASE_URL = database.databaseUrl ?? "";
  } else {
    // A file-backed PGlite under DATA_DIR, copied from the migrated template.
    const data = await createTestDataDir();
    cleanups.push(() => data.cleanup());
    env.DATA_DIR = data.dataDir;
  }
  // Warnings are kept to check what reaches the log (and what does not reach a response).
  const logger = pino({ level: "warn" }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  app = await createApp(loadConfig(env), logger, {
    provider: createOpenAIImageProvider(
      { apiKey: fake.apiKey, baseUrl: fake.baseUrl, imageModel: "gpt-image-2", thinkModel: "gpt-5.5" },
      logger,
    ),
    queue: {
      pollingIntervalSeconds: 0.5,
      retryDelaySeconds: 1,
      retryDelayMaxSeconds: 2,
      monitorIntervalSeconds: 1,
    },
  });
  app.engine.observe("console", {
    deliver: async (event) => {
      delivered.set(event.turn.id, event);
      waiting.get(event.turn.id)?.(event);
    },
  });
  app.health.add("slack", () => slack === "up");
  app.health.add("discord", async () => {
    if (discord === "throws")
      throw new Error("connect ECONNREFUSED postgres://tc:hunter2@db.internal:5432/tc");
    if (discord === "hangs") await new Promise((resolve) => setTimeout(resolve, 3_000));
    return true;
  });
  await app.startWorkers(["console"]);
  server = await startHttpServer(0, app.routes, pino({ level: "silent" }));
});
afterAll(async () => {
  await server?.close();
  await app?.stop();
  await fake?.close();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const get = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${server.port}${path}`, init);

/** Submits a turn and resolves with what was delivered for it. */
async function run(intent: Intent): Promise<FinishedEvent> {
  const { turn } = await app.engine.submit(intent);
  const done = delivered.get(turn.id);
  return done ? done : new Promise((resolve) => waiting.set(turn.id, resolve));
}

/** One sample's value from the exposition text; undefined when the series is not there. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[2] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
    );
    const wanted = Object.entries(labels);
    if (wanted.length === Object.keys(found).length && wanted.every(([k, v]) => found[k] === v))
      return Number(match[3]);
  }
  return undefined;
}

const scrape = async () => {
  const response = await get("/metrics");
  expect(response.status).toBe(200);
  return response.text();
};

describe("GET /metrics", () => {
  const thread = "console:http:1";
  let costUsd = 0;

  it("counts turns by kind, platform and outcome, with the latencies of their parts", async () => {
    const done = await run({ threadKey: thread, kind: "generate", prompt: "a kite", userId: "U1" });
    expect(done.turn.status).toBe("succeeded");
    costUsd += done.turn.costUsd ?? 0;
    expect(costUsd).toBeGreaterThan(0);
    // The delivery is timed once the platform's `deliver` returns, just after the test heard of it.
    await expect
      .poll(async () =>
        sample(await scrape(), "threadcanvas_delivery_seconds_count", { platform: "console" }),
      )
      .toBe(1);

    const response = await get("/metrics");
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toContain(
      'threadcanvas_turns_total{kind="generate",platform="console",outcome="succeeded"} 1',
    );
    expect(sample(text, "threadcanvas_queue_wait_seconds_count", { platform: "console" })).toBe(1);
    expect(sample(text, "threadcanvas_provider_seconds_count", { kind: "generate" })).toBe(1);
    expect(sample(text, "threadcanvas_provider_seconds_sum", { kind: "generate" })).toBeGreaterThan(0);
    expect(sample(text, "threadcanvas_spend_usd_total", { platform: "console" })).toBeCloseTo(costUsd, 6);
    // Node's own metrics come along; ours all carry the prefix.
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).not.toMatch(/^threadcanvas_turns\{/m);
  });

  it("counts provider errors by code; a refused edit is a failed turn, a rate limit a retry", async () => {
    fake.failNext({ moderation: true });
    const blocked = await run({
      threadKey: thread,
      kind: "edit",
      prompt: "something it refuses",
      userId: "U1",
    });
    expect(blocked.turn).toMatchObject({ status: "failed", errorCode: "moderation_blocked" });
    // Past the SDK's own two retries: the engine sees the rate limit and the queue runs the turn again.
    fake.failNext(
      { status: 429, retryAfterMs: 10 },
      { status: 429, retryAfterMs: 10 },
      { status: 429, retryAfterMs: 10 },
    );
    const retried = await run({ threadKey: thread, kind: "edit", prompt: "add a moon", userId: "U1" });
    expect(retried.turn).toMatchObject({ status: "succeeded", attempts: 2 });
    costUsd += retried.turn.costUsd ?? 0;

    const text = await scrape();
    expect(sample(text, "threadcanvas_provider_errors_total", { code: "moderation_blocked" })).toBe(1);
    expect(sample(text, "threadcanvas_provider_errors_total", { code: "rate_limited" })).toBe(1);
    expect(
      sample(text, "threadcanvas_turns_total", { kind: "edit", platform: "console", outcome: "failed" }),
    ).toBe(1);
    expect(
      sample(text, "threadcanvas_turns_total", { kind: "edit", platform: "console", outcome: "succeeded" }),
    ).toBe(1);
    // Every provider call is timed, failed ones too; the queue wait only before a turn's first run.
    expect(sample(text, "threadcanvas_provider_seconds_count", { kind: "edit" })).toBe(3);
    expect(sample(text, "threadcanvas_queue_wait_seconds_count", { platform: "console" })).toBe(3);
  });

  it("counts spend as calls settle, unanswered ones at their estimate: the same as the ledger", async () => {
    // Three dropped connections (the SDK's attempts): each may have been billed, so each is charged.
    fake.failNext({ disconnect: true }, { disconnect: true }, { disconnect: true });
    const done = await run({ threadKey: "console:http:2", kind: "generate", prompt: "a boat", userId: "U2" });
    expect(done.turn).toMatchObject({ status: "succeeded", attempts: 2 });
    const rows = await app.store.ledgerEntries(done.turn.id);
    expect(rows.map((row) => row.status)).toEqual(["unknown", "unknown", "unknown", "billed"]);
    for (const row of rows.slice(0, 3)) expect(row.costUsd).toBe(row.estimateUsd);
    costUsd += done.turn.costUsd ?? 0;
    const ledger = await app.database.db.execute<{ total: string }>(
      sql`select coalesce(sum(cost_usd), 0)::text as total from ledger`,
    );
    expect(Number(ledger.rows[0]?.total)).toBeCloseTo(costUsd, 6);
    const text = await scrape();
    expect(sample(text, "threadcanvas_spend_usd_total", { platform: "console" })).toBeCloseTo(costUsd, 6);
    expect(sample(text, "threadcanvas_provider_errors_total", { code: "provider_unavailable" })).toBe(1);
  });

  it("reports each platform's queue depth, read once however many scrape at once", async () => {
    // No Slack worker runs in this process: the turn waits in Slack's queue.
    await app.engine.submit({
      threadKey: "slack:T1:C1:1712.0001",
      kind: "generate",
      prompt: "a lighthouse",
      userId: "U3",
      newThread: { title: "a lighthouse", meta: {} },
    });
    await expect
      .poll(async () => sample(await scrape(), "threadcanvas_queue_depth", { platform: "slack" }), {
        timeout: 20_000,
        interval: 500,
      })
      .toBe(1);
    expect(sample(await scrape(), "threadcanvas_queue_depth", { platform: "console" })).toBe(0);

    const depth = vi.spyOn(PgBossTurnQueue.prototype, "depth");
    const stats = vi.spyOn(app.store, "stats");
    try {
      await new Promise((resolve) => setTimeout(resolve, 5_100)); // past the cache
      const scrapes = await Promise.all(Array.from({ length: 20 }, () => scrape()));
      expect(
        scrapes.every((text) => sample(text, "threadcanvas_queue_depth", { platform: "slack" }) === 1),
      ).toBe(true);
      expect(depth).toHaveBeenCalledTimes(1);
      expect(stats).not.toHaveBeenCalled();
    } finally {
      depth.mockRestore();
      stats.mockRestore();
    }
  });

  it("with METRICS_TOKEN, answers only a request bearing it; /healthz stays open", async () => {
    const guarded = await startHttpServer(
      0,
      operationalRoutes({
        health: app.health,
        metrics: app.metrics,
        logger: pino({ level: "silent" }),
        metricsToken: "scrape-secret",
      }),
      pino({ level: "silent" }),
    );
    try {
      const at = (path: string, authorization?: string) =>
        fetch(`http://127.0.0.1:${guarded.port}${path}`, authorization ? { headers: { authorization } } : {});
      const bare = await at("/metrics");
      expect(bare.status).toBe(401);
      expect(bare.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect(await bare.text()).not.toContain("threadcanvas_");
      expect((await at("/metrics", "Bearer wrong")).status).toBe(401);
      expect((await at("/metrics", "scrape-secret")).status).toBe(401); // not a bearer header
      const scraped = await at("/metrics", "Bearer scrape-secret");
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain("threadcanvas_turns_total");
      expect((await at("/healthz")).status).toBe(200);
    } finally {
      await guarded.close();
    }
  });
});

describe("GET /healthz", () => {
  const health = async () => {
    const response = await get("/healthz");
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it("is 200 with every check up: the database, the queue and the platform connections", async () => {
    expect(await health()).toEqual({
      status: 200,
      body: { status: "ok", checks: { database: "up", queue: "up", slack: "up", discord: "up" } },
    });
  });

  it("is 503 naming a platform check that is down, throws or does not answer in time", async () => {
    slack = "down";
    expect(await health()).toEqual({
      status: 503,
      body: {
        status: "unavailable",
        down: ["slack"],
        checks: { database: "up", queue: "up", slack: "down", discord: "up" },
      },
    });
    slack = "up";
    discord = "throws";
    const threw = await get("/healthz");
    const text = await threw.text();
    expect(threw.status).toBe(503);
    expect(JSON.parse(text)).toMatchObject({ down: ["discord"] });
    // Why is for the log, never the response: errors can carry hosts and credentials.
    expect(text).not.toMatch(/hunter2|ECONNREFUSED/);
    expect(logs).toContainEqual(expect.objectContaining({ check: "discord", msg: "health check failed" }));
    discord = "hangs";
    const began = Date.now();
    expect((await health()).body).toMatchObject({ status: "unavailable", down: ["discord"] });
    expect(Date.now() - began).toBeLessThan(5_000);
    discord = "up";
    expect((await health()).status).toBe(200);
  });

  it("is 503 naming the queue once it is stopped", async () => {
    await app.stopWorkers(1_000);
    expect(await health()).toEqual({
      status: 503,
      body: {
        status: "unavailable",
        down: ["queue"],
        checks: { database: "up", queue: "down", slack: "up", discord: "up" },
      },
    });
  });

  it("is 503 naming the database once it is closed; /metrics still answers from its counters", async () => {
    await app.database.close();
    const { status, body } = await health();
    expect(status).toBe(503);
    expect(body.down).toContain("database");
    expect(body.checks).toMatchObject({ database: "down" });
    const text = await scrape();
    expect(
      sample(text, "threadcanvas_turns_total", {
        kind: "generate",
        platform: "console",
        outcome: "succeeded",
      }),
    ).toBe(2);
  });
});

it("anything else is 404", async () => {
  expect((await get("/slack/events")).status).toBe(404);
  expect((await get("/healthz", { method: "POST" })).status).toBe(404);
});
