import { MessageFlags } from "discord.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { FakeDiscord } from "./fakes/discord-server.ts";
import type { FakeSlack } from "./fakes/slack-server.ts";
import { type BothPlatforms, startBothPlatforms } from "./support/both-platforms.ts";
import { showsResult } from "./support/discord-results.ts";
import type { EngineHarness } from "./support/engine-harness.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * RATE_USER_PER_HOUR through both adapters: a person's second image within the hour (the limit here is one)
 * is refused privately, with how long to wait, and nothing is drawn; an admin is not limited.
 */
const REFUSAL =
  "✖ You have started 1 images in the past hour, the most one person may (1). You can start another in 60 minutes.";
const SLACK_ADMIN = "U0002";

let both: BothPlatforms;
let h: EngineHarness;
let slack: FakeSlack;
let url = "";
let discord: FakeDiscord;

beforeAll(async () => {
  both = await startBothPlatforms({
    engine: (fake) => ({
      turnsPerUserHour: 1,
      unlimited: (platform, userId) =>
        (platform === "slack" && userId === SLACK_ADMIN) ||
        (platform === "discord" && userId === fake.users.bob?.id),
    }),
  });
  ({ h, slack, url, discord } = both);
});
afterAll(() => both?.close());
beforeEach(() => {
  h.fake.reset();
});

describe("Slack", () => {
  const roots = (prompt: string) =>
    slack.messages("C0001").filter((m) => m.user === slack.botUserId && m.text.includes(prompt));

  async function imagine(prompt: string, user: string) {
    const ack = await slack.sendSlashCommand(url, { text: prompt, channel_id: "C0001", user_id: user });
    expect(ack.ok).toBe(true);
    return ack;
  }

  it("a second /imagine within the hour is refused privately, with the wait, and nothing is drawn", async () => {
    await imagine("a first kite", "U0001");
    const root = await waitUntil(() => roots("a first kite")[0], "the first image");
    await waitUntil(() => slack.message("C0001", root.ts)?.text.includes("Done"), "the first image done");
    const posts = slack.responseUrlPosts.length;
    const ack = await imagine("a second kite", "U0001");
    const post = await waitUntil(() => slack.responseUrlPosts[posts], "the private refusal");
    expect(post.url).toBe(ack.responseUrl);
    expect(post.body).toEqual({ response_type: "ephemeral", text: REFUSAL });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a first kite"]);
    expect(roots("a second kite")).toEqual([]);
  });

  it("an admin is not limited", async () => {
    await imagine("an admin's kite", SLACK_ADMIN);
    await imagine("an admin's second kite", SLACK_ADMIN);
    await waitUntil(() => h.fake.requests.length === 2, "both drawn");
    expect(h.fake.requests.map((r) => r.body.prompt).sort()).toEqual([
      "an admin's kite",
      "an admin's second kite",
    ]);
  });
});

describe("Discord", () => {
  it("a second /imagine within the hour is refused privately, with the wait, and nothing is drawn", async () => {
    const first = discord.slashCommand({
      name: "imagine",
      options: { prompt: "a first lantern" },
      user: "alice",
    });
    await first.waitForOriginal((m) => showsResult(m), 20_000);
    const second = discord.slashCommand({
      name: "imagine",
      options: { prompt: "a second lantern" },
      user: "alice",
    });
    expect((await second.waitForAck()).type).toBe(5);
    const [note] = await second.waitForFollowUps(1, 20_000);
    expect(note?.flags).toBe(MessageFlags.Ephemeral);
    expect(note?.content).toBe(REFUSAL);
    expect(second.original?.deleted).toBe(true); // the public "thinking…" is taken back
    expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a first lantern"]);
  });

  it("an admin is not limited", async () => {
    for (const prompt of ["an admin's lantern", "an admin's second lantern"]) {
      const handle = discord.slashCommand({ name: "imagine", options: { prompt }, user: "bob" });
      await handle.waitForOriginal((m) => showsResult(m), 20_000);
    }
    expect(h.fake.requests.map((r) => r.body.prompt)).toEqual([
      "an admin's lantern",
      "an admin's second lantern",
    ]);
  });
});
