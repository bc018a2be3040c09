import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SlackAdapter } from "../adapters/slack/adapter.ts";
import { slackThreadKey } from "../adapters/slack/threads.ts";
import { makePng } from "./fakes/images.ts";
import {
  type AckRecord,
  type EventResult,
  type FakeSlack,
  type SlackEvent,
  type SlashCommandInput,
  type SlashCommandResult,
  startFakeSlack,
} from "./fakes/slack-server.ts";
import { type EngineHarness, startEngineHarness } from "./support/engine-harness.ts";
import { waitUntil } from "./support/wait.ts";

/**
 * Slack end to end, over HTTP and over Socket Mode: the real Bolt app and the real engine, against the fake
 * Slack (signed requests, the 3-second rule, files.uploadV2) and the fake OpenAI. The fake echoes the bot's own
 * posts back as events, as Slack does, so a bot that reacted to itself would show up as extra turns.
 */
const CHANNEL = "C0001";

/** How Slack reaches the bot: signed HTTP POSTs to /slack/events, or envelopes on the Socket Mode WebSocket. */
interface Transport {
  command(input: SlashCommandInput): Promise<SlashCommandResult>;
  event(event: SlackEvent, retryOf?: EventResult): Promise<EventResult>;
  interaction(payload: Record<string, unknown>): Promise<AckRecord>;
}

describe.each(["http", "socket"] as const)("slack over %s", (mode) => {
  let h: EngineHarness;
  let slack: FakeSlack;
  let adapter: SlackAdapter;
  let url = "";
  let send: Transport;

  beforeAll(async () => {
    h = await startEngineHarness();
    slack = await startFakeSlack();
    adapter = new SlackAdapter({
      engine: h.engine,
      inbox: h.inbox,
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
      botToken: slack.botToken,
      apiUrl: slack.apiUrl,
      ...(mode === "http" ? { signingSecret: slack.signingSecret, port: 0 } : { appToken: slack.appToken }),
    });
    const port = await adapter.start();
    url = `http://127.0.0.1:${port}/slack/events`;
    if (mode === "socket") await slack.socket.waitForConnection();
    slack.setEchoTarget(mode === "http" ? url : "socket");
    send =
      mode === "http"
        ? {
            command: (input) => slack.sendSlashCommand(url, input),
            event: (event, retryOf) =>
              slack.sendEvent(
                url,
                event,
                retryOf ? { eventId: retryOf.eventId, retryNum: 1, retryReason: "http_timeout" } : {},
              ),
            interaction: (payload) => slack.sendInteraction(url, payload),
          }
        : {
            command: (input) => slack.socket.sendSlashCommand(input),
            event: (event, retryOf) =>
              slack.socket.sendEvent(
                event,
                retryOf ? { eventId: retryOf.eventId, retryAttempt: 1, retryReason: "timeout" } : {},
              ),
            interaction: (payload) => slack.socket.sendInteraction(payload),
          };
  });
  afterAll(async () => {
    await adapter?.stop();
    await slack?.close();
    await h?.close();
  });
  beforeEach(() => {
    h.fake.reset();
    // Each test starts with Slack's rate limits fresh, as if it ran alone (the default limits, refilled);
    // test/slack-load.test.ts is where they bite.
    slack.setRateLimits({});
  });

  const uploadsIn = (rootTs: string) => slack.uploads.filter((u) => u.completed && u.thread_ts === rootTs);
  /** The bot's replies in a thread (not the root message). */
  const botMessagesIn = (rootTs: string) =>
    slack.messages(CHANNEL, rootTs).filter((m) => m.user === slack.botUserId && m.ts !== rootTs);

  /** /imagine → the root message's ts, once the first image is in its thread. */
  async function imagine(text: string): Promise<string> {
    const before = new Set(slack.messages(CHANNEL).map((m) => m.ts));
    const ack = await send.command({ text, channel_id: CHANNEL, user_id: "U0001" });
    expect(ack.ok).toBe(true);
    expect(ack.latencyMs).toBeLessThan(3000);
    const root = await waitUntil(
      () => slack.messages(CHANNEL).find((m) => !before.has(m.ts) && m.user === slack.botUserId),
      "root message",
    );
    await waitUntil(() => uploadsIn(root.ts).length > 0, "first upload");
    return root.ts;
  }

  /** A person's reply in the thread; resolves when the thread has `expectUploads` uploads. */
  async function reply(
    rootTs: string,
    text: string,
    expectUploads: number,
    files?: Parameters<FakeSlack["userMessage"]>[0]["files"],
  ) {
    const event = slack.userMessage({ channel: CHANNEL, text, thread_ts: rootTs, user: "U0002", files });
    const ack = await send.event(event);
    expect(ack.ok).toBe(true);
    await waitUntil(() => uploadsIn(rootTs).length >= expectUploads, `${expectUploads} uploads`);
    return ack;
  }

  async function click(rootTs: string, actionPrefix: string) {
    // The buttons come in a message posted just after the upload.
    const withButton = await waitUntil(
      () =>
        [...botMessagesIn(rootTs)]
          .reverse()
          .find((m) => JSON.stringify(m.blocks ?? []).includes(`"action_id":"${actionPrefix}`)),
      `a ${actionPrefix} button in the thread`,
    );
    const actionId =
      JSON.stringify(withButton.blocks).match(new RegExp(`"action_id":"(${actionPrefix}[^"]*)"`))?.[1] ?? "";
    const ack = await send.interaction(
      slack.blockActions({ channel: CHANNEL, messageTs: withButton.ts, actionId }),
    );
    expect(ack.ok).toBe(true);
  }

  async function storedBytesOfHead(rootTs: string): Promise<Buffer> {
    const thread = await h.engine.getThread(slackThreadKey(slack.teamId, CHANNEL, rootTs));
    const head = thread?.headImageId ? await h.engine.getImage(thread.headImageId) : null;
    if (!head) throw new Error("no head");
    return h.engine.imageBytes(head);
  }

  describe("slack: /imagine and replies", () => {
    it("acks at once, posts a root message, and uploads the provider's image into its thread", async () => {
      const rootTs = await imagine("a lighthouse at dusk --ar 16:9");
      const [upload] = uploadsIn(rootTs);
      expect(upload?.bytes?.equals(await storedBytesOfHead(rootTs))).toBe(true);
      expect(upload?.filename).toBe("v1-1.png");
      expect(upload?.alt_text).toBe("a lighthouse at dusk");
      expect(h.fake.requests[0]?.body.size).toBe("1536x864");
      await waitUntil(() => slack.message(CHANNEL, rootTs)?.text.includes("Done"), "root status done");
      expect(slack.message(CHANNEL, rootTs)?.text).toContain("<@U0001>");
      await slack.settled();
      expect(slack.ackFailures).toEqual([]);
    });

    it("a reply edits the latest image with exactly its bytes; a chain of three builds on each result", async () => {
      const rootTs = await imagine("a paper boat");
      for (const [i, instruction] of ["make it red", "add a sail", "put it on a lake"].entries()) {
        const previous = uploadsIn(rootTs).at(-1)?.bytes;
        await reply(rootTs, instruction, i + 2);
        const request = h.fake.requests.at(-1);
        expect(request?.endpoint).toBe("images.edit");
        expect(request?.body.prompt).toBe(instruction);
        expect(request?.images[0]?.equals(previous ?? Buffer.alloc(0))).toBe(true);
        expect(
          uploadsIn(rootTs)
            .at(-1)
            ?.bytes?.equals(await storedBytesOfHead(rootTs)),
        ).toBe(true);
      }
      expect(uploadsIn(rootTs).map((u) => u.filename)).toEqual([
        "v1-1.png",
        "v2-1.png",
        "v3-1.png",
        "v4-1.png",
      ]);
      expect(h.fake.requests).toHaveLength(4); // the bot's own echoed posts made no turns
    });

    it("Undo, then a reply edits the earlier version", async () => {
      const rootTs = await imagine("a cactus");
      const v1 = uploadsIn(rootTs)[0]?.bytes;
      await reply(rootTs, "add a flower", 2);
      await click(rootTs, "tc_undo");
      await waitUntil(
        () => botMessagesIn(rootTs).some((m) => m.text.includes("Undone")),
        "undo confirmation",
      );
      await reply(rootTs, "add a hat", 3);
      expect(h.fake.requests.at(-1)?.images[0]?.equals(v1 ?? Buffer.alloc(0))).toBe(true);
    });

    it("Variations makes new images from the image and its prompt", async () => {
      const rootTs = await imagine("a paper crane");
      await click(rootTs, "tc_variations");
      await waitUntil(() => uploadsIn(rootTs).length === 2, "variation upload");
      const request = h.fake.requests.at(-1);
      expect(String(request?.body.prompt)).toContain("a paper crane");
      expect(request?.images[0]?.equals(uploadsIn(rootTs)[0]?.bytes ?? Buffer.alloc(0))).toBe(true);
    });

    it("with several images, 'Use #3' makes the next reply edit the third", async () => {
      const rootTs = await imagine("logo ideas --n 4");
      await waitUntil(() => uploadsIn(rootTs).length === 4, "four uploads");
      const third = uploadsIn(rootTs).find((u) => u.filename === "v1-3.png")?.bytes;
      await click(rootTs, "tc_use_2");
      await waitUntil(
        () => botMessagesIn(rootTs).some((m) => m.text.includes("chosen image")),
        "choice confirmation",
      );
      await reply(rootTs, "make it darker", 5);
      expect(h.fake.requests.at(-1)?.images[0]?.equals(third ?? Buffer.alloc(0))).toBe(true);
    });

    it("an image attached to a reply is sent as a reference after the image being edited", async () => {
      const rootTs = await imagine("a living room");
      const reference = await makePng(512, 512, "sofa");
      const file = slack.addUserFile({
        bytes: reference,
        name: "sofa.png",
        mimetype: "image/png",
        user: "U0002",
      });
      await reply(rootTs, "use this sofa", 2, [file]);
      const request = h.fake.requests.at(-1);
      expect(request?.images).toHaveLength(2);
      expect(request?.images[1]?.equals(reference)).toBe(true);
      expect(slack.downloads.at(-1)).toMatchObject({ authorized: true });
    });

    it("a retried event (same event_id) makes one turn", async () => {
      const rootTs = await imagine("a bicycle");
      const event = slack.userMessage({
        channel: CHANNEL,
        text: "make it blue",
        thread_ts: rootTs,
        user: "U0002",
      });
      const first = await send.event(event);
      const retry = await send.event(event, first);
      expect(retry.ok).toBe(true);
      await waitUntil(() => uploadsIn(rootTs).length === 2, "edit upload");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(uploadsIn(rootTs)).toHaveLength(2);
      expect(h.fake.requests.filter((r) => r.endpoint === "images.edit")).toHaveLength(1);
    });

    it("replies sent while a turn runs are queued in order, and say so", async () => {
      const rootTs = await imagine("a teapot");
      h.fake.setLatency(400);
      try {
        await send.event(slack.userMessage({ channel: CHANNEL, text: "make it gold", thread_ts: rootTs }));
        await send.event(slack.userMessage({ channel: CHANNEL, text: "add steam", thread_ts: rootTs }));
        await waitUntil(
          () => botMessagesIn(rootTs).some((m) => /Edit: “add steam” — ⏳ Queued — 1 ahead/.test(m.text)),
          "the second reply's queued status",
        );
        await waitUntil(() => uploadsIn(rootTs).length === 3, "both edits");
      } finally {
        h.fake.setLatency(0);
      }
      const [gold, steam] = h.fake.requests.slice(-2);
      expect([gold?.body.prompt, steam?.body.prompt]).toEqual(["make it gold", "add steam"]);
      // The second edit started from the first one's result.
      expect(steam?.images[0]?.equals(uploadsIn(rootTs)[1]?.bytes ?? Buffer.alloc(0))).toBe(true);
      await waitUntil(
        () => botMessagesIn(rootTs).filter((m) => m.text.includes("✅ Done")).length === 2,
        "both status lines done",
      );
    });

    it("@threadcanvas in a channel starts a thread under the person's own message", async () => {
      const mention = slack.appMention({ channel: CHANNEL, text: "a snowy cabin --ar 3:2", user: "U0002" });
      const ack = await send.event(mention);
      expect(ack.ok).toBe(true);
      const rootTs = String(mention.ts);
      await waitUntil(() => uploadsIn(rootTs).length === 1, "upload under the mention");
      expect(h.fake.requests.at(-1)?.body).toMatchObject({ prompt: "a snowy cabin", size: "1536x1024" });
      await reply(rootTs, "add smoke from the chimney", 2);
      expect(h.fake.requests.at(-1)?.images[0]?.equals(uploadsIn(rootTs)[0]?.bytes ?? Buffer.alloc(0))).toBe(
        true,
      );
    });

    it("@threadcanvas inside someone else's thread draws there, and later replies in that thread edit it", async () => {
      const parent = slack.userMessage({
        channel: CHANNEL,
        text: "ideas for the launch poster?",
        user: "U0003",
      });
      await send.event(parent);
      const parentTs = String(parent.ts);
      const mention = slack.appMention({
        channel: CHANNEL,
        text: "a rocket poster",
        user: "U0002",
        thread_ts: parentTs,
      });
      expect((await send.event(mention)).ok).toBe(true);
      await waitUntil(() => uploadsIn(parentTs).length === 1, "upload in the person's thread");
      await reply(parentTs, "make the rocket red", 2);
      expect(h.fake.requests.at(-1)?.body.prompt).toBe("make the rocket red");
    });

    it("a mention by another bot starts nothing", async () => {
      const mention = slack.appMention({ channel: CHANNEL, text: "a cat" });
      const requests = h.fake.requests.length;
      expect((await send.event({ ...mention, bot_id: "B0OTHERBOT" })).ok).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(h.fake.requests).toHaveLength(requests);
      expect(uploadsIn(String(mention.ts))).toHaveLength(0);
    });

    it("a reply also sent to the channel edits like any other reply", async () => {
      const rootTs = await imagine("a sailboat");
      const event = {
        ...slack.userMessage({ channel: CHANNEL, text: "add a sunset", thread_ts: rootTs, user: "U0002" }),
        subtype: "thread_broadcast",
      };
      expect((await send.event(event)).ok).toBe(true);
      await waitUntil(() => uploadsIn(rootTs).length === 2, "the edit");
      expect(h.fake.requests.at(-1)?.body.prompt).toBe("add a sunset");
    });

    it("edits and deletions of messages in a thread change nothing", async () => {
      const rootTs = await imagine("a bridge");
      const asked = await reply(rootTs, "paint it red", 2);
      const ts = String(asked.envelope.event.ts);
      const requests = h.fake.requests.length;
      await send.event(slack.messageChanged({ channel: CHANNEL, ts, text: "paint it green" }));
      await send.event(slack.messageDeleted({ channel: CHANNEL, ts }));
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(h.fake.requests).toHaveLength(requests);
      expect(uploadsIn(rootTs)).toHaveLength(2);
    });
  });

  describe("slack: bad input and failures", () => {
    it("invalid flags get an ephemeral answer, and nothing else happens", async () => {
      const before = slack.messages(CHANNEL).length;
      const ack = await send.command({ text: "a cat --n 11", channel_id: CHANNEL, user_id: "U0001" });
      expect(ack.ok).toBe(true);
      expect(ack.body).toMatchObject({ response_type: "ephemeral" });
      expect(JSON.stringify(ack.body)).toMatch(/1 to 10/);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(slack.messages(CHANNEL)).toHaveLength(before);
      expect(h.fake.requests).toHaveLength(0);
    });

    // Signatures belong to HTTP; a Socket Mode connection is authenticated by its app token instead.
    if (mode === "http")
      it("unsigned and stale requests get 401 and do nothing", async () => {
        const before = slack.messages(CHANNEL).length;
        for (const signing of ["unsigned", "stale", "wrong_secret"] as const) {
          const ack = await slack.sendSlashCommand(
            url,
            { text: "a cat", channel_id: CHANNEL, user_id: "U0001" },
            { signing },
          );
          expect(ack.status).toBe(401);
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(slack.messages(CHANNEL)).toHaveLength(before);
        expect(h.fake.requests).toHaveLength(0);
      });

    it("rate limits past the SDK's retries show 'retrying' on the status line, then the image arrives", async () => {
      const limited = { status: 429, retryAfterMs: 10 } as const;
      h.fake.failNext(limited, limited, limited);
      const rootTs = await imagine("a weather map");
      expect(uploadsIn(rootTs)).toHaveLength(1);
      const statusTexts = slack.updates.filter((u) => u.ts === rootTs).map((u) => u.text ?? "");
      expect(statusTexts.some((text) => /rate.limiting.*Retrying/i.test(text))).toBe(true);
      await waitUntil(() => slack.message(CHANNEL, rootTs)?.text.includes("Done"), "root status done");
    });

    it("OpenAI being down is explained in the thread once the retries are used up", async () => {
      const down = { status: 503 } as const;
      h.fake.failNext(...Array.from({ length: 12 }, () => down));
      const before = new Set(slack.messages(CHANNEL).map((m) => m.ts));
      await send.command({ text: "a quiet harbour", channel_id: CHANNEL, user_id: "U0001" });
      const root = await waitUntil(
        () => slack.messages(CHANNEL).find((m) => !before.has(m.ts) && m.user === slack.botUserId),
        "root message",
      );
      const explained = await waitUntil(
        () => botMessagesIn(root.ts).find((m) => m.text.startsWith("✖")),
        "failure explanation",
        40_000,
      );
      expect(explained.text).toMatch(/OpenAI/);
      expect(uploadsIn(root.ts)).toHaveLength(0);
      h.fake.reset();
    }, 60_000);

    it("a moderation block is explained in the thread, and the next command works", async () => {
      h.fake.failNext({ moderation: true });
      const before = new Set(slack.messages(CHANNEL).map((m) => m.ts));
      await send.command({ text: "something blocked", channel_id: CHANNEL, user_id: "U0001" });
      const root = await waitUntil(
        () => slack.messages(CHANNEL).find((m) => !before.has(m.ts) && m.user === slack.botUserId),
        "root message",
      );
      const explained = await waitUntil(
        () => botMessagesIn(root.ts).find((m) => /safety system/i.test(m.text)),
        "failure explanation",
      );
      expect(explained.text).toMatch(/failed/);
      expect(uploadsIn(root.ts)).toHaveLength(0);
      await waitUntil(() => slack.message(CHANNEL, root.ts)?.text.includes("✖"), "root status failed");
      const next = await imagine("a harmless teapot");
      expect(uploadsIn(next)).toHaveLength(1);
    });
  });
});
