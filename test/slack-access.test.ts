import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { SlackAdapter } from "../adapters/slack/adapter.ts";
import { AccessPolicy } from "../src/access.ts";
import { inbox as inboxTable } from "../src/store/schema.ts";
import { type FakeSlack, startFakeSlack } from "./fakes/slack-server.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";
import { startSlackBot } from "./support/slack-bot.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * SLACK_ALLOWED_TEAMS and SLACK_ALLOWED_CHANNELS through the real adapter: a command, mention, reply or click
 * from a team or channel not listed gets "threadcanvas is not enabled in this channel." privately, and nothing
 * is written (not even to the inbox) and nothing is sent to OpenAI. A thread made in a channel before it was
 * taken off the list answers the same.
 */
const ALLOWED = "C0001";
const OTHER = "C0002";
const NOT_ENABLED = "✖ threadcanvas is not enabled in this channel.";

let h: EngineHarness;
let slack: FakeSlack;
let adapter: SlackAdapter;
let url = "";
/** A thread with a result in OTHER, made while that channel was still allowed. */
let oldRootTs = "";

const botMessages = (channel: string) => slack.messages(channel).filter((m) => m.user === slack.botUserId);
const inboxRows = async () => (await h.database.db.select().from(inboxTable)).length;

beforeAll(async () => {
  h = await startEngineHarness();
  slack = await startFakeSlack();
  // First every channel is allowed: a thread is made in OTHER.
  const open = await startSlackBot(h, slack);
  await slack.sendSlashCommand(open.url, { text: "an old map", channel_id: OTHER, user_id: "U0001" });
  const root = await waitUntil(() => botMessages(OTHER)[0], "the root message in the other channel");
  await waitUntil(() => slack.message(OTHER, root.ts)?.text.includes("Done"), "the old thread's result");
  oldRootTs = root.ts;
  await open.adapter.stop();
  // Then only ALLOWED, in this team.
  const access = new AccessPolicy({
    slack: { teams: [slack.teamId], channels: [ALLOWED] },
    discord: { guilds: null, channels: null },
    admins: [],
  });
  ({ adapter, url } = await startSlackBot(h, slack, { access }));
});
afterAll(async () => {
  await adapter?.stop();
  await slack?.close();
  await h?.close();
});
beforeEach(() => {
  h.fake.reset();
});

/** Nothing happened beyond the refusal: no new inbox row, no provider call, no new bot message. */
async function expectNothingRecorded(check: () => Promise<void>): Promise<void> {
  const rows = await inboxRows();
  const messages = botMessages(OTHER).length;
  await check();
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await inboxRows()).toBe(rows);
  expect(h.fake.requests).toEqual([]);
  expect(botMessages(OTHER)).toHaveLength(messages);
}

describe("refused privately, nothing recorded", () => {
  it("/imagine in a channel not listed", async () => {
    await expectNothingRecorded(async () => {
      const ack = await slack.sendSlashCommand(url, { text: "a cat", channel_id: OTHER, user_id: "U0002" });
      expect(ack.ok).toBe(true);
      expect(ack.body).toEqual({ response_type: "ephemeral", text: NOT_ENABLED });
    });
  });

  it("/imagine from a team not listed, even in a listed channel id", async () => {
    await expectNothingRecorded(async () => {
      const ack = await slack.sendSlashCommand(url, {
        text: "a cat",
        channel_id: ALLOWED,
        user_id: "U0002",
        team_id: "T9999",
      });
      expect(ack.body).toEqual({ response_type: "ephemeral", text: NOT_ENABLED });
    });
  });

  it("a mention in a channel not listed", async () => {
    await expectNothingRecorded(async () => {
      const ack = await slack.sendEvent(
        url,
        slack.appMention({ channel: OTHER, text: "a cat", user: "U0002" }),
      );
      expect(ack.ok).toBe(true);
      const told = await waitUntil(
        () => slack.ephemerals.find((e) => e.channel === OTHER && e.user === "U0002" && !e.thread_ts),
        "an ephemeral answer",
      );
      expect(told.text).toBe(NOT_ENABLED);
    });
  });

  it("a reply in a thread of a channel taken off the list", async () => {
    await expectNothingRecorded(async () => {
      const reply = slack.userMessage({
        channel: OTHER,
        text: "make it blue",
        thread_ts: oldRootTs,
        user: "U0002",
      });
      expect((await slack.sendEvent(url, reply)).ok).toBe(true);
      const told = await waitUntil(
        () => slack.ephemerals.find((e) => e.user === "U0002" && e.thread_ts === oldRootTs),
        "an ephemeral answer in the thread",
      );
      expect(told.text).toBe(NOT_ENABLED);
    });
  });

  it("a click on a result in a channel taken off the list", async () => {
    const withButton = await waitUntil(
      () =>
        slack
          .messages(OTHER, oldRootTs)
          .find(
            (m) => m.user === slack.botUserId && JSON.stringify(m.blocks ?? []).includes('"tc_variations'),
          ),
      "a Variations button",
    );
    const actionId = JSON.stringify(withButton.blocks).match(/"action_id":"(tc_variations[^"]*)"/)?.[1] ?? "";
    const posts = slack.responseUrlPosts.length;
    await expectNothingRecorded(async () => {
      const ack = await slack.sendInteraction(
        url,
        slack.blockActions({ channel: OTHER, messageTs: withButton.ts, actionId, user: "U0002" }),
      );
      expect(ack.ok).toBe(true);
      const post = await waitUntil(() => slack.responseUrlPosts[posts], "a private answer");
      expect(post.body).toMatchObject({
        response_type: "ephemeral",
        text: NOT_ENABLED,
        replace_original: false,
      });
    });
  });
});

it("a listed channel in the listed team works as ever", async () => {
  const ack = await slack.sendSlashCommand(url, { text: "a new map", channel_id: ALLOWED, user_id: "U0001" });
  expect(ack.ok).toBe(true);
  const root = await waitUntil(() => botMessages(ALLOWED)[0], "the root message");
  await waitUntil(() => slack.message(ALLOWED, root.ts)?.text.includes("Done"), "the result");
  expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a new map"]);
});
