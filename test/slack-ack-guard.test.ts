import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import type { SlackAdapter } from "../adapters/slack/adapter.ts";
import type { ConversationEngine } from "../src/ports.ts";
import { type FakeSlack, startFakeSlack } from "./fakes/slack-server.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";
import { startSlackBot } from "./support/slack-bot.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * When recording a command takes longer than the adapter's guard (a burst on a busy embedded database), Slack
 * still gets its acknowledgement in time, and the recording finishes behind it: the image is delivered, or,
 * when recording fails, the person is told privately through the command's response_url.
 *
 * The engine here is the real one, reached through a wrapper that makes `submit` slow (and, when asked, fail
 * after the wait): the adapter is what is under test.
 */
const CHANNEL = "C0001";
const SUBMIT_DELAY_MS = 1500;
const GUARD_MS = 200;

let h: EngineHarness;
let slack: FakeSlack;
let adapter: SlackAdapter;
let url = "";
let failSubmit: Error | null = null;

beforeAll(async () => {
  h = await startEngineHarness();
  slack = await startFakeSlack();
  const slowEngine = new Proxy(h.engine, {
    get(target, property) {
      if (property === "submit") {
        return async (...args: Parameters<ConversationEngine["submit"]>) => {
          await new Promise((resolve) => setTimeout(resolve, SUBMIT_DELAY_MS));
          if (failSubmit) throw failSubmit;
          return target.submit(...args);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  ({ adapter, url } = await startSlackBot(slowEngine, slack, { ackGuardMs: GUARD_MS }));
});
afterAll(async () => {
  await adapter?.stop();
  await slack?.close();
  await h?.close();
});
beforeEach(() => {
  failSubmit = null;
  h.fake.reset();
});

it("a command whose recording is slow is acknowledged before it is recorded, then delivered", async () => {
  const before = new Set(slack.messages(CHANNEL).map((m) => m.ts));
  const ack = await slack.sendSlashCommand(url, {
    text: "a slow snail",
    channel_id: CHANNEL,
    user_id: "U0001",
  });
  expect(ack.ok).toBe(true);
  expect(ack.latencyMs).toBeLessThan(SUBMIT_DELAY_MS);
  expect(ack.body || null).toBeNull(); // a plain acknowledgement: the root message says the rest

  const root = await waitUntil(
    () => slack.messages(CHANNEL).find((m) => !before.has(m.ts) && m.user === slack.botUserId),
    "root message",
  );
  const upload = await waitUntil(
    () => slack.uploads.find((u) => u.completed && u.thread_ts === root.ts),
    "the upload",
  );
  expect(upload.alt_text).toBe("a slow snail");
  expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a slow snail"]);
  await waitUntil(() => slack.message(CHANNEL, root.ts)?.text.includes("Done"), "root status done");
  await slack.settled();
  expect(slack.ackFailures).toEqual([]);
});

it("when recording fails after the acknowledgement, the person is told privately and nothing is posted", async () => {
  failSubmit = new Error("connection terminated unexpectedly");
  const messagesBefore = slack.messages(CHANNEL).length;
  const postsBefore = slack.responseUrlPosts.length;
  const ack = await slack.sendSlashCommand(url, {
    text: "a lost cause",
    channel_id: CHANNEL,
    user_id: "U0001",
  });
  expect(ack.ok).toBe(true);
  expect(ack.latencyMs).toBeLessThan(SUBMIT_DELAY_MS);

  const post = await waitUntil(() => slack.responseUrlPosts[postsBefore], "a response_url post");
  expect(post.answer).toBe("ok");
  expect(post.url).toBe(ack.responseUrl);
  expect(post.body).toMatchObject({ response_type: "ephemeral" });
  expect(JSON.stringify(post.body)).toMatch(/✖/);
  expect(JSON.stringify(post.body)).not.toMatch(/connection terminated/); // internals stay in the log
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(slack.messages(CHANNEL)).toHaveLength(messagesBefore);
  expect(h.fake.requests).toHaveLength(0);
  await slack.settled();
  expect(slack.ackFailures).toEqual([]);
});
