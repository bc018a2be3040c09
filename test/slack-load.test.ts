import { afterAll, beforeAll, expect, it } from "vitest";
import type { SlackAdapter } from "../adapters/slack/adapter.ts";
import { type FakeSlack, startFakeSlack } from "./fakes/slack-server.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";
import { startSlackBot } from "./support/slack-bot.ts";

/**
 * A burst of 100 /imagine from 100 people at once, through the real Bolt app and engine. The fake Slack judges
 * every acknowledgement by Slack's 3-second rule and throttles as Slack does (about one message a second per
 * channel, method tiers); the fake OpenAI refuses a fifth request at once with a 429, as an account at its limit
 * does. Every command must be acknowledged in time and delivered, and the burst must queue behind the configured
 * concurrency (4) rather than run into that limit. The burst comes from ten busy channels: in a single channel
 * Slack's pace alone (two messages a turn) would take over three minutes to show a hundred results.
 */
const BURST = 100;
const CONCURRENCY = 4;
const CHANNELS = Array.from({ length: 10 }, (_, i) => `C01${String(i).padStart(2, "0")}`);
let h: EngineHarness;
let slack: FakeSlack;
let adapter: SlackAdapter;
let url = "";

beforeAll(async () => {
  h = await startEngineHarness({
    concurrency: CONCURRENCY,
    // Long enough that four calls overlap even on a busy machine (each first writes its ledger row).
    openai: { maxConcurrent: CONCURRENCY, latencyMs: 250 },
  });
  slack = await startFakeSlack({ channels: CHANNELS.map((id, i) => ({ id, name: `busy-${i}` })) });
  for (let i = 0; i < BURST; i++) slack.addUser(`U9${String(i).padStart(4, "0")}`, `user${i}`);
  ({ adapter, url } = await startSlackBot(h, slack));
});
afterAll(async () => {
  await adapter?.stop();
  await slack?.close();
  await h?.close();
});

it("acknowledges 100 simultaneous /imagine in time and delivers every one, within the provider's limit", {
  timeout: 240_000,
}, async () => {
  const acks = await Promise.all(
    Array.from({ length: BURST }, (_, i) =>
      slack.sendSlashCommand(url, {
        text: `poster number ${i} --quality low`,
        channel_id: CHANNELS[i % CHANNELS.length] ?? "",
        user_id: `U9${String(i).padStart(4, "0")}`,
      }),
    ),
  );
  expect(acks.filter((ack) => !ack.ok)).toEqual([]);
  await slack.settled();
  expect(slack.ackFailures).toEqual([]);

  // Each command's root message is posted just after its acknowledgement, then its status kept current.
  const roots = () =>
    CHANNELS.flatMap((channel) => slack.messages(channel)).filter((m) => m.user === slack.botUserId);
  const delivered = () => roots().filter((root) => root.text.includes("Done"));
  // Slack's pace sets the time: a final status edit each at 50 a minute (chat.update is Tier 3), uploads at 100.
  const deadline = Date.now() + 180_000;
  while (delivered().length < BURST && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 100));
  expect(roots()).toHaveLength(BURST);
  expect(delivered()).toHaveLength(BURST);

  // One upload per command, in its own thread, and each prompt reached the provider once.
  const completed = slack.uploads.filter((u) => u.completed);
  expect(new Set(completed.map((u) => u.thread_ts))).toEqual(new Set(roots().map((r) => r.ts)));
  expect(completed).toHaveLength(BURST);
  const prompts = h.fake.requests.map((r) => String(r.body.prompt));
  expect(new Set(prompts).size).toBe(BURST);
  expect(prompts).toHaveLength(BURST);
  expect(h.fake.concurrencyRejections).toBe(0);
  expect(h.fake.peakConcurrent).toBe(CONCURRENCY);
});
