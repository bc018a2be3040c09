import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DiscordAdapter } from "../adapters/discord/adapter.ts";
import { registerCommands } from "../adapters/discord/setup.ts";
import { type FakeDiscord, startFakeDiscord } from "./fakes/discord-server.ts";
import { showsResult } from "./support/discord-results.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";

/**
 * A bot in enough servers that Discord asks for shards: `GET /gateway/bot` recommends two, and a session that
 * names none is refused (4011, "Sharding required"). discord.js opens one session per shard by itself
 * (`shards: "auto"`), each gets only its own servers' events, and a /imagine in the server that shard 1 owns
 * is answered as usual.
 */

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
let h: EngineHarness;
let fake: FakeDiscord;
let adapter: DiscordAdapter;

beforeAll(async () => {
  h = await startEngineHarness();
  fake = await startFakeDiscord({ shards: 2 });
  await registerCommands({ token: fake.botToken, apiUrl: fake.apiUrl });
  adapter = new DiscordAdapter({
    engine: h.engine,
    inbox: h.inbox,
    logger,
    token: fake.botToken,
    apiUrl: fake.apiUrl,
  });
  await adapter.start();
}, 60_000);
afterAll(async () => {
  await adapter?.stop();
  await fake?.close();
  await h?.close();
});

it("opens one gateway session per recommended shard and answers in the server its shard owns", async () => {
  const shards = fake.gateway.identifies.filter((i) => i.refused === undefined).map((i) => i.shard);
  expect(shards.sort()).toEqual([
    [0, 2],
    [1, 2],
  ]);
  expect(fake.gateway.connections).toBe(2);
  expect(adapter.connected()).toBe(true);
  // The server's events reach one of the two sessions only; the bot still knows the server and its channel.
  expect(adapter.client.guilds.cache.has(fake.guildId)).toBe(true);

  const handle = fake.slashCommand({ name: "imagine", options: { prompt: "a lighthouse, one of many" } });
  expect((await handle.waitForAck()).type).toBe(5);
  const reply = await handle.waitForOriginal((m) => showsResult(m), 20_000);
  expect(reply.attachments.map((a) => a.filename)).toEqual(["v1-1.png"]);
});
