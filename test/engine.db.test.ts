import { sql } from "drizzle-orm";
import sharp from "sharp";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { safetyIdentifier } from "../src/engine/engine.ts";
import { AppError } from "../src/errors.ts";
import { parseImagineText } from "../src/request/flags.ts";
import { makePng } from "./fakes/images.ts";
import { fakeCharge } from "./support/billing.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";

/**
 * The engine end to end: real store, blobs, pg-boss and openai SDK against the fake OpenAI server, on PGlite and
 * (with TEST_DATABASE_URL) PostgreSQL.
 */
let h: EngineHarness;
let threadCounter = 0;
const newThread = () => `console:test:${process.pid}-${++threadCounter}`;

beforeAll(async () => {
  h = await startEngineHarness();
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => {
  h.fake.reset();
  h.fake.setLatency(0);
});

async function run(intent: Parameters<EngineHarness["engine"]["submit"]>[0]) {
  const { turn } = await h.engine.submit(intent);
  return h.finished(turn.id);
}

async function generate(threadKey: string, text = "a lighthouse at dusk") {
  const { prompt, params } = parseImagineText(text);
  return run({ threadKey, kind: "generate", prompt, params, userId: "U1" });
}

async function edit(threadKey: string, prompt: string, extra: { targetImageId?: string } = {}) {
  return run({ threadKey, kind: "edit", prompt, userId: "U2", ...extra });
}

async function bytesOf(imageId: string): Promise<Buffer> {
  const image = await h.store.getImage(imageId);
  if (!image) throw new Error(`no image ${imageId}`);
  return h.engine.imageBytes(image);
}

describe("generate and edit", () => {
  it("generates an image, stores it as the thread's head and delivers it", async () => {
    const thread = newThread();
    const done = await generate(thread, "a lighthouse at dusk --ar 16:9 --quality low");
    expect(done.turn.status).toBe("succeeded");
    expect(done.images).toHaveLength(1);
    const [image] = done.images;
    expect(image?.width).toBe(1536);
    expect(image?.height).toBe(864);
    expect(done.thread.headImageId).toBe(image?.id);
    expect(h.fake.requests).toHaveLength(1);
    expect(h.fake.requests[0]?.body).toMatchObject({
      model: "gpt-image-2",
      size: "1536x864",
      quality: "low",
    });
    expect(done.turn.costUsd).toBeGreaterThan(0);
    // OpenAI knows the person by a hash of platform and user id, the same one every time, never the id.
    const asker = h.fake.requests[0]?.body.safety_identifier;
    expect(asker).toBe(safetyIdentifier("console", "U1"));
    expect(asker).toMatch(/^[0-9a-f]{32}$/);
    expect(safetyIdentifier("slack", "U1")).not.toBe(asker);
    // Recorded as delivered once the observer's deliver returns (just after it told the test).
    await expect.poll(async () => (await h.store.getTurn(done.turn.id))?.deliveredAt).toBeInstanceOf(Date);
  });

  it("sends an edit exactly the bytes of the previous version, and a chain of three builds on each result", async () => {
    const thread = newThread();
    const first = await generate(thread);
    let previous = first.images[0];
    for (const instruction of ["make the sky purple", "add a moon", "make the headline bigger"]) {
      const result = await edit(thread, instruction);
      expect(result.turn.status).toBe("succeeded");
      const request = h.fake.requests.at(-1);
      expect(request?.endpoint).toBe("images.edit");
      expect(request?.body.prompt).toBe(instruction);
      expect(request?.body.safety_identifier).toBe(safetyIdentifier("console", "U2")); // whoever asked
      expect(request?.images).toHaveLength(1);
      expect(request?.images[0]?.equals(await bytesOf(previous?.id ?? ""))).toBe(true);
      const next = result.images[0];
      expect(next?.parentId).toBe(previous?.id);
      expect(result.thread.headImageId).toBe(next?.id);
      expect(next?.sha256).not.toBe(previous?.sha256);
      previous = next;
    }
    const history = await h.engine.history(thread);
    expect(history?.turns.map((t) => t.kind)).toEqual(["generate", "edit", "edit", "edit"]);
    expect(history?.images).toHaveLength(4);
  });

  it("undo then edit branches from the earlier version", async () => {
    const thread = newThread();
    const v1 = (await generate(thread)).images[0];
    const v2 = (await edit(thread, "add a boat")).images[0];
    const undo = await run({ threadKey: thread, kind: "undo", userId: "U1" });
    expect(undo.turn.status).toBe("succeeded");
    expect(undo.thread.headImageId).toBe(v1?.id);
    expect(h.fake.requests).toHaveLength(2); // undo calls no provider

    const branch = await edit(thread, "add a lighthouse keeper");
    expect(h.fake.requests.at(-1)?.images[0]?.equals(await bytesOf(v1?.id ?? ""))).toBe(true);
    expect(branch.images[0]?.parentId).toBe(v1?.id);
    const history = await h.engine.history(thread);
    const children = history?.images.filter((image) => image.parentId === v1?.id).map((image) => image.id);
    expect(children).toEqual(expect.arrayContaining([v2?.id, branch.images[0]?.id]));
  });

  it("undo under an older result goes back from that result, not from whatever is newest", async () => {
    const thread = newThread();
    const v1 = (await generate(thread)).images[0];
    const v2 = (await edit(thread, "add a boat")).images[0];
    await edit(thread, "add a storm");
    const undo = await run({ threadKey: thread, kind: "undo", targetImageId: v2?.id, userId: "U1" });
    expect(undo.turn.status).toBe("succeeded");
    expect(undo.thread.headImageId).toBe(v1?.id);
    // Under the first version there is nothing to go back to, even when newer versions exist.
    const refused = await run({ threadKey: thread, kind: "undo", targetImageId: v1?.id, userId: "U1" });
    expect(refused.turn.errorCode).toBe("nothing_to_undo");
    expect((await h.engine.getThread(thread))?.headImageId).toBe(v1?.id);
  });

  it("variations of an edit tell the model what the image is: the request and every edit since, in order", async () => {
    const thread = newThread();
    await generate(thread, "a paper boat on a pond");
    await edit(thread, "add a frog on the boat");
    const v3 = (await edit(thread, "make it night")).images[0];
    await run({ threadKey: thread, kind: "undo", userId: "U1" });
    const variations = await run({
      threadKey: thread,
      kind: "variation",
      targetImageId: v3?.id,
      userId: "U1",
    });
    expect(variations.turn.prompt).toBe("a paper boat on a pond");
    expect(variations.images[0]?.parentId).toBe(v3?.id);
    const request = h.fake.requests.at(-1);
    expect(request?.endpoint).toBe("images.edit");
    // Multipart form fields carry line breaks as CRLF (the form encoding's rule, not ours).
    expect(String(request?.body.prompt).replaceAll("\r\n", "\n")).toBe(
      "Create a new variation of this image. Keep its subject, composition and style, and vary the details.\n\n" +
        "Original request: a paper boat on a pond\n\n" +
        "Edits since, in order:\n1. add a frog on the boat\n2. make it night",
    );
    expect(request?.images[0]?.equals(await bytesOf(v3?.id ?? ""))).toBe(true);
  });

  it("regenerating an edit re-runs it on its base with its references: a sibling, not a new first version", async () => {
    const thread = newThread();
    const v1 = (await generate(thread, "a paper boat on a pond")).images[0];
    const reference = await makePng(512, 512, "a frog photo");
    const v2 = (
      await run({
        threadKey: thread,
        kind: "edit",
        prompt: "add this frog on the boat",
        referenceImages: [{ bytes: reference, format: "png" }],
        userId: "U2",
      })
    ).images[0];
    await edit(thread, "make it night");
    const again = await run({ threadKey: thread, kind: "generate", repeatOf: v2?.turnId, userId: "U3" });
    expect(again.turn.kind).toBe("edit");
    expect(again.turn.prompt).toBe("add this frog on the boat");
    expect(again.images[0]?.parentId).toBe(v1?.id);
    expect(again.thread.headImageId).toBe(again.images[0]?.id);
    const request = h.fake.requests.at(-1);
    expect(request?.endpoint).toBe("images.edit");
    expect(request?.body.prompt).toBe("add this frog on the boat");
    expect(request?.images).toHaveLength(2);
    expect(request?.images[0]?.equals(await bytesOf(v1?.id ?? ""))).toBe(true);
    expect(request?.images[1]?.equals(reference)).toBe(true);

    // A first version drawn again is another first version, with the same prompt and settings.
    const redrawn = await run({ threadKey: thread, kind: "generate", repeatOf: v1?.turnId, userId: "U3" });
    expect(redrawn.turn.kind).toBe("generate");
    expect(redrawn.images[0]?.parentId).toBeNull();
    expect(h.fake.requests.at(-1)?.body.prompt).toBe("a paper boat on a pond");
  });

  it("undo at the first version fails with a clear message and changes nothing", async () => {
    const thread = newThread();
    const v1 = (await generate(thread)).images[0];
    const undo = await run({ threadKey: thread, kind: "undo", userId: "U1" });
    expect(undo.turn.status).toBe("failed");
    expect(undo.turn.errorCode).toBe("nothing_to_undo");
    expect(undo.turn.errorMessage).toMatch(/nothing to undo/i);
    expect((await h.engine.getThread(thread))?.headImageId).toBe(v1?.id);
  });

  it("makes n images; choosing one makes the next edit start from it", async () => {
    const thread = newThread();
    const four = await generate(thread, "four logo ideas --n 4");
    expect(four.images.map((image) => image.index)).toEqual([0, 1, 2, 3]);
    expect(new Set(four.images.map((image) => image.sha256)).size).toBe(4);
    const third = four.images[2];
    const select = await run({ threadKey: thread, kind: "select", targetImageId: third?.id, userId: "U1" });
    expect(select.thread.headImageId).toBe(third?.id);
    const edited = await edit(thread, "use a darker blue");
    expect(h.fake.requests.at(-1)?.images[0]?.equals(await bytesOf(third?.id ?? ""))).toBe(true);
    expect(edited.images[0]?.parentId).toBe(third?.id);
    expect(h.fake.requests.at(-1)?.body.n).toBe("1"); // an edit makes one image unless asked
  });

  it("variations start from the target image and reuse its prompt", async () => {
    const thread = newThread();
    const v1 = (await generate(thread, "a paper crane")).images[0];
    const variations = await run({ threadKey: thread, kind: "variation", params: { n: 2 }, userId: "U1" });
    expect(variations.images).toHaveLength(2);
    expect(variations.images.every((image) => image.parentId === v1?.id)).toBe(true);
    const request = h.fake.requests.at(-1);
    expect(String(request?.body.prompt)).toContain("a paper crane");
    expect(request?.images[0]?.equals(await bytesOf(v1?.id ?? ""))).toBe(true);
  });

  it("sends reference images after the image being edited", async () => {
    const thread = newThread();
    const v1 = (await generate(thread)).images[0];
    const reference = await makePng(640, 640, "reference");
    const result = await run({
      threadKey: thread,
      kind: "edit",
      prompt: "use the colours of the second image",
      referenceImages: [{ bytes: reference, format: "png" }],
      userId: "U1",
    });
    expect(result.turn.status).toBe("succeeded");
    const request = h.fake.requests.at(-1);
    expect(request?.images).toHaveLength(2);
    expect(request?.images[0]?.equals(await bytesOf(v1?.id ?? ""))).toBe(true);
    expect(request?.images[1]?.equals(reference)).toBe(true);
  });

  it("keeps Unicode prompts byte for byte", async () => {
    const thread = newThread();
    const prompt = "東京の夜景 — שלום 👩🏽‍💻 café ﷺ";
    const done = await generate(thread, `${prompt} --quality low`);
    expect(Buffer.from(done.turn.prompt).equals(Buffer.from(prompt))).toBe(true);
    expect(Buffer.from(String(h.fake.requests[0]?.body.prompt)).equals(Buffer.from(prompt))).toBe(true);
  });

  it("thinks before drawing: --think plans through the Responses API and records both models' usage", async () => {
    const thread = newThread();
    const done = await generate(thread, "a poster for today's weather in Oslo --think --quality low");
    expect(done.turn.status).toBe("succeeded");
    expect(done.images).toHaveLength(1);
    const [request] = h.fake.requests;
    expect(request?.endpoint).toBe("responses");
    expect(request?.body).toMatchObject({ model: "gpt-5.5" });
    const history = await h.engine.history(thread);
    expect(history?.turns[0]?.params.think).toBe(true);
    // The reasoning model's tokens and the image tool's tokens are both recorded and priced into the turn.
    const usage = await h.database.db.execute(
      sql`select model, cost_usd::float8 as cost from usage where turn_id = ${done.turn.id} order by model`,
    );
    expect(usage.rows.map((row) => row.model)).toEqual(["gpt-5.5", "gpt-image-2"]);
    const total = usage.rows.reduce((sum, row) => sum + Number(row.cost), 0);
    expect(done.turn.costUsd).toBeCloseTo(total, 6);
    expect(total).toBeGreaterThan(0);
    const edited = await edit(thread, "add an umbrella");
    expect(h.fake.requests.at(-1)?.endpoint).toBe("images.edit"); // an edit does not think unless asked
    expect(edited.images[0]?.parentId).toBe(done.images[0]?.id);
  });

  it("reports partial previews while it streams", async () => {
    const thread = newThread();
    const done = await generate(thread);
    const partials = h.events.filter((event) => event.type === "partial" && event.turn.id === done.turn.id);
    expect(partials.length).toBeGreaterThan(0);
    expect(h.fake.requests[0]?.stream).toBe(true);
  });
});

describe("ordering and concurrency", () => {
  it("a reply read just before its image landed edits that image instead of being refused", async () => {
    // The engine reads the thread (no image yet), then looks for the turn still drawing it, which finished in
    // between: neither an image nor a pending turn. Replayed here with a stale first read.
    const threadKey = `console:test:${process.pid}-landed`;
    let stale = false;
    const g = await startEngineHarness({
      wrapStore: (store) =>
        new Proxy(store, {
          get(target, property) {
            const value = Reflect.get(target, property, target);
            if (property === "getThread" && stale) {
              return async (key: string) => {
                stale = false;
                const thread = await target.getThread(key);
                return thread ? { ...thread, headImageId: null } : thread;
              };
            }
            return typeof value === "function" ? value.bind(target) : value;
          },
        }),
    });
    try {
      const { turn } = await g.engine.submit({ threadKey, kind: "generate", prompt: "a kite", userId: "U1" });
      const v1 = (await g.finished(turn.id)).images[0];
      stale = true;
      const { turn: reply } = await g.engine.submit({
        threadKey,
        kind: "edit",
        prompt: "make it red",
        userId: "U1",
      });
      const done = await g.finished(reply.id);
      expect(done.turn.status).toBe("succeeded");
      expect(done.images[0]?.parentId).toBe(v1?.id);
    } finally {
      await g.close();
    }
  });

  it("runs a thread's turns one at a time in arrival order, each edit starting from the previous result", async () => {
    h.fake.setLatency(150);
    const thread = newThread();
    const { prompt, params } = parseImagineText("a city skyline");
    const turns = [
      await h.engine.submit({ threadKey: thread, kind: "generate", prompt, params, userId: "U1" }),
    ];
    for (const step of ["add rain", "add neon signs", "make it night"]) {
      turns.push(await h.engine.submit({ threadKey: thread, kind: "edit", prompt: step, userId: "U1" }));
    }
    expect(turns.map((t) => t.position)).toEqual([0, 1, 2, 3]);
    const results = await Promise.all(turns.map((t) => h.finished(t.turn.id)));
    for (let i = 1; i < results.length; i++) {
      expect(results[i]?.images[0]?.parentId).toBe(results[i - 1]?.images[0]?.id);
      expect(results[i]?.turn.startedAt?.getTime()).toBeGreaterThanOrEqual(
        results[i - 1]?.turn.finishedAt?.getTime() ?? 0,
      );
    }
    expect(h.fake.requests.map((r) => r.body.prompt)).toEqual([
      "a city skyline",
      "add rain",
      "add neon signs",
      "make it night",
    ]);
  });

  it("runs different threads concurrently", async () => {
    h.fake.setLatency(400);
    const submitted = await Promise.all(
      [newThread(), newThread(), newThread()].map((threadKey) =>
        h.engine.submit({ threadKey, kind: "generate", prompt: "a kite", params: {}, userId: "U1" }),
      ),
    );
    const results = await Promise.all(submitted.map((s) => h.finished(s.turn.id)));
    const spans = results.map(
      (r) => [r.turn.startedAt?.getTime() ?? 0, r.turn.finishedAt?.getTime() ?? 0] as const,
    );
    const overlapping = spans.some(([start], i) =>
      spans.some(([s, f], j) => i !== j && s <= start && start < f),
    );
    expect(overlapping).toBe(true);
  });

  it("the same idempotency key twice makes one turn and one delivery", async () => {
    const thread = newThread();
    const intent = {
      threadKey: thread,
      kind: "generate" as const,
      prompt: "a fox",
      params: {},
      userId: "U1",
      idempotencyKey: `evt-${thread}`,
    };
    const [a, b] = await Promise.all([h.engine.submit(intent), h.engine.submit(intent)]);
    expect(a.turn.id).toBe(b.turn.id);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    await h.finished(a.turn.id);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(h.deliveries(a.turn.id)).toHaveLength(1);
    expect(h.fake.requests).toHaveLength(1);
  });
});

describe("provider errors", () => {
  it("a 429 then success delivers the image", async () => {
    h.fake.failNext({ status: 429, retryAfterMs: 20 });
    const done = await generate(newThread());
    expect(done.turn.status).toBe("succeeded");
    expect(h.fake.requests.map((r) => r.status)).toEqual([429, 200]);
  });

  it("rate limits beyond the SDK's retries go back to the queue and still deliver", async () => {
    h.fake.failNext(
      { status: 429, retryAfterMs: 10 },
      { status: 429, retryAfterMs: 10 },
      { status: 429, retryAfterMs: 10 },
    );
    const thread = newThread();
    const done = await generate(thread);
    expect(done.turn.status).toBe("succeeded");
    expect(done.turn.attempts).toBe(2);
    expect(h.events.some((e) => e.type === "retrying" && e.turn.id === done.turn.id)).toBe(true);
  });

  it("a moderation block is explained, changes nothing, and the next request works", async () => {
    const thread = newThread();
    const v1 = (await generate(thread)).images[0];
    h.fake.failNext({ moderation: true });
    const blocked = await edit(thread, "something the safety system rejects");
    expect(blocked.turn.status).toBe("failed");
    expect(blocked.turn.errorCode).toBe("moderation_blocked");
    expect(blocked.turn.errorMessage).toMatch(/safety/i);
    expect(blocked.images).toEqual([]);
    expect((await h.engine.getThread(thread))?.headImageId).toBe(v1?.id);
    const next = await edit(thread, "add a rainbow");
    expect(next.turn.status).toBe("succeeded");
    expect(next.images[0]?.parentId).toBe(v1?.id);
  });
});

describe("the ledger is the bill", () => {
  /** The turn's ledger rows beside the fake's record of each request, matched by X-Client-Request-Id. */
  async function ledgerBesideFake(turnId: string) {
    const rows = await h.store.ledgerEntries(turnId);
    return rows.map((row) => {
      const request = h.fake.requests.find((r) => r.headers["x-client-request-id"] === row.clientRequestId);
      return {
        status: row.status,
        fakeStatus: request?.status,
        sameRequestId: row.requestId === request?.requestId,
        cost: row.costUsd,
        fakeBilled: request ? fakeCharge(request) : null,
      };
    });
  }

  it("every attempt, the SDK's and the queue's retries included, is a row; the turn costs their sum", async () => {
    h.fake.failNext({ status: 500 }, { status: 500 }, { status: 500 });
    const done = await generate(newThread());
    expect(done.turn).toMatchObject({ status: "succeeded", attempts: 2 });
    const rows = await ledgerBesideFake(done.turn.id);
    expect(rows).toEqual([
      { status: "not_billed", fakeStatus: 500, sameRequestId: true, cost: 0, fakeBilled: 0 },
      { status: "not_billed", fakeStatus: 500, sameRequestId: true, cost: 0, fakeBilled: 0 },
      { status: "not_billed", fakeStatus: 500, sameRequestId: true, cost: 0, fakeBilled: 0 },
      {
        status: "billed",
        fakeStatus: 200,
        sameRequestId: true,
        cost: expect.any(Number),
        fakeBilled: expect.any(Number),
      },
    ]);
    expect(rows[3]?.cost).toBe(rows[3]?.fakeBilled);
    expect(h.fake.requests).toHaveLength(4);
    expect(done.turn.costUsd).toBe(rows[3]?.cost);
    // Charged to the person who asked; the estimate was at least what was billed.
    const [row] = await h.store.ledgerEntries(done.turn.id);
    expect(row).toMatchObject({ platform: "console", userId: "U1", estimateUsd: done.turn.estimateUsd });
    expect(done.turn.estimateUsd).toBeGreaterThanOrEqual(done.turn.costUsd ?? 0);
  });

  it("a moderation block is one row billed nothing, like the fake", async () => {
    h.fake.failNext({ moderation: true });
    const done = await generate(newThread());
    expect(done.turn.status).toBe("failed");
    expect(await ledgerBesideFake(done.turn.id)).toEqual([
      { status: "not_billed", fakeStatus: 400, sameRequestId: true, cost: 0, fakeBilled: 0 },
    ]);
    expect(done.turn.costUsd).toBe(0);
  });
});

describe("bad input: a clear error, no provider call, nothing written", () => {
  async function expectRejected(action: () => Promise<unknown>, code: string, message: RegExp) {
    const threadsBefore = (await h.engine.listThreads("console", 1000)).length;
    const error = await action().then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe(code);
    expect((error as AppError).userMessage).toMatch(message);
    expect(h.fake.requests).toHaveLength(0);
    expect((await h.engine.listThreads("console", 1000)).length).toBe(threadsBefore);
  }
  const submitText = (text: string) => async () => {
    const { prompt, params } = parseImagineText(text);
    return h.engine.submit({ threadKey: newThread(), kind: "generate", prompt, params, userId: "U1" });
  };

  it("unknown flags", () => expectRejected(submitText("a cat --qualty high"), "unknown_flag", /--quality/));
  it("impossible sizes", () => expectRejected(submitText("a cat --size 1000x1000"), "invalid_size", /16/));
  it("--n 0", () => expectRejected(submitText("a cat --n 0"), "invalid_flag", /1.*10/));
  it("--n 11", () => expectRejected(submitText("a cat --n 11"), "invalid_flag", /1.*10/));
  it("a 32,001-character prompt", () =>
    expectRejected(submitText("a".repeat(32_001)), "prompt_too_long", /32,000/));
  it("params that bypass the parser are checked too", () =>
    expectRejected(
      () =>
        h.engine.submit({
          threadKey: newThread(),
          kind: "generate",
          prompt: "x",
          params: { n: 11 },
          userId: "U1",
        }),
      "invalid_flag",
      /1.*10/,
    ));
  it("an edit in a thread with no image", () =>
    expectRejected(
      () => h.engine.submit({ threadKey: newThread(), kind: "edit", prompt: "make it blue", userId: "U1" }),
      "no_image_to_edit",
      /\/imagine/,
    ));
  it("a reference that is not an image", () =>
    expectRejected(
      () =>
        h.engine.submit({
          threadKey: newThread(),
          kind: "generate",
          prompt: "x",
          referenceImages: [{ bytes: Buffer.from("%PDF-1.7 not an image"), format: "png" }],
          userId: "U1",
        }),
      "unsupported_attachment",
      /PNG, JPEG or WebP/,
    ));

  const withReferences = (referenceImages: Buffer[]) => () =>
    h.engine.submit({
      threadKey: newThread(),
      kind: "generate",
      prompt: "x",
      referenceImages: referenceImages.map((bytes) => ({ bytes, format: "png" as const })),
      userId: "U1",
    });

  it("a reference whose first bytes are not an image's, whatever it claims to be", async () => {
    const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: "red" } })
      .gif()
      .toBuffer();
    await expectRejected(withReferences([gif]), "unsupported_attachment", /PNG, JPEG or WebP/);
    const html = Buffer.from("<!DOCTYPE html><html><body>Sign in to Slack</body></html>");
    await expectRejected(withReferences([html]), "unsupported_attachment", /PNG, JPEG or WebP/);
    // The right magic number on bytes that are not that image.
    const fakePng = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      Buffer.alloc(64),
    ]);
    await expectRejected(withReferences([fakePng]), "unsupported_attachment", /PNG, JPEG or WebP/);
  });

  it("a small file that claims an enormous image (a decompression bomb)", { timeout: 30_000 }, async () => {
    const bomb = await sharp({ create: { width: 7200, height: 7200, channels: 3, background: "white" } })
      .png({ compressionLevel: 9 })
      .toBuffer();
    expect(bomb.length).toBeLessThan(1024 * 1024);
    await expectRejected(withReferences([bomb]), "unsupported_attachment", /PNG, JPEG or WebP/);
  });

  it("references over the cap together, though each is under it", async () => {
    const g = await startEngineHarness({ engine: { maxReferenceBytes: 300_000 } });
    try {
      const reference = await sharp({
        create: { width: 300, height: 300, channels: 3, background: "blue" },
      })
        .png({ compressionLevel: 0 })
        .toBuffer();
      expect(reference.length).toBeGreaterThan(150_000);
      expect(reference.length).toBeLessThan(300_000);
      const error = await g.engine
        .submit({
          threadKey: newThread(),
          kind: "generate",
          prompt: "x",
          referenceImages: [reference, reference].map((bytes) => ({ bytes, format: "png" as const })),
          userId: "U1",
        })
        .catch((e: unknown) => e);
      expect(error).toMatchObject({
        code: "attachment_too_large",
        userMessage: expect.stringMatching(/together/),
      });
      expect(g.fake.requests).toHaveLength(0);
    } finally {
      await g.close();
    }
  });
});

describe("a platform that cannot take deliveries", () => {
  let g: EngineHarness;
  const attempts = new Map<string, number>();
  const delivered: string[] = [];
  beforeAll(async () => {
    g = await startEngineHarness({ engine: { maxDeliveryAttempts: 2 } });
    g.engine.observe("slack", {
      async deliver({ turn }) {
        attempts.set(turn.prompt, (attempts.get(turn.prompt) ?? 0) + 1);
        if (turn.prompt === "undeliverable") throw new Error("Slack is down");
        delivered.push(turn.prompt);
      },
    });
  });
  afterAll(async () => {
    await g?.close();
  });

  it("retries delivery, then gives up so the thread's next turns still run", {
    timeout: 30_000,
  }, async () => {
    const threadKey = `slack:T1:C1:${process.pid}.000100`;
    const first = await g.engine.submit({
      threadKey,
      kind: "generate",
      prompt: "undeliverable",
      userId: "U1",
    });
    const second = await g.engine.submit({
      threadKey,
      kind: "edit",
      prompt: "make it brighter",
      userId: "U1",
    });
    const deadline = Date.now() + 25_000;
    while (!delivered.includes("make it brighter") && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(delivered).toEqual(["make it brighter"]);
    expect(attempts.get("undeliverable")).toBe(2);
    // The first result is kept, undelivered; the edit built on it.
    const kept = await g.store.getTurn(first.turn.id);
    expect(kept).toMatchObject({ status: "succeeded", deliveredAt: null });
    const [base] = await g.store.getTurnImages(first.turn.id);
    const [edited] = await g.store.getTurnImages(second.turn.id);
    expect(edited?.parentId).toBe(base?.id);
  });
});

describe("cancel", () => {
  it("a queued turn: shown canceled at once, never sent to OpenAI, nothing billed", async () => {
    const thread = newThread();
    h.fake.setLatency(1_500);
    const first = await h.engine.submit({
      threadKey: thread,
      kind: "generate",
      prompt: "a slow lake",
      userId: "U1",
    });
    const second = await h.engine.submit({
      threadKey: thread,
      kind: "edit",
      prompt: "add a swan",
      userId: "U1",
    });
    const canceled = await h.engine.cancel(second.turn.id, "U1");
    expect(canceled).toMatchObject({ status: "canceled", errorMessage: "Canceled by <@U1>." });
    const shown = await h.finished(second.turn.id);
    expect(shown.turn.status).toBe("canceled");
    await h.finished(first.turn.id);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a slow lake"]);
    expect(await h.store.ledgerEntries(second.turn.id)).toEqual([]);
    expect((await h.store.getTurn(second.turn.id))?.costUsd).toBe(0);
    expect(h.deliveries(second.turn.id)).toHaveLength(1);
  });

  it("a running turn: its call is aborted, and what OpenAI may have billed stays in the ledger", async () => {
    const thread = newThread();
    h.fake.setLatency(10_000);
    const { turn } = await h.engine.submit({
      threadKey: thread,
      kind: "generate",
      prompt: "a long river",
      userId: "U1",
    });
    await expect.poll(() => h.fake.requests.length, { timeout: 10_000 }).toBe(1);
    const asked = Date.now();
    await h.engine.cancel(turn.id, "U1");
    const shown = await h.finished(turn.id);
    expect(Date.now() - asked).toBeLessThan(5_000); // not the provider's 10 s
    expect(shown.turn).toMatchObject({ status: "canceled", errorCode: "canceled" });
    expect(shown.images).toEqual([]);
    const rows = await h.store.ledgerEntries(turn.id);
    expect(rows.map((r) => [r.status, r.clientRequestId])).toEqual([
      ["unknown", h.fake.requests[0]?.headers["x-client-request-id"]],
    ]);
    expect((await h.store.getTurn(turn.id))?.costUsd).toBe(turn.estimateUsd);
    h.fake.finishWaiting();
  });

  it("only the person who asked (or an admin) may cancel, and only before it finishes", async () => {
    const done = await generate(newThread());
    await expect(h.engine.cancel(done.turn.id, "U9")).rejects.toMatchObject({
      code: "cancel_refused",
      userMessage: "Only the person who asked, or an admin, can cancel it.",
    });
    await expect(h.engine.cancel(done.turn.id, "U1")).rejects.toMatchObject({
      code: "cancel_refused",
      userMessage: "Too late to cancel: it has finished.",
    });
    expect((await h.store.getTurn(done.turn.id))?.status).toBe("succeeded");
  });
});

describe("late deliveries", () => {
  it("a result the platform could not take for long is retried slowly and goes out, marked late", {
    timeout: 30_000,
  }, async () => {
    const g = await startEngineHarness({ engine: { maxDeliveryAttempts: 2, lateDeliveryRetryMs: 200 } });
    try {
      let down = true;
      const delivered: Array<{ late: boolean }> = [];
      g.engine.observe("slack", {
        async deliver(event) {
          if (down) throw new Error("Slack is down");
          delivered.push(event);
        },
      });
      const { turn } = await g.engine.submit({
        threadKey: `slack:T1:C1:${process.pid}.000200`,
        kind: "generate",
        prompt: "a postcard from the beach",
        userId: "U1",
      });
      const stored = () => g.store.getTurn(turn.id);
      await expect
        .poll(async () => (await stored())?.deliveryLateAt, { timeout: 15_000 })
        .toBeInstanceOf(Date);
      expect(await stored()).toMatchObject({ status: "succeeded", attempts: 1, deliveryAttempts: 2 });
      expect((await g.store.stats()).lateDeliveries).toBe(1);
      expect(await g.engine.retryLateDeliveries(["slack"])).toBe(0); // not due yet

      // Still down when the slow retry comes: tried once more, still late.
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await g.engine.retryLateDeliveries(["discord"])).toBe(0); // another platform's sweep leaves it
      expect(await g.engine.retryLateDeliveries(["slack"])).toBe(1);
      await expect.poll(async () => (await stored())?.deliveryAttempts, { timeout: 10_000 }).toBe(3);

      // Back up: the next slow retry delivers it, saying it is late; the image was drawn once.
      down = false;
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await g.engine.retryLateDeliveries(["slack"])).toBe(1);
      await expect.poll(() => delivered.length, { timeout: 10_000 }).toBe(1);
      expect(delivered[0]?.late).toBe(true);
      await expect.poll(async () => (await stored())?.deliveredAt, { timeout: 5_000 }).toBeInstanceOf(Date);
      expect(g.fake.requests).toHaveLength(1);
      expect((await g.store.stats()).lateDeliveries).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await g.engine.retryLateDeliveries(["slack"])).toBe(0); // delivered: never swept again
    } finally {
      await g.close();
    }
  });
});

describe("turns the queue gave up on", () => {
  it("never hold back their thread: the next turn runs, and the abandoned one is still delivered", {
    timeout: 40_000,
  }, async () => {
    // pg-boss gives a job up after two tries here; the platform fails the first two deliveries.
    const g = await startEngineHarness({ queue: { retryLimit: 1 } });
    try {
      let failures = 2;
      const delivered: string[] = [];
      g.engine.observe("slack", {
        async deliver({ turn }) {
          if (turn.prompt === "a kite" && failures-- > 0) throw new Error("Slack hiccup");
          delivered.push(turn.prompt);
        },
      });
      const threadKey = `slack:T1:C1:${process.pid}.000300`;
      const first = await g.engine.submit({ threadKey, kind: "generate", prompt: "a kite", userId: "U1" });
      await g.engine.submit({ threadKey, kind: "edit", prompt: "make it red", userId: "U1" });
      await expect
        .poll(async () => (await g.store.getTurn(first.turn.id))?.deliveryAttempts, { timeout: 20_000 })
        .toBe(2);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(delivered).toEqual([]); // the edit waits behind the failed job

      expect(await g.engine.finishAbandonedTurns(["slack"])).toBe(1);
      await expect.poll(() => delivered.length, { timeout: 20_000 }).toBe(2);
      expect([...delivered].sort()).toEqual(["a kite", "make it red"]);
      expect(g.fake.requests).toHaveLength(2); // each drawn once
    } finally {
      await g.close();
    }
  });
});

describe("after the provider answered", () => {
  it("a failure before the turn is stored finishes it from the saved result: the image is not bought again", {
    timeout: 30_000,
  }, async () => {
    let failures = 1;
    const g = await startEngineHarness({
      wrapStore: (store) =>
        new Proxy(store, {
          get(target, property) {
            const value = Reflect.get(target, property, target);
            if (property === "completeTurn" && failures > 0) {
              return async () => {
                failures--;
                throw new Error("the database went away");
              };
            }
            return typeof value === "function" ? value.bind(target) : value;
          },
        }),
    });
    try {
      const { turn } = await g.engine.submit({
        threadKey: `console:test:${process.pid}-saved`,
        kind: "generate",
        prompt: "a lighthouse at dusk",
        userId: "U1",
      });
      const done = await g.finished(turn.id);
      expect(done.turn).toMatchObject({ status: "succeeded", attempts: 2 });
      expect(g.fake.requests.filter((r) => r.endpoint === "images.generate")).toHaveLength(1);
      // The image stored is the one the provider returned the first time, kept before the failure.
      const saved = await g.store.providerResult(turn.id);
      expect(done.images.map((image) => image.sha256)).toEqual(saved?.images.map((image) => image.sha256));
      expect(done.turn.costUsd).toBeGreaterThan(0); // the saved usage is what the turn is charged
    } finally {
      await g.close();
    }
  });

  it("a turn whose every attempt stopped the process is failed with a message, without calling the provider", async () => {
    const threadKey = newThread();
    const { turn } = await h.store.recordTurn(
      {
        threadKey,
        kind: "generate",
        prompt: "a prompt that crashes the bot",
        params: { size: "auto", quality: "auto", n: 1, format: "png", background: "auto", think: false },
        userId: "U1",
        newThread: { title: "crash" },
      },
      async () => {}, // no job: this test plays the queue
    );
    // Four attempts that each ended with the process dying (each start counts one).
    for (let i = 0; i < 4; i++) await h.store.startTurn(turn.id);
    await h.engine.runTurn(
      { turnId: turn.id, threadKey },
      { retryCount: 4, signal: new AbortController().signal },
    );
    const done = await h.finished(turn.id);
    expect(done.turn).toMatchObject({ status: "failed", errorCode: "crash_loop" });
    expect(done.turn.errorMessage).toMatch(/given up/);
    expect(h.fake.requests).toHaveLength(0);
  });
});

describe("provider calls at once", () => {
  it("are limited across every platform's workers", { timeout: 30_000 }, async () => {
    const g = await startEngineHarness({ concurrency: 3, engine: { providerConcurrency: 1 } });
    try {
      g.fake.setLatency(300);
      const submitted = await Promise.all(
        ["console:me:p1", "console:me:p2", "console:me:p3"].map((threadKey) =>
          g.engine.submit({ threadKey, kind: "generate", prompt: "a kite", userId: "U1" }),
        ),
      );
      await Promise.all(submitted.map((s) => g.finished(s.turn.id)));
      expect(g.fake.requests).toHaveLength(3);
      expect(g.fake.peakConcurrent).toBe(1);
    } finally {
      await g.close();
    }
  });
});
