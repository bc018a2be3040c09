import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DiscordAdapter } from "../adapters/discord/adapter.ts";
import { registerCommands } from "../adapters/discord/setup.ts";
import { type FakeDiscord, type InteractionHandle, startFakeDiscord } from "./fakes/discord-server.ts";
import { showsResult } from "./support/discord-results.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";

/**
 * A burst of 100 /imagine from 100 people at once, through the real discord.js client and engine. The fake
 * Discord refuses any first response after 3 s (10062); the fake OpenAI refuses a fifth concurrent request at once
 * with a 429. Every command must be deferred in time and delivered with a thread on its result, and the burst
 * must queue behind the configured concurrency (4) rather than run into that limit.
 */
const BURST = 100;
const CONCURRENCY = 4;
const users = Array.from({ length: BURST }, (_, i) => `person${i}`);
let h: EngineHarness;
let fake: FakeDiscord;
let adapter: DiscordAdapter;

beforeAll(async () => {
  h = await startEngineHarness({
    concurrency: CONCURRENCY,
    openai: { maxConcurrent: CONCURRENCY, latencyMs: 50 },
  });
  fake = await startFakeDiscord({ users });
  await registerCommands({ token: fake.botToken, apiUrl: fake.apiUrl });
  adapter = new DiscordAdapter({
    engine: h.engine,
    inbox: h.inbox,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    token: fake.botToken,
    apiUrl: fake.apiUrl,
  });
  await adapter.start();
});
afterAll(async () => {
  await adapter?.stop();
  await fake?.close();
  await h?.close();
});

it("defers 100 simultaneous /imagine in time and delivers every one, within the provider's limit", {
  timeout: 150_000,
}, async () => {
  const handles: InteractionHandle[] = users.map((user, i) =>
    fake.slashCommand({ name: "imagine", user, options: { prompt: `poster number ${i}`, quality: "low" } }),
  );
  const acks = await Promise.all(handles.map((handle) => handle.waitForAck(5000)));
  expect(acks.map((ack) => ack.type)).toEqual(handles.map(() => 5));
  expect(handles.flatMap((handle) => handle.rejected)).toEqual([]);

  // Each reply ends with its image and buttons, and a thread starts on it.
  const replies = await Promise.all(
    handles.map((handle) =>
      handle.waitForOriginal((m) => showsResult(m) && m.attachments.length === 1, 120_000),
    ),
  );
  await fake.waitFor(
    () => replies.every((reply) => fake.channel(reply.id)),
    30_000,
    "a thread on every result",
  );
  expect(new Set(fake.threads(fake.channelId).map((t) => t.id))).toEqual(new Set(replies.map((r) => r.id)));
  expect(handles.flatMap((handle) => handle.rejected)).toEqual([]);

  // Each prompt reached the provider once, never more than 4 at a time.
  const prompts = h.fake.requests.map((r) => String(r.body.prompt));
  expect(prompts).toHaveLength(BURST);
  expect(new Set(prompts).size).toBe(BURST);
  expect(h.fake.concurrencyRejections).toBe(0);
  expect(h.fake.peakConcurrent).toBe(CONCURRENCY);
});
