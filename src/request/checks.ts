import type { ImageParams } from "../domain.ts";
import { AppError } from "../errors.ts";
import { validateSize } from "./image-size.ts";

/** Any character a person can see: not whitespace, a control (Cc), a format mark (Cf) or unassigned. */
const VISIBLE = /[^\p{White_Space}\p{Cc}\p{Cf}\p{Cn}]/u;

/** OpenAI's limit for gpt-image prompts. */
export const MAX_PROMPT_CHARS = 32_000;

const QUALITIES = new Set(["low", "medium", "high", "auto"]);
const FORMATS = new Set(["png", "jpeg", "webp"]);
const BACKGROUNDS = new Set(["transparent", "opaque", "auto"]);

/**
 * Checks a prompt from any adapter (typed text, Discord options, a reply). Returns it trimmed and otherwise
 * byte-for-byte as given.
 *
 * Length is counted in Unicode code points (`[...prompt].length`): OpenAI documents the limit as 32,000
 * "characters" and its servers count Python `len()`, i.e. code points. UTF-16 units would count an emoji as 2
 * and reject some prompts the API accepts; grapheme clusters would count a ZWJ family as 1 and let through
 * prompts it rejects.
 */
export function checkPrompt(prompt: string): string {
  const trimmed = prompt.trim();
  if (trimmed === "") {
    throw new AppError(
      "prompt_empty",
      "Say what to draw before the flags, e.g. /imagine a red fox in snow --ar 16:9.",
    );
  }
  const length = [...trimmed].length;
  if (length > MAX_PROMPT_CHARS) {
    const over = (length - MAX_PROMPT_CHARS).toLocaleString("en-US");
    throw new AppError(
      "prompt_too_long",
      `The prompt is ${length.toLocaleString("en-US")} characters; the limit is ` +
        `${MAX_PROMPT_CHARS.toLocaleString("en-US")}. Shorten it by ${over}.`,
    );
  }
  // Postgres text cannot hold NUL, and no one means to type it.
  if (trimmed.includes("\u0000")) {
    throw new AppError("invalid_flag", "The prompt contains a NUL character; remove it and try again.");
  }
  // Only zero-width, formatting or control characters (U+200B, U+2066, …): nothing anyone can read.
  if (!VISIBLE.test(trimmed)) {
    throw new AppError(
      "prompt_empty",
      "The prompt has no visible characters. Say what to draw, e.g. /imagine a red fox in snow.",
    );
  }
  return trimmed;
}

/**
 * Checks a complete parameter set, whichever adapter built it, so nothing invalid reaches the provider.
 * Returns the normalized parameters (size as `WxH` or `auto`).
 */
export function checkParams(params: ImageParams): ImageParams {
  const invalid = (message: string) => new AppError("invalid_flag", message, { userMessage: message });
  if (!Number.isInteger(params.n) || params.n < 1 || params.n > 10) {
    throw invalid(`--n must be a whole number from 1 to 10 (got ${params.n}).`);
  }
  if (!QUALITIES.has(params.quality))
    throw invalid(`--quality must be low, medium, high or auto (got ${params.quality}).`);
  if (!FORMATS.has(params.format))
    throw invalid(`--format must be png, jpeg or webp (got ${params.format}).`);
  if (!BACKGROUNDS.has(params.background)) throw invalid(`background must be transparent, opaque or auto.`);
  if (params.background === "transparent" && params.format === "jpeg") {
    throw invalid("--transparent needs --format png or webp: JPEG has no transparency.");
  }
  return {
    size: validateSize(params.size),
    quality: params.quality,
    n: params.n,
    format: params.format,
    background: params.background,
    think: params.think === true,
  };
}
