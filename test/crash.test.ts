import { readdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { openDatabase } from "../src/store/database.ts";
import { type FakeOpenAI, type RecordedRequest, startFakeOpenAI } from "./fakes/openai-server.ts";
import { fakeCharge, roundUsd } from "./support/billing.ts";
import { startBot } from "./support/bot-process.ts";
import { createTestDataDir, type TestDataDir } from "./support/database.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * A bot killed with SIGKILL in the middle of a turn: after a restart the turn runs again and completes once —
 * one stored image, one delivered file, one result line.
 */
let fake: FakeOpenAI;
let data: TestDataDir;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  data = await createTestDataDir();
});
afterAll(async () => {
  await fake?.close();
  await data?.cleanup();
});

it("completes a turn exactly once after kill -9 mid-turn", { timeout: 120_000 }, async () => {
  const env = {
    OPENAI_API_KEY: fake.apiKey,
    OPENAI_BASE_URL: fake.baseUrl,
    DATA_DIR: data.dataDir,
    USER: "crash",
  };
  fake.setLatency(60_000); // the provider is still drawing when the bot dies

  const first = startBot(env);
  first.send("/imagine a lighthouse in a storm");
  await first.waitForOutput(/drawing…/);
  await waitUntil(() => fake.requests.length === 1, "the turn's provider call", 30_000);
  first.child.kill("SIGKILL");
  expect((await first.exited).signal).toBe("SIGKILL");
  expect(first.stdout()).not.toMatch(/✔/);
  // OpenAI finishes (and bills) the drawing whose client died.
  fake.finishWaiting();
  await waitUntil(() => (fake.requests[0]?.bills.length ?? 0) > 0, "the first call billed", 10_000);

  fake.setLatency(0);
  const second = startBot(env);
  second.endInput(); // a script with nothing more to say: the bot finishes what is pending, then exits
  const { code } = await second.exited;
  expect(second.stderr()).toBe("");
  expect(code).toBe(0);
  expect(second.stdout().match(/✔/g)).toHaveLength(1);

  const out = path.join(data.dataDir, "out");
  const [threadDir, ...others] = await readdir(out);
  expect(others).toEqual([]);
  expect(await readdir(path.join(out, threadDir ?? ""))).toEqual(["v1-1.png"]);

  const database = await openDatabase({ dataDir: data.dataDir });
  try {
    const store = new PostgresConversationStore(database.db);
    const [thread] = await store.listThreads("console", 10);
    const history = await store.history(thread?.key ?? "");
    expect(history?.turns).toHaveLength(1);
    const [turn] = history?.turns ?? [];
    expect(turn?.status).toBe("succeeded");
    expect(turn?.attempts).toBe(2);
    expect(turn?.deliveredAt).toBeInstanceOf(Date);
    expect(history?.images).toHaveLength(1);
    expect(history?.thread.headImageId).toBe(history?.images[0]?.id);

    // The ledger has both calls, matched to the fake's by X-Client-Request-Id: the one cut off by the kill is
    // charged at the turn's estimate (its outcome never came back), the second at what the fake billed.
    const rows = await store.ledgerEntries(turn?.id ?? "");
    const sent = fake.requests.map((r) => r.headers["x-client-request-id"]);
    expect(rows.map((r) => r.clientRequestId)).toEqual(sent);
    expect(rows.map((r) => [r.status, r.requestId])).toEqual([
      ["unknown", null],
      ["billed", fake.requests[1]?.requestId],
    ]);
    expect(rows[0]?.costUsd).toBe(turn?.estimateUsd);
    expect(fake.requests.every((r) => r.bills.length > 0)).toBe(true);
    const billed = fakeCharge(fake.requests[1] as RecordedRequest);
    expect(billed).toBeGreaterThan(0);
    expect(rows[1]?.costUsd).toBe(billed);
    expect(turn?.costUsd).toBe(roundUsd((turn?.estimateUsd ?? 0) + billed));
  } finally {
    await database.close();
  }
  expect(fake.requests.filter((r) => r.endpoint === "images.generate")).toHaveLength(2);
});
