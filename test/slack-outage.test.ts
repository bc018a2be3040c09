import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import type { SlackAdapter } from "../adapters/slack/adapter.ts";
import { type FakeSlack, type SlackMessage, startFakeSlack } from "./fakes/slack-server.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";
import { startSlackBot } from "./support/slack-bot.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * Slack failing, through the real Bolt app and engine. A call that hangs is given up after the time limit (1 s
 * here, 10 s in production) and never posted twice, even when Slack did post it. A delivery that keeps failing is
 * not dropped: it is late, retried slowly, and says so when it goes out. The give-up window is short here (two
 * failed attempts, retried every 300 ms); in production it is 15 attempts, then every five minutes.
 */
const CHANNEL = "C0001";
let h: EngineHarness;
let slack: FakeSlack;
let adapter: SlackAdapter;
let url = "";

beforeAll(async () => {
  h = await startEngineHarness({ engine: { maxDeliveryAttempts: 2, lateDeliveryRetryMs: 300 } });
  slack = await startFakeSlack();
  ({ adapter, url } = await startSlackBot(h, slack, { timeoutMs: 1_000 }));
});
afterAll(async () => {
  await adapter?.stop();
  await slack?.close();
  await h?.close();
});
beforeEach(() => {
  slack.reset();
  h.fake.reset();
});

const ours = (messages: SlackMessage[]) => messages.filter((m) => m.user === slack.botUserId);

/** /imagine, acknowledged in time; resolves with the root message once the bot has posted it. */
async function imagine(text: string): Promise<SlackMessage> {
  const ack = await slack.sendSlashCommand(url, { text, channel_id: CHANNEL, user_id: "U0001" });
  expect(ack.ok).toBe(true);
  return waitUntil(() => ours(slack.messages(CHANNEL))[0], "the root message");
}

it("a result Slack could not take for long goes out once it answers again, marked late", {
  timeout: 60_000,
}, async () => {
  // Slack refuses the upload for longer than the quick retries last (a 500 is not retried by the client).
  slack.failNext("files.getUploadURLExternal", { status: 500 }, { status: 500 });
  const root = await imagine("a postcard from the beach");
  await expect
    .poll(async () => (await h.engine.unfinishedTurns("slack")).length, { timeout: 10_000 })
    .toBe(0);
  await expect.poll(async () => (await h.store.stats()).lateDeliveries, { timeout: 20_000 }).toBe(1);
  expect(slack.uploads.filter((u) => u.completed)).toHaveLength(0);

  // Slack is back: the slow retry delivers it, once, and says it is late.
  await expect
    .poll(async () => (await h.engine.retryLateDeliveries(["slack"])) > 0 || slack.uploads.length > 0, {
      timeout: 10_000,
      interval: 200,
    })
    .toBe(true);
  await expect.poll(async () => (await h.store.stats()).lateDeliveries, { timeout: 20_000 }).toBe(0);
  expect(slack.uploads.filter((u) => u.completed).map((u) => u.filename)).toEqual(["v1-1.png"]);
  const replies = ours(slack.messages(CHANNEL, root.ts)).filter((m) => m.ts !== root.ts);
  const results = replies.filter((m) => /Version 1/.test(m.text));
  expect(results).toHaveLength(1);
  expect(results[0]?.text).toMatch(/^⏱ Arriving late/);
  expect(slack.message(CHANNEL, root.ts)?.text).toContain("Done");
  expect(h.fake.requests).toHaveLength(1); // drawn once
});

/** Waits for /imagine's result: its upload, its closing message and the root saying done. */
async function finished(rootTs: string): Promise<void> {
  await waitUntil(
    () => slack.uploads.some((u) => u.completed && u.thread_ts === rootTs),
    "the upload",
    30_000,
  );
  await waitUntil(
    () => slack.message(CHANNEL, rootTs)?.text.includes("Done"),
    "the root saying done",
    30_000,
  );
}

it("a root message Slack posted but never answered for is found after the time limit, not posted again", {
  timeout: 60_000,
}, async () => {
  slack.failNext("chat.postMessage", { hang: true, processed: true });
  const root = await imagine("a lighthouse");
  await finished(root.ts);
  expect(ours(slack.messages(CHANNEL))).toHaveLength(1); // one root, though the first post timed out
  expect(slack.calls.some((c) => c.method === "conversations.history")).toBe(true); // looked for it first
});

it("a closing message Slack posted but never answered for is not posted twice", {
  timeout: 60_000,
}, async () => {
  h.fake.setLatency(1_000); // time to arm the hang after the root is posted
  try {
    const root = await imagine("a harbour");
    slack.failNext("chat.postMessage", { hang: true, processed: true });
    await finished(root.ts);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const replies = ours(slack.messages(CHANNEL, root.ts)).filter((m) => m.ts !== root.ts);
    expect(replies.filter((m) => /Version 1/.test(m.text))).toHaveLength(1);
    expect(slack.uploads.filter((u) => u.completed)).toHaveLength(1);
    expect(h.fake.requests).toHaveLength(1);
  } finally {
    h.fake.setLatency(0);
  }
});
