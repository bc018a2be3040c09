import { createHash } from "node:crypto";
import { describe, type ExpectStatic, it, type TestContext } from "vitest";
import { registerCommands } from "../adapters/discord/setup.ts";
import { discordThreadAlias } from "../adapters/discord/threads.ts";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { openDatabase } from "../src/store/database.ts";
import {
  type ApiCall,
  type FakeDiscord,
  type InteractionHandle,
  type StoredMessage,
  startFakeDiscord,
} from "./fakes/discord-server.ts";
import { makePng } from "./fakes/images.ts";
import { renderImage, validateImageParams } from "./fakes/openai-rules.ts";
import { type FakeOpenAI, type RecordedRequest, startFakeOpenAI } from "./fakes/openai-server.ts";
import { type BotProcess, startBot } from "./support/bot-process.ts";
import { createTestDataDir, type TestDataDir } from "./support/database.ts";
import { showsResult } from "./support/discord-results.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * `npm start` with Discord configured (DISCORD_TOKEN, DISCORD_API_URL at the fake Discord), killed with SIGKILL at
 * the moments that matter, then started again. For /imagine: while the provider draws (after the defer), right
 * after the reply was edited into the result but before the bot heard so, and right after the thread was started
 * on it. For a message in the thread: while the provider draws the edit, before the status message's place was
 * recorded, and right after the status message was edited into the result. Every time the result is shown
 * exactly once (the provider's bytes, in one message), the thread exists once, no message is posted twice, and
 * the store says the turn succeeded and was delivered.
 *
 * Each test has its own fakes and DATA_DIR, and the tests run concurrently: most of each test is waiting for the
 * job queue to notice the dead worker (its heartbeat lapses after 10 s, then the monitor's next pass).
 */

const REPLY = "PATCH /webhooks/{application}/{token}/messages/@original";
const EDIT = "PATCH /channels/{channel}/messages/{message}";
const START_THREAD = "POST /channels/{channel}/messages/{message}/threads";
const POST = "POST /channels/{channel}/messages";
const RECOVERY_MS = 60_000;

interface World {
  /** The test's own `expect` and `onTestFinished`: the tests run concurrently. */
  expect: ExpectStatic;
  onTestFinished: TestContext["onTestFinished"];
  openai: FakeOpenAI;
  discord: FakeDiscord;
  data: TestDataDir;
  /** The bot's user id on the fake. */
  bot: string;
}

/** Fakes and a DATA_DIR of the test's own, closed (and any bot still running killed) when it finishes. */
async function world({ expect, onTestFinished }: TestContext): Promise<World> {
  const openai = await startFakeOpenAI();
  const discord = await startFakeDiscord();
  const data = await createTestDataDir();
  await registerCommands({ token: discord.botToken, apiUrl: discord.apiUrl });
  onTestFinished(async () => {
    await discord.close();
    await openai.close();
    await data.cleanup();
  });
  return { expect, onTestFinished, openai, discord, data, bot: discord.botUser.id };
}

/** `npm start` against the fakes; resolves once the bot is logged in on the fake gateway. */
async function startDiscordBot(w: World, env: Record<string, string> = {}): Promise<BotProcess> {
  const bot = startBot({
    ...env,
    OPENAI_API_KEY: w.openai.apiKey,
    OPENAI_BASE_URL: w.openai.baseUrl,
    DATA_DIR: w.data.dataDir,
    DISCORD_TOKEN: w.discord.botToken,
    DISCORD_API_URL: w.discord.apiUrl,
  });
  w.onTestFinished(() => void bot.child.kill("SIGKILL"));
  await bot.waitForOutput(/"msg":"discord ready"/);
  w.expect(w.discord.gateway.connections).toBe(1);
  return bot;
}

async function kill(w: World, bot: BotProcess): Promise<void> {
  bot.child.kill("SIGKILL");
  w.expect((await bot.exited).signal).toBe("SIGKILL");
}

/** Waits until the `afterNextCall` hooks have run, and so killed the bot. */
async function killedByHook(w: World, bot: BotProcess): Promise<void> {
  await waitUntil(() => w.discord.pendingAfterCalls().length === 0, "the kill point", 30_000);
  w.expect((await bot.exited).signal).toBe("SIGKILL");
}

/** The engine's line once a turn is delivered and recorded so (the adapter's own "delivered" comes before). */
const ENGINE_DELIVERED = /"attempt":\d+,"status":"\w+","redelivery":(true|false),"msg":"delivered"/;

/** The image a recorded provider request was answered with (the fake draws it from the prompt and `seq`). */
async function providerOutput(request: RecordedRequest | undefined): Promise<Buffer> {
  if (!request || (request.endpoint !== "images.generate" && request.endpoint !== "images.edit"))
    throw new Error(`not an Images API request: ${request?.endpoint}`);
  const kind = request.endpoint === "images.edit" ? "edit" : "generate";
  const fields = { ...request.body, ...Object.fromEntries(request.files.map((f) => [f.field, f])) };
  const params = validateImageParams(fields, kind, { multipart: kind === "edit" });
  return renderImage(params, `${params.prompt}|${request.seq}|0`);
}

/** Whether the provider has a request of this kind, read to its end (killing the bot earlier aborts its upload). */
const drawing = (w: World, endpoint: RecordedRequest["endpoint"]) =>
  w.openai.requests.some((r) => r.endpoint === endpoint && typeof r.body.prompt === "string");

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const filenames = (m: { attachments: Array<{ filename: string }> }) => m.attachments.map((a) => a.filename);
const uploads = (name: string) => (call: ApiCall) => call.files.some((f) => f.filename === name);
const succeeded = (w: World, route: string, since = 0) =>
  w.discord.calls.slice(since).filter((c) => c.route === route && c.status < 300);

/** /imagine as alice; resolves once Discord accepted the deferral ("thinking…"). */
async function imagine(w: World, prompt: string): Promise<InteractionHandle> {
  const handle = w.discord.slashCommand({ name: "imagine", options: { prompt } });
  w.expect((await handle.waitForAck(10_000)).type).toBe(5);
  return handle;
}

/**
 * After the restart: waits until the turn is recorded as delivered, then checks what Discord shows (the reply
 * edited into the result once, with the provider's bytes; one thread on it; nothing else posted), stops the bot
 * and checks the store agrees.
 */
async function expectImagineDeliveredOnce(
  w: World,
  bot: BotProcess,
  handle: InteractionHandle,
  attempts: number,
) {
  await bot.waitForOutput(ENGINE_DELIVERED, RECOVERY_MS);
  const { discord, expect } = w;
  const reply = handle.original as StoredMessage;
  expect(reply.deleted).toBe(false);
  expect(filenames(reply)).toEqual(["v1-1.png"]);
  expect(reply.components).not.toHaveLength(0);
  // Exactly one version of the reply shows the result: it was never edited into it twice, nor after it.
  expect(handle.edits.filter((v) => filenames(v).includes("v1-1.png"))).toHaveLength(1);
  expect(filenames(handle.edits.at(-1) ?? { attachments: [] })).toEqual(["v1-1.png"]);
  expect(succeeded(w, REPLY).filter(uploads("v1-1.png"))).toHaveLength(1);
  expect(handle.followUps).toEqual([]);
  expect(handle.rejected).toEqual([]);

  const generated = w.openai.requests.filter((r) => r.endpoint === "images.generate");
  const output = await providerOutput(generated.at(-1));
  expect(reply.attachments[0]?.bytes.equals(output)).toBe(true);

  // One thread, started on the reply; the channel holds only the reply, and the thread nothing of the bot's.
  expect(discord.threads(discord.channelId).map((t) => t.id)).toEqual([reply.id]);
  expect(succeeded(w, START_THREAD)).toHaveLength(1);
  expect(discord.messages(discord.channelId).map((m) => m.id)).toEqual([reply.id]);
  expect(discord.messages(reply.id).filter((m) => m.author.id === w.bot)).toEqual([]);

  const { history, threadByAlias } = await stopAndReadStore(w, bot, reply.id);
  expect(history.turns.map((t) => [t.status, t.attempts, t.deliveredAt instanceof Date])).toEqual([
    ["succeeded", attempts, true],
  ]);
  expect(history.images.map((i) => i.sha256)).toEqual([sha256(output)]);
  expect(history.thread.meta).toMatchObject({ resultMessageId: reply.id, threadId: reply.id });
  expect(threadByAlias).toBe(history.thread.key);
}

/** Stops the bot cleanly, then reads its only Discord thread from the store, and what the thread's alias names. */
async function stopAndReadStore(w: World, bot: BotProcess, threadId: string) {
  const { expect } = w;
  bot.child.kill("SIGTERM");
  expect((await bot.exited).code).toBe(0); // a planned stop (SIGTERM) exits 0
  const database = await openDatabase({ dataDir: w.data.dataDir });
  try {
    const store = new PostgresConversationStore(database.db);
    const threads = await store.listThreads("discord", 10);
    expect(threads).toHaveLength(1);
    const history = await store.history(threads[0]?.key ?? "");
    if (!history) throw new Error("no history");
    const alias = await store.findThread(discordThreadAlias(w.discord.guildId, threadId));
    return { history, threadByAlias: alias?.key };
  } finally {
    await database.close();
  }
}

describe.concurrent("discord: a bot killed mid-turn and started again", { timeout: 120_000 }, () => {
  it("killed while the provider draws a /imagine, it draws again and shows the result once", async (context) => {
    const w = await world(context);
    const { expect } = w;
    w.openai.setLatency(60_000);
    const first = await startDiscordBot(w);
    const handle = await imagine(w, "a lighthouse in a storm");
    await waitUntil(() => drawing(w, "images.generate"), "the provider call", 20_000);
    expect(w.openai.requests).toHaveLength(1);
    await kill(w, first);
    expect(filenames(handle.original as StoredMessage)).toEqual([]);
    expect(w.discord.threads()).toEqual([]);

    w.openai.setLatency(0);
    const second = await startDiscordBot(w);
    await expectImagineDeliveredOnce(w, second, handle, 2);
    // The turn ran again from the start: a second provider call, whose image is the one shown.
    expect(w.openai.requests.map((r) => r.endpoint)).toEqual(["images.generate", "images.generate"]);
  });

  it("killed right after the result reached the reply, it starts the thread and shows nothing twice", async (context) => {
    const w = await world(context);
    const { expect } = w;
    const first = await startDiscordBot(w);
    // Discord has edited the reply into the result; the bot dies before it hears so: the turn is not delivered.
    w.discord.afterNextCall(REPLY, () => kill(w, first), uploads("v1-1.png"));
    const handle = await imagine(w, "a paper lantern");
    await killedByHook(w, first);
    expect(filenames(handle.original as StoredMessage)).toEqual(["v1-1.png"]);
    expect(w.discord.threads()).toEqual([]);

    const callsBefore = w.discord.calls.length;
    const second = await startDiscordBot(w);
    await expectImagineDeliveredOnce(w, second, handle, 1);
    // Not drawn again: the saved result was delivered, after reading the reply back and leaving it alone.
    expect(w.openai.requests).toHaveLength(1);
    expect(succeeded(w, REPLY.replace("PATCH", "GET"), callsBefore)).toHaveLength(1);
    expect(succeeded(w, REPLY, callsBefore)).toEqual([]);
  });

  it("killed right after the thread was started on the result, it finds that thread", async (context) => {
    const w = await world(context);
    const { expect } = w;
    const first = await startDiscordBot(w);
    w.discord.afterNextCall(START_THREAD, () => kill(w, first));
    const handle = await imagine(w, "a red kite");
    await killedByHook(w, first);
    expect(w.discord.threads().map((t) => t.id)).toEqual([handle.original?.id]);

    const callsBefore = w.discord.calls.length;
    const second = await startDiscordBot(w);
    await expectImagineDeliveredOnce(w, second, handle, 1);
    expect(w.openai.requests).toHaveLength(1);
    // Starting it again was refused as already done (160004), which is how the bot learnt its id.
    const again = w.discord.calls.slice(callsBefore).filter((c) => c.route === START_THREAD);
    expect(again.map((c) => c.code)).toEqual([160004]);
  });
});

describe.concurrent("discord: a message in the thread, the bot killed mid-edit", { timeout: 120_000 }, () => {
  /** A /imagine shown with its thread (by a bot that keeps running), then a message in the thread. */
  async function editInThread(w: World, beforeAsking: (bot: BotProcess, threadId: string) => void) {
    const bot = await startDiscordBot(w);
    const handle = await imagine(w, "a quiet harbour");
    const reply = await handle.waitForOriginal((m) => showsResult(m), 30_000);
    const thread = await w.discord.waitFor(() => w.discord.channel(reply.id), 30_000, "the thread");
    await bot.waitForOutput(ENGINE_DELIVERED);
    beforeAsking(bot, thread.id);
    const asked = w.discord.userMessage({ channel: thread.id, content: "add a lighthouse" });
    return { bot, reply, threadId: thread.id, asked };
  }

  /** The bot's messages answering `asked`. */
  const answersTo = (w: World, threadId: string, asked: StoredMessage) =>
    w.discord
      .messages(threadId)
      .filter((m) => m.author.id === w.bot && m.messageReference?.message_id === asked.id);

  async function expectEditDeliveredOnce(
    w: World,
    bot: BotProcess,
    t: { reply: StoredMessage; threadId: string; asked: StoredMessage },
    attempts: number,
  ) {
    await bot.waitForOutput(ENGINE_DELIVERED, RECOVERY_MS);
    const { expect } = w;
    const [answer, ...others] = answersTo(w, t.threadId, t.asked);
    expect(others).toEqual([]);
    if (!answer) throw new Error("no answer");
    // The status message became the result, once; the thread holds nothing else of the bot's.
    expect(filenames(answer)).toEqual(["v2-1.png"]);
    expect(answer.history.filter((v) => filenames(v).includes("v2-1.png"))).toHaveLength(1);
    expect(filenames(answer.history.at(-1) ?? { attachments: [] })).toEqual(["v2-1.png"]);
    expect(w.discord.messages(t.threadId).filter((m) => m.author.id === w.bot)).toEqual([answer]);
    expect(w.discord.threads().map((th) => th.id)).toEqual([t.reply.id]);

    const edits = w.openai.requests.filter((r) => r.endpoint === "images.edit");
    expect(edits.at(-1)?.images[0]?.equals(t.reply.attachments[0]?.bytes ?? Buffer.alloc(0))).toBe(true);
    const output = await providerOutput(edits.at(-1));
    expect(answer.attachments[0]?.bytes.equals(output)).toBe(true);

    const { history } = await stopAndReadStore(w, bot, t.threadId);
    expect(
      history.turns.map((turn) => [turn.kind, turn.status, turn.attempts, turn.deliveredAt instanceof Date]),
    ).toEqual([
      ["generate", "succeeded", 1, true],
      ["edit", "succeeded", attempts, true],
    ]);
    expect(history.images.map((i) => i.sha256)).toContain(sha256(output));
    expect(history.images).toHaveLength(2);
    return answer;
  }

  it("killed while the provider draws the edit, its status message unrecorded, it finds that message and makes it the result", async (context) => {
    const w = await world(context);
    const { expect } = w;
    // The status message reaches Discord, but the bot dies before recording where it is. Its worker is drawing
    // meanwhile (the turn was queued before the status was posted), held by the provider: the kill lands mid-call.
    const t = await editInThread(w, (bot, threadId) => {
      w.openai.setLatency(60_000);
      w.discord.afterNextCall(
        POST,
        async () => {
          await waitUntil(() => drawing(w, "images.edit"), "the edit's provider call");
          await kill(w, bot);
        },
        (call) => call.path === `/channels/${threadId}/messages`,
      );
    });
    await killedByHook(w, t.bot);
    expect(answersTo(w, t.threadId, t.asked).map(filenames)).toEqual([[]]);

    w.openai.setLatency(0);
    const callsBefore = w.discord.calls.length;
    const second = await startDiscordBot(w);
    await expectEditDeliveredOnce(w, second, t, 2);
    expect(w.openai.requests.map((r) => r.endpoint)).toEqual([
      "images.generate",
      "images.edit",
      "images.edit",
    ]);
    // Found among the replies to the message (not posted again), and edited into the result.
    expect(succeeded(w, POST, callsBefore)).toEqual([]);
    expect(succeeded(w, EDIT, callsBefore).filter(uploads("v2-1.png"))).toHaveLength(1);
  });

  it("killed right after the status message became the result, it leaves it alone", async (context) => {
    const w = await world(context);
    const { expect } = w;
    // Discord has edited the status message into the result; the bot dies before it hears so.
    const t = await editInThread(w, (bot) =>
      w.discord.afterNextCall(EDIT, () => kill(w, bot), uploads("v2-1.png")),
    );
    await killedByHook(w, t.bot);
    expect(answersTo(w, t.threadId, t.asked).map(filenames)).toEqual([["v2-1.png"]]);

    const callsBefore = w.discord.calls.length;
    const second = await startDiscordBot(w);
    await expectEditDeliveredOnce(w, second, t, 1);
    expect(w.openai.requests.map((r) => r.endpoint)).toEqual(["images.generate", "images.edit"]);
    expect(succeeded(w, EDIT, callsBefore)).toEqual([]);
  });
});

/**
 * Kill -9 on the way into the inbox (`src/failpoints.ts` names the points): before an event is written, after
 * it is written but before Discord has its acknowledgement, after its turn is recorded but before the inbox
 * knew, and while a message's attachment downloads; and messages written while no bot was running. Each ends
 * shown once, or, when Discord never had an acknowledgement, with nothing recorded (Discord itself told the
 * person the bot did not respond).
 */
describe.concurrent("discord: the inbox, and a bot killed on the way in", { timeout: 120_000 }, () => {
  /** Both processes hold an event for a second only, so the second takes over what the first left at once. */
  const HOLD = { INBOX_HOLD_S: "1" };

  /** A /imagine shown with its thread; resolves with the thread, the reply and the first image's bytes. */
  async function firstImage(w: World, bot: BotProcess) {
    const handle = await imagine(w, "a quiet harbour");
    const reply = await handle.waitForOriginal((m) => showsResult(m), 30_000);
    const thread = await w.discord.waitFor(() => w.discord.channel(reply.id), 30_000, "the thread");
    await bot.waitForOutput(ENGINE_DELIVERED);
    return { reply, threadId: thread.id };
  }

  /** The edit asked in the thread was drawn once and shown once, as version 2, answering the message. */
  async function expectEditedOnce(w: World, bot: BotProcess, threadId: string, asked: StoredMessage) {
    const { expect } = w;
    const answer = await w.discord.waitFor(
      () =>
        w.discord
          .messages(threadId)
          .find(
            (m) =>
              m.author.id === w.bot &&
              m.messageReference?.message_id === asked.id &&
              filenames(m).includes("v2-1.png"),
          ),
      RECOVERY_MS,
      "the edit's result",
    );
    await bot.waitForOutput(ENGINE_DELIVERED);
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // a second take-over would show by now
    expect(w.discord.messages(threadId).filter((m) => m.author.id === w.bot)).toEqual([answer]);
    expect(w.openai.requests.filter((r) => r.endpoint === "images.edit")).toHaveLength(1);
    const { history } = await stopAndReadStore(w, bot, threadId);
    expect(history.turns.map((t) => [t.kind, t.status, t.deliveredAt instanceof Date])).toEqual([
      ["generate", "succeeded", true],
      ["edit", "succeeded", true],
    ]);
  }

  it("a /imagine killed before it reached the inbox is never acknowledged, and nothing is drawn", async (context) => {
    const w = await world(context);
    const { expect } = w;
    const first = await startDiscordBot(w, { ...HOLD, THREADCANVAS_KILL_AT: "inbox:received:command" });
    const handle = w.discord.slashCommand({ name: "imagine", options: { prompt: "a lost kite" } });
    await first.exited;
    expect(handle.ack).toBeNull(); // Discord tells the person the bot did not respond

    const second = await startDiscordBot(w, HOLD);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(w.openai.requests).toEqual([]);
    expect(w.discord.messages(w.discord.channelId)).toEqual([]);
    second.child.kill("SIGTERM");
    await second.exited;
  });

  it("a /imagine killed after it reached the inbox, before Discord had its answer, is drawn once after a restart", async (context) => {
    const w = await world(context);
    const { expect } = w;
    const first = await startDiscordBot(w, { ...HOLD, THREADCANVAS_KILL_AT: "inbox:recorded:command" });
    const handle = w.discord.slashCommand({ name: "imagine", options: { prompt: "a red kite" } });
    await first.exited;
    expect(handle.ack).toBeNull();

    const second = await startDiscordBot(w, HOLD);
    await second.waitForOutput(/"msg":"taking over an unfinished event"/, 30_000);
    await second.waitForOutput(ENGINE_DELIVERED, RECOVERY_MS);
    // The reply was never made (Discord refused it after 3 s): the result is a message in the channel, once.
    const shown = w.discord.messages(w.discord.channelId).filter((m) => m.author.id === w.bot);
    expect(shown.map(filenames)).toEqual([["v1-1.png"]]);
    expect(w.openai.requests.map((r) => r.endpoint)).toEqual(["images.generate"]);
  });

  it("a /imagine killed after its turn was recorded, before the inbox knew, is shown once", async (context) => {
    const w = await world(context);
    const { expect } = w;
    w.openai.setLatency(60_000);
    const first = await startDiscordBot(w, { ...HOLD, THREADCANVAS_KILL_AT: "inbox:worked:command" });
    const handle = await imagine(w, "a red kite");
    await first.exited;

    w.openai.setLatency(0);
    const second = await startDiscordBot(w, HOLD);
    await second.waitForOutput(ENGINE_DELIVERED, RECOVERY_MS);
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // a second take-over would show by now
    const reply = handle.original as StoredMessage;
    expect(filenames(reply)).toEqual(["v1-1.png"]);
    expect(handle.followUps).toEqual([]);
    expect(w.discord.threads().map((t) => t.id)).toEqual([reply.id]);
    const { history } = await stopAndReadStore(w, second, reply.id);
    expect(history.turns.map((t) => [t.status, t.deliveredAt instanceof Date])).toEqual([
      ["succeeded", true],
    ]);
  });

  for (const point of ["inbox:received:message", "inbox:recorded:message"]) {
    it(`a message in the thread killed at ${point} is edited once after a restart`, async (context) => {
      const w = await world(context);
      const first = await startDiscordBot(w, { ...HOLD, THREADCANVAS_KILL_AT: point });
      const { threadId } = await firstImage(w, first);
      const asked = w.discord.userMessage({ channel: threadId, content: "add a lighthouse" });
      await first.exited;

      const second = await startDiscordBot(w, HOLD);
      await expectEditedOnce(w, second, threadId, asked);
    });
  }

  it("a message killed while its attachment downloads is edited once after a restart", async (context) => {
    const w = await world(context);
    const { expect } = w;
    const first = await startDiscordBot(w, HOLD);
    const { threadId } = await firstImage(w, first);
    w.discord.stallDownloads(1);
    const asked = w.discord.userMessage({
      channel: threadId,
      content: "add this lighthouse",
      attachments: [{ bytes: await makePng(64, 64, "lighthouse"), filename: "lighthouse.png" }],
    });
    await waitUntil(() => w.discord.downloads.length === 1, "the download to start", 30_000);
    await kill(w, first);

    const second = await startDiscordBot(w, HOLD);
    await expectEditedOnce(w, second, threadId, asked);
    const edit = w.openai.requests.find((r) => r.endpoint === "images.edit");
    expect(edit?.images).toHaveLength(2); // the image, and the attachment
  });

  it("messages written in the thread while no bot was running are read back and edited once, in order", async (context) => {
    const w = await world(context);
    const { expect } = w;
    const first = await startDiscordBot(w, HOLD);
    const { threadId } = await firstImage(w, first);
    first.child.kill("SIGTERM");
    await first.exited;
    const asked = w.discord.userMessage({ channel: threadId, content: "add a lighthouse" });
    const then = w.discord.userMessage({ channel: threadId, content: "make it night" });

    const second = await startDiscordBot(w, HOLD);
    const edits = () =>
      w.openai.requests.filter((r) => r.endpoint === "images.edit" && typeof r.body.prompt === "string");
    await waitUntil(() => edits().length === 2, "both edits, read to their end", 30_000);
    await second.waitForOutput(/"read":\d+,"msg":"read back the messages written in our threads"/);
    expect(edits().map((r) => r.body.prompt)).toEqual(["add a lighthouse", "make it night"]);
    const answered = await w.discord.waitFor(
      () => {
        const answers = w.discord.messages(threadId).filter((m) => m.author.id === w.bot);
        return answers.length === 2 && answers.every((m) => filenames(m).length === 1) ? answers : undefined;
      },
      RECOVERY_MS,
      "both results",
    );
    expect(answered.map((m) => m.messageReference?.message_id)).toEqual([asked.id, then.id]);
  });
});
