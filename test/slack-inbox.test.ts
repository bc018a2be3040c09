import { eq } from "drizzle-orm";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SlackAdapter } from "../adapters/slack/adapter.ts";
import { AppError } from "../src/errors.ts";
import type { ConversationEngine, Inbox } from "../src/ports.ts";
import { inbox as inboxTable } from "../src/store/schema.ts";
import { type FakeSlack, startFakeSlack } from "./fakes/slack-server.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";
import { startSlackBot } from "./support/slack-bot.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * Record, acknowledge, then work: a command is written to the inbox before Slack gets its acknowledgement, and
 * everything slow happens after, from the inbox. When recording the turn is slow, Slack is answered at once;
 * when it fails for a reason that may pass, the event is taken again until it is recorded; when it keeps
 * failing, the person is told privately. In Socket Mode the envelope is acknowledged only once the event is in
 * the inbox; one the inbox could not take is left unacknowledged, and Slack's retry is recorded once.
 *
 * The engine and the inbox are the real ones, reached through wrappers that make `submit` slow or failing and
 * `receive` slow or failing: the adapter is what is under test.
 */
const CHANNEL = "C0001";
const SUBMIT_DELAY_MS = 1500;
const HOLD_MS = 300;

let h: EngineHarness;
let slack: FakeSlack;
let adapter: SlackAdapter;
let url = "";
let stopped = false;
let submitDelayMs = 0;
/** Fails this many of the next submits (then succeeds), with this error. */
let submitFailures = 0;
let submitError: Error = new Error("connection terminated unexpectedly");
let submits = 0;

/** The real engine, with `submit` slowed or failing as the test says. */
function slowEngine(engine: ConversationEngine): ConversationEngine {
  return new Proxy(engine, {
    get(target, property) {
      if (property === "submit") {
        return async (...args: Parameters<ConversationEngine["submit"]>) => {
          submits += 1;
          await new Promise((resolve) => setTimeout(resolve, submitDelayMs));
          if (submitFailures > 0) {
            submitFailures -= 1;
            throw submitError;
          }
          return target.submit(...args);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

const inboxRows = () => h.database.db.select().from(inboxTable);
const turnCount = async () => (await h.engine.listThreads("slack", 1000)).length;
const botMessages = () => slack.messages(CHANNEL).filter((m) => m.user === slack.botUserId);

async function expectDelivered(prompt: string): Promise<void> {
  const root = await waitUntil(
    () => botMessages().find((m) => m.text.includes(prompt)),
    `the root message of ${prompt}`,
  );
  await waitUntil(() => slack.message(CHANNEL, root.ts)?.text.includes("Done"), "root status done");
  const uploads = slack.uploads.filter((u) => u.completed && u.thread_ts === root.ts);
  expect(uploads.map((u) => u.alt_text)).toEqual([prompt]);
  expect(botMessages().filter((m) => m.text.includes(prompt))).toHaveLength(1);
}

beforeAll(async () => {
  h = await startEngineHarness();
  slack = await startFakeSlack();
  ({ adapter, url } = await startSlackBot({ engine: slowEngine(h.engine), inbox: h.inbox }, slack, {
    inboxHoldMs: HOLD_MS,
  }));
});
afterAll(async () => {
  if (!stopped) await adapter?.stop();
  await slack?.close();
  await h?.close();
});
beforeEach(() => {
  submitDelayMs = 0;
  submitFailures = 0;
  submitError = new Error("connection terminated unexpectedly");
  submits = 0;
  h.fake.reset();
});

it("a command is in the inbox when it is acknowledged, and recorded behind the acknowledgement", async () => {
  submitDelayMs = SUBMIT_DELAY_MS;
  const turnsBefore = await turnCount();
  const ack = await slack.sendSlashCommand(url, {
    text: "a slow snail",
    channel_id: CHANNEL,
    user_id: "U0001",
  });
  expect(ack.ok).toBe(true);
  expect(ack.latencyMs).toBeLessThan(SUBMIT_DELAY_MS);
  expect(ack.body || null).toBeNull(); // a plain acknowledgement: the root message says the rest
  // Acknowledged: the event is recorded, its turn not yet.
  const [row] = (await inboxRows()).filter((r) => r.key === `slack:cmd:${ack.fields.trigger_id}`);
  expect(row?.kind).toBe("command");
  expect(await turnCount()).toBe(turnsBefore);

  await expectDelivered("a slow snail");
  // Its hold lapsed while it was being recorded, but the process working it kept it: recorded once.
  expect(submits).toBe(1);
  expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a slow snail"]);
  // Worked: finished, and the payload (which holds the response_url) is gone.
  const [finished] = await h.database.db
    .select()
    .from(inboxTable)
    .where(eq(inboxTable.id, row?.id ?? 0));
  expect(finished?.outcome).toBe("done");
  expect(finished?.payload).toBeNull();
  await slack.settled();
  expect(slack.ackFailures).toEqual([]);
});

it("recording that fails for a reason that may pass is taken again: one turn, and no error shown", async () => {
  submitFailures = 2;
  const postsBefore = slack.responseUrlPosts.length;
  const ack = await slack.sendSlashCommand(url, {
    text: "a second try",
    channel_id: CHANNEL,
    user_id: "U0001",
  });
  expect(ack.ok).toBe(true);
  await expectDelivered("a second try");
  expect(submits).toBe(3);
  expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a second try"]);
  expect(slack.responseUrlPosts).toHaveLength(postsBefore);
});

it("a refusal found while working the event is told privately, and nothing is recorded", async () => {
  submitFailures = 1;
  submitError = new AppError("invalid_size", "no", { userMessage: "That size is not available." });
  const postsBefore = slack.responseUrlPosts.length;
  const messagesBefore = slack.messages(CHANNEL).length;
  const ack = await slack.sendSlashCommand(url, {
    text: "a refused one",
    channel_id: CHANNEL,
    user_id: "U0001",
  });
  expect(ack.ok).toBe(true);
  const post = await waitUntil(() => slack.responseUrlPosts[postsBefore], "a response_url post");
  expect(post.url).toBe(ack.responseUrl);
  expect(post.body).toMatchObject({ response_type: "ephemeral", text: "✖ That size is not available." });
  await new Promise((resolve) => setTimeout(resolve, HOLD_MS * 3));
  expect(submits).toBe(1); // answered, so finished: not taken again
  expect(slack.messages(CHANNEL)).toHaveLength(messagesBefore);
});

it("when recording keeps failing, the person is told privately once, and nothing is posted", async () => {
  submitFailures = 1_000;
  const messagesBefore = slack.messages(CHANNEL).length;
  const postsBefore = slack.responseUrlPosts.length;
  const ack = await slack.sendSlashCommand(url, {
    text: "a lost cause",
    channel_id: CHANNEL,
    user_id: "U0001",
  });
  expect(ack.ok).toBe(true);

  const post = await waitUntil(() => slack.responseUrlPosts[postsBefore], "a response_url post", 20_000);
  expect(post.answer).toBe("ok");
  expect(post.url).toBe(ack.responseUrl);
  expect(post.body).toMatchObject({ response_type: "ephemeral" });
  expect(JSON.stringify(post.body)).toMatch(/could not be recorded/);
  expect(JSON.stringify(post.body)).not.toMatch(/connection terminated/); // internals stay in the log
  expect(submits).toBe(5);
  // Told first, then finished as given up.
  await waitUntil(
    async () =>
      (await inboxRows()).find((r) => r.key === `slack:cmd:${ack.fields.trigger_id}`)?.outcome === "gave_up",
    "the event finished as given up",
  );
  await new Promise((resolve) => setTimeout(resolve, HOLD_MS * 3));
  expect(slack.responseUrlPosts).toHaveLength(postsBefore + 1);
  expect(slack.messages(CHANNEL)).toHaveLength(messagesBefore);
  expect(h.fake.requests).toHaveLength(0);
});

describe("Socket Mode", () => {
  let socketAdapter: SlackAdapter;
  let receiveDelayMs = 0;
  let receiveFailures = 0;

  beforeAll(async () => {
    const inbox: Inbox = new Proxy(h.inbox, {
      get(target, property) {
        if (property === "receive") {
          return async (...args: Parameters<Inbox["receive"]>) => {
            await new Promise((resolve) => setTimeout(resolve, receiveDelayMs));
            if (receiveFailures > 0) {
              receiveFailures -= 1;
              throw new Error("the database is away");
            }
            return target.receive(...args);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    await adapter.stop(); // one adapter answers the echoes at a time
    stopped = true;
    socketAdapter = new SlackAdapter({
      engine: h.engine,
      inbox,
      inboxHoldMs: HOLD_MS,
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
      botToken: slack.botToken,
      apiUrl: slack.apiUrl,
      appToken: slack.appToken,
    });
    await socketAdapter.start();
    await slack.socket.waitForConnection();
    slack.setEchoTarget("socket");
  });
  afterAll(async () => {
    await socketAdapter?.stop();
  });
  beforeEach(() => {
    receiveDelayMs = 0;
    receiveFailures = 0;
  });

  it("acknowledges an envelope only once its event is in the inbox", async () => {
    receiveDelayMs = 800;
    const ack = await slack.socket.sendSlashCommand({
      text: "a patient heron",
      channel_id: CHANNEL,
      user_id: "U0001",
    });
    expect(ack.ok).toBe(true);
    expect(ack.latencyMs).toBeGreaterThanOrEqual(800);
    await expectDelivered("a patient heron");
  });

  it("leaves an event the inbox could not take unacknowledged; Slack's retry makes one turn", async () => {
    const ack = await slack.socket.sendSlashCommand({
      text: "a crane, first try",
      channel_id: CHANNEL,
      user_id: "U0001",
    });
    expect(ack.ok).toBe(true);
    const root = await waitUntil(
      () => botMessages().find((m) => m.text.includes("a crane, first try")),
      "the root message",
    );
    await waitUntil(() => slack.message(CHANNEL, root.ts)?.text.includes("Done"), "root status done");

    receiveFailures = 1;
    const reply = slack.userMessage({
      channel: CHANNEL,
      user: "U0002",
      text: "make it blue",
      thread_ts: root.ts,
    });
    const first = await slack.socket.sendEvent(reply, { ackTimeoutMs: 1000 });
    expect(first.ok).toBe(false);
    expect(first.latencyMs).toBeNull();
    const retry = await slack.socket.sendEvent(reply, {
      eventId: first.eventId,
      retryAttempt: 1,
      retryReason: "timeout",
    });
    expect(retry.ok).toBe(true);
    await waitUntil(
      () => slack.uploads.filter((u) => u.completed && u.thread_ts === root.ts).length === 2,
      "the edit's upload",
    );
    // Slack's retry of an event already recorded finds its row: still one edit.
    await slack.socket.sendEvent(reply, { eventId: first.eventId, retryAttempt: 2, retryReason: "timeout" });
    await new Promise((resolve) => setTimeout(resolve, HOLD_MS * 3));
    expect(h.fake.requests.filter((r) => r.body.prompt === "make it blue")).toHaveLength(1);
    expect(slack.uploads.filter((u) => u.completed && u.thread_ts === root.ts)).toHaveLength(2);
  });
});
