import { randomUUID } from "node:crypto";
import { ButtonStyle, ComponentType } from "discord.js";
import { describe, expect, it } from "vitest";
import {
  customIdsIn,
  decodeCustomId,
  describeTurn,
  encodeCustomId,
  failureContent,
  headMovedContent,
  imageIdFromComponents,
  MAX_CONTENT,
  MAX_CUSTOM_ID,
  missingPermissionsText,
  progressContent,
  resultComponents,
  resultContent,
  threadName,
  turnNonce,
  withLateNote,
} from "../adapters/discord/render.ts";
import { ASPECT_CHOICES, imagineCommand } from "../adapters/discord/setup.ts";
import { LATE_NOTE, statusText } from "../adapters/shared/render.ts";
import { DEFAULT_PARAMS, type ImageRecord, imageFileName, type Turn } from "../src/domain.ts";
import { imageRecord, turnRecord } from "./support/records.ts";

const THREAD_KEY = "discord:1200000000000000001:1300000000000000001:i-1500000000000000002";
const turn = (overrides: Partial<Turn> = {}): Turn =>
  turnRecord({ threadKey: THREAD_KEY, userId: "1400000000000000001", costUsd: 0.042, ...overrides });
const image = (index: number, parentId: string | null = null): ImageRecord =>
  imageRecord({ index, parentId, threadKey: THREAD_KEY, width: 1536 });

type Row = {
  type: number;
  components: Array<{ type: number; style: number; label: string; custom_id: string }>;
};

describe("custom_id", () => {
  it("round-trips every action with a UUID image id, well under Discord's 100 characters", () => {
    for (const action of ["undo", "variations", "regenerate", "use"] as const) {
      const imageId = randomUUID();
      const customId = encodeCustomId({ action, imageId });
      expect(customId.length).toBeLessThanOrEqual(MAX_CUSTOM_ID);
      expect(customId).toMatch(/^tc1:[uvrs]:[A-Za-z0-9_-]{22}$/);
      expect(decodeCustomId(customId)).toEqual({ action, imageId });
    }
  });

  it("keeps other ids as they are, and refuses ids that would not fit", () => {
    expect(decodeCustomId(encodeCustomId({ action: "use", imageId: "img-7" }))).toEqual({
      action: "use",
      imageId: "img-7",
    });
    expect(() => encodeCustomId({ action: "use", imageId: "x".repeat(100) })).toThrow(/does not fit/);
    expect(() => encodeCustomId({ action: "use", imageId: "a:b" })).toThrow(/does not fit/);
  });

  it("returns null for anything this app did not make", () => {
    for (const foreign of [
      "",
      "regen:1",
      "tc1",
      "tc1:u",
      "tc1:x:AAAAAAAAAAAAAAAAAAAAAA",
      "tc1:u:short",
      "tc1:u:=",
      "tc2:u:AAAAAAAAAAAAAAAAAAAAAA",
      `tc1:u:${"A".repeat(22)}:extra`,
    ])
      expect(decodeCustomId(foreign), foreign).toBeNull();
  });

  it("a turn id becomes a nonce of at most 25 characters, distinct per turn", () => {
    const a = turnNonce(randomUUID());
    const b = turnNonce(randomUUID());
    expect(a.length).toBeLessThanOrEqual(25);
    expect(a).not.toBe(b);
  });
});

describe("buttons", () => {
  it("one fresh image: Variations and Regenerate (nothing to undo)", () => {
    const first = image(0);
    const rows = resultComponents([first]) as Row[];
    expect(rows).toHaveLength(1);
    expect(rows[0]?.type).toBe(ComponentType.ActionRow);
    expect(rows[0]?.components.map((b) => b.label)).toEqual(["Variations", "Regenerate"]);
    expect(rows[0]?.components.every((b) => b.type === ComponentType.Button)).toBe(true);
    expect(rows[0]?.components.map((b) => decodeCustomId(b.custom_id)?.imageId)).toEqual([
      first.id,
      first.id,
    ]);
  });

  it("an edit adds Undo", () => {
    const rows = resultComponents([image(0, randomUUID())]) as Row[];
    expect(rows[0]?.components.map((b) => b.label)).toEqual(["Undo", "Variations", "Regenerate"]);
  });

  it("several images get a choice each, five to a row, every custom_id unique", () => {
    const images = Array.from({ length: 10 }, (_, i) => image(i));
    const rows = resultComponents(images) as Row[];
    expect(rows).toHaveLength(3); // Discord allows five rows of five
    expect(rows.slice(1).map((r) => r.components.length)).toEqual([5, 5]);
    const choices = rows.slice(1).flatMap((r) => r.components);
    expect(choices.map((b) => b.label)).toEqual(images.map((_, i) => `Use #${i + 1}`));
    expect(choices.every((b) => b.style === ButtonStyle.Primary)).toBe(true);
    expect(choices.map((b) => decodeCustomId(b.custom_id))).toEqual(
      images.map((img) => ({ action: "use", imageId: img.id })),
    );
    const ids = customIdsIn(rows);
    expect(new Set(ids).size).toBe(12); // Variations, Regenerate and ten choices
    expect(ids.every((id) => id.length <= MAX_CUSTOM_ID)).toBe(true);
  });

  it("reads back the image a message shows: the action buttons' image, from raw JSON or discord.js objects", () => {
    const images = [image(0), image(1)];
    const rows = resultComponents(images);
    expect(imageIdFromComponents(rows)).toBe(images[0]?.id);
    // discord.js wraps components: ActionRow { components: [ButtonComponent { customId, data }] }
    const wrapped = rows.map((row) => ({
      data: { type: row.type },
      components: row.components.map((b) => ({ data: b, customId: b.custom_id })),
    }));
    expect(imageIdFromComponents(wrapped)).toBe(images[0]?.id);
    expect(
      imageIdFromComponents([{ type: 1, components: [{ type: 2, custom_id: "someone-else" }] }]),
    ).toBeNull();
    expect(imageIdFromComponents([])).toBeNull();
  });
});

describe("text", () => {
  it("a prompt cannot become a link, restyle the message, or reorder the text after it", () => {
    const turn = turnRecord({ prompt: "[free nitro](https://evil.example) # big \u202Eevil" });
    const line = describeTurn(turn);
    expect(line).toContain("\\[free nitro](https://evil.example)"); // an escaped bracket starts no link
    expect(line).not.toMatch(/(?<!\\)\[free nitro\]/);
    expect(line).toContain("\u2068"); // the override sits inside an isolate…
    expect(line.indexOf("\u2069")).toBeGreaterThan(line.indexOf("\u202E")); // …that ends before our text resumes
    expect(describeTurn(turnRecord({ prompt: "a fox" }))).toBe("🖼️ “a fox”");
  });

  it("a late result says so on top, and still fits Discord's limit", () => {
    expect(withLateNote("**v2** · done")).toBe(`-# ${LATE_NOTE}\n**v2** · done`);
    const long = withLateNote("x".repeat(MAX_CONTENT));
    expect([...long]).toHaveLength(MAX_CONTENT);
    expect(long.startsWith(`-# ${LATE_NOTE}`)).toBe(true);
  });

  it("status lines", () => {
    expect(statusText({ state: "queued", position: 0 })).toBe("⏳ Queued");
    expect(statusText({ state: "queued", position: 2 })).toBe("⏳ Queued — 2 ahead in this thread");
    expect(statusText({ state: "drawing" })).toBe("🎨 Drawing…");
    expect(statusText({ state: "drawing", preview: 2 })).toBe("🎨 Drawing… (preview 2)");
    expect(statusText({ state: "retrying", reason: "OpenAI is busy.", retryInMs: 1500 })).toBe(
      "↻ OpenAI is busy. Retrying in 2 s.",
    );
    expect(statusText({ state: "retrying", reason: "OpenAI is busy.", retryInMs: null })).toBe(
      "↻ OpenAI is busy. Retrying.",
    );
  });

  it("progress names what was asked, who asked, and the parameters that differ from the defaults", () => {
    const text = progressContent(
      turn({ params: { ...DEFAULT_PARAMS, size: "1536x864", quality: "high", n: 4 } }),
      { state: "queued", position: 1 },
    );
    expect(text).toBe(
      "🖼️ “a fox” · 16:9 · 1536x864 · high · 4 images — <@1400000000000000001>\n⏳ Queued — 1 ahead in this thread",
    );
    expect(progressContent(turn({ kind: "edit", prompt: "make it *blue*" }), { state: "drawing" })).toContain(
      "✏️ “make it \\*blue\\*”",
    );
  });

  it("results: version, prompt, how to go on, size and cost; a long prompt stays within 2000 characters", () => {
    const one = resultContent(turn(), [image(0)]);
    expect(one).toContain("**v2** · 🖼️ “a fox” — <@1400000000000000001>");
    expect(one).toContain("Write in the thread to edit it");
    expect(one).toContain("-# 1536x1024 · ≈ $0.042");
    const four = resultContent(turn(), [image(0), image(1), image(2), image(3)], { replyHint: "reply" });
    expect(four).toContain("4 images. Reply to this message to edit #1, or pick another.");
    const long = resultContent(turn({ prompt: "word ".repeat(2000) }), [image(0)]);
    expect(long.length).toBeLessThanOrEqual(MAX_CONTENT);
  });

  it("says when an image was compressed to fit, and that the original is kept", () => {
    expect(resultContent(turn(), [image(0)], { compressed: new Set([0]) })).toMatch(
      /The image is a compressed copy .* the original is kept/,
    );
    expect(resultContent(turn(), [image(0), image(1), image(2)], { compressed: new Set([2, 0]) })).toMatch(
      /#1, #3 are a compressed copy/,
    );
  });

  it("failures, undo and choices in plain words", () => {
    expect(
      failureContent(
        turn({ kind: "edit", prompt: "x", status: "failed", errorMessage: "Blocked by safety." }),
      ),
    ).toBe("✖ ✏️ “x” — <@1400000000000000001>\nThis did not work: Blocked by safety.");
    expect(headMovedContent(turn({ kind: "undo" }), { seq: 1, index: 0 })).toContain(
      "Undone — back to **v1**",
    );
    expect(headMovedContent(turn({ kind: "select" }), { seq: 1, index: 2 })).toContain("Using **v1 #3**");
  });

  it("thread names: one line, at most 100 characters counted as Discord does, never empty", () => {
    expect(threadName("a lighthouse\nat dusk")).toBe("a lighthouse at dusk");
    const long = threadName("🦊".repeat(150));
    expect([...long]).toHaveLength(100);
    expect(long.endsWith("…")).toBe(true);
    expect(threadName("   ")).toBe("image");
  });

  it("file names follow the version", () => {
    expect(imageFileName(3, 1, "png")).toBe("v3-2.png");
    expect(imageFileName(3, 0, "jpeg")).toBe("v3-1.jpg");
  });

  it("missing permissions are named as Discord's settings name them", () => {
    expect(missingPermissionsText("1300000000000000001", ["SendMessages", "CreatePublicThreads"])).toContain(
      "I'm missing Send Messages, Create Public Threads",
    );
  });
});

describe("the /imagine command", () => {
  it("has the documented options, choices and ranges", () => {
    const command = imagineCommand();
    expect(command.name).toBe("imagine");
    const options = Object.fromEntries(
      (command.options ?? []).map((o) => [o.name, o as unknown as Record<string, unknown>]),
    );
    expect(Object.keys(options)).toEqual([
      "prompt",
      "aspect",
      "size",
      "quality",
      "count",
      "format",
      "image",
      "think",
    ]);
    expect(options.prompt?.required).toBe(true);
    expect((options.aspect?.choices as Array<{ value: string }> | undefined)?.map((c) => c.value)).toEqual([
      ...ASPECT_CHOICES,
    ]);
    expect(options.count).toMatchObject({ min_value: 1, max_value: 10 });
    expect((options.quality?.choices as Array<{ value: string }> | undefined)?.map((c) => c.value)).toEqual([
      "low",
      "medium",
      "high",
      "auto",
    ]);
    expect((options.format?.choices as Array<{ value: string }> | undefined)?.map((c) => c.value)).toEqual([
      "png",
      "jpeg",
      "webp",
    ]);
    expect(options.image?.type).toBe(11);
    expect(options.think?.type).toBe(5);
    expect(command.contexts).toEqual([0]); // servers only: threads need a server
  });
});
