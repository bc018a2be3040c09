import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { slackThreadKey } from "../adapters/slack/threads.ts";
import type { FakeDiscord, StoredMessage } from "./fakes/discord-server.ts";
import type { FakeSlack, SlackMessage } from "./fakes/slack-server.ts";
import { type BothPlatforms, startBothPlatforms } from "./support/both-platforms.ts";
import { buttonId, showsResult } from "./support/discord-results.ts";
import type { EngineHarness } from "./support/engine-harness.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * The buttons under a result act on that result, on Slack and on Discord, however many versions came after it:
 * Undo under v2 goes back to v2's parent; Variations of an edit tell the model what the image is (the request and
 * every edit since, in order); Regenerate of an edit re-runs that edit on the image it edited, with the same
 * instruction, so the new image is a sibling of the old one.
 */

const PROMPT = "a paper boat on a pond";
const EDITS = ["add a frog on the boat", "make it night"];
const VARIATION_OF_V3 =
  "Create a new variation of this image. Keep its subject, composition and style, and vary the details.\n\n" +
  `Original request: ${PROMPT}\n\nEdits since, in order:\n1. ${EDITS[0]}\n2. ${EDITS[1]}`;

let both: BothPlatforms;
let h: EngineHarness;
let slack: FakeSlack;
let url = "";
let discord: FakeDiscord;

beforeAll(async () => {
  both = await startBothPlatforms();
  ({ h, slack, url, discord } = both);
});
afterAll(() => both?.close());
beforeEach(() => h.fake.reset());

/** The prompt the fake OpenAI received last (multipart fields carry line breaks as CRLF). */
const lastPrompt = () => String(h.fake.requests.at(-1)?.body.prompt).replaceAll("\r\n", "\n");
const lastInput = () => h.fake.requests.at(-1)?.images[0];

/** The stored image a thread's version `n` (1-based, in order of making) is, with its bytes. */
async function version(threadKey: string, n: number) {
  const history = await h.engine.history(threadKey);
  const image = history?.images[n - 1];
  if (!image) throw new Error(`no version ${n} in ${threadKey}`);
  return { image, bytes: await h.engine.imageBytes(image) };
}

describe("Slack", () => {
  const CHANNEL = "C0001";
  const mine = (rootTs: string) =>
    slack.messages(CHANNEL, rootTs).filter((m) => m.user === slack.botUserId && m.ts !== rootTs);
  const result = (rootTs: string, n: number) =>
    waitUntil(
      () => mine(rootTs).find((m) => m.text.startsWith(`Version ${n}`)),
      `the result message of version ${n}`,
    );
  const uploads = (rootTs: string) => slack.uploads.filter((u) => u.completed && u.thread_ts === rootTs);

  async function press(message: SlackMessage, action: string): Promise<void> {
    const ack = await slack.sendInteraction(
      url,
      slack.blockActions({ channel: CHANNEL, messageTs: message.ts, actionId: action }),
    );
    expect(ack.ok).toBe(true);
  }

  async function reply(rootTs: string, text: string, uploadsThen: number): Promise<void> {
    expect(
      (await slack.sendEvent(url, slack.userMessage({ channel: CHANNEL, thread_ts: rootTs, text }))).ok,
    ).toBe(true);
    await waitUntil(() => uploads(rootTs).length >= uploadsThen, `upload ${uploadsThen}`);
  }

  it("Undo under v2, Variations of v3 and Regenerate of v2 each act on their own image", async () => {
    const before = new Set(slack.messages(CHANNEL).map((m) => m.ts));
    await slack.sendSlashCommand(url, { text: PROMPT, channel_id: CHANNEL, user_id: "U0001" });
    const root = await waitUntil(
      () => slack.messages(CHANNEL).find((m) => m.user === slack.botUserId && !before.has(m.ts)),
      "the root",
    );
    await waitUntil(() => uploads(root.ts).length === 1, "v1");
    // The root's ts names the thread (an alias of the key it got when the command came in).
    const threadKey = (await h.engine.getThread(slackThreadKey(slack.teamId, CHANNEL, root.ts)))?.key ?? "";
    await reply(root.ts, EDITS[0] ?? "", 2);
    await reply(root.ts, EDITS[1] ?? "", 3);
    const v1 = await version(threadKey, 1);
    const v2 = await version(threadKey, 2);
    const v3 = await version(threadKey, 3);

    // Undo under v2, while v3 is newest: the head goes to v1, and the next reply edits v1.
    await press(await result(root.ts, 2), "tc_undo");
    await waitUntil(() => mine(root.ts).some((m) => m.text.includes("Undone")), "the undo");
    expect((await h.engine.getThread(threadKey))?.headImageId).toBe(v1.image.id);
    await reply(root.ts, "add a lighthouse", 4);
    expect(lastInput()?.equals(v1.bytes)).toBe(true);

    // Variations under v3: the model hears what v3 is, and gets v3's bytes.
    await press(await result(root.ts, 3), "tc_variations");
    await waitUntil(() => uploads(root.ts).length === 5, "the variation");
    expect(lastPrompt()).toBe(VARIATION_OF_V3);
    expect(lastInput()?.equals(v3.bytes)).toBe(true);
    expect((await version(threadKey, 5)).image.parentId).toBe(v3.image.id);

    // Regenerate under v2: the frog edit again, on v1: a sibling of v2.
    await press(await result(root.ts, 2), "tc_regenerate");
    await waitUntil(() => uploads(root.ts).length === 6, "the regenerated edit");
    expect(h.fake.requests.at(-1)?.endpoint).toBe("images.edit");
    expect(lastPrompt()).toBe(EDITS[0]);
    expect(lastInput()?.equals(v1.bytes)).toBe(true);
    expect((await version(threadKey, 6)).image.parentId).toBe(v2.image.parentId);
  });
});

describe("Discord", () => {
  const bot = () => discord.botUser.id;

  async function press(message: StoredMessage, label: string): Promise<void> {
    const click = discord.clickButton({
      messageId: message.id,
      customId: buttonId(message, label),
      user: "bob",
    });
    expect((await click.waitForAck()).type).toBe(6);
  }

  /** A message in the thread, and the bot's answer to it once it shows a result. */
  async function say(threadId: string, content: string): Promise<StoredMessage> {
    const asked = discord.userMessage({ channel: threadId, content });
    return waitUntil(
      () =>
        discord
          .messages(threadId)
          .find(
            (m) => m.author.id === bot() && m.messageReference?.message_id === asked.id && showsResult(m),
          ),
      `the answer to "${content}"`,
    );
  }

  /** The results the bot has posted in the thread. */
  const results = (threadId: string) =>
    discord.messages(threadId).filter((m) => m.author.id === bot() && showsResult(m));

  it("Undo under v2, Variations of v3 and Regenerate of v2 each act on their own image", async () => {
    const handle = discord.slashCommand({ name: "imagine", options: { prompt: PROMPT }, user: "alice" });
    expect((await handle.waitForAck()).type).toBe(5);
    const first = await handle.waitForOriginal((m) => showsResult(m), 20_000);
    const threadId = await waitUntil(() => discord.channel(first.id)?.id, "the thread on the result");
    const threadKey = (await h.engine.getThread(`discord:${discord.guildId}:${threadId}`))?.key ?? "";
    const second = await say(threadId, EDITS[0] ?? "");
    const third = await say(threadId, EDITS[1] ?? "");
    const v1 = await version(threadKey, 1);
    const v2 = await version(threadKey, 2);
    const v3 = await version(threadKey, 3);

    await press(second, "Undo");
    await waitUntil(() => discord.messages(threadId).some((m) => m.content.includes("Undone")), "the undo");
    expect((await h.engine.getThread(threadKey))?.headImageId).toBe(v1.image.id);
    await say(threadId, "add a lighthouse");
    expect(lastInput()?.equals(v1.bytes)).toBe(true);

    const shown = results(threadId).length;
    await press(third, "Variations");
    await waitUntil(() => results(threadId).length > shown, "the variation");
    expect(lastPrompt()).toBe(VARIATION_OF_V3);
    expect(lastInput()?.equals(v3.bytes)).toBe(true);
    expect((await version(threadKey, 5)).image.parentId).toBe(v3.image.id);

    await press(second, "Regenerate");
    await waitUntil(() => results(threadId).length > shown + 1, "the regenerated edit");
    expect(h.fake.requests.at(-1)?.endpoint).toBe("images.edit");
    expect(lastPrompt()).toBe(EDITS[0]);
    expect(lastInput()?.equals(v1.bytes)).toBe(true);
    expect((await version(threadKey, 6)).image.parentId).toBe(v2.image.parentId);
  });
});
