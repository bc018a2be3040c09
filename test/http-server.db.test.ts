import { sql } from "drizzle-orm";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DEFAULT_PARAMS } from "../src/domain.ts";
import { operationalRoutes, startHttpServer } from "../src/http/http-server.ts";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";

let database: TestDatabase;
let server: { port: number; close(): Promise<void> };
let healthy = true;

beforeAll(async () => {
  database = await openTestDatabase();
  const store = new PostgresConversationStore(database.db);
  await store.recordTurn(
    { threadKey: "console:http:1", kind: "generate", prompt: "a kite", params: DEFAULT_PARAMS, userId: "U1" },
    async () => {},
  );
  const checkDatabase = async () => {
    if (!healthy) throw new Error("database unreachable");
    return database.db.execute(sql`select 1`);
  };
  server = await startHttpServer(
    0,
    operationalRoutes({ store, checkDatabase, logger: pino({ level: "silent" }) }),
    pino({ level: "silent" }),
  );
});
afterAll(async () => {
  await server?.close();
  await database?.close();
});

const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`);

it("GET /healthz answers 200 while the database answers, 503 when it does not", async () => {
  const ok = await get("/healthz");
  expect(ok.status).toBe(200);
  expect(await ok.json()).toEqual({ status: "ok" });
  healthy = false;
  const down = await get("/healthz");
  healthy = true;
  expect(down.status).toBe(503);
  expect(await down.json()).toMatchObject({ status: "unavailable" });
});

it("GET /metrics reports turns by status in Prometheus text format", async () => {
  const response = await get("/metrics");
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
  const body = await response.text();
  expect(body).toContain('threadcanvas_turns{status="queued"} 1');
  expect(body).toContain('threadcanvas_turns{status="succeeded"} 0');
  expect(body).toContain("threadcanvas_images 0");
  expect(body).toContain("threadcanvas_cost_usd_total 0");
  expect(body).toContain("threadcanvas_deliveries_late 0");
});

it("anything else is 404", async () => {
  expect((await get("/slack/events")).status).toBe(404);
  expect((await fetch(`http://127.0.0.1:${server.port}/healthz`, { method: "POST" })).status).toBe(404);
});

it("with METRICS_TOKEN, /metrics answers only a request bearing it; /healthz stays open", async () => {
  const store = new PostgresConversationStore(database.db);
  const guarded = await startHttpServer(
    0,
    operationalRoutes({
      store,
      checkDatabase: async () => database.db.execute(sql`select 1`),
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
    expect(await scraped.text()).toContain("threadcanvas_turns");
    expect((await at("/healthz")).status).toBe(200);
  } finally {
    await guarded.close();
  }
});
