import { AppError } from "../errors.ts";

/**
 * gpt-image-2's size rules, checked before any provider call so a bad `--size` or `--ar` costs nothing and gets
 * a message that says what to type instead. The rules (reference/protocols.md C8, and the Azure docs for the
 * pixel range) apply to explicit sizes only; `auto` lets the model choose.
 */
export const SIZE_RULES = {
  /** Both sides must be multiples of this. */
  multiple: 16,
  /** Long side / short side may be at most 3 (1:3 … 3:1). */
  maxAspect: 3,
  minPixels: 655_360,
  /** 3840 × 2160. */
  maxPixels: 8_294_400,
  maxLongEdge: 3840,
} as const;

export interface Dimensions {
  width: number;
  height: number;
}

/**
 * Reads `WxH` (also `W×H`, `W X H`, spaces around the separator) into numbers, without checking any rule.
 * Returns null for anything else, including `auto`.
 */
export function parseSize(text: string): Dimensions | null {
  const match = /^\s*(\d+)\s*[xX×]\s*(\d+)\s*$/u.exec(text);
  if (!match) return null;
  return { width: Number(match[1]), height: Number(match[2]) };
}

/** Every rule that `width × height` breaks, as phrases fit to show a user; empty when the size is valid. */
export function sizeProblems(width: number, height: number): string[] {
  const { multiple, maxAspect, minPixels, maxPixels, maxLongEdge } = SIZE_RULES;
  if (!(Number.isSafeInteger(width) && Number.isSafeInteger(height) && width > 0 && height > 0)) {
    return [`width and height must be whole numbers from 1 to ${maxLongEdge}`];
  }
  const problems: string[] = [];
  const notMultiples = [width, height].filter((side) => side % multiple !== 0);
  if (notMultiples.length > 0) {
    problems.push(
      `both sides must be multiples of ${multiple} (${[...new Set(notMultiples)].join(" and ")} not)`,
    );
  }
  const long = Math.max(width, height);
  const short = Math.min(width, height);
  if (long > maxAspect * short) {
    problems.push(
      `the aspect ratio must be between 1:${maxAspect} and ${maxAspect}:1 (this is ${formatRatio(long / short, width >= height)})`,
    );
  }
  if (long > maxLongEdge) {
    problems.push(
      `the long side must be at most ${maxLongEdge} pixels (the largest sizes are 3840x2160 and 2160x3840)`,
    );
  }
  const pixels = width * height;
  if (pixels < minPixels) {
    problems.push(
      `the image must have at least ${formatCount(minPixels)} pixels (this has ${formatCount(pixels)})`,
    );
  } else if (pixels > maxPixels) {
    problems.push(
      `the image must have at most ${formatCount(maxPixels)} pixels, i.e. 3840x2160 (this has ${formatCount(pixels)})`,
    );
  }
  return problems;
}

/**
 * Checks a user's size and returns it normalized: `auto`, or `WxH` with plain decimal numbers.
 * Throws AppError("invalid_size") naming every rule the size breaks and a valid size close to it.
 */
export function validateSize(text: string): string {
  const trimmed = text.trim();
  if (trimmed.toLowerCase() === "auto") return "auto";
  const size = parseSize(trimmed);
  if (!size) {
    const message =
      trimmed === ""
        ? "The size is empty. Give it as WIDTHxHEIGHT, e.g. 1536x1024, or auto."
        : `"${trimmed}" is not a size. Give it as WIDTHxHEIGHT, e.g. 1536x1024, or auto.`;
    throw new AppError("invalid_size", message);
  }
  const problems = sizeProblems(size.width, size.height);
  if (problems.length > 0) {
    // Echo what was typed when the numbers are too long to print back faithfully.
    const exact = Number.isSafeInteger(size.width) && Number.isSafeInteger(size.height);
    const shown = exact ? `${size.width}x${size.height}` : trimmed.slice(0, 40);
    const message =
      `The size ${shown} can't be used: ${problems.join("; ")}. ` +
      `Try ${suggestSize(size.width, size.height)}, or use --ar W:H to pick a shape.`;
    throw new AppError("invalid_size", message);
  }
  return `${size.width}x${size.height}`;
}

/**
 * A valid size close to `width × height`: the same shape (clamped to 1:3 … 3:1), the same pixel count (clamped
 * to the allowed range, long side at most 3840), sides on the 16-pixel grid. Of the grid sizes around that
 * target it picks the valid one whose sides differ least, in proportion, from the target's.
 */
export function suggestSize(width: number, height: number): string {
  const { multiple, maxAspect, minPixels, maxPixels, maxLongEdge } = SIZE_RULES;
  if (!(width > 0 && height > 0)) return "1024x1024";
  // Absurd inputs (a 400-digit side is Infinity) would turn the arithmetic below into NaN; anything past a
  // million pixels a side is clamped by the rules anyway.
  const w = Math.min(width, 1e6);
  const h = Math.min(height, 1e6);
  const ratio = Math.min(maxAspect, Math.max(1 / maxAspect, w / h));
  const pixels = Math.min(maxPixels, Math.max(minPixels, w * h));
  let targetHeight = Math.sqrt(pixels / ratio);
  let targetWidth = targetHeight * ratio;
  const shrink = Math.min(1, maxLongEdge / Math.max(targetWidth, targetHeight));
  targetWidth *= shrink;
  targetHeight *= shrink;

  // Two grid steps either way around the target is always enough to find a valid size; the loop below proves
  // it for every shape the property test throws at it.
  const around = (target: number) => {
    const base = Math.floor(target / multiple) * multiple;
    return [-1, 0, 1, 2].map((step) => base + step * multiple).filter((side) => side > 0);
  };
  let best: { size: string; distance: number } | null = null;
  for (const candidateWidth of around(targetWidth)) {
    for (const candidateHeight of around(targetHeight)) {
      if (sizeProblems(candidateWidth, candidateHeight).length > 0) continue;
      const distance =
        Math.abs(Math.log(candidateWidth / targetWidth)) + Math.abs(Math.log(candidateHeight / targetHeight));
      if (!best || distance < best.distance)
        best = { size: `${candidateWidth}x${candidateHeight}`, distance };
    }
  }
  return best?.size ?? (width >= height ? "1536x1024" : "1024x1536");
}

export interface AspectRatio {
  width: number;
  height: number;
  /** width / height */
  ratio: number;
}

/** Reads `W:H` (whole or decimal numbers, e.g. `16:9`, `1.91:1`) without checking its range; null otherwise. */
export function parseAspect(text: string): AspectRatio | null {
  const match = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*:\s*(\d+(?:\.\d+)?|\.\d+)\s*$/u.exec(text);
  if (!match) return null;
  const width = Number(match[1]);
  const height = Number(match[2]);
  if (!(width > 0 && height > 0)) return null;
  return { width, height, ratio: width / height };
}

/**
 * The size used for an aspect ratio `W:H`. Deterministic, so the same `--ar` always gives the same image shape:
 *
 * - up to 3:2 (or 2:3) the SHORT side is 1024 and the long side is 1024 × ratio;
 * - wider than 3:2 (or taller than 2:3) the LONG side is 1536 and the short side is 1536 ÷ ratio;
 *
 * with the computed side rounded to the nearest multiple of 16 (halves round up). This reproduces the model's
 * standard sizes (1024x1024, 1536x1024, 1024x1536), keeps every result between ~0.79 and ~2.4 megapixels (cost
 * and latency close to the standard sizes), and every result satisfies the size rules (see COMMON_ASPECT_SIZES).
 * Throws AppError("invalid_flag") when the text is not a ratio or is outside 1:3 … 3:1.
 */
export function sizeForAspect(text: string): string {
  const aspect = parseAspect(text);
  if (!aspect) {
    throw new AppError(
      "invalid_flag",
      `"${text.trim()}" is not an aspect ratio. Give it as WIDTH:HEIGHT with numbers above 0, e.g. 16:9, 4:5 or 1.91:1.`,
    );
  }
  const { ratio } = aspect;
  const { maxAspect, multiple } = SIZE_RULES;
  if (ratio > maxAspect || ratio < 1 / maxAspect) {
    const shape = ratio > 1 ? "wide" : "tall";
    throw new AppError(
      "invalid_flag",
      `The aspect ratio ${text.trim()} is too ${shape}: gpt-image-2 supports 1:3 (tall) to 3:1 (wide).`,
    );
  }
  const stretch = Math.max(ratio, 1 / ratio);
  const round = (side: number) => Math.round(side / multiple) * multiple;
  const [long, short] = stretch <= 1.5 ? [round(1024 * stretch), 1024] : [1536, round(1536 / stretch)];
  return ratio >= 1 ? `${long}x${short}` : `${short}x${long}`;
}

/** The sizes the common aspect ratios map to (for the README and help text). */
export const COMMON_ASPECT_SIZES: ReadonlyArray<{ readonly aspect: string; readonly size: string }> = [
  "1:1",
  "5:4",
  "4:5",
  "4:3",
  "3:4",
  "3:2",
  "2:3",
  "16:9",
  "9:16",
  "21:9",
  "2:1",
  "1:2",
  "3:1",
  "1:3",
].map((aspect) => ({ aspect, size: sizeForAspect(aspect) }));

function formatRatio(stretch: number, wide: boolean): string {
  const value = Number(stretch.toFixed(2)).toString();
  return wide ? `${value}:1` : `1:${value}`;
}

function formatCount(count: number): string {
  return count.toLocaleString("en-US");
}
