import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LATE_NOTE, statusText } from "../adapters/shared/render.ts";
import {
  ACTION_IDS,
  decodeButtonValue,
  encodeButtonValue,
  escapeMrkdwn,
  resultMessage,
  rootMessage,
  withLateNote,
} from "../adapters/slack/render.ts";
import { slackManifest } from "../adapters/slack/setup.ts";
import type { ImageRecord, Thread, Turn } from "../src/domain.ts";
import { imageRecord, turnRecord } from "./support/records.ts";

const thread: Thread = {
  key: "slack:T1:C1:1712.0001",
  platform: "slack",
  headImageId: "img-2",
  title: "a fox",
  createdBy: "U1",
  workspaceId: "T1",
  channelId: "C1",
  meta: {},
  createdAt: new Date(0),
  updatedAt: new Date(0),
};
const turn = (overrides: Partial<Turn> = {}): Turn =>
  turnRecord({ id: "turn-1", threadKey: thread.key, ...overrides });
const image = (index: number, parentId: string | null = null): ImageRecord =>
  imageRecord({ index, parentId, id: `img-${index}`, threadKey: thread.key, byteSize: 10 });

type Block = {
  type: string;
  block_id?: string;
  elements?: Array<{ action_id: string; value: string; text: { text: string } }>;
};
const buttonsOf = (blocks: unknown[]) =>
  (blocks as Block[]).filter((b) => b.type === "actions").flatMap((b) => b.elements ?? []);

describe("slack rendering", () => {
  it("round-trips button values and rejects values it did not make", () => {
    const value = { t: thread.key, i: "img-1" };
    expect(decodeButtonValue(encodeButtonValue(value))).toEqual(value);
    expect(decodeButtonValue("job-42")).toBeNull();
    expect(decodeButtonValue(JSON.stringify({ t: 1 }))).toBeNull();
    expect(
      encodeButtonValue({ t: "slack:T0123456789:C0123456789:1712345678.123456", i: crypto.randomUUID() })
        .length,
    ).toBeLessThan(2000);
  });

  it("offers Undo only when there is a previous version", () => {
    const first = buttonsOf(resultMessage(thread, turn(), [image(0)]).blocks);
    expect(first.map((b) => b.text.text)).toEqual(["Variations", "Regenerate"]);
    const edited = buttonsOf(resultMessage(thread, turn({ kind: "edit" }), [image(0, "img-parent")]).blocks);
    expect(edited.map((b) => b.action_id)).toEqual([
      ACTION_IDS.undo,
      ACTION_IDS.variations,
      ACTION_IDS.regenerate,
    ]);
  });

  it("gives several images each a 'Use' button with an action_id unique in its block", () => {
    const images = [0, 1, 2, 3, 4, 5].map((i) => image(i));
    const { blocks } = resultMessage(thread, turn(), images);
    const choiceBlocks = (blocks as Block[]).filter((b) => b.block_id?.startsWith("tc_choices"));
    expect(choiceBlocks).toHaveLength(2); // Slack allows 5 buttons per actions block here
    for (const block of choiceBlocks) {
      const ids = (block.elements ?? []).map((e) => e.action_id);
      expect(new Set(ids).size).toBe(ids.length);
    }
    const uses = buttonsOf(blocks).filter((b) => b.action_id.startsWith(ACTION_IDS.use));
    expect(uses.map((b) => decodeButtonValue(b.value)?.i)).toEqual(images.map((i) => i.id));
  });

  it("escapes user text so a prompt cannot mention or link", () => {
    expect(escapeMrkdwn("<!channel> & <@U1>")).toBe("&lt;!channel&gt; &amp; &lt;@U1&gt;");
    const root = rootMessage(
      { userId: "U9", prompt: "<!here> a fox", params: { size: "1536x864" } },
      { state: "queued", position: 0 },
    );
    expect(JSON.stringify(root)).not.toContain("<!here>");
    expect(root.text).toContain("<@U9>");
  });

  it("says where a turn stands", () => {
    expect(statusText({ state: "queued", position: 2 })).toMatch(/2 ahead/);
    expect(statusText({ state: "retrying", reason: "OpenAI is busy.", retryInMs: 1500 })).toMatch(
      /Retrying in 2 s/,
    );
    expect(statusText({ state: "failed", reason: "Blocked by the safety system." })).toMatch(/safety/);
  });

  it("a prompt with bidirectional overrides cannot reorder the text after it", () => {
    const { blocks } = rootMessage(
      { userId: "U1", prompt: "ok \u202Edevorppa", params: {} },
      { state: "queued", position: 0 },
    );
    const text = (blocks[0] as { text: { text: string } }).text.text;
    expect(text).toBe("<@U1> asked for “\u2068ok \u202Edevorppa\u2069”");
    expect(
      rootMessage({ userId: "U1", prompt: "a fox", params: {} }, { state: "queued", position: 0 }).text,
    ).toMatch(/^<@U1> asked for “a fox”/);
  });

  it("a late result says so on top, in its text and its blocks", () => {
    const late = withLateNote(resultMessage(thread, turnRecord({ seq: 2 }), [imageRecord({ index: 0 })]));
    expect(late.text).toMatch(/^⏱ Arriving late.*\nVersion 2/s);
    expect(late.blocks[0]).toEqual({ type: "context", elements: [{ type: "mrkdwn", text: LATE_NOTE }] });
    const onTime = resultMessage(thread, turnRecord({ seq: 2 }), [imageRecord({ index: 0 })]);
    expect(late.blocks.slice(1)).toHaveLength(onTime.blocks.length);
    expect(withLateNote({ text: "✖ Edit failed" })).toEqual({ text: `${LATE_NOTE}\n✖ Edit failed` });
  });

  it("the manifest asks for what the adapter uses", () => {
    const manifest = JSON.parse(
      readFileSync(new URL("../adapters/slack/manifest.json", import.meta.url), "utf8"),
    );
    expect(manifest.features.slash_commands.map((c: { command: string }) => c.command)).toEqual([
      "/imagine",
      "/canvas",
    ]);
    expect(manifest.oauth_config.scopes.bot).toEqual(
      expect.arrayContaining([
        "commands",
        "chat:write",
        "files:write",
        "files:read",
        "app_mentions:read",
        "channels:history",
      ]),
    );
    expect(manifest.settings.event_subscriptions.bot_events).toEqual(
      expect.arrayContaining(["app_mention", "message.channels"]),
    );
    expect(manifest.settings.interactivity.is_enabled).toBe(true);
  });

  it("npm run slack:manifest fills in the public URL, or turns on Socket Mode", () => {
    const http = slackManifest({ publicUrl: "https://canvas.example.com/" });
    const urls = [
      ...http.features.slash_commands.map((command) => command.url),
      http.settings.event_subscriptions.request_url,
      http.settings.interactivity.request_url,
    ];
    expect(urls).toEqual(Array(4).fill("https://canvas.example.com/slack/events"));
    expect(http.settings.socket_mode_enabled).toBe(false);
    expect(slackManifest({ socketMode: true }).settings.socket_mode_enabled).toBe(true);
    // The committed manifest is the template: printing one leaves it as it was.
    expect(slackManifest().settings.interactivity.request_url).toBe(
      "https://threadcanvas.example.com/slack/events",
    );

    const run = (...args: string[]) =>
      spawnSync(process.execPath, ["--import", "tsx", "adapters/slack/setup.ts", ...args], {
        cwd: new URL("..", import.meta.url),
        encoding: "utf8",
      });
    const printed = run("https://canvas.example.com");
    expect(printed.status).toBe(0);
    expect(JSON.parse(printed.stdout)).toEqual(slackManifest({ publicUrl: "https://canvas.example.com" }));
    const bad = run("canvas.example.com");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/Usage: npm run slack:manifest/);
  });
});
