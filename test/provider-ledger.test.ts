import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_PARAMS, type ImageParams } from "../src/domain.ts";
import type { CallLedger, CallOutcome } from "../src/ports.ts";
import { OpenAIImageProvider } from "../src/provider/openai-images.ts";
import { type FakeOpenAI, startFakeOpenAI } from "./fakes/openai-server.ts";
import { fakeCharge, roundUsd as round } from "./support/billing.ts";

/**
 * Every HTTP request the provider sends is in the ledger — the SDK's own retries included — and the ledger
 * matches what the fake OpenAI billed, request by request (`X-Client-Request-Id`): billed rows at the price of
 * the tokens the fake billed, error answers at nothing, requests that got no answer as unknown.
 */

let fake: FakeOpenAI;

beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(() => fake.close());
beforeEach(() => {
  fake.reset();
  fake.setLatency(0);
});

interface Row {
  clientRequestId: string;
  endpoint: string;
  retry: number;
  outcome: CallOutcome | null;
}

/** The ledger port, kept in memory: the store's own version is tested in ledger-store.db.test.ts. */
class MemoryLedger implements CallLedger {
  rows: Row[] = [];
  failOpen = false;

  async open(request: { clientRequestId: string; endpoint: string; retry: number }): Promise<void> {
    if (this.failOpen) throw new Error("the database is down");
    this.rows.push({ ...request, outcome: null });
  }

  async settle(clientRequestId: string, outcome: CallOutcome): Promise<void> {
    const row = this.rows.find((r) => r.clientRequestId === clientRequestId);
    if (row && row.outcome === null) row.outcome = outcome;
  }
}

function provider(maxRetries = 2) {
  const client = new OpenAI({ apiKey: fake.apiKey, baseURL: fake.baseUrl, maxRetries });
  return new OpenAIImageProvider({ client, imageModel: "gpt-image-2", thinkModel: "gpt-5.5" });
}

const params = (overrides: Partial<ImageParams> = {}): ImageParams => ({ ...DEFAULT_PARAMS, ...overrides });

const charged = (outcome: CallOutcome | null) =>
  outcome?.status === "billed" ? round(outcome.usage.reduce((sum, e) => sum + e.costUsd, 0)) : 0;

/** Each ledger row next to the fake's record of the same request. */
function matched(ledger: MemoryLedger) {
  return ledger.rows.map((row) => {
    const request = fake.requests.find((r) => r.headers["x-client-request-id"] === row.clientRequestId);
    return {
      id: row.clientRequestId,
      retry: row.retry,
      status: row.outcome?.status ?? "pending",
      requestId: row.outcome?.requestId ?? null,
      fakeRequestId: request?.status === null ? null : (request?.requestId ?? "never arrived"),
      cost: charged(row.outcome),
      fakeBilled: request ? fakeCharge(request) : 0,
    };
  });
}

describe("the ledger, request by request", () => {
  it("a 429 the SDK retried is a row billed nothing, and the retry is a row billed what the fake billed", async () => {
    fake.failNext({ status: 429, retryAfterMs: 10 });
    const ledger = new MemoryLedger();
    await provider().generate({ prompt: "a kite", params: params(), ledger });
    const rows = matched(ledger);
    expect(rows.map((r) => [r.retry, r.status])).toEqual([
      [0, "not_billed"],
      [1, "billed"],
    ]);
    expect(rows[1]?.id).toBe(`${rows[0]?.id}.r1`);
    expect(rows[0]?.id).toMatch(/^tc_[0-9a-f-]{36}$/);
    for (const row of rows) {
      expect(row.requestId).toBe(row.fakeRequestId);
      expect(row.cost).toBe(row.fakeBilled);
    }
    expect(rows[1]?.cost).toBeGreaterThan(0);
    expect(fake.requests).toHaveLength(2);
  });

  it("a moderation block is one row billed nothing; the fake billed nothing", async () => {
    fake.failNext({ moderation: true });
    const ledger = new MemoryLedger();
    await expect(provider().generate({ prompt: "x", params: params(), ledger })).rejects.toMatchObject({
      code: "moderation_blocked",
    });
    expect(matched(ledger)).toEqual([
      expect.objectContaining({ status: "not_billed", cost: 0, fakeBilled: 0, retry: 0 }),
    ]);
  });

  it("a broken connection is unknown (it may have been billed); the SDK's retry is billed", async () => {
    const base = (await provider().generate({ prompt: "a", params: params() })).images[0];
    fake.failNext({ disconnect: true });
    const ledger = new MemoryLedger();
    await provider().edit({
      prompt: "make it blue",
      params: params(),
      images: [{ bytes: base?.bytes ?? Buffer.alloc(0), format: "png" }],
      ledger,
    });
    const rows = matched(ledger);
    expect(rows.map((r) => [r.retry, r.status])).toEqual([
      [0, "unknown"],
      [1, "billed"],
    ]);
    expect(rows[1]?.cost).toBe(rows[1]?.fakeBilled);
  });

  it("a stream that broke after its first image bills that image, as the fake did", async () => {
    fake.failNext({ streamError: true, afterEvents: 3 }); // 2 partials and the first completed image
    const ledger = new MemoryLedger();
    await expect(
      provider(0).generate({
        prompt: "two boats",
        params: params({ n: 2 }),
        ledger,
        onPartialImage: () => {},
      }),
    ).rejects.toMatchObject({ code: "provider_unavailable" });
    // Long enough for a second image the fake went on making after its error to show in its bill.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [row] = matched(ledger);
    expect(row).toMatchObject({ status: "billed" });
    expect(row?.cost).toBeGreaterThan(0);
    expect(row?.cost).toBe(row?.fakeBilled);
  });

  it("think: each image's own Responses request is a row, billed the planner's and the image's tokens", async () => {
    const ledger = new MemoryLedger();
    await provider().generate({
      prompt: "a poster",
      params: params({ think: true, n: 2 }),
      ledger,
      onPartialImage: () => {},
    });
    const rows = matched(ledger);
    expect(rows).toHaveLength(2);
    expect(new Set(rows.map((r) => r.id)).size).toBe(2);
    for (const row of rows) {
      expect(row).toMatchObject({ status: "billed" });
      expect(row.cost).toBe(row.fakeBilled);
    }
    const [first] = ledger.rows;
    expect(first?.outcome?.status === "billed" && first.outcome.usage.map((u) => u.model)).toEqual([
      "gpt-5.5",
      "gpt-image-2",
    ]);
  });

  it("think: a response failed by moderation still bills the planner's tokens, as the fake did", async () => {
    fake.failNext({ moderation: true });
    const ledger = new MemoryLedger();
    await expect(
      provider().generate({ prompt: "x", params: params({ think: true }), ledger }),
    ).rejects.toMatchObject({ code: "moderation_blocked" });
    const [row] = matched(ledger);
    expect(row).toMatchObject({ status: "billed" });
    expect(row?.cost).toBeGreaterThan(0);
    expect(row?.cost).toBe(row?.fakeBilled);
  });

  it("a call aborted after it was sent is unknown: the generation may run and be billed", async () => {
    fake.setLatency(300);
    const ledger = new MemoryLedger();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await expect(
      provider().generate({ prompt: "slow", params: params(), ledger }, controller.signal),
    ).rejects.toBeDefined();
    await new Promise((resolve) => setTimeout(resolve, 400)); // the fake finishes the work it was given
    const [row] = matched(ledger);
    expect(row).toMatchObject({ status: "unknown", cost: 0 });
    expect(row?.fakeBilled).toBeGreaterThan(0);
  });

  it("nothing is sent when the ledger cannot be written", async () => {
    const ledger = new MemoryLedger();
    ledger.failOpen = true;
    await expect(provider().generate({ prompt: "x", params: params(), ledger })).rejects.toMatchObject({
      code: "internal",
      retryable: true,
    });
    expect(fake.requests).toHaveLength(0);
  });

  it("a call without a ledger is sent untouched", async () => {
    await provider().generate({ prompt: "x", params: params() });
    expect(fake.requests[0]?.headers["x-client-request-id"]).toBeUndefined();
  });
});
