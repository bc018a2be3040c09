import { describe, expect, it } from "vitest";
import type { ImageParams } from "../src/domain.ts";
import { AppError, type ErrorCode } from "../src/errors.ts";
import { describeParams, FLAG_HELP, type ParsedImagine, parseImagineText } from "../src/request/flags.ts";

const VALID_FLAGS = "--ar, --size, --quality, --n, --format, --transparent, --think";

function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error("expected an AppError, nothing was thrown");
}

/** A message fit to show a user: a sentence, nothing leaked from the code. */
function expectReadable(message: string): void {
  expect(message).toMatch(/^[A-Z"-]/);
  expect(message).toMatch(/[.?]$/);
  expect(message).not.toMatch(/undefined|NaN|\[object|Infinity/);
}

function expectError(text: string, code: ErrorCode, message: RegExp): AppError {
  const error = thrown(() => parseImagineText(text));
  expect(error.code, error.message).toBe(code);
  expect(error.userMessage).toMatch(message);
  expectReadable(error.userMessage);
  return error;
}

describe("parseImagineText: flags", () => {
  it.each<[string, ParsedImagine]>([
    ["a red fox", { prompt: "a red fox", params: {} }],
    ["a red fox --ar 16:9", { prompt: "a red fox", params: { size: "1536x864" }, aspect: "16:9" }],
    ["a red fox --ar 1.91:1", { prompt: "a red fox", params: { size: "1536x800" }, aspect: "1.91:1" }],
    ["a red fox --aspect 2:3", { prompt: "a red fox", params: { size: "1024x1536" }, aspect: "2:3" }],
    ["a red fox --size 1024x1536", { prompt: "a red fox", params: { size: "1024x1536" } }],
    ["a red fox --size 3840X2160", { prompt: "a red fox", params: { size: "3840x2160" } }],
    ["a red fox --size auto", { prompt: "a red fox", params: { size: "auto" } }],
    ["a red fox --quality low", { prompt: "a red fox", params: { quality: "low" } }],
    ["a red fox --quality medium", { prompt: "a red fox", params: { quality: "medium" } }],
    ["a red fox --quality high", { prompt: "a red fox", params: { quality: "high" } }],
    ["a red fox --quality auto", { prompt: "a red fox", params: { quality: "auto" } }],
    ["a red fox --quality HIGH", { prompt: "a red fox", params: { quality: "high" } }],
    ["a red fox --n 1", { prompt: "a red fox", params: { n: 1 } }],
    ["a red fox --n 10", { prompt: "a red fox", params: { n: 10 } }],
    ["a red fox --n 04", { prompt: "a red fox", params: { n: 4 } }],
    ["a red fox --format png", { prompt: "a red fox", params: { format: "png" } }],
    ["a red fox --format jpeg", { prompt: "a red fox", params: { format: "jpeg" } }],
    ["a red fox --format jpg", { prompt: "a red fox", params: { format: "jpeg" } }],
    ["a red fox --format WebP", { prompt: "a red fox", params: { format: "webp" } }],
    ["a red fox --transparent", { prompt: "a red fox", params: { background: "transparent" } }],
    ["a red fox --think", { prompt: "a red fox", params: { think: true } }],
    [
      "a red fox --AR 3:2 --Think",
      { prompt: "a red fox", params: { size: "1536x1024", think: true }, aspect: "3:2" },
    ],
  ])("%j", (text, expected) => {
    expect(parseImagineText(text)).toEqual(expected);
  });

  it("reads every flag together, in any order", () => {
    const expected: ParsedImagine = {
      prompt: "a poster for our launch",
      params: {
        size: "1536x864",
        quality: "high",
        n: 4,
        format: "webp",
        background: "transparent",
        think: true,
      },
      aspect: "16:9",
    };
    expect(
      parseImagineText(
        "a poster for our launch --ar 16:9 --quality high --n 4 --format webp --transparent --think",
      ),
    ).toEqual(expected);
    expect(
      parseImagineText(
        "a poster for our launch --think --transparent --format webp --n 4 --quality high --ar 16:9",
      ),
    ).toEqual(expected);
  });

  it.each([
    ["--flag=value", "a fox --ar=16:9 --quality=high --n=3 --format=jpg"],
    ["em dashes", "a fox —ar 16:9 —quality high —n 3 —format jpg"],
    ["en dashes", "a fox –ar 16:9 –quality high –n 3 –format jpg"],
    ["em dashes with =", "a fox —ar=16:9 —quality=high —n=3 —format=jpg"],
    ["mixed", "a fox —ar 16:9 --quality=high –n 3 --format jpg"],
    ["newlines and tabs between flags", "a fox\n--ar\t16:9\n--quality high\r\n--n 3 --format jpg"],
    ["no-break and ideographic spaces", "a fox\u00a0--ar\u300016:9 --quality high --n 3 --format jpg"],
  ])("accepts %s", (_label, text) => {
    const parsed = parseImagineText(text);
    expect(parsed.prompt).toBe("a fox");
    expect(parsed.params).toMatchObject({ quality: "high", n: 3, format: "jpeg" });
  });

  it("reads `=` values for every value flag", () => {
    expect(parseImagineText("x --size=1024x1024").params).toEqual({ size: "1024x1024" });
    expect(parseImagineText("x --ar=21:9").params).toEqual({ size: "1536x656" });
  });

  it.each([
    ["a -- b", "a -- b"],
    ["--- divider ---", "--- divider ---"],
    ["a cat -- the end --", "a cat -- the end --"],
    ["x --2 y", "x --2 y"],
    ["well-known--thing", "well-known--thing"],
    ["a cat — the end", "a cat — the end"],
    ["a cat – 1999", "a cat – 1999"],
    ["em—dash—inside words", "em—dash—inside words"],
    // An autocorrected dash before an ordinary word is prose, not a flag.
    ["a cat —fluffy and small", "a cat —fluffy and small"],
    ["a cat –nothing more", "a cat –nothing more"],
    ["out —at night", "out —at night"],
    ["a poster —art deco", "a poster —art deco"],
  ])("keeps %j as prompt text", (text, prompt) => {
    expect(parseImagineText(text)).toEqual({ prompt, params: {} });
  });

  it("starts the flags at the first flag even after prompt dashes", () => {
    expect(parseImagineText("a -- b --- c --n 2")).toEqual({ prompt: "a -- b --- c", params: { n: 2 } });
    expect(parseImagineText("a cat —fluffy —ar 1:1")).toEqual({
      prompt: "a cat —fluffy",
      params: { size: "1024x1024" },
      aspect: "1:1",
    });
  });
});

describe("parseImagineText: errors", () => {
  it.each([
    ["--qualty", "--quality"],
    ["--quallity", "--quality"],
    ["--qual", "--quality"],
    ["--szie", "--size"],
    ["--sise", "--size"],
    ["--thnik", "--think"],
    ["--thinking", "--think"],
    ["--fromat", "--format"],
    ["--formats", "--format"],
    ["--transparant", "--transparent"],
    ["--trans", "--transparent"],
    ["--ra", "--ar"],
    ["--a", "--ar"],
    ["--q", "--quality"],
    ["--count", "--n"],
    ["--ratio", "--ar"],
  ])("unknown %s hints %s", (flag, hint) => {
    const error = expectError(`a fox ${flag} x`, "unknown_flag", new RegExp(`Unknown flag ${flag}\\.`));
    expect(error.userMessage).toContain(`Did you mean ${hint}`);
    expect(error.userMessage).toContain(`Valid flags: ${VALID_FLAGS}.`);
  });

  it.each(["--banana", "--xyz", "--nope"])("unknown %s lists the valid flags without a hint", (flag) => {
    const error = expectError(
      `a fox ${flag}`,
      "unknown_flag",
      new RegExp(`Unknown flag ${flag}\\. Valid flags`),
    );
    expect(error.userMessage).not.toContain("Did you mean");
  });

  it.each([
    ["--no", /--no is a Midjourney flag; here, say what to leave out in the prompt itself/],
    ["--stylize", /--stylize is a Midjourney flag that gpt-image-2 has no equivalent for/],
    ["--chaos", /Midjourney/],
    ["--v", /Midjourney/],
  ])("Midjourney's %s gets advice, not a misleading hint", (flag, advice) => {
    const error = expectError(`a fox ${flag} 5`, "unknown_flag", advice);
    expect(error.userMessage).not.toMatch(/Did you mean --n\b/);
  });

  it("reports an unknown flag typed with an em dash once flags have started", () => {
    expectError("a fox --n 2 —banana", "unknown_flag", /Unknown flag --banana/);
  });

  it("treats an em-dash near-miss as a flag so the typo is reported", () => {
    expectError("a fox —qualty high", "unknown_flag", /Did you mean --quality\?/);
  });

  it.each([
    ["a fox --ar", /--ar needs a value \(W:H\), e\.g\. --ar 16:9/],
    ["a fox --ar=", /--ar needs a value/],
    ["a fox --size", /--size needs a value \(WxH\|auto\)/],
    ["a fox --quality", /--quality needs a value \(low\|medium\|high\|auto\)/],
    ["a fox --n", /--n needs a value \(1\.\.10\)/],
    ["a fox --n --think", /--n needs a value/],
    ["a fox --format —think", /--format needs a value \(png\|jpeg\|webp\)/],
  ])("missing value: %j", (text, message) => {
    expectError(text, "invalid_flag", message);
  });

  it.each([
    ["a fox --n 0", /--n must be a whole number from 1 to 10 \(got "0"\)/],
    ["a fox --n 11", /--n must be a whole number from 1 to 10 \(got "11"\)/],
    ["a fox --n 2.5", /--n must be a whole number from 1 to 10 \(got "2\.5"\)/],
    ["a fox --n -1", /from 1 to 10 \(got "-1"\)/],
    ["a fox --n four", /from 1 to 10 \(got "four"\)/],
    ["a fox --n 1e1", /from 1 to 10/],
    ["a fox --quality ultra", /--quality must be low, medium, high or auto \(got "ultra"\)/],
    ["a fox --quality hd", /--quality must be low, medium, high or auto/],
    ["a fox --format gif", /--format must be png, jpeg or webp \(got "gif"\)/],
    ["a fox --ar 4:1", /aspect ratio 4:1 is too wide: gpt-image-2 supports 1:3 \(tall\) to 3:1 \(wide\)/],
    ["a fox --ar 1:5", /too tall/],
    ["a fox --ar 16x9", /"16x9" is not an aspect ratio/],
    ["a fox --ar 16:9 --size 1024x1024", /Use --ar or --size, not both/],
    ["a fox --size 1024x1024 --ar 16:9", /Use --ar or --size, not both/],
    [
      "a fox --format jpeg --transparent",
      /--transparent needs --format png or webp: JPEG has no transparency/,
    ],
    ["a fox --transparent --format jpg", /--transparent needs --format png or webp/],
    ["a fox --n 2 --n 3", /--n is given twice \(2 and 3\); give each flag once/],
    ["a fox --n=2 --n=2", /--n is given twice/],
    ["a fox --think --think", /--think is given twice; give each flag once/],
    ["a fox --ar 1:1 --aspect 1:1", /--ar is given twice/],
    ["a fox --quality high —quality low", /--quality is given twice/],
    ["a fox --think=yes", /--think is a switch and takes no value/],
    ["a fox --transparent=true", /--transparent is a switch/],
    [
      "--ar 16:9 a red fox",
      /--ar takes one value \(16:9\), so "a red fox" was not understood\. Put the whole prompt first/,
    ],
    ["a fox --think harder please", /--think takes no value, so "harder please" was not understood/],
    ["a fox --n 2 3", /--n takes one value \(2\), so "3" was not understood/],
    ["a fox --n 2 -- --think", /"--" was not understood/],
  ])("invalid_flag: %j", (text, message) => {
    expectError(text, "invalid_flag", message);
  });

  it.each([
    ["a fox --size 1000x1000", /multiples of 16.*Try 1008x1008/],
    ["a fox --size 4096x4096", /long side must be at most 3840/],
    ["a fox --size 512x512", /at least 655,360 pixels/],
    ["a fox --size 3840x1024", /aspect ratio must be between 1:3 and 3:1/],
    ["a fox --size big", /"big" is not a size/],
  ])("invalid_size: %j", (text, message) => {
    expectError(text, "invalid_size", message);
  });

  it("checks flags before the prompt, so the more helpful message wins", () => {
    expectError("--ar 16:9 a red fox", "invalid_flag", /Put the whole prompt first/);
  });
});

describe("parseImagineText: prompt", () => {
  const prompts = [
    "東京の夜景、雨に濡れた路面、ネオンの反射",
    "一只在月球上弹吉他的熊猫",
    "고양이가 우주복을 입고 있는 모습",
    "قطة على سطح القمر ترتدي بدلة فضاء",
    "חתול על הירח",
    "قطة cat חתול mixed ←→ directions \u200f\u200e",
    "می‌خواهم یک گربه", // zero-width non-joiner inside a word
    "family 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👍🏽 and 🇯🇵",
    "café vs cafe\u0301 (combining acute, not normalized)",
    "Z\u0351\u0348a\u0364l\u0357g\u0306o",
    "नमस्ते दुनिया",
    "line one\n\nline two\twith a tab   and   spaces",
    "a\u200bzero\u200cwidth\u200djoiners\u2060",
    "𝕗𝕒𝕟𝕔𝕪 𝓵𝓮𝓽𝓽𝓮𝓻𝓼 and 𠜎𠜱 (astral)",
    "quotes \"double\" 'single' `back` and \\backslash\\ and <angle> & amp",
  ];

  it.each(prompts)("keeps %j byte for byte", (prompt) => {
    for (const text of [
      prompt,
      `  \n${prompt}\t `,
      `${prompt} --ar 16:9 --n 2`,
      `\u3000${prompt}\n—ar 1:1`,
    ]) {
      const parsed = parseImagineText(text);
      expect(
        Buffer.from(parsed.prompt, "utf8").equals(Buffer.from(prompt, "utf8")),
        JSON.stringify(text),
      ).toBe(true);
    }
  });

  it("trims only the surrounding whitespace", () => {
    expect(parseImagineText("\n\t  a  b \n c  \r\n").prompt).toBe("a  b \n c");
    expect(parseImagineText("  a  b   --n 2").prompt).toBe("a  b");
  });

  it("rejects an empty prompt, with or without flags", () => {
    for (const text of ["", "   ", "\n\t", "--ar 16:9", "  --n 2 --think"]) {
      expectError(text, "prompt_empty", /Say what to draw before the flags, e\.g\. \/imagine/);
    }
  });

  it("rejects a prompt of only invisible characters, and keeps ones that mix them with text", () => {
    for (const text of ["\u200B", "\u200B\u200C\u2060", "\u2066\u2069 --n 2", "\u00AD\uFEFF", "\u0007"]) {
      expectError(text, "prompt_empty", /no visible characters/);
    }
    expect(parseImagineText("a\u200Bfox").prompt).toBe("a\u200Bfox");
    expect(parseImagineText("\u2067שלום\u2069 fox").prompt).toBe("\u2067שלום\u2069 fox");
    expect(parseImagineText("👩🏽‍🚀").prompt).toBe("👩🏽‍🚀"); // a ZWJ sequence is visible
  });

  it("allows an empty prompt when asked to (variations)", () => {
    expect(parseImagineText("", { allowEmptyPrompt: true })).toEqual({ prompt: "", params: {} });
    expect(parseImagineText("  --n 3 --ar 1:1", { allowEmptyPrompt: true })).toEqual({
      prompt: "",
      params: { n: 3, size: "1024x1024" },
      aspect: "1:1",
    });
    expect(() => parseImagineText("--n 11", { allowEmptyPrompt: true })).toThrow(/from 1 to 10/);
  });

  it("accepts 32,000 characters and rejects 32,001", () => {
    expect(parseImagineText(`${"a".repeat(32_000)} --n 2`).prompt).toHaveLength(32_000);
    const error = expectError(
      "a".repeat(32_001),
      "prompt_too_long",
      /The prompt is 32,001 characters; the limit is 32,000\. Shorten it by 1\./,
    );
    expect(error.retryable).toBe(false);
  });

  it("counts Unicode code points, so an emoji counts once (as OpenAI counts)", () => {
    // 32,000 code points but 64,000 UTF-16 units: accepted.
    expect([...parseImagineText("🦊".repeat(32_000)).prompt]).toHaveLength(32_000);
    expectError("🦊".repeat(32_001), "prompt_too_long", /32,001 characters/);
    // Surrounding whitespace does not count.
    expect(() => parseImagineText(`   ${"a".repeat(32_000)}   `)).not.toThrow();
  });
});

describe("describeParams", () => {
  it.each<[Partial<ImageParams>, string | undefined, string]>([
    [
      { size: "1536x864", quality: "high", n: 4, format: "webp", background: "transparent", think: true },
      "16:9",
      "16:9 · 1536x864 · high · 4 images · webp · transparent · think",
    ],
    [{ size: "1536x864" }, undefined, "16:9 · 1536x864"],
    [{ size: "1360x1024" }, undefined, "4:3 · 1360x1024"],
    [{ size: "1536x800" }, "1.91:1", "1.91:1 · 1536x800"],
    [{ size: "2048x1152" }, undefined, "2048x1152"],
    [{ quality: "low", n: 2 }, undefined, "low · 2 images"],
    [{ background: "opaque", format: "jpeg" }, undefined, "jpeg · opaque"],
    [{ size: "auto", quality: "auto", n: 1, format: "png", background: "auto", think: false }, undefined, ""],
    [{}, undefined, ""],
  ])("%j → %j", (params, aspect, text) => {
    expect(describeParams(params, aspect)).toBe(text);
  });

  it("describes what the parser returns", () => {
    const parsed = parseImagineText("a fox --ar 9:16 --n 2 --think");
    expect(describeParams(parsed.params, parsed.aspect)).toBe("9:16 · 864x1536 · 2 images · think");
  });
});

describe("FLAG_HELP", () => {
  it("names every flag and its values", () => {
    for (const part of [
      "--ar W:H",
      "--size WxH|auto",
      "--quality low|medium|high|auto",
      "--n 1..10",
      "--format png|jpeg|webp",
      "--transparent",
      "--think",
      "16:9 1536x864",
    ]) {
      expect(FLAG_HELP).toContain(part);
    }
  });

  it("parses its own example", () => {
    const example = /Example: \/imagine (.*)$/m.exec(FLAG_HELP)?.[1] ?? "";
    expect(parseImagineText(example).params).toEqual({ size: "1536x864", quality: "high", n: 2 });
  });
});
