import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import S3rver from "s3rver";
import { afterAll, beforeAll, expect, it, onTestFailed, onTestFinished } from "vitest";
import { registerCommands } from "../adapters/discord/setup.ts";
import { PostgresConversationStore } from "../src/store/conversation-store.ts";
import { type FakeDiscord, startFakeDiscord } from "./fakes/discord-server.ts";
import { type FakeOpenAI, startFakeOpenAI } from "./fakes/openai-server.ts";
import { type FakeSlack, type SlackMessage, startFakeSlack } from "./fakes/slack-server.ts";
import { type BotProcess, startBot } from "./support/bot-process.ts";
import { openTestDatabase, type TestDatabase } from "./support/database.ts";
import { showsResult } from "./support/discord-results.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * Two `npm start` processes on one PostgreSQL database and one S3 bucket, each with its own DATA_DIR, as two
 * machines behind one load balancer: commands and replies are spread over both, and each turn runs in whichever
 * process the queue hands it to. Every command gets one root message, every turn one upload and one result, and
 * an edit drawn in one process starts from the exact bytes the other stored.
 *
 * PostgreSQL only (`*.pg.test.ts`): two processes cannot share an embedded PGlite database.
 */
const CHANNEL = "C0001";
/** Threads spread over channels, as in a team: Slack allows about one message a second per channel. */
const CHANNELS = [CHANNEL, "C0002", "C0003", "C0004"];
const channelOf = (i: number) => CHANNELS[i % CHANNELS.length] ?? CHANNEL;
const BUCKET = "threadcanvas-shared";
const COMMANDS = 12;

let openai: FakeOpenAI;
let slack: FakeSlack;
let discord: FakeDiscord;
let s3: S3rver;
let s3Dir = "";
let s3Endpoint = "";
let database: TestDatabase;
const dataDirs: string[] = [];
const bots: BotProcess[] = [];

beforeAll(async () => {
  const databaseUrl = process.env.TEST_DATABASE_URL?.trim();
  if (!databaseUrl) throw new Error("this suite needs TEST_DATABASE_URL (the pg project sets it)");
  openai = await startFakeOpenAI();
  slack = await startFakeSlack();
  discord = await startFakeDiscord();
  await registerCommands({ token: discord.botToken, apiUrl: discord.apiUrl });
  s3Dir = await mkdtemp(path.join(os.tmpdir(), "tc-s3-"));
  s3 = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: s3Dir,
    configureBuckets: [{ name: BUCKET }],
  });
  s3Endpoint = `http://127.0.0.1:${(await s3.run()).port}`;
  database = await openTestDatabase();
});

afterAll(async () => {
  for (const bot of bots) bot.child.kill("SIGKILL");
  await Promise.all(bots.map((bot) => bot.exited));
  await database?.close();
  await s3?.close();
  await slack?.close();
  await discord?.close();
  await openai?.close();
  for (const dir of [s3Dir, ...dataDirs]) await rm(dir, { recursive: true, force: true });
});

/**
 * When a test fails, the processes' warnings and errors say why; when it ends, its processes stop (a process left
 * running would take the next test's turns from the shared queue).
 */
function stopProcessesAfterTest(): void {
  onTestFinished(async () => {
    for (const bot of bots) bot.child.kill("SIGKILL");
    await Promise.all(bots.map((bot) => bot.exited));
  });
  onTestFailed(() => {
    for (const [i, bot] of bots.entries()) {
      const problems = bot
        .stdout()
        .split("\n")
        .filter((line) => /"level":(40|50|60)/.test(line));
      console.error(`process ${i}:\n${problems.join("\n")}\n${bot.stderr()}`);
    }
  });
}

/** One process sharing the database and the bucket, with its own DATA_DIR; `env` adds its role and platforms. */
async function spawnProcess(env: Record<string, string>): Promise<BotProcess> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "tc-proc-"));
  dataDirs.push(dataDir);
  const bot = startBot({
    OPENAI_API_KEY: openai.apiKey,
    OPENAI_BASE_URL: openai.baseUrl,
    DATABASE_URL: database.databaseUrl ?? "",
    DATA_DIR: dataDir,
    BLOB_STORE: "s3",
    S3_BUCKET: BUCKET,
    S3_ENDPOINT: s3Endpoint,
    S3_REGION: "us-east-1",
    S3_FORCE_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
    ...env,
  });
  bots.push(bot);
  await bot.waitForOutput(/"msg":"threadcanvas running"/);
  return bot;
}

const SLACK_HTTP = () => ({
  SLACK_BOT_TOKEN: slack.botToken,
  SLACK_API_URL: slack.apiUrl,
  SLACK_SIGNING_SECRET: slack.signingSecret,
});

/** A ROLE=all process with Slack over HTTP on a free port; resolves with its events URL. */
async function startProcess(): Promise<{ bot: BotProcess; url: string }> {
  const bot = await spawnProcess(SLACK_HTTP());
  const port = bot.stdout().match(/"port":(\d+),"msg":"slack adapter started"/)?.[1];
  return { bot, url: `http://127.0.0.1:${port}/slack/events` };
}

const sha256 = (bytes: Buffer | null) =>
  createHash("sha256")
    .update(bytes ?? "")
    .digest("hex");
/** Our top-level messages (the /imagine roots), with the channel each is in. */
const roots = (): Array<SlackMessage & { channel: string }> =>
  CHANNELS.flatMap((channel) =>
    slack
      .messages(channel)
      .filter((m) => m.user === slack.botUserId)
      .map((m) => ({ ...m, channel })),
  );
const rootOf = (i: number) => roots().filter((m) => m.text.includes(`poster ${i} `));
const uploadsUnder = (rootTs: string) => slack.uploads.filter((u) => u.completed && u.thread_ts === rootTs);
const resultsUnder = (channel: string, rootTs: string) =>
  slack.messages(channel, rootTs).filter((m) => m.user === slack.botUserId && /^Version \d/.test(m.text));

it("two processes on one database: one root per command, each turn once, edits across processes", {
  timeout: 300_000,
}, async () => {
  stopProcessesAfterTest();
  for (const id of CHANNELS.slice(1)) slack.addChannel({ id, name: `team-${id.toLowerCase()}` });
  const processes = [await startProcess(), await startProcess()];
  const via = (i: number) => processes[i % 2]?.url ?? "";

  // Every command at once, half to each process: the root is posted by the process that took the command while
  // the job may already run in the other, which needs that root for its status and its upload. Slack refuses
  // the first posts for a second (rate limited, as under a burst in one channel): the window in which the other
  // process finds no root, neither recorded nor in the channel.
  slack.failNext(
    "chat.postMessage",
    ...Array.from({ length: COMMANDS }, () => ({ rateLimited: true as const, retryAfterSeconds: 1 })),
  );
  const acks = await Promise.all(
    Array.from({ length: COMMANDS }, (_, i) =>
      slack.sendSlashCommand(via(i), {
        text: `poster ${i} for the fair`,
        channel_id: channelOf(i),
        user_id: "U0001",
      }),
    ),
  );
  expect(acks.every((ack) => ack.ok)).toBe(true);
  const done = (root: { channel: string; ts: string }, versions: number) =>
    uploadsUnder(root.ts).length >= versions && resultsUnder(root.channel, root.ts).length >= versions;
  await waitUntil(
    () =>
      roots().length > COMMANDS || (roots().length === COMMANDS && roots().every((root) => done(root, 1))),
    "every first image",
    120_000,
  );
  expect(roots()).toHaveLength(COMMANDS);

  // Two rounds of replies, each sent to the process that did not take the previous message of its thread.
  for (const round of [1, 2]) {
    const sent = await Promise.all(
      Array.from({ length: COMMANDS }, (_, i) => {
        const root = rootOf(i)[0] as SlackMessage;
        const reply = slack.userMessage({
          channel: channelOf(i),
          thread_ts: root.ts,
          text: `thread ${i} step ${round}`,
        });
        return slack.sendEvent(via(i + round), reply);
      }),
    );
    expect(sent.every((ack) => ack.ok)).toBe(true);
    await waitUntil(
      () => roots().every((root) => done(root, round + 1)),
      `every reply of round ${round}`,
      120_000,
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // a second root or result would show by now

  expect(roots()).toHaveLength(COMMANDS);
  for (let i = 0; i < COMMANDS; i++) {
    const [root, ...more] = rootOf(i);
    expect(more, `thread ${i} has one root`).toEqual([]);
    const rootTs = root?.ts ?? "";
    expect(uploadsUnder(rootTs).map((u) => u.filename)).toEqual(["v1-1.png", "v2-1.png", "v3-1.png"]);
    expect(resultsUnder(channelOf(i), rootTs).map((m) => m.text.match(/^Version \d+/)?.[0])).toEqual([
      "Version 1",
      "Version 2",
      "Version 3",
    ]);
    expect(slack.message(channelOf(i), rootTs)?.text).toContain("Done");
    // Each edit was sent the exact bytes of the version before it, whichever process stored them.
    const uploaded = uploadsUnder(rootTs).map((u) => sha256(u.bytes));
    for (const step of [1, 2]) {
      const edit = openai.requests.filter(
        (r) => r.endpoint === "images.edit" && String(r.body.prompt).includes(`thread ${i} step ${step}`),
      );
      expect(edit).toHaveLength(1);
      expect(sha256(edit[0]?.images[0] ?? null)).toBe(uploaded[step - 1]);
    }
  }
  expect(openai.requests.filter((r) => r.endpoint === "images.generate")).toHaveLength(COMMANDS);

  // The store agrees: every turn succeeded and was recorded as delivered (once its status line says done, which
  // waits out Slack's chat.update limits), and both processes ran turns.
  const store = new PostgresConversationStore(database.db);
  const histories = async () =>
    Promise.all((await store.listThreads("slack", 100)).map((thread) => store.history(thread.key)));
  await waitUntil(
    async () => (await histories()).every((h) => h?.turns.every((t) => t.deliveredAt instanceof Date)),
    "every turn recorded as delivered",
    60_000,
  );
  const all = await histories();
  expect(all).toHaveLength(COMMANDS);
  for (const history of all)
    expect(history?.turns.map((t) => t.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
  for (const { bot } of processes) expect(bot.stdout()).toMatch(/"msg":"delivered"/);
});

/** The engine's line once a turn is delivered and recorded so. */
const ENGINE_DELIVERED = /"attempt":\d+,"status":"\w+","redelivery":(true|false),"msg":"delivered"/g;

it("one ingress and two workers: the workers open no gateway session, run every turn and deliver on both platforms", {
  timeout: 300_000,
}, async () => {
  stopProcessesAfterTest();
  slack.reset();
  openai.reset();
  const platforms = {
    ...SLACK_HTTP(),
    DISCORD_TOKEN: discord.botToken,
    DISCORD_API_URL: discord.apiUrl,
  };
  const ingress = await spawnProcess({ ...platforms, ROLE: "ingress" });
  const slackUrl = `http://127.0.0.1:${ingress.stdout().match(/"port":(\d+),"msg":"slack adapter started"/)?.[1]}`;
  const workers = [
    await spawnProcess({ ...platforms, ROLE: "worker" }),
    await spawnProcess({ ...platforms, ROLE: "worker" }),
  ];
  for (const worker of workers) {
    expect(worker.stdout()).toMatch(/"msg":"slack adapter started \(delivery only\)"/);
    expect(worker.stdout()).toMatch(/"msg":"discord ready \(delivery only, no gateway session\)"/);
  }
  // Discord sees one gateway session: the ingress's.
  expect(discord.gateway.identifies).toHaveLength(1);
  expect(discord.gateway.connections).toBe(1);

  // Each process says it is ready, naming what it checked; a worker serves /healthz and /metrics on PORT.
  const workerPorts = workers.map((w) => w.stdout().match(/"port":(\d+),"msg":"http server listening"/)?.[1]);
  for (const base of [slackUrl, ...workerPorts.map((port) => `http://127.0.0.1:${port}`)]) {
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      status: "ok",
      checks: { database: "up", queue: "up", slack: "up", discord: "up" },
    });
  }

  const discordAsks = [0, 1, 2].map((i) =>
    discord.slashCommand({ name: "imagine", options: { prompt: `kite ${i}` } }),
  );
  for (const ask of discordAsks) expect((await ask.waitForAck(10_000)).type).toBe(5);
  const slackAcks = await Promise.all(
    [0, 1, 2].map((i) =>
      slack.sendSlashCommand(`${slackUrl}/slack/events`, {
        text: `lantern ${i}`,
        channel_id: CHANNEL,
        user_id: "U0001",
      }),
    ),
  );
  expect(slackAcks.every((ack) => ack.ok)).toBe(true);

  // Discord: each reply becomes its result; a message in the thread on it is edited from it.
  const replies = await Promise.all(
    discordAsks.map((ask) =>
      waitUntil(() => (ask.original && showsResult(ask.original) ? ask.original : null), "a result", 60_000),
    ),
  );
  const answers = await Promise.all(
    replies.map(async (reply, i) => {
      await waitUntil(
        () => discord.threads().some((t) => t.id === reply.id),
        "the thread on the result",
        30_000,
      );
      const asked = discord.userMessage({ channel: reply.id, content: `kite ${i}, now at night` });
      return waitUntil(
        () =>
          discord
            .messages(reply.id)
            .find(
              (m) =>
                m.author.id === discord.botUser.id &&
                m.messageReference?.message_id === asked.id &&
                showsResult(m),
            ),
        "the edit's result",
        60_000,
      );
    }),
  );
  expect(answers.map((m) => m.attachments.map((a) => a.filename))).toEqual([
    ["v2-1.png"],
    ["v2-1.png"],
    ["v2-1.png"],
  ]);
  expect(discord.threads().filter((t) => replies.some((r) => r.id === t.id))).toHaveLength(3);

  // Slack: one root per command, each with its image and result.
  await waitUntil(() => [0, 1, 2].every((i) => lanternDone(i)), "every Slack result", 60_000);
  for (const i of [0, 1, 2]) {
    const lanternRoots = roots().filter((m) => m.text.includes(`lantern ${i}`));
    expect(lanternRoots).toHaveLength(1);
    expect(uploadsUnder(lanternRoots[0]?.ts ?? "").map((u) => u.filename)).toEqual(["v1-1.png"]);
  }

  // Every turn ran in a worker, none in the ingress.
  const ran = () => workers.map((w) => w.stdout().match(ENGINE_DELIVERED)?.length ?? 0);
  await waitUntil(
    () => ran().reduce((sum, n) => sum + n, 0) >= 9,
    "every turn recorded as delivered",
    30_000,
  );
  expect(ran().reduce((sum, n) => sum + n, 0)).toBe(9);
  expect(ingress.stdout().match(ENGINE_DELIVERED)).toBeNull();
  const metrics = await Promise.all(
    workerPorts.map((port) => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text())),
  );
  const succeeded = (text: string, platform: string) =>
    [
      ...text.matchAll(
        new RegExp(
          `threadcanvas_turns_total\\{[^}]*platform="${platform}"[^}]*outcome="succeeded"[^}]*\\} (\\d+)`,
          "g",
        ),
      ),
    ].reduce((sum, m) => sum + Number(m[1]), 0);
  expect(metrics.reduce((sum, text) => sum + succeeded(text, "discord"), 0)).toBe(6);
  expect(metrics.reduce((sum, text) => sum + succeeded(text, "slack"), 0)).toBe(3);
});

const lanternDone = (i: number) => {
  const root = roots().find((m) => m.text.includes(`lantern ${i}`));
  return (
    root !== undefined && uploadsUnder(root.ts).length === 1 && resultsUnder(CHANNEL, root.ts).length === 1
  );
};
