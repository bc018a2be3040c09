import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { App, isValidSlackRequest, LogLevel, SocketModeReceiver, verifySlackRequest } from "@slack/bolt";
import { SocketModeClient } from "@slack/socket-mode";
import { ErrorCode, type WebAPIPlatformError, type WebAPIRateLimitedError, WebClient } from "@slack/web-api";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { makePng } from "./fakes/images.ts";
import { type FakeSlack, signatureHeaders, startFakeSlack } from "./fakes/slack-server.ts";

/**
 * The fake Slack (test/fakes/slack-server.ts) driven by the real clients: @slack/web-api's WebClient, a real Bolt
 * app over HTTP and Socket Mode, and @slack/socket-mode's SocketModeClient. Everything stays on 127.0.0.1.
 */

let fake: FakeSlack;
let client: WebClient;

beforeAll(async () => {
  fake = await startFakeSlack();
  client = new WebClient(fake.botToken, {
    slackApiUrl: fake.apiUrl,
    retryConfig: { retries: 0 },
    logLevel: LogLevel.ERROR,
  });
});
afterAll(() => fake.close());
beforeEach(() => fake.reset());

async function platformError(promise: Promise<unknown>): Promise<WebAPIPlatformError> {
  const error = await promise.then(
    () => expect.unreachable("expected a platform error"),
    (e: unknown) => e,
  );
  expect((error as { code?: string }).code).toBe(ErrorCode.PlatformError);
  return error as WebAPIPlatformError;
}

describe("Web API", () => {
  it("answers auth.test with the bot's identity and records the form-encoded call", async () => {
    const result = await client.auth.test();
    expect(result).toMatchObject({
      ok: true,
      user_id: fake.botUserId,
      bot_id: fake.botId,
      team_id: fake.teamId,
    });
    expect(fake.calls).toMatchObject([
      { method: "auth.test", contentType: "application/x-www-form-urlencoded", tokenKind: "bot", ok: true },
    ]);
  });

  it("rejects a wrong token with invalid_auth, a missing one with not_authed, and unknown methods", async () => {
    const bad = new WebClient("xoxb-wrong", { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
    expect((await platformError(bad.chat.postMessage({ channel: "C0001", text: "hi" }))).data.error).toBe(
      "invalid_auth",
    );
    const anonymous = new WebClient(undefined, { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
    expect((await platformError(anonymous.auth.test())).data.error).toBe("not_authed");
    const app = new WebClient(fake.appToken, { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
    expect((await platformError(app.chat.postMessage({ channel: "C0001", text: "hi" }))).data.error).toBe(
      "not_allowed_token_type",
    );
    expect((await platformError(client.apiCall("users.fly"))).data.error).toBe("unknown_method");
    expect(fake.messages("C0001")).toEqual([]);
  });

  it("posts, replies in a thread and updates, keeping a log per channel and thread", async () => {
    const root = await client.chat.postMessage({
      channel: "C0001",
      text: "queued",
      blocks: [section("queued")],
    });
    expect(root).toMatchObject({
      ok: true,
      channel: "C0001",
      message: { user: fake.botUserId, bot_id: fake.botId },
    });
    expect(root.ts).toMatch(/^\d{10}\.\d{6}$/);
    const reply = await client.chat.postMessage({ channel: "#general", text: "working", thread_ts: root.ts });
    expect(Number(reply.ts)).toBeGreaterThan(Number(root.ts));

    const updated = await client.chat.update({ channel: "C0001", ts: String(root.ts), text: "done" });
    expect(updated).toMatchObject({ ok: true, ts: root.ts, text: "done" });
    expect(fake.updates).toMatchObject([{ channel: "C0001", ts: root.ts, text: "done", via: "chat.update" }]);

    expect(fake.messages("C0001")).toMatchObject([
      { ts: root.ts, text: "done", reply_count: 1, blocks: [{}] },
    ]);
    expect(fake.messages("C0001", String(root.ts)).map((m) => m.text)).toEqual(["done", "working"]);
    const replies = await client.conversations.replies({ channel: "C0001", ts: String(root.ts) });
    expect(replies.messages?.map((m) => m.ts)).toEqual([root.ts, reply.ts]);
  });

  it("validates like Slack: channel, text, blocks, thread parents, edit rights", async () => {
    const error = async (promise: Promise<unknown>) => (await platformError(promise)).data.error;
    expect(await error(client.chat.postMessage({ channel: "C9999", text: "x" }))).toBe("channel_not_found");
    expect(await error(client.chat.postMessage({ channel: "C0001", text: "" }))).toBe("no_text");
    const tooLong = {
      type: "button",
      text: { type: "plain_text", text: "Go" },
      action_id: "go",
      value: "v".repeat(2001),
    } as const;
    expect(
      await error(
        client.chat.postMessage({
          channel: "C0001",
          text: "x",
          blocks: [{ type: "actions", elements: [tooLong] }],
        }),
      ),
    ).toBe("invalid_blocks");
    expect(
      await error(client.chat.postMessage({ channel: "C0001", text: "x", thread_ts: "1700000000.000100" })),
    ).toBe("thread_not_found");

    const root = await client.chat.postMessage({ channel: "C0001", text: "root" });
    const reply = await client.chat.postMessage({ channel: "C0001", text: "r", thread_ts: root.ts });
    // A reply's ts is not a thread parent; neither is a message from another channel.
    expect(await error(client.chat.postMessage({ channel: "C0001", text: "x", thread_ts: reply.ts }))).toBe(
      "thread_not_found",
    );
    expect(await error(client.chat.postMessage({ channel: "C0002", text: "x", thread_ts: root.ts }))).toBe(
      "thread_not_found",
    );
    const person = fake.userMessage({ channel: "C0001", text: "mine" });
    expect(await error(client.chat.update({ channel: "C0001", ts: String(person.ts), text: "no" }))).toBe(
      "cant_update_message",
    );
    expect(fake.calls.filter((c) => !c.ok).map((c) => c.error)).toContain("invalid_blocks");
  });

  it("posts ephemeral messages to users in the channel", async () => {
    const result = await client.chat.postEphemeral({ channel: "C0001", user: "U0001", text: "only you" });
    expect(result.message_ts).toMatch(/^\d{10}\.\d{6}$/);
    expect(fake.ephemerals).toMatchObject([
      { channel: "C0001", user: "U0001", text: "only you", via: "chat.postEphemeral" },
    ]);
    expect(fake.messages("C0001")).toEqual([]);
    expect(
      (await platformError(client.chat.postEphemeral({ channel: "C0001", user: "U404", text: "x" }))).data
        .error,
    ).toBe("user_not_in_channel");
  });

  it("runs files.uploadV2 end to end: exact bytes, nested result, a file_share message in the thread", async () => {
    const root = await client.chat.postMessage({ channel: "C0001", text: "root" });
    const png = await makePng(64, 48, "upload");
    const result = await client.files.uploadV2({
      channel_id: "C0001",
      thread_ts: String(root.ts),
      initial_comment: "here it is",
      file_uploads: [{ file: png, filename: "v1.png", title: "Version 1", alt_text: "a test image" }],
    });

    const [completion] = (result as unknown as { files: Array<{ files: Array<{ id: string }> }> }).files;
    const fileId = completion?.files[0]?.id;
    expect(fileId).toMatch(/^F/);
    expect(fake.uploads).toHaveLength(1);
    const [upload] = fake.uploads;
    expect(upload?.bytes?.equals(png)).toBe(true);
    expect(upload).toMatchObject({
      fileId,
      filename: "v1.png",
      title: "Version 1",
      alt_text: "a test image",
      channel_id: "C0001",
      thread_ts: root.ts,
      initial_comment: "here it is",
      encoding: "multipart:body",
      completed: true,
    });
    const thread = fake.messages("C0001", String(root.ts));
    expect(thread.at(-1)).toMatchObject({
      subtype: "file_share",
      text: "here it is",
      user: fake.botUserId,
      files: [{ id: fileId, mimetype: "image/png", filetype: "png", original_w: 64, original_h: 48 }],
    });
    const hosted = thread.at(-1)?.files?.[0];
    const download = await fetch(String(hosted?.url_private_download), {
      headers: { authorization: `Bearer ${fake.botToken}` },
    });
    expect(Buffer.from(await download.arrayBuffer()).equals(png)).toBe(true);
  });

  it("serves url_private with the bot token and a 200 HTML sign-in page without it", async () => {
    const bytes = await makePng(8, 8, "user");
    const file = fake.addUserFile({ bytes, name: "in.png" });
    expect(file).toMatchObject({ mimetype: "image/png", filetype: "png", size: bytes.length });

    const ok = await fetch(file.url_private, { headers: { authorization: `Bearer ${fake.botToken}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await ok.arrayBuffer()).equals(bytes)).toBe(true);

    for (const headers of [{}, { authorization: "Bearer xoxb-someone-else" }]) {
      const denied = await fetch(file.url_private_download, { headers });
      expect(denied.status).toBe(200);
      expect(denied.headers.get("content-type")).toMatch(/^text\/html/);
      expect(await denied.text()).toContain("Sign in");
    }
    expect(fake.downloads.map((d) => d.authorized)).toEqual([true, false, false]);
  });

  it("fails on demand: rate limits with Retry-After, platform errors, a failed upload POST", async () => {
    const strict = new WebClient(fake.botToken, {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
    });
    fake.failNext("chat.postMessage", { rateLimited: true, retryAfterSeconds: 7 }, { error: "is_archived" });
    const limited = await strict.chat.postMessage({ channel: "C0001", text: "x" }).catch((e: unknown) => e);
    expect(limited).toMatchObject({ code: ErrorCode.RateLimitedError, retryAfter: 7 });
    expect((await platformError(strict.chat.postMessage({ channel: "C0001", text: "x" }))).data.error).toBe(
      "is_archived",
    );
    expect((await strict.chat.postMessage({ channel: "C0001", text: "x" })).ok).toBe(true);

    fake.failNext("upload", { status: 500 });
    const file = Buffer.from("hello");
    await expect(client.files.uploadV2({ channel_id: "C0001", file, filename: "a.txt" })).rejects.toThrow();
    expect(fake.uploads).toMatchObject([{ filename: "a.txt", bytes: null, completed: false }]);
  });

  it("limits response_urls to 5 uses and 30 minutes", async () => {
    const post = (url: string, body: unknown) =>
      fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const url = fake.createResponseUrl({ channel: "C0001", user: "U0001" });
    for (let i = 0; i < 5; i++) expect((await post(url, { text: `step ${i}` })).status).toBe(200);
    const sixth = await post(url, { text: "too many" });
    expect([sixth.status, await sixth.text()]).toEqual([404, "used_url"]);
    expect(fake.ephemerals).toHaveLength(5);

    const later = fake.createResponseUrl();
    expect((await post(later, { response_type: "in_channel", text: "public" })).status).toBe(200);
    expect(fake.messages("C0001").map((m) => m.text)).toEqual(["public"]);
    fake.advanceClock(31 * 60 * 1000);
    expect(await (await post(later, { text: "late" })).text()).toBe("expired_url");
  });
});

describe("rate limits", () => {
  /** A client that reports a 429 instead of waiting it out. */
  const strict = () =>
    new WebClient(fake.botToken, {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      logLevel: LogLevel.ERROR,
    });
  const rateLimited = (promise: Promise<unknown>) =>
    promise.then(
      () => expect.unreachable("expected a rate-limited error"),
      (e: WebAPIRateLimitedError) => {
        expect(e.code).toBe(ErrorCode.RateLimitedError);
        return e;
      },
    );

  it("lets chat.postMessage burst a little, then about one message per second per channel", async () => {
    const web = strict();
    for (let i = 0; i < 5; i++) await web.chat.postMessage({ channel: "C0001", text: `burst ${i}` });
    expect(
      (await rateLimited(web.chat.postMessage({ channel: "#general", text: "one too many" }))).retryAfter,
    ).toBe(1);
    expect(fake.calls.at(-1)).toMatchObject({
      method: "chat.postMessage",
      ok: false,
      error: "ratelimited",
      rateLimited: { scope: "channel", retryAfterSeconds: 1 },
    });
    // Another channel has its own allowance; a post that fails is not a message and takes none.
    await web.chat.postMessage({ channel: "C0002", text: "elsewhere" });
    expect((await platformError(web.chat.postMessage({ channel: "C0002", text: "" }))).data.error).toBe(
      "no_text",
    );

    // On the wire: HTTP 429, Slack's body, Retry-After in seconds.
    const raw = await fetch(`${fake.apiUrl}chat.postMessage`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${fake.botToken}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ channel: "C0001", text: "raw" }),
    });
    expect([raw.status, raw.headers.get("retry-after"), await raw.json()]).toEqual([
      429,
      "1",
      { ok: false, error: "ratelimited" },
    ]);

    // A client that waits rate limits out (the default) gets through a second later.
    const patient = new WebClient(fake.botToken, {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 1, minTimeout: 0, maxTimeout: 0 },
      logLevel: LogLevel.ERROR,
    });
    const started = Date.now();
    await expect(patient.chat.postMessage({ channel: "C0001", text: "patient" })).resolves.toMatchObject({
      ok: true,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(fake.messages("C0001").map((m) => m.text)).toEqual([
      ...Array.from({ length: 5 }, (_, i) => `burst ${i}`),
      "patient",
    ]);
  });

  it("holds each method to its tier: apps.connections.open is Tier 1, refused until a minute has passed", async () => {
    const app = new WebClient(fake.appToken, {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      logLevel: LogLevel.ERROR,
    });
    for (let i = 0; i < 3; i++) expect((await app.apps.connections.open()).ok).toBe(true);
    const limited = await rateLimited(app.apps.connections.open());
    expect(limited.retryAfter).toBeGreaterThan(50);
    expect(fake.calls.at(-1)?.rateLimited).toMatchObject({ scope: "method" });
    // Other methods have their own counts.
    expect((await client.auth.test()).ok).toBe(true);

    fake.setRateLimits({ tiers: { 3: { perMinute: 60, burst: 2 } } });
    try {
      const web = strict();
      const root = await web.chat.postMessage({ channel: "C0001", text: "root" });
      for (const text of ["a", "b"]) await web.chat.update({ channel: "C0001", ts: String(root.ts), text });
      const update = web.chat.update({ channel: "C0001", ts: String(root.ts), text: "c" });
      expect((await rateLimited(update)).retryAfter).toBe(1);
      expect(fake.message("C0001", String(root.ts))?.text).toBe("b");
    } finally {
      fake.setRateLimits({});
    }
  });

  it("can be turned off", async () => {
    fake.setRateLimits(false);
    try {
      const web = strict();
      for (let i = 0; i < 12; i++) await web.chat.postMessage({ channel: "C0001", text: `free ${i}` });
      expect(fake.calls.every((c) => c.ok && !c.rateLimited)).toBe(true);
    } finally {
      fake.setRateLimits({});
    }
  });
});

describe("hung calls", () => {
  /** A client that gives up after 200 ms and never retries. */
  const impatient = () =>
    new WebClient(fake.botToken, {
      slackApiUrl: fake.apiUrl,
      timeout: 200,
      retryConfig: { retries: 0 },
      logLevel: LogLevel.ERROR,
    });
  const timedOut = async (promise: Promise<unknown>) => {
    const started = Date.now();
    const error = await promise.then(
      () => expect.unreachable("expected a timeout"),
      (e: unknown) => e,
    );
    expect((error as { code?: string }).code).toBe(ErrorCode.RequestError);
    expect(Date.now() - started).toBeLessThan(2000);
  };
  const noneHanging = async () => {
    for (let i = 0; i < 100 && fake.hungRequests > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fake.hungRequests).toBe(0);
  };

  it("never answers a hung call: the client times out, and nothing was posted", async () => {
    fake.failNext("chat.postMessage", { hang: true });
    await timedOut(impatient().chat.postMessage({ channel: "C0001", text: "lost" }));
    expect(fake.calls.at(-1)).toMatchObject({ method: "chat.postMessage", hung: { processed: false } });
    expect(fake.messages("C0001")).toEqual([]);
    await noneHanging();
  });

  it("with processed, posts and then hangs: the client sees a timeout, the channel sees the message", async () => {
    fake.failNext("chat.postMessage", { hang: true, processed: true });
    await timedOut(impatient().chat.postMessage({ channel: "C0001", text: "posted anyway" }));
    expect(fake.calls.at(-1)).toMatchObject({ hung: { processed: true } });
    expect(fake.messages("C0001").map((m) => m.text)).toEqual(["posted anyway"]);

    // The upload URL too: the bytes arrive, the answer never does.
    fake.failNext("upload", { hang: true, processed: true });
    const file = Buffer.from("hello");
    await timedOut(impatient().files.uploadV2({ channel_id: "C0001", file, filename: "a.txt" }));
    expect(fake.uploads).toMatchObject([{ filename: "a.txt", completed: false, hung: { processed: true } }]);
    expect(fake.uploads[0]?.bytes?.equals(file)).toBe(true);
    await noneHanging();
  });

  it("closes promptly with a request still hanging", async () => {
    const other = await startFakeSlack();
    other.failNext("auth.test", { hang: true });
    const pending = fetch(`${other.apiUrl}auth.test`, {
      method: "POST",
      headers: { authorization: `Bearer ${other.botToken}` },
    });
    for (let i = 0; i < 200 && other.hungRequests === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(other.hungRequests).toBe(1);
    const started = Date.now();
    await other.close();
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(pending).rejects.toThrow();
  });
});

describe("request signing", () => {
  it("signs bodies the way Bolt verifies them and goes stale after 5 minutes", () => {
    const body = "token=x&command=%2Fimagine&text=a+cat";
    const nowSec = Math.floor(Date.now() / 1000);
    const headers = signatureHeaders(fake.signingSecret, body, nowSec);
    const options = (h: Record<string, string>) => ({
      signingSecret: fake.signingSecret,
      body,
      headers: {
        "x-slack-signature": h["x-slack-signature"] ?? "",
        "x-slack-request-timestamp": Number(h["x-slack-request-timestamp"]),
      },
    });
    expect(() => verifySlackRequest(options(headers))).not.toThrow();
    expect(isValidSlackRequest(options(signatureHeaders(fake.signingSecret, body, nowSec - 301)))).toBe(
      false,
    );
    expect(isValidSlackRequest(options(signatureHeaders("other-secret", body, nowSec)))).toBe(false);
  });
});

describe("a real Bolt app over HTTP", () => {
  let app: App;
  let eventsUrl: string;
  const seen: string[] = [];

  beforeAll(async () => {
    app = new App({
      token: fake.botToken,
      signingSecret: fake.signingSecret,
      logLevel: LogLevel.ERROR,
      clientOptions: { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } },
    });
    app.command("/imagine", async ({ command, ack, client: web, respond }) => {
      await ack();
      const posted = await web.chat.postMessage({
        channel: command.channel_id,
        text: `imagining ${command.text}`,
      });
      await web.chat.postMessage({
        channel: command.channel_id,
        thread_ts: posted.ts,
        text: "options",
        blocks: [
          {
            type: "actions",
            elements: [
              {
                type: "button",
                text: { type: "plain_text", text: "Again" },
                action_id: "again",
                value: "turn-1",
              },
            ],
          },
        ],
      });
      await respond({ response_type: "ephemeral", text: "queued" });
    });
    app.message(async ({ message }) => {
      const { text, subtype } = message as { text?: string; subtype?: string };
      seen.push(`message:${text ?? subtype}`);
    });
    app.event(
      "app_mention",
      async ({ event, context }) => void seen.push(`mention:${event.text}:${context.retryNum ?? 0}`),
    );
    app.action("again", async ({ ack, action }) => {
      await ack();
      seen.push(`action:${(action as { value?: string }).value}`);
    });
    const server = (await app.start(0)) as Server;
    eventsUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
  });
  afterAll(() => app.stop());
  beforeEach(() => {
    seen.length = 0;
  });

  const until = async (check: () => boolean) => {
    for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(check()).toBe(true);
  };

  it("acks a signed slash command in time, then the bot posts, threads and responds", async () => {
    const result = await fake.sendSlashCommand(eventsUrl, {
      text: "a cat",
      channel_id: "C0001",
      user_id: "U0001",
    });
    expect(result).toMatchObject({ ok: true, status: 200, kind: "slash_command", transport: "http" });
    expect(result.latencyMs).toBeLessThan(3000);
    expect(Object.keys(result.fields)).toEqual(
      expect.arrayContaining([
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
      ]),
    );
    await until(() => fake.responseUrlPosts.length === 1);
    const [root] = fake.messages("C0001");
    expect(root?.text).toBe("imagining a cat");
    expect(fake.messages("C0001", String(root?.ts)).map((m) => m.text)).toEqual([
      "imagining a cat",
      "options",
    ]);
    expect(fake.ephemerals).toMatchObject([{ user: "U0001", text: "queued", via: "response_url" }]);
    expect(fake.ackFailures).toEqual([]);
  });

  it("delivers events and retries with the same event_id, and button clicks", async () => {
    const root = await client.chat.postMessage({ channel: "C0001", text: "root" });
    const first = await fake.sendEvent(
      eventsUrl,
      fake.userMessage({ channel: "C0001", text: "bluer", thread_ts: root.ts }),
    );
    const mention = fake.appMention({ channel: "C0001", text: "draw", thread_ts: root.ts });
    await fake.sendEvent(eventsUrl, mention);
    const retry = await fake.sendEvent(eventsUrl, mention, {
      eventId: first.eventId,
      retryNum: 1,
      retryReason: "http_timeout",
    });
    expect([first.ok, retry.ok, retry.eventId]).toEqual([true, true, first.eventId]);

    const buttons = await client.chat.postMessage({
      channel: "C0001",
      thread_ts: root.ts,
      text: "b",
      blocks: [
        {
          type: "actions",
          elements: [
            {
              type: "button",
              text: { type: "plain_text", text: "Again" },
              action_id: "again",
              value: "turn-7",
            },
          ],
        },
      ],
    });
    const click = fake.blockActions({ channel: "C0001", messageTs: String(buttons.ts), actionId: "again" });
    expect(click).toMatchObject({
      container: { thread_ts: root.ts },
      actions: [{ value: "turn-7", type: "button" }],
    });
    expect((await fake.sendInteraction(eventsUrl, click)).ok).toBe(true);
    await until(() => seen.length === 4);
    expect(seen.sort()).toEqual([
      "action:turn-7",
      `mention:<@${fake.botUserId}> draw:0`,
      `mention:<@${fake.botUserId}> draw:1`,
      "message:bluer",
    ]);
  });

  it("gets 401 for unsigned, stale and wrongly signed requests, and answers url_verification", async () => {
    for (const signing of ["unsigned", "stale", "wrong_secret"] as const) {
      const result = await fake.sendSlashCommand(eventsUrl, { text: "x" }, { signing });
      expect([signing, result.status, result.ok, result.reason]).toEqual([
        signing,
        401,
        false,
        "dispatch_failed",
      ]);
    }
    expect((await fake.sendUrlVerification(eventsUrl)).verified).toBe(true);
  });

  it("echoes the bot's own posts and edits: ignoreSelf drops the post but not message_changed", async () => {
    fake.setEchoTarget(eventsUrl);
    try {
      const root = await client.chat.postMessage({ channel: "C0001", text: "from the bot" });
      await client.chat.update({ channel: "C0001", ts: String(root.ts), text: "edited by the bot" });
      await until(() => fake.acks.length === 2);
      expect(fake.acks.map((a) => [a.kind, a.ok])).toEqual([
        ["event", true],
        ["event", true],
      ]);
      // A trap for the adapter: Bolt's ignoreSelf lets the bot's own message_changed through.
      await until(() => seen.length === 1);
      expect(seen).toEqual(["message:message_changed"]);
    } finally {
      fake.setEchoTarget(null);
    }
  });

  it("counts a late acknowledgement as operation_timeout", async () => {
    const slow = createServer((_req, res) => void setTimeout(() => res.end(), 400));
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/slack/events`;
      const result = await fake.sendSlashCommand(url, { text: "slow" }, { ackTimeoutMs: 150 });
      expect(result).toMatchObject({ ok: false, reason: "operation_timeout", latencyMs: null });
      expect(fake.ackFailures).toHaveLength(1);
    } finally {
      slow.closeAllConnections();
      await new Promise((resolve) => slow.close(resolve));
    }
  });
});

describe("Socket Mode", () => {
  let socketClient: SocketModeClient | undefined;
  afterEach(async () => {
    await socketClient?.disconnect();
    socketClient = undefined;
  });

  it("connects a real SocketModeClient, delivers envelopes and records timed acks", async () => {
    socketClient = new SocketModeClient({
      appToken: fake.appToken,
      logLevel: LogLevel.ERROR,
      clientOptions: { slackApiUrl: fake.apiUrl },
    });
    socketClient.on("slash_commands", async ({ ack, body }) => ack({ text: `got ${body.text}` }));
    socketClient.on("app_mention", async ({ ack }) => ack());
    await socketClient.start();
    await fake.socket.waitForConnection();
    expect(fake.calls.at(-1)).toMatchObject({ method: "apps.connections.open", tokenKind: "app", ok: true });

    const command = await fake.socket.sendSlashCommand({ text: "a fox", channel_id: "C0001" });
    expect(command).toMatchObject({
      ok: true,
      transport: "socket",
      kind: "slash_command",
      body: { text: "got a fox" },
    });
    expect(command.latencyMs).toBeLessThan(3000);
    expect(fake.ephemerals).toMatchObject([{ text: "got a fox", via: "ack" }]);
    expect(fake.socket.envelopes[0]).toMatchObject({
      type: "slash_commands",
      accepts_response_payload: true,
    });

    // Over 64 KiB: the server's 64-bit length frames.
    const big = "x".repeat(70_000);
    const event = await fake.socket.sendEvent(fake.appMention({ channel: "C0001", text: big }), {
      retryAttempt: 0,
    });
    expect(event).toMatchObject({ ok: true, body: {} });
    expect(fake.socket.envelopes[1]).toMatchObject({
      type: "events_api",
      retry_attempt: 0,
      payload: { event_id: event.eventId },
    });
    expect(fake.ackFailures).toEqual([]);
  });

  it("counts an envelope acked too late as a failure", async () => {
    socketClient = new SocketModeClient({
      appToken: fake.appToken,
      logLevel: LogLevel.ERROR,
      clientOptions: { slackApiUrl: fake.apiUrl },
    });
    socketClient.on("slash_commands", async ({ ack }) => void setTimeout(() => void ack(), 300));
    await socketClient.start();
    const result = await fake.socket.sendSlashCommand({ text: "slow" }, { ackTimeoutMs: 100 });
    expect(result).toMatchObject({ ok: false, reason: "operation_timeout", latencyMs: null });
    await new Promise((r) => setTimeout(r, 400));
    // The late ack is still timed on the record, which stays a failure.
    expect(fake.ackFailures).toMatchObject([{ ok: false, reason: "operation_timeout" }]);
    expect(fake.ackFailures[0]?.latencyMs).toBeGreaterThan(100);
  });

  it("runs a Bolt app in Socket Mode and reconnects after a refresh_requested disconnect", async () => {
    // Its own receiver only to shorten the reconnect delay (clientPingTimeout × attempts, 5 s by default).
    const receiver = new SocketModeReceiver({
      appToken: fake.appToken,
      clientPingTimeout: 1000,
      logLevel: LogLevel.ERROR,
      installerOptions: { clientOptions: { slackApiUrl: fake.apiUrl } },
    });
    const app = new App({
      token: fake.botToken,
      receiver,
      logLevel: LogLevel.ERROR,
      clientOptions: { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } },
    });
    app.command("/imagine", async ({ ack }) => ack("on it"));
    await app.start();
    try {
      await fake.socket.waitForConnection();
      expect((await fake.socket.sendSlashCommand({ text: "x" })).body).toEqual({ text: "on it" });
      fake.socket.disconnect();
      await new Promise((r) => setTimeout(r, 200));
      await fake.socket.waitForConnection(10_000);
      expect((await fake.socket.sendSlashCommand({ text: "y" })).ok).toBe(true);
      expect(fake.calls.filter((c) => c.method === "apps.connections.open")).toHaveLength(2);
    } finally {
      await app.stop();
    }
  });
});

function section(text: string) {
  return { type: "section", text: { type: "mrkdwn", text } };
}
