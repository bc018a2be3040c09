import { createHash } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { openDatabase } from "../src/store/database.ts";
import { makePng } from "./fakes/images.ts";
import { type FakeOpenAI, startFakeOpenAI } from "./fakes/openai-server.ts";
import { type FakeSlack, type SlackMessage, startFakeSlack } from "./fakes/slack-server.ts";
import { type BotProcess, startBot } from "./support/bot-process.ts";
import { createTestDataDir, type TestDataDir } from "./support/database.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * `npm start` with Slack configured, killed with SIGKILL at the moments that matter, then started again: while
 * the provider is drawing, right after the image was shared into the thread but before the bot knew, right after
 * the root message was posted. Or stopped with SIGTERM: it finishes what runs within SHUTDOWN_GRACE_S and hands
 * back the rest. Every way, the thread ends with one root message, one upload, one result message, and the
 * status says done.
 */
const CHANNEL = "C0001";
let openai: FakeOpenAI;
let slack: FakeSlack;
let data: TestDataDir;
const bots: BotProcess[] = [];

beforeAll(async () => {
  openai = await startFakeOpenAI();
  slack = await startFakeSlack();
});
beforeEach(async () => {
  openai.reset();
  slack.reset();
  await data?.cleanup();
  data = await createTestDataDir();
});
afterAll(async () => {
  for (const bot of bots) bot.child.kill("SIGKILL");
  await slack?.close();
  await openai?.close();
  await data?.cleanup();
});

/**
 * Starts the bot over HTTP on a free port; resolves with its /slack/events URL once it listens. With
 * `socket`, in Socket Mode instead (the URL is then ""), once it is connected.
 */
async function startSlackBot(
  env: Record<string, string> = {},
  mode: "http" | "socket" = "http",
): Promise<{ bot: BotProcess; url: string }> {
  const connections = slack.socket.connections;
  const bot = startBot({
    ...env,
    OPENAI_API_KEY: openai.apiKey,
    OPENAI_BASE_URL: openai.baseUrl,
    DATA_DIR: data.dataDir,
    SLACK_BOT_TOKEN: slack.botToken,
    SLACK_API_URL: slack.apiUrl,
    ...(mode === "http"
      ? { SLACK_SIGNING_SECRET: slack.signingSecret }
      : { SLACK_APP_TOKEN: slack.appToken }),
  });
  bots.push(bot);
  await bot.waitForOutput(/"msg":"slack adapter started"/);
  if (mode === "socket") {
    await waitUntil(() => slack.socket.connections > connections, "the Socket Mode connection");
    return { bot, url: "" };
  }
  const port = bot.stdout().match(/"port":(\d+),"msg":"slack adapter started"/)?.[1];
  return { bot, url: `http://127.0.0.1:${port}/slack/events` };
}

async function kill(bot: BotProcess): Promise<void> {
  bot.child.kill("SIGKILL");
  expect((await bot.exited).signal).toBe("SIGKILL");
}

async function imagine(url: string, text: string): Promise<void> {
  const ack = await slack.sendSlashCommand(url, { text, channel_id: CHANNEL, user_id: "U0001" });
  expect(ack.ok).toBe(true);
}

const roots = () => slack.messages(CHANNEL).filter((m) => m.user === slack.botUserId);

/** After the restart: waits until the turn is recorded as delivered, then checks what the channel shows. */
async function expectDeliveredOnce(bot: BotProcess): Promise<void> {
  await bot.waitForOutput(/"msg":"delivered"/, 90_000);
  expect(roots()).toHaveLength(1);
  const root = roots()[0] as SlackMessage;
  const completed = slack.uploads.filter((u) => u.completed && u.thread_ts === root.ts);
  expect(completed.map((u) => u.filename)).toEqual(["v1-1.png"]);
  const replies = slack.messages(CHANNEL, root.ts).filter((m) => m.ts !== root.ts);
  const results = replies.filter((m) => m.text.startsWith("Version 1"));
  expect(results).toHaveLength(1);
  expect(replies.filter((m) => m.files?.length)).toHaveLength(1);
  expect(slack.message(CHANNEL, root.ts)?.text).toContain("Done");

  // Stopped cleanly, the store agrees: one turn, delivered, and the uploaded bytes are its stored image.
  bot.child.kill("SIGTERM");
  expect((await bot.exited).code).toBe(0); // a planned stop (SIGTERM) exits 0
  const database = await openDatabase({ dataDir: data.dataDir });
  try {
    const store = new PostgresConversationStore(database.db);
    const [thread] = await store.listThreads("slack", 10);
    const history = await store.history(thread?.key ?? "");
    expect(history?.turns.map((t) => t.status)).toEqual(["succeeded"]);
    expect(history?.turns[0]?.deliveredAt).toBeInstanceOf(Date);
    expect(history?.images).toHaveLength(1);
    const uploaded = createHash("sha256")
      .update(completed[0]?.bytes ?? "")
      .digest("hex");
    expect(history?.images[0]?.sha256).toBe(uploaded);
  } finally {
    await database.close();
  }
}

it("a bot killed while the provider draws finishes the turn once after a restart", {
  timeout: 120_000,
}, async () => {
  openai.setLatency(60_000);
  const first = await startSlackBot();
  // Bolt's HTTP server answers the operational routes beside /slack/events.
  const health = await fetch(first.url.replace("/slack/events", "/healthz"));
  expect(health.status).toBe(200);
  await imagine(first.url, "a lighthouse in a storm");
  await waitUntil(
    () => openai.requests.length === 1 && roots().length === 1,
    "the root message and the provider call",
    30_000,
  );
  await kill(first.bot);
  expect(slack.uploads).toHaveLength(0);

  openai.setLatency(0);
  const second = await startSlackBot();
  await expectDeliveredOnce(second.bot);
  expect(openai.requests.filter((r) => r.endpoint === "images.generate")).toHaveLength(2);
  expect(second.bot.stdout()).not.toMatch(/redelivery: read back/);
});

it("a bot killed just after its upload was shared posts nothing twice after a restart", {
  timeout: 120_000,
}, async () => {
  const first = await startSlackBot();
  // Slack has shared the file into the thread; the bot dies before it hears so, so the turn is not delivered.
  slack.afterNextCall("files.completeUploadExternal", () => kill(first.bot));
  await imagine(first.url, "a paper lantern");
  await first.bot.exited;
  expect(slack.uploads.filter((u) => u.completed)).toHaveLength(1);

  const second = await startSlackBot();
  await expectDeliveredOnce(second.bot);
  // The turn was not drawn again: its saved result was delivered, after reading back what the thread had.
  expect(openai.requests).toHaveLength(1);
  expect(second.bot.stdout()).toMatch(/"files":1,"closed":false,"msg":"redelivery: read back the thread"/);
});

it("a bot killed just after posting the root message does not post a second one", {
  timeout: 120_000,
}, async () => {
  openai.setLatency(60_000);
  const first = await startSlackBot();
  // The command is acknowledged and recorded; the root reaches Slack, but the bot dies before recording its ts.
  slack.afterNextCall("chat.postMessage", () => kill(first.bot));
  await imagine(first.url, "a red kite");
  await first.bot.exited;
  expect(roots()).toHaveLength(1);

  openai.setLatency(0);
  const second = await startSlackBot();
  await expectDeliveredOnce(second.bot);
  expect(slack.calls.filter((c) => c.method === "conversations.history")).not.toHaveLength(0);
});

describe("SIGTERM", () => {
  it("lets a turn in progress finish and be delivered, then exits 0", { timeout: 120_000 }, async () => {
    openai.setLatency(2_000);
    const { bot, url } = await startSlackBot();
    await imagine(url, "a lighthouse in a storm");
    await waitUntil(() => openai.requests.length === 1, "the provider call", 30_000);
    bot.child.kill("SIGTERM");
    expect((await bot.exited).code).toBe(0);
    // Delivered before the process left: the upload and the result message are in the thread.
    expect(slack.uploads.filter((u) => u.completed).map((u) => u.filename)).toEqual(["v1-1.png"]);
    expect(bot.stdout()).toMatch(/"msg":"delivered"/);
    expect(bot.stdout()).toMatch(/"msg":"stopped"/);
  });

  it("hands back a turn still drawing when the grace runs out; it finishes once after a restart", {
    timeout: 120_000,
  }, async () => {
    openai.setLatency(60_000);
    const first = await startSlackBot({ SHUTDOWN_GRACE_S: "1" });
    await imagine(first.url, "a red kite");
    await waitUntil(() => openai.requests.length === 1, "the provider call", 30_000);
    const stopping = Date.now();
    first.bot.child.kill("SIGTERM");
    expect((await first.bot.exited).code).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(20_000);
    expect(slack.uploads).toHaveLength(0);

    openai.setLatency(0);
    const second = await startSlackBot();
    await expectDeliveredOnce(second.bot);
  });

  it("a turn whose image arrived but whose delivery hangs is handed back without buying it again", {
    timeout: 120_000,
  }, async () => {
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Slack stops answering the upload: the turn is drawn and stored, and its delivery hangs.
    slack.afterNextCall("files.getUploadURLExternal", () => held);
    const first = await startSlackBot({ SHUTDOWN_GRACE_S: "1" });
    await imagine(first.url, "a paper lantern");
    await waitUntil(
      () => slack.calls.some((c) => c.method === "files.getUploadURLExternal"),
      "the upload to start",
      30_000,
    );
    first.bot.child.kill("SIGTERM");
    expect((await first.bot.exited).code).toBe(0);
    release();

    const second = await startSlackBot();
    await expectDeliveredOnce(second.bot);
    expect(openai.requests).toHaveLength(1);
  });
});

/**
 * Kill -9 at each step between "Slack sent it" and "the turn is recorded" (`src/failpoints.ts` names the
 * points): before the event is in the inbox, after it is in but before Slack is answered, while it is being
 * worked (an attachment download that hangs), and after its turn is recorded but before the inbox knows. Each
 * request ends delivered once, or, when Slack never had its acknowledgement, Slack told the person it failed.
 */
describe("the inbox", () => {
  /** Both processes hold an event for a second only, so the second takes over what the first left at once. */
  const HOLD = { INBOX_HOLD_S: "1" };

  /** A thread with its first image delivered; returns its root ts. */
  async function firstImage(url: string, mode: "http" | "socket"): Promise<string> {
    if (mode === "http") await imagine(url, "a paper boat");
    else
      expect(
        (await slack.socket.sendSlashCommand({ text: "a paper boat", channel_id: CHANNEL, user_id: "U0001" }))
          .ok,
      ).toBe(true);
    const root = await waitUntil(() => roots()[0], "the root message", 30_000);
    await waitUntil(() => slack.message(CHANNEL, root.ts)?.text.includes("Done"), "the first image", 30_000);
    return root.ts;
  }

  const uploadsUnder = (rootTs: string) =>
    slack.uploads.filter((u) => u.completed && u.thread_ts === rootTs).map((u) => u.filename);

  /** The reply was drawn once and shown once, as version 2. */
  async function expectEditedOnce(bot: BotProcess, rootTs: string): Promise<void> {
    await waitUntil(() => uploadsUnder(rootTs).length >= 2, "the edit's upload", 60_000);
    await bot.waitForOutput(/"msg":"delivered"/, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // a second take-over would show by now
    expect(uploadsUnder(rootTs)).toEqual(["v1-1.png", "v2-1.png"]);
    expect(openai.requests.filter((r) => r.endpoint === "images.edit")).toHaveLength(1);
    expect(roots()).toHaveLength(1);
  }

  it("a command killed before it reached the inbox is not acknowledged, and nothing is drawn", {
    timeout: 60_000,
  }, async () => {
    const first = await startSlackBot({ ...HOLD, THREADCANVAS_KILL_AT: "inbox:received:command" });
    const ack = await slack.sendSlashCommand(first.url, {
      text: "a lost kite",
      channel_id: CHANNEL,
      user_id: "U0001",
    });
    expect(ack.ok).toBe(false); // Slack tells the person the command failed
    await first.bot.exited;

    const second = await startSlackBot(HOLD);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(roots()).toHaveLength(0);
    expect(openai.requests).toHaveLength(0);
    second.bot.child.kill("SIGTERM");
    await second.bot.exited;
  });

  it("a command killed after it reached the inbox, before Slack had its answer, is drawn once after a restart", {
    timeout: 120_000,
  }, async () => {
    const first = await startSlackBot({ ...HOLD, THREADCANVAS_KILL_AT: "inbox:recorded:command" });
    const ack = await slack.sendSlashCommand(first.url, {
      text: "a red kite",
      channel_id: CHANNEL,
      user_id: "U0001",
    });
    expect(ack.ok).toBe(false);
    await first.bot.exited;

    const second = await startSlackBot(HOLD);
    await second.bot.waitForOutput(/"msg":"taking over an unfinished event"/, 30_000);
    await expectDeliveredOnce(second.bot);
  });

  it("a command killed after its turn was recorded, before the inbox knew, is drawn once", {
    timeout: 120_000,
  }, async () => {
    openai.setLatency(60_000);
    const first = await startSlackBot({ ...HOLD, THREADCANVAS_KILL_AT: "inbox:worked:command" });
    await imagine(first.url, "a red kite");
    await first.bot.exited;

    openai.setLatency(0);
    const second = await startSlackBot(HOLD);
    await expectDeliveredOnce(second.bot);
  });

  for (const mode of ["http", "socket"] as const) {
    const send = (url: string, event: ReturnType<FakeSlack["userMessage"]>, retryOf?: { eventId: string }) =>
      mode === "http"
        ? slack.sendEvent(url, event, retryOf ? { eventId: retryOf.eventId, retryNum: 1 } : {})
        : slack.socket.sendEvent(
            event,
            retryOf
              ? { eventId: retryOf.eventId, retryAttempt: 1, retryReason: "timeout" }
              : { ackTimeoutMs: 1_500 },
          );

    describe(mode === "http" ? "over HTTP" : "in Socket Mode", () => {
      // Before the insert, Slack's retry is the first the bot sees of the reply; after it, the retry finds the
      // row, and the restarted bot takes the reply over from the inbox.
      for (const point of ["inbox:received:message", "inbox:recorded:message"]) {
        it(`a reply killed at ${point} is edited once, though Slack sends it again`, {
          timeout: 120_000,
        }, async () => {
          const first = await startSlackBot({ ...HOLD, THREADCANVAS_KILL_AT: point }, mode);
          const rootTs = await firstImage(first.url, mode);
          const reply = slack.userMessage({
            channel: CHANNEL,
            user: "U0002",
            text: "add a frog",
            thread_ts: rootTs,
          });
          const sent = await send(first.url, reply);
          expect(sent.ok).toBe(false);
          await first.bot.exited;

          const second = await startSlackBot(HOLD, mode);
          expect((await send(second.url, reply, sent)).ok).toBe(true);
          await expectEditedOnce(second.bot, rootTs);
        });
      }

      it("a reply acknowledged, killed while its attachment downloads, is edited once after a restart", {
        timeout: 120_000,
      }, async () => {
        const first = await startSlackBot(HOLD, mode);
        const rootTs = await firstImage(first.url, mode);
        const file = slack.addUserFile({
          bytes: await makePng(64, 64, "frog"),
          name: "frog.png",
          mimetype: "image/png",
        });
        slack.failNext("download", { hang: true });
        const reply = slack.userMessage({
          channel: CHANNEL,
          user: "U0002",
          text: "add this frog",
          thread_ts: rootTs,
          files: [file],
        });
        expect((await send(first.url, reply)).ok).toBe(true);
        await waitUntil(() => slack.downloads.length === 1, "the download to start");
        await kill(first.bot);

        const second = await startSlackBot(HOLD, mode);
        await expectEditedOnce(second.bot, rootTs);
        const edit = openai.requests.find((r) => r.endpoint === "images.edit");
        expect(edit?.files.filter((f) => f.field === "image[]")).toHaveLength(2); // the image, and the frog
      });
    });
  }
});
