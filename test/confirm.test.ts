import { MessageFlags } from "discord.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_PARAMS } from "../src/domain.ts";
import { estimateTurnUsd } from "../src/provider/pricing.ts";
import { checkParams } from "../src/request/checks.ts";
import { parseImagineText } from "../src/request/flags.ts";
import type { FakeDiscord } from "./fakes/discord-server.ts";
import type { FakeSlack } from "./fakes/slack-server.ts";
import type { EphemeralRecord } from "./fakes/slack-state.ts";
import { type BothPlatforms, startBothPlatforms } from "./support/both-platforms.ts";
import type { EngineHarness } from "./support/engine-harness.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * CONFIRM_ABOVE_USD (0.50 here) through both adapters: a request estimated above it asks "Draw it for about
 * $X?" with Draw it / Cancel, and nothing is recorded or sent to OpenAI until the person who asked says yes —
 * once; Cancel, someone else's click and a second click draw nothing.
 */
const ANSWERED =
  "✖ That question was answered already, or it has expired (after 10 minutes). Send the request again to draw it.";
const BIG = "--quality high --ar 1:1 --n 6"; // about $0.75
const SMALL = "--quality low --ar 1:1"; // about $0.01

let both: BothPlatforms;
let h: EngineHarness;
let slack: FakeSlack;
let url = "";
let discord: FakeDiscord;

beforeAll(async () => {
  both = await startBothPlatforms({ engine: () => ({ confirmAboveUsd: 0.5 }) });
  ({ h, slack, url, discord } = both);
});
afterAll(() => both?.close());
beforeEach(() => {
  h.fake.reset();
});

function question(text: string): string {
  const { prompt, params } = parseImagineText(text);
  const usd = estimateTurnUsd({
    params: checkParams({ ...DEFAULT_PARAMS, ...params }),
    promptChars: prompt.length,
    inputs: [],
    imageModel: "gpt-image-2",
    thinkModel: "gpt-5.5",
  });
  return `Draw it for about $${usd.toFixed(2)}?`;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

describe("Slack", () => {
  const roots = (prompt: string) =>
    slack.messages("C0001").filter((m) => m.user === slack.botUserId && m.text.includes(prompt));

  /** A /imagine that is asked about: the private question, with its buttons. */
  async function asked(text: string, user = "U0001"): Promise<EphemeralRecord> {
    const count = slack.ephemerals.length;
    const ack = await slack.sendSlashCommand(url, { text, channel_id: "C0001", user_id: user });
    expect(ack.ok).toBe(true);
    const record = await waitUntil(
      () => slack.ephemerals.slice(count).find((e) => e.user === user),
      "the question",
    );
    await settle();
    expect(h.fake.requests).toEqual([]);
    expect(roots(parseImagineText(text).prompt)).toEqual([]);
    return record;
  }

  /** A click on the question's button, made now (before the question is replaced), sent by `send`. */
  function click(ephemeral: EphemeralRecord, actionId: "tcq_confirm" | "tcq_decline") {
    const payload = slack.ephemeralBlockActions({ ephemeral, actionId });
    return {
      send: async () => expect((await slack.sendInteraction(url, payload)).ok).toBe(true),
    };
  }

  it("asks privately with Draw it / Cancel; Draw it draws it once", async () => {
    const text = `six posters ${BIG}`;
    const ephemeral = await asked(text);
    expect(ephemeral).toMatchObject({ via: "response_url", text: question(text) });
    const buttons = JSON.stringify(ephemeral.blocks);
    expect(buttons).toContain('"Draw it"');
    expect(buttons).toContain('"Cancel"');

    // Two clicks on Draw it (a double click: both made before the question was replaced).
    const [first, second] = [click(ephemeral, "tcq_confirm"), click(ephemeral, "tcq_confirm")];
    await first.send();
    await waitUntil(() => ephemeral.text === "✔ Drawing it.", "the question answered");
    expect(ephemeral.blocks).toBeUndefined(); // the buttons are gone
    const root = await waitUntil(() => roots("six posters")[0], "the image");
    await waitUntil(() => slack.message("C0001", root.ts)?.text.includes("Done"), "done", 20_000);
    expect(h.fake.requests).toHaveLength(1);
    expect(h.fake.requests[0]?.body).toMatchObject({ n: 6, quality: "high" });

    // The second click draws nothing more.
    await second.send();
    await waitUntil(() => ephemeral.text === ANSWERED, "the second click answered");
    await settle();
    expect(h.fake.requests).toHaveLength(1);
  });

  it("Cancel draws nothing, and a later Draw it is too late", async () => {
    const ephemeral = await asked(`six lamps ${BIG}`);
    const [no, yes] = [click(ephemeral, "tcq_decline"), click(ephemeral, "tcq_confirm")];
    await no.send();
    await waitUntil(() => ephemeral.text === "Not drawn.", "the question answered");
    await yes.send();
    await waitUntil(() => ephemeral.text === ANSWERED, "too late");
    await settle();
    expect(h.fake.requests).toEqual([]);
    expect(roots("six lamps")).toEqual([]);
  });

  it("a costly reply in a thread is asked about privately in that thread", async () => {
    await slack.sendSlashCommand(url, {
      text: `a small map ${SMALL}`,
      channel_id: "C0001",
      user_id: "U0001",
    });
    const root = await waitUntil(() => roots("a small map")[0], "the image");
    await waitUntil(() => slack.message("C0001", root.ts)?.text.includes("Done"), "done", 20_000);
    h.fake.reset();
    const count = slack.ephemerals.length;
    await slack.sendEvent(
      url,
      slack.userMessage({
        channel: "C0001",
        user: "U0001",
        text: "make it huge --quality high --size 3840x2160",
        thread_ts: root.ts,
      }),
    );
    const ephemeral = await waitUntil(() => slack.ephemerals.slice(count)[0], "the question");
    expect(ephemeral).toMatchObject({ via: "chat.postEphemeral", thread_ts: root.ts, user: "U0001" });
    expect(ephemeral.text).toMatch(/^Draw it for about \$\d+\.\d\d\?$/);
    await settle();
    expect(h.fake.requests).toEqual([]);
    await click(ephemeral, "tcq_confirm").send();
    await waitUntil(() => h.fake.requests[0]?.body.prompt !== undefined, "the edit sent", 20_000);
    expect(h.fake.requests[0]?.body).toMatchObject({ size: "3840x2160", quality: "high" });
  });

  it("a costly button (Variations of a five-image result) asks privately too, and draws once confirmed", async () => {
    const text = `five posters ${BIG.replace("--n 6", "--n 5")}`;
    await click(await asked(text), "tcq_confirm").send();
    const root = await waitUntil(() => roots("five posters")[0], "the image");
    await waitUntil(() => slack.message("C0001", root.ts)?.text.includes("Done"), "done", 20_000);
    const withButtons = await waitUntil(
      () =>
        slack
          .messages("C0001", root.ts)
          .find(
            (m) => m.user === slack.botUserId && JSON.stringify(m.blocks ?? []).includes('"tc_variations'),
          ),
      "the result's buttons",
    );
    const actionId =
      JSON.stringify(withButtons.blocks).match(/"action_id":"(tc_variations[^"]*)"/)?.[1] ?? "";
    h.fake.reset();
    const count = slack.ephemerals.length;
    const ack = await slack.sendInteraction(
      url,
      slack.blockActions({ channel: "C0001", messageTs: withButtons.ts, actionId, user: "U0001" }),
    );
    expect(ack.ok).toBe(true);
    const ephemeral = await waitUntil(() => slack.ephemerals.slice(count)[0], "the question");
    expect(ephemeral.text).toMatch(/^Draw it for about \$\d+\.\d\d\?$/);
    await settle();
    expect(h.fake.requests).toEqual([]);
    await click(ephemeral, "tcq_confirm").send();
    await waitUntil(() => h.fake.requests[0]?.body.prompt !== undefined, "the variations sent", 20_000);
    expect(h.fake.requests[0]?.body).toMatchObject({ n: "5", quality: "high" }); // multipart: as sent
  });

  it("a request estimated below the threshold is drawn without asking", async () => {
    const count = slack.ephemerals.length;
    await slack.sendSlashCommand(url, {
      text: `one small kite ${SMALL}`,
      channel_id: "C0001",
      user_id: "U0001",
    });
    const root = await waitUntil(() => roots("one small kite")[0], "the image");
    await waitUntil(() => slack.message("C0001", root.ts)?.text.includes("Done"), "done", 20_000);
    expect(slack.ephemerals.slice(count)).toEqual([]);
  });
});

describe("Discord", () => {
  it("the /imagine's reply asks; only the asker's Draw it counts, and the image replaces the question", async () => {
    const text = `six lanterns ${BIG}`;
    const handle = discord.slashCommand({ name: "imagine", options: { prompt: text }, user: "alice" });
    const asking = await handle.waitForOriginal((m) => m.components.length > 0, 20_000);
    expect(asking.content).toBe(question(text));
    const ids = JSON.stringify(asking.components);
    expect(ids).toContain('"label":"Draw it"');
    expect(ids).toContain('"label":"Cancel"');
    await settle();
    expect(h.fake.requests).toEqual([]);
    const drawIt =
      (asking.components[0] as { components: Array<{ custom_id: string }> }).components[0]?.custom_id ?? "";

    const stranger = discord.clickButton({ messageId: asking.id, customId: drawIt, user: "bob" });
    const [note] = [await stranger.waitForAck()];
    expect(note.type).toBe(4);
    expect(stranger.original?.flags).toBe(MessageFlags.Ephemeral);
    expect(stranger.original?.content).toBe("✖ Only the person who asked can answer this.");
    await settle();
    expect(h.fake.requests).toEqual([]);

    const yes = discord.clickButton({ messageId: asking.id, customId: drawIt, user: "alice" });
    expect((await yes.waitForAck()).type).toBe(7); // the question is updated in place
    await handle.waitForOriginal((m) => m.attachments.length === 6, 20_000);
    expect(h.fake.requests).toHaveLength(1);
    expect(handle.edits.some((e) => e.content === "✔ Drawing it.")).toBe(true);
  });

  it("a costly edit written in the thread is asked about there, and only the writer's Draw it counts", async () => {
    const handle = discord.slashCommand({
      name: "imagine",
      options: { prompt: `a small map ${SMALL}` },
      user: "alice",
    });
    const result = await handle.waitForOriginal((m) => m.attachments.length > 0, 20_000);
    const thread = await discord.waitFor(
      () => discord.channel(result.id),
      20_000,
      "the thread on the result",
    );
    h.fake.reset();
    const text = "make it huge --quality high --size 3840x2160";
    const message = discord.userMessage({ content: text, channel: thread.id, user: "alice" });
    const asking = await discord.waitFor(
      () =>
        discord
          .messages(thread.id)
          .find((m) => m.messageReference?.message_id === message.id && m.components.length > 0),
      20_000,
      "the question in the thread",
    );
    const mention = `<@${discord.users.alice?.id}> `;
    expect(asking.content.startsWith(mention)).toBe(true);
    expect(asking.content.slice(mention.length)).toMatch(/^Draw it for about \$\d+\.\d\d\?$/);
    await settle();
    expect(h.fake.requests).toEqual([]);
    const drawIt =
      (asking.components[0] as { components: Array<{ custom_id: string }> }).components[0]?.custom_id ?? "";
    const yes = discord.clickButton({ messageId: asking.id, customId: drawIt, user: "alice" });
    expect((await yes.waitForAck()).type).toBe(7);
    await discord.waitFor(() => h.fake.requests[0]?.body.prompt !== undefined, 20_000, "the edit sent");
    expect(h.fake.requests[0]?.body).toMatchObject({ size: "3840x2160", quality: "high" });
    expect(discord.message(asking.id)?.content).toBe("✔ Drawing it.");
  });

  it("a costly button (Variations of a five-image result) asks the clicker privately", async () => {
    const handle = discord.slashCommand({
      name: "imagine",
      options: { prompt: `five bells ${BIG.replace("--n 6", "--n 5")}` },
      user: "alice",
    });
    const asking = await handle.waitForOriginal((m) => m.components.length > 0, 20_000);
    const drawIt =
      (asking.components[0] as { components: Array<{ custom_id: string }> }).components[0]?.custom_id ?? "";
    await discord.clickButton({ messageId: asking.id, customId: drawIt, user: "alice" }).waitForAck();
    const result = await handle.waitForOriginal((m) => m.attachments.length === 5, 20_000);
    const variations =
      (result.components[0] as { components: Array<{ custom_id: string; label: string }> }).components.find(
        (b) => b.label === "Variations",
      )?.custom_id ?? "";
    h.fake.reset();
    const click = discord.clickButton({ messageId: result.id, customId: variations, user: "bob" });
    expect((await click.waitForAck()).type).toBe(6);
    const [question] = await click.waitForFollowUps(1, 20_000);
    expect(question?.flags).toBe(MessageFlags.Ephemeral);
    expect(question?.content).toMatch(/^Draw it for about \$\d+\.\d\d\?$/);
    await settle();
    expect(h.fake.requests).toEqual([]);
    if (!question) throw new Error("no question");
    const yes = (question.components[0] as { components: Array<{ custom_id: string }> }).components[0]
      ?.custom_id;
    await discord.clickButton({ messageId: question.id, customId: yes ?? "", user: "bob" }).waitForAck();
    await discord.waitFor(() => h.fake.requests[0]?.body.prompt !== undefined, 20_000, "the variations sent");
    expect(h.fake.requests[0]?.body).toMatchObject({ n: "5", quality: "high" }); // multipart: as sent
  });

  it("Cancel draws nothing", async () => {
    const handle = discord.slashCommand({
      name: "imagine",
      options: { prompt: `six bells ${BIG}` },
      user: "alice",
    });
    const asking = await handle.waitForOriginal((m) => m.components.length > 0, 20_000);
    const cancel =
      (asking.components[0] as { components: Array<{ custom_id: string }> }).components[1]?.custom_id ?? "";
    const no = discord.clickButton({ messageId: asking.id, customId: cancel, user: "alice" });
    await no.waitForAck();
    await handle.waitForOriginal((m) => m.content === "Not drawn." && m.components.length === 0);
    await settle();
    expect(h.fake.requests).toEqual([]);
  });
});
