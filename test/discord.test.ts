import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { MessageFlags } from "discord.js";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DiscordAdapter } from "../adapters/discord/adapter.ts";
import { decodeCustomId } from "../adapters/discord/render.ts";
import { registerCommands } from "../adapters/discord/setup.ts";
import { discordCommandThreadKey } from "../adapters/discord/threads.ts";
import {
  type FakeDiscord,
  type InteractionHandle,
  type SlashCommandInput,
  type StoredMessage,
  startFakeDiscord,
} from "./fakes/discord-server.ts";
import { makePng, sniffImageFormat } from "./fakes/images.ts";
import { buttonId, showsResult } from "./support/discord-results.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";

/**
 * Discord end to end: the real discord.js client inside DiscordAdapter and the real engine (store, queue, openai
 * SDK), against the strict fake Discord (REST v10 + gateway; the 3-second and 15-minute rules, one ack per
 * interaction, upload limits, permissions) and the fake OpenAI. The fake echoes the bot's own messages over the
 * gateway, as Discord does, so a bot that reacted to itself would show up as extra provider requests.
 */

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

let h: EngineHarness;
let fake: FakeDiscord;
let adapter: DiscordAdapter;

beforeAll(async () => {
  h = await startEngineHarness();
  fake = await startFakeDiscord();
  await registerCommands({ token: fake.botToken, apiUrl: fake.apiUrl });
  adapter = new DiscordAdapter({
    engine: h.engine,
    inbox: h.inbox,
    logger,
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
beforeEach(() => {
  h.fake.reset();
});

const WAIT = 20_000;
const bot = () => fake.botUser.id;

/** A /imagine and its finished reply (with buttons, or saying why it did not work). */
async function imagine(options: SlashCommandInput["options"], extra: Partial<SlashCommandInput> = {}) {
  const handle = fake.slashCommand({ name: "imagine", options, ...extra });
  const ack = await handle.waitForAck();
  expect(ack.type).toBe(5);
  const reply = await handle.waitForOriginal(
    (m) => showsResult(m) || m.content.includes("did not work"),
    WAIT,
  );
  return { handle, reply };
}

/** /imagine, then the Discord thread started on its result. */
async function imagineWithThread(prompt: string, options: Record<string, string | number> = {}) {
  const { handle, reply } = await imagine({ prompt, ...options });
  const thread = await fake.waitFor(() => fake.channel(reply.id), WAIT, "the thread on the result");
  return {
    handle,
    reply,
    threadId: thread.id,
    threadKey: discordCommandThreadKey(fake.guildId, fake.channelId, handle.id),
  };
}

/** The bot's answer to a person's message: its reply, once it shows a result (or a failure). */
function answerTo(message: StoredMessage, channelId: string, done = (m: StoredMessage) => showsResult(m)) {
  return fake.waitFor(
    () =>
      fake
        .messages(channelId)
        .find((m) => m.author.id === bot() && m.messageReference?.message_id === message.id && done(m)),
    WAIT,
    `the answer to "${message.content}"`,
  );
}

async function say(
  threadId: string,
  content: string,
  extra: { attachments?: Array<{ bytes: Buffer; filename: string }>; user?: string } = {},
) {
  const asked = fake.userMessage({ channel: threadId, content, ...extra });
  const answer = await answerTo(asked, threadId);
  return { asked, answer };
}

async function click(message: StoredMessage, label: string): Promise<InteractionHandle> {
  const handle = fake.clickButton({ messageId: message.id, customId: buttonId(message, label), user: "bob" });
  const ack = await handle.waitForAck();
  expect(ack.type).toBe(6); // a silent acknowledgement: the result goes to the thread
  return handle;
}

const botMessagesIn = (channelId: string) => fake.messages(channelId).filter((m) => m.author.id === bot());

async function headBytes(threadKey: string): Promise<Buffer> {
  const thread = await h.engine.getThread(threadKey);
  const head = thread?.headImageId ? await h.engine.getImage(thread.headImageId) : null;
  if (!head) throw new Error(`no head image in ${threadKey}`);
  return h.engine.imageBytes(head);
}

const bytesOf = (message: StoredMessage, index = 0) => message.attachments[index]?.bytes ?? Buffer.alloc(0);

/** The gateway MESSAGE_CREATE for a stored message, as Discord would send it again on a replay. */
function messageCreate(message: StoredMessage): Record<string, unknown> {
  return {
    id: message.id,
    type: message.type,
    channel_id: message.channelId,
    guild_id: fake.guildId,
    channel_type: fake.channel(message.channelId)?.type ?? 0,
    author: message.author,
    member: { roles: [], joined_at: "2026-01-01T00:00:00.000Z", deaf: false, mute: false, flags: 0 },
    content: message.content,
    attachments: [],
    embeds: [],
    mentions: [],
    mention_roles: [],
    mention_everyone: false,
    pinned: false,
    tts: false,
    timestamp: message.timestamp,
    edited_timestamp: null,
    flags: 0,
    components: [],
  };
}

describe("discord: commands", () => {
  it("registers /imagine and /canvas globally, and for one server with DISCORD_GUILD_ID (npm run discord:register)", async () => {
    const [global, canvas] = fake.commands();
    expect(global?.name).toBe("imagine");
    expect(canvas?.name).toBe("canvas");
    expect(canvas?.options).toEqual([expect.objectContaining({ type: 1, name: "usage" })]);
    expect((global?.options as Array<{ name: string }> | undefined)?.map((o) => o.name)).toEqual([
      "prompt",
      "aspect",
      "size",
      "quality",
      "count",
      "format",
      "image",
      "think",
    ]);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", path.join(REPO_ROOT, "adapters/discord/setup.ts")],
      {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          DISCORD_TOKEN: fake.botToken,
          DISCORD_API_URL: fake.apiUrl,
          DISCORD_GUILD_ID: fake.guildId,
        },
      },
    );
    expect(stdout).toContain(`Registered /imagine, /canvas for server ${fake.guildId}`);
    expect(fake.commands(fake.guildId).map((c) => c.name)).toEqual(["imagine", "canvas"]);
  });
});

describe("discord: /imagine and the thread", () => {
  it("defers at once, shows previews, then the provider's image with buttons; a thread starts on it", async () => {
    const { handle, reply, threadKey } = await imagineWithThread("a lighthouse at dusk --quality high", {
      aspect: "16:9",
    });
    expect(handle.rejected).toEqual([]);
    const [first] = h.fake.requests;
    expect(first?.body).toMatchObject({ prompt: "a lighthouse at dusk", size: "1536x864", quality: "high" });

    // "thinking…", then progress edits with at least one stream preview as an image, then the result.
    const versions = handle.edits;
    expect(versions[0]?.flags).toBe(MessageFlags.Loading); // "thinking…"
    expect(versions.some((v) => v.attachments.some((a) => /^v1-preview-\d\.webp$/.test(a.filename)))).toBe(
      true,
    );
    expect(reply.attachments.map((a) => a.filename)).toEqual(["v1-1.png"]);
    expect(bytesOf(reply).equals(await headBytes(threadKey))).toBe(true);
    expect(reply.content).toContain("a lighthouse at dusk");
    expect(reply.content).toContain(`<@${fake.users.alice?.id}>`);

    const labels = (reply.components as Array<{ components: Array<{ label: string }> }>)[0]?.components.map(
      (b) => b.label,
    );
    expect(labels).toEqual(["Variations", "Regenerate"]); // nothing to undo yet
    for (const label of labels ?? []) expect(buttonId(reply, label).length).toBeLessThanOrEqual(100);

    expect(fake.threads(fake.channelId).find((t) => t.id === reply.id)).toMatchObject({
      name: "a lighthouse at dusk",
      type: 11,
    });
    // The interaction's token is a credential for the reply: it leaves the store once the reply is done.
    await expect
      .poll(async () => (await h.engine.getThread(threadKey))?.meta.interaction)
      .toEqual({ id: expect.any(String), applicationId: expect.any(String), receivedAt: expect.any(Number) });
  });

  it("a message in the thread edits the latest image with exactly its bytes; a chain of three builds on each result", async () => {
    const { reply, threadId, threadKey } = await imagineWithThread("a paper boat");
    let previous = bytesOf(reply);
    for (const instruction of ["make it red", "add a sail", "put it on a lake"]) {
      const { asked, answer } = await say(threadId, instruction);
      const request = h.fake.requests.at(-1);
      expect(request?.endpoint).toBe("images.edit");
      expect(request?.body.prompt).toBe(instruction);
      expect(request?.images[0]?.equals(previous)).toBe(true);
      // The result is the bot's reply to the message that asked, in the thread.
      expect(answer.channelId).toBe(threadId);
      expect(answer.messageReference?.message_id).toBe(asked.id);
      expect(bytesOf(answer).equals(await headBytes(threadKey))).toBe(true);
      previous = bytesOf(answer);
    }
    expect(botMessagesIn(threadId).flatMap((m) => m.attachments.map((a) => a.filename))).toEqual([
      "v2-1.png",
      "v3-1.png",
      "v4-1.png",
    ]);
    expect(h.fake.requests).toHaveLength(4); // the bot's own echoed messages made no turns
  });

  it("Undo moves back a version: the next message edits the earlier image", async () => {
    const { reply, threadId } = await imagineWithThread("a cactus");
    const { answer } = await say(threadId, "add a flower");
    await click(answer, "Undo");
    const undone = await fake.waitFor(
      () => botMessagesIn(threadId).find((m) => m.content.includes("Undone")),
      WAIT,
      "the undo confirmation",
    );
    expect(undone.content).toContain("back to **v1**");
    await say(threadId, "add a hat");
    expect(h.fake.requests.at(-1)?.images[0]?.equals(bytesOf(reply))).toBe(true);
  });

  it("Variations makes a new image from the image and its prompt, in the thread", async () => {
    const { reply, threadId } = await imagineWithThread("a paper crane");
    await click(reply, "Variations");
    const result = await fake.waitFor(
      () => botMessagesIn(threadId).find((m) => showsResult(m) && m.content.includes("Variations")),
      WAIT,
      "the variation",
    );
    const request = h.fake.requests.at(-1);
    expect(String(request?.body.prompt)).toContain("a paper crane");
    expect(request?.images[0]?.equals(bytesOf(reply))).toBe(true);
    expect(result.attachments.map((a) => a.filename)).toEqual(["v2-1.png"]);
  });

  it("Regenerate draws the prompt again as a new version in the thread", async () => {
    const { reply, threadId } = await imagineWithThread("a brass compass --ar 3:2");
    await click(reply, "Regenerate");
    const result = await fake.waitFor(
      () => botMessagesIn(threadId).find((m) => showsResult(m) && m.attachments.length > 0),
      WAIT,
      "the regenerated image",
    );
    expect(h.fake.requests.map((r) => [r.endpoint, r.body.prompt, r.body.size])).toEqual([
      ["images.generate", "a brass compass", "1536x1024"],
      ["images.generate", "a brass compass", "1536x1024"],
    ]);
    expect(result.attachments.map((a) => a.filename)).toEqual(["v2-1.png"]);
    expect(bytesOf(result).equals(bytesOf(reply))).toBe(false);
  });

  it("messages that are not for the bot change nothing", async () => {
    const { threadId } = await imagineWithThread("a chess board");
    const someoneElses = fake.userThread({ name: "chat", user: "bob" });
    const plain = fake.userMessage({ content: "just chatting" });
    const toPerson = fake.userMessage({
      content: "replying to a person",
      messageReference: plain.id,
      user: "bob",
    });
    fake.userMessage({ channel: someoneElses.id, content: "make it blue" });
    const status = botMessagesIn(threadId).length;
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(h.fake.requests).toHaveLength(1);
    expect(botMessagesIn(threadId)).toHaveLength(status);
    const answered = new Set([plain.id, toPerson.id]);
    expect(
      botMessagesIn(fake.channelId).filter((m) => answered.has(m.messageReference?.message_id ?? "")),
    ).toEqual([]);
    expect(botMessagesIn(someoneElses.id)).toEqual([]);
  });

  it("count 4 shows four images and a choice; after 'Use #3' the next message edits the third", async () => {
    const { reply, threadId } = await imagineWithThread("logo ideas", { count: 4 });
    expect(h.fake.requests[0]?.body.n).toBe(4);
    expect(reply.attachments.map((a) => a.filename)).toEqual([
      "v1-1.png",
      "v1-2.png",
      "v1-3.png",
      "v1-4.png",
    ]);
    const third = bytesOf(reply, 2);
    await click(reply, "Use #3");
    await fake.waitFor(
      () => botMessagesIn(threadId).find((m) => m.content.includes("Using **v1 #3**")),
      WAIT,
      "the choice confirmation",
    );
    await say(threadId, "make it darker");
    expect(h.fake.requests.at(-1)?.images[0]?.equals(third)).toBe(true);
  });

  it("the image option is a reference for /imagine; an image attached to a message follows the edited one", async () => {
    const sofa = await makePng(320, 320, "sofa");
    const { reply, threadId } = await (async () => {
      const handle = fake.slashCommand({
        name: "imagine",
        options: { prompt: "a living room with this sofa" },
        attachments: { image: { bytes: sofa, filename: "sofa.png" } },
      });
      await handle.waitForAck();
      const reply = await handle.waitForOriginal((m) => showsResult(m), WAIT);
      await fake.waitFor(() => fake.channel(reply.id), WAIT, "the thread");
      return { reply, threadId: reply.id };
    })();
    expect(h.fake.requests[0]?.endpoint).toBe("images.edit");
    expect(h.fake.requests[0]?.images[0]?.equals(sofa)).toBe(true);

    const lamp = await makePng(256, 256, "lamp");
    await say(threadId, "add this lamp", { attachments: [{ bytes: lamp, filename: "lamp.png" }] });
    const request = h.fake.requests.at(-1);
    expect(request?.images).toHaveLength(2);
    expect(request?.images[0]?.equals(bytesOf(reply))).toBe(true);
    expect(request?.images[1]?.equals(lamp)).toBe(true);
    expect(fake.downloads.slice(-1)).toMatchObject([{ status: 200 }]);
  });

  it("messages sent while a turn runs are queued in order, and say so", async () => {
    const { threadId } = await imagineWithThread("a teapot");
    h.fake.setLatency(400);
    try {
      const gold = fake.userMessage({ channel: threadId, content: "make it gold" });
      const steam = fake.userMessage({ channel: threadId, content: "add steam" });
      const steamStatus = await fake.waitFor(
        () => botMessagesIn(threadId).find((m) => m.messageReference?.message_id === steam.id),
        WAIT,
        "the second message's status",
      );
      expect(steamStatus.history[0]?.content).toMatch(/Queued — 1 ahead/);
      const goldAnswer = await answerTo(gold, threadId);
      await answerTo(steam, threadId);
      const [first, second] = h.fake.requests.slice(-2);
      expect([first?.body.prompt, second?.body.prompt]).toEqual(["make it gold", "add steam"]);
      expect(second?.images[0]?.equals(bytesOf(goldAnswer))).toBe(true);
    } finally {
      h.fake.setLatency(0);
    }
  });

  it("a reply in the channel to an image message branches from that image", async () => {
    const { reply, threadId, threadKey } = await imagineWithThread("a red kite");
    await say(threadId, "make it blue");
    const asked = fake.userMessage({ content: "make it green instead", messageReference: reply.id });
    const answer = await answerTo(asked, fake.channelId);
    expect(h.fake.requests.at(-1)?.images[0]?.equals(bytesOf(reply))).toBe(true);
    expect(bytesOf(answer).equals(await headBytes(threadKey))).toBe(true);
  });

  it("a file over the server's upload limit is sent as a compressed copy; the original is kept", async () => {
    fake.setAttachmentSizeLimit(20_000);
    try {
      const { reply, threadKey } = await imagineWithThread("a detailed map");
      const original = await headBytes(threadKey);
      expect(original.length).toBeGreaterThan(20_000);
      expect(sniffImageFormat(original)).toBe("png");
      const sent = reply.attachments[0];
      expect(sent?.filename).toBe("v1-1.webp");
      expect(sniffImageFormat(bytesOf(reply))).toBe("webp");
      expect(sent?.size).toBeLessThanOrEqual(20_000);
      expect(reply.content).toMatch(/compressed copy/);
    } finally {
      fake.setAttachmentSizeLimit(10 * 1024 * 1024);
    }
  });
});

describe("discord: upload limits that change", () => {
  it("when the server's limit shrank since the last interaction, a refused upload is sent again smaller", async () => {
    const { threadId, threadKey } = await imagineWithThread("a city at night");
    fake.setAttachmentSizeLimit(20_000); // no interaction tells the bot: a message in the thread carries no limit
    try {
      const callsBefore = fake.calls.length;
      const { answer } = await say(threadId, "add fireworks");
      expect(fake.calls.slice(callsBefore).some((c) => c.code === 40005)).toBe(true);
      expect(answer.attachments.map((a) => a.filename)).toEqual(["v2-1.webp"]);
      expect(answer.attachments[0]?.size).toBeLessThanOrEqual(20_000);
      expect(sniffImageFormat(await headBytes(threadKey))).toBe("png");
    } finally {
      fake.setAttachmentSizeLimit(10 * 1024 * 1024);
    }
  });
});

describe("discord: bad input and failures", () => {
  it("invalid input gets an ephemeral answer, and nothing else happens", async () => {
    const visible = () => fake.messages().filter((m) => !(m.flags & 64));
    const before = visible().length;
    for (const [options, problem] of [
      [{ prompt: "a cat --n 11" }, /1 to 10/],
      [{ prompt: "a cat --n 2", count: 4 }, /disagree/],
      [{ prompt: "a cat", size: "1000x1000" }, /multiples of 16/],
      [{ prompt: "a cat --bogus" }, /Unknown flag --bogus/],
    ] as const) {
      const handle = fake.slashCommand({ name: "imagine", options });
      const ack = await handle.waitForAck();
      expect(ack).toMatchObject({ type: 4, ephemeral: true });
      expect(handle.original?.content).toMatch(problem);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(visible()).toHaveLength(before);
    expect(h.fake.requests).toHaveLength(0);
  });

  it("attachments that are not usable images are refused privately, and nothing is recorded", async () => {
    const threadsBefore = (await h.engine.listThreads("discord", 1000)).length;
    // Declared as another type: refused at once, before anything is written.
    const declared = fake.slashCommand({
      name: "imagine",
      options: { prompt: "a cat" },
      attachments: { image: { bytes: Buffer.from("GIF89a-not-really"), filename: "cat.gif" } },
    });
    expect(await declared.waitForAck()).toMatchObject({ type: 4, ephemeral: true });
    expect(declared.original?.content).toMatch(/attach PNG, JPEG or WebP/);
    // Bytes that are not an image show once downloaded, after the acknowledgement: the public "thinking…" is
    // taken back and the person told privately.
    const disguised = fake.slashCommand({
      name: "imagine",
      options: { prompt: "a cat" },
      attachments: {
        image: { bytes: Buffer.from("plain text"), filename: "cat.png", contentType: "image/png" },
      },
    });
    expect(await disguised.waitForAck()).toMatchObject({ type: 5, ephemeral: false });
    const [note] = await disguised.waitForFollowUps(1, WAIT);
    expect(note?.flags).toBe(MessageFlags.Ephemeral);
    expect(note?.content).toMatch(/PNG, JPEG or WebP/);
    expect(disguised.original?.deleted).toBe(true);
    expect(h.fake.requests).toHaveLength(0);
    expect(await h.engine.listThreads("discord", 1000)).toHaveLength(threadsBefore);
  });

  it("/imagine help answers privately with the flags", async () => {
    const handle = fake.slashCommand({ name: "imagine", options: { prompt: "help" } });
    expect(await handle.waitForAck()).toMatchObject({ type: 4, ephemeral: true });
    expect(handle.original?.content).toContain("--ar W:H");
    expect(h.fake.requests).toHaveLength(0);
  });

  it("rate limits past the SDK's retries show 'retrying' on the reply, then the image arrives", async () => {
    const limited = { status: 429, retryAfterMs: 10 } as const;
    h.fake.failNext(limited, limited, limited);
    const { handle, reply } = await imagine({ prompt: "a weather map" });
    expect(reply.attachments).toHaveLength(1);
    expect(handle.edits.some((version) => /rate.limit.*Retrying/i.test(version.content))).toBe(true);
  });

  it("a failed edit says why in the thread; the next message still edits the last good image", async () => {
    const { reply, threadId } = await imagineWithThread("a teacup");
    h.fake.failNext({ moderation: true });
    const asked = fake.userMessage({ channel: threadId, content: "something blocked" });
    const answer = await answerTo(asked, threadId, (m) => m.content.includes("did not work"));
    expect(answer.content).toMatch(/safety/);
    expect(answer.attachments).toEqual([]); // no preview left behind
    await say(threadId, "add a saucer");
    expect(h.fake.requests.at(-1)?.images[0]?.equals(bytesOf(reply))).toBe(true);
  });

  it("a moderation block is explained in the reply, and the next command works", async () => {
    h.fake.failNext({ moderation: true });
    const { reply } = await imagine({ prompt: "something blocked" });
    expect(reply.content).toMatch(/did not work: .*safety/);
    expect(reply.attachments).toEqual([]);
    expect(fake.channel(reply.id)).toBeUndefined();
    const next = await imagine({ prompt: "a harmless teapot" });
    expect(next.reply.attachments).toHaveLength(1);
  });

  it("in a channel where the bot may not post, the person is told what is missing; no image is made", async () => {
    const locked = fake.addChannel("locked");
    fake.forbidChannel(locked.id);
    await new Promise((resolve) => setTimeout(resolve, 100)); // CHANNEL_UPDATE reaches the bot
    const handle = fake.slashCommand({ name: "imagine", options: { prompt: "a cat" }, channel: locked.id });
    expect(await handle.waitForAck()).toMatchObject({ type: 4, ephemeral: true });
    expect(handle.original?.content).toMatch(/missing .*Send Messages.*Create Public Threads/);
    expect(h.fake.requests).toHaveLength(0);
  });

  it("permissions taken away while drawing are reported in a private follow-up", async () => {
    const studio = fake.addChannel("studio");
    h.fake.setLatency(800);
    try {
      const handle = fake.slashCommand({
        name: "imagine",
        options: { prompt: "a harbour" },
        channel: studio.id,
      });
      await handle.waitForAck();
      fake.forbidChannel(studio.id);
      const [followUp] = await handle.waitForFollowUps(1, WAIT);
      expect(followUp?.flags).toBe(64);
      expect(followUp?.content).toMatch(/can't work in .*missing/);
      expect(handle.original?.attachments).toHaveLength(1); // the reply itself still shows the image
    } finally {
      h.fake.setLatency(0);
      fake.allowChannel(studio.id);
    }
  });
});

describe("discord: the gateway and Discord's clocks", () => {
  it("a message sent while the bot reconnects (op 7, RESUME) still makes its turn", async () => {
    const { threadId } = await imagineWithThread("a windmill");
    const resumes = fake.gateway.resumes.length;
    fake.gateway.requestReconnect();
    await fake.waitFor(() => fake.gateway.connections === 0, 5000, "the bot to disconnect");
    const asked = fake.userMessage({ channel: threadId, content: "add a rainbow" });
    await answerTo(asked, threadId);
    expect(fake.gateway.resumes.slice(resumes)).toMatchObject([{ replayed: 1 }]);
    expect(h.fake.requests.at(-1)?.body.prompt).toBe("add a rainbow");
  });

  it("a delivery that fails part-way runs again without showing the result twice", async () => {
    // Starting the thread fails (discord.js retries a 5xx three times): the engine delivers again later.
    const route = "POST /channels/{channel}/messages/{message}/threads";
    const callsBefore = fake.calls.length;
    fake.failNext(route, ...Array.from({ length: 4 }, () => ({ status: 502 })));
    const { handle, reply } = await imagineWithThread("a glass bridge");
    const finals = handle.edits.filter((v) => v.attachments.some((a) => a.filename === "v1-1.png"));
    expect(finals).toHaveLength(1); // the redelivery read the reply back and left it alone
    const starts = fake.calls.slice(callsBefore).filter((c) => c.route === route);
    expect(starts.map((c) => c.status)).toEqual([502, 502, 502, 502, 201]);
    expect(fake.threads(fake.channelId).filter((t) => t.id === reply.id)).toHaveLength(1);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("a replayed INTERACTION_CREATE or MESSAGE_CREATE makes one turn", async () => {
    const { handle, threadId, threadKey } = await imagineWithThread("a lantern");
    fake.gateway.dispatch("INTERACTION_CREATE", handle.payload);
    await fake.waitFor(() => handle.rejected.length > 0, 5000, "the replayed acknowledgement");
    expect(handle.rejected).toMatchObject([{ type: 5, code: 40060 }]); // Discord refused a second ack

    const asked = fake.userMessage({ channel: threadId, content: "make it glow" });
    await answerTo(asked, threadId);
    fake.gateway.dispatch("MESSAGE_CREATE", messageCreate(asked));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(h.fake.requests).toHaveLength(2);
    expect((await h.engine.history(threadKey))?.turns).toHaveLength(2);
    expect(botMessagesIn(threadId).filter((m) => m.messageReference?.message_id === asked.id)).toHaveLength(
      1,
    );
  });

  it("a result ready after the 15-minute interaction token expired comes as a channel message", async () => {
    h.fake.setLatency(1000);
    const FIFTEEN_MINUTES = 15 * 60 * 1000;
    let advanced = false;
    try {
      const handle = fake.slashCommand({ name: "imagine", options: { prompt: "a slow sunrise" } });
      await handle.waitForAck();
      fake.advanceTime(FIFTEEN_MINUTES + 60_000);
      advanced = true;
      const replyId = handle.original?.id ?? "";
      const posted = await fake.waitFor(
        () =>
          botMessagesIn(fake.channelId).find(
            (m) => m.messageReference?.message_id === replyId && m.attachments.length > 0,
          ),
        WAIT,
        "the result as a channel message",
      );
      const threadKey = discordCommandThreadKey(fake.guildId, fake.channelId, handle.id);
      expect(bytesOf(posted).equals(await headBytes(threadKey))).toBe(true);
      expect(fake.calls.some((c) => c.code === 50027)).toBe(true);
      // The thread starts on the message that has the image, and works like any other.
      await fake.waitFor(() => fake.channel(posted.id), WAIT, "the thread on the channel message");
      h.fake.setLatency(0);
      await say(posted.id, "brighter");
      expect(h.fake.requests.at(-1)?.images[0]?.equals(bytesOf(posted))).toBe(true);
    } finally {
      h.fake.setLatency(0);
      if (advanced) fake.advanceTime(-(FIFTEEN_MINUTES + 60_000));
    }
  });

  it("after a restart, a message in a thread discord.js has not cached (archived) still edits", async () => {
    const { threadId, reply } = await imagineWithThread("a quiet library");
    await adapter.stop();
    const thread = fake.channel(threadId);
    if (thread) thread.archived = true; // archived threads are not in GUILD_CREATE
    adapter = new DiscordAdapter({
      engine: h.engine,
      inbox: h.inbox,
      logger,
      token: fake.botToken,
      apiUrl: fake.apiUrl,
    });
    await adapter.start();
    expect(adapter.client.channels.cache.has(threadId)).toBe(false);
    const { answer } = await say(threadId, "add a cat on the desk");
    expect(h.fake.requests.at(-1)?.images[0]?.equals(bytesOf(reply))).toBe(true);
    expect(decodeCustomId(buttonId(answer, "Undo"))?.action).toBe("undo");
  });
});

describe("discord: calls that hang", () => {
  beforeAll(async () => {
    await adapter.stop();
    adapter = new DiscordAdapter({
      engine: h.engine,
      inbox: h.inbox,
      logger,
      token: fake.botToken,
      apiUrl: fake.apiUrl,
      requestTimeoutMs: 1_000,
      downloadTimeoutMs: 1_000,
    });
    await adapter.start();
  });

  it("a post Discord took but never answered is sent again with its nonce: the status shows once", async () => {
    const { threadId } = await imagineWithThread("a lonely pier");
    // The status message for the edit is created, but the answer never comes: discord.js gives up after 1 s and
    // sends it again, and Discord (enforce_nonce) answers with the message it already has.
    const callsBefore = fake.calls.length;
    fake.failNext("POST /channels/{channel}/messages", { hang: true, processed: true });
    const { asked, answer } = await say(threadId, "add a gull on the post");
    const posts = fake.calls
      .slice(callsBefore)
      .filter((c) => c.route === "POST /channels/{channel}/messages" && c.path.includes(threadId));
    expect(posts.map((c) => c.hung?.processed ?? false)).toEqual([true, false]);
    const nonces = posts.map((c) => (c.body as { nonce?: string }).nonce);
    expect(nonces[0]).toBeTruthy();
    expect(nonces[1]).toBe(nonces[0]);
    const answers = botMessagesIn(threadId).filter((m) => m.messageReference?.message_id === asked.id);
    expect(answers.map((m) => m.id)).toEqual([answer.id]);
    expect(answer.attachments).toHaveLength(1);
    expect(h.fake.requests.filter((r) => r.endpoint === "images.edit")).toHaveLength(1);
  });

  it("a download that stalls is given up after its time limit, and the channel's next message still edits", async () => {
    const { threadId } = await imagineWithThread("a tidy desk");
    fake.stallDownloads(1);
    const stalled = fake.userMessage({
      channel: threadId,
      content: "add this plant",
      attachments: [{ bytes: await makePng(64, 64, "plant"), filename: "plant.png" }],
    });
    const refusal = await answerTo(stalled, threadId, (m) => m.content.includes("✖"));
    expect(refusal.content).toMatch(/couldn't download plant\.png in time/);
    const { answer } = await say(threadId, "add a lamp");
    expect(answer.attachments).toHaveLength(1);
    expect(h.fake.requests.map((r) => r.body.prompt)).toEqual(["a tidy desk", "add a lamp"]);
  });
});
