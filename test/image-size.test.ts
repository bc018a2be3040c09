import { describe, expect, it } from "vitest";
import { AppError } from "../src/errors.ts";
import {
  COMMON_ASPECT_SIZES,
  parseAspect,
  parseSize,
  SIZE_RULES,
  sizeForAspect,
  sizeProblems,
  suggestSize,
  validateSize,
} from "../src/request/image-size.ts";

/** The rules written out again, independently of sizeProblems, so a bug there cannot hide here. */
function satisfiesRules(size: string): boolean {
  const match = /^(\d+)x(\d+)$/.exec(size);
  if (!match) return false;
  const width = Number(match[1]);
  const height = Number(match[2]);
  const long = Math.max(width, height);
  const short = Math.min(width, height);
  return (
    width % 16 === 0 &&
    height % 16 === 0 &&
    long <= 3 * short &&
    width * height >= 655_360 &&
    width * height <= 8_294_400 &&
    long <= 3840
  );
}

function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error("expected an AppError, nothing was thrown");
}

/** Small seeded PRNG (mulberry32) so the property checks are random-looking but repeatable. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe("COMMON_ASPECT_SIZES", () => {
  it("is the documented table", () => {
    expect(COMMON_ASPECT_SIZES).toEqual([
      { aspect: "1:1", size: "1024x1024" },
      { aspect: "5:4", size: "1280x1024" },
      { aspect: "4:5", size: "1024x1280" },
      { aspect: "4:3", size: "1360x1024" },
      { aspect: "3:4", size: "1024x1360" },
      { aspect: "3:2", size: "1536x1024" },
      { aspect: "2:3", size: "1024x1536" },
      { aspect: "16:9", size: "1536x864" },
      { aspect: "9:16", size: "864x1536" },
      { aspect: "21:9", size: "1536x656" },
      { aspect: "2:1", size: "1536x768" },
      { aspect: "1:2", size: "768x1536" },
      { aspect: "3:1", size: "1536x512" },
      { aspect: "1:3", size: "512x1536" },
    ]);
  });

  it.each(COMMON_ASPECT_SIZES.map((entry) => [entry.aspect, entry.size]))(
    "%s → %s satisfies every size rule and keeps the shape",
    (aspect, size) => {
      const { width, height } = parseSize(size) ?? { width: 0, height: 0 };
      expect(satisfiesRules(size)).toBe(true);
      expect(sizeProblems(width, height)).toEqual([]);
      expect(validateSize(size)).toBe(size);
      const [w, h] = aspect.split(":").map(Number) as [number, number];
      expect(Math.abs(width / height / (w / h) - 1)).toBeLessThan(0.01);
    },
  );
});

describe("sizeForAspect", () => {
  it.each([
    ["1:1", "1024x1024"],
    ["3:2", "1536x1024"],
    ["2:3", "1024x1536"],
    ["16:9", "1536x864"],
    ["9:16", "864x1536"],
    ["4:3", "1360x1024"],
    ["3:4", "1024x1360"],
    ["21:9", "1536x656"],
    ["2:1", "1536x768"],
    ["3:1", "1536x512"],
    ["1:3", "512x1536"],
    ["5:4", "1280x1024"],
    // Decimal ratios, equivalent spellings, spaces.
    ["1.91:1", "1536x800"],
    ["1:1.91", "800x1536"],
    ["32:18", "1536x864"],
    [" 16 : 9 ", "1536x864"],
    [".5:1", "768x1536"],
    // Just either side of the 3:2 switch: the rules meet there, so the sizes do not jump.
    ["1.5:1", "1536x1024"],
    ["1.51:1", "1536x1024"],
  ])("%s → %s", (aspect, size) => {
    expect(sizeForAspect(aspect)).toBe(size);
    expect(satisfiesRules(size)).toBe(true);
  });

  it.each([
    ["4:1", /too wide.*1:3.*3:1/],
    ["1:4", /too tall.*1:3.*3:1/],
    ["3.01:1", /too wide/],
    ["1:3.01", /too tall/],
    ["0:1", /not an aspect ratio/],
    ["16x9", /not an aspect ratio.*WIDTH:HEIGHT/],
    ["-1:2", /not an aspect ratio/],
    ["wide", /not an aspect ratio/],
    ["", /not an aspect ratio/],
  ])("rejects %j with invalid_flag", (aspect, message) => {
    const error = thrown(() => sizeForAspect(aspect));
    expect(error.code).toBe("invalid_flag");
    expect(error.userMessage).toMatch(message);
  });

  it("gives a valid size of the right shape for many random ratios within 1:3 … 3:1", () => {
    const next = random(20_240_611);
    for (let i = 0; i < 5000; i++) {
      const ratio = Math.exp((next() * 2 - 1) * Math.log(3));
      const aspect = ratio >= 1 ? `${ratio.toFixed(4)}:1` : `1:${(1 / ratio).toFixed(4)}`;
      const size = sizeForAspect(aspect);
      expect(satisfiesRules(size), `${aspect} → ${size}`).toBe(true);
      const { width, height } = parseSize(size) ?? { width: 0, height: 0 };
      const asked = parseAspect(aspect)?.ratio ?? Number.NaN;
      // Rounding one side (≥ 512 px) to 16 px moves the ratio by at most 8/512.
      expect(Math.abs(width / height / asked - 1), `${aspect} → ${size}`).toBeLessThanOrEqual(8 / 512 + 1e-9);
      // Orientation follows the ratio (a near-square ratio may round to a square).
      if (width !== height) expect(width > height).toBe(asked > 1);
    }
  });

  it("gives a valid size for every whole-number ratio up to 60:60 within bounds", () => {
    for (let w = 1; w <= 60; w++) {
      for (let h = 1; h <= 60; h++) {
        if (w > 3 * h || h > 3 * w) {
          expect(() => sizeForAspect(`${w}:${h}`)).toThrow(AppError);
        } else {
          expect(satisfiesRules(sizeForAspect(`${w}:${h}`)), `${w}:${h}`).toBe(true);
        }
      }
    }
  });
});

describe("validateSize", () => {
  it.each([
    ["auto", "auto"],
    ["AUTO", "auto"],
    [" 1024x1024 ", "1024x1024"],
    ["1024X1536", "1024x1536"],
    ["1536×1024", "1536x1024"],
    ["1536 x 1024", "1536x1024"],
    ["01024x01024", "1024x1024"],
    ["3840x2160", "3840x2160"],
    ["2160x3840", "2160x3840"],
    ["2880x2880", "2880x2880"],
    ["1024x640", "1024x640"],
    ["1536x512", "1536x512"],
    ["3840x1280", "3840x1280"],
  ])("accepts %j as %s", (text, size) => {
    expect(validateSize(text)).toBe(size);
  });

  // Each size breaks exactly the named rule (and no other), so the message must name that one.
  it.each([
    ["1000x1024", /multiples of 16 \(1000 not\)/],
    ["1030x1030", /multiples of 16 \(1030 not\)/],
    ["3840x1024", /aspect ratio must be between 1:3 and 3:1 \(this is 3\.75:1\)/],
    ["512x1600", /aspect ratio must be between 1:3 and 3:1 \(this is 1:3\.13\)/],
    ["3856x1296", /long side must be at most 3840/],
    ["2896x2896", /at most 8,294,400 pixels/],
    ["1008x640", /at least 655,360 pixels \(this has 645,120\)/],
    ["512x512", /at least 655,360 pixels/],
    ["0x1024", /whole numbers from 1 to 3840/],
  ])("rejects %s naming the rule it breaks, and suggests a valid size", (text, rule) => {
    const error = thrown(() => validateSize(text));
    expect(error.code).toBe("invalid_size");
    expect(error.userMessage).toMatch(rule);
    expect(error.userMessage.split(";")).toHaveLength(1);
    const suggestion = /Try (\d+x\d+)/.exec(error.userMessage)?.[1] ?? "";
    expect(satisfiesRules(suggestion), error.userMessage).toBe(true);
  });

  it("names every rule a size breaks at once", () => {
    const message = thrown(() => validateSize("4000x1000")).userMessage;
    expect(message).toMatch(/multiples of 16/);
    expect(message).toMatch(/aspect ratio/);
    expect(message).toMatch(/long side/);
  });

  it("suggests the nearest size on the 16-pixel grid when only the grid is wrong", () => {
    expect(thrown(() => validateSize("1000x1000")).userMessage).toMatch(/Try 1008x1008/);
    expect(thrown(() => validateSize("1920x1080")).userMessage).toMatch(/Try 1920x1088/);
  });

  it.each(["", "abc", "1024", "1024x", "x1024", "16:9", "1024x1024x2", "-1024x1024", "1024.5x1024"])(
    "rejects %j as not a size",
    (text) => {
      const error = thrown(() => validateSize(text));
      expect(error.code).toBe("invalid_size");
      expect(error.userMessage).toMatch(/WIDTHxHEIGHT/);
    },
  );

  it("does not print a 400-digit number back as Infinity", () => {
    const message = thrown(() => validateSize(`${"9".repeat(400)}x16`)).userMessage;
    expect(message).not.toMatch(/Infinity|NaN/);
  });
});

describe("suggestSize", () => {
  it("always suggests a valid size, for any input", () => {
    const next = random(7);
    for (let i = 0; i < 5000; i++) {
      const width = 1 + Math.floor(next() ** 2 * 12_000);
      const height = 1 + Math.floor(next() ** 2 * 12_000);
      const suggestion = suggestSize(width, height);
      expect(satisfiesRules(suggestion), `${width}x${height} → ${suggestion}`).toBe(true);
    }
    for (const [width, height] of [
      [1, 1],
      [1, 100_000],
      [100_000, 1],
      [Number.POSITIVE_INFINITY, 16],
      [0, 0],
    ] as const) {
      expect(satisfiesRules(suggestSize(width, height))).toBe(true);
    }
  });

  it("leaves a valid size as it is", () => {
    for (const { size } of COMMON_ASPECT_SIZES) {
      const { width, height } = parseSize(size) ?? { width: 0, height: 0 };
      expect(suggestSize(width, height)).toBe(size);
    }
  });
});

describe("parseSize and parseAspect", () => {
  it("parse without checking the rules", () => {
    expect(parseSize("10x20")).toEqual({ width: 10, height: 20 });
    expect(parseSize("auto")).toBeNull();
    expect(parseSize("16:9")).toBeNull();
    expect(parseAspect("16:9")).toEqual({ width: 16, height: 9, ratio: 16 / 9 });
    expect(parseAspect("10:1")?.ratio).toBe(10);
    expect(parseAspect("1x1")).toBeNull();
    expect(parseAspect("1:0")).toBeNull();
  });

  it("exposes the rules it enforces", () => {
    expect(SIZE_RULES).toEqual({
      multiple: 16,
      maxAspect: 3,
      minPixels: 655_360,
      maxPixels: 8_294_400,
      maxLongEdge: 3840,
    });
  });
});
