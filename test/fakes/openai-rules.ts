import { makeImage } from "./images.ts";

/**
 * What gpt-image-2 accepts, for the fake OpenAI server: the parameter rules from reference/protocols.md C8 and
 * the error bodies from C6. Pure functions, no HTTP, so the server and the Responses handler share them.
 *
 * Messages quoted in protocols.md are copied verbatim (bad size "divisible by 16", unknown parameter,
 * input_fidelity, moderation, auth). The others follow OpenAI's usual wording ("Invalid value: …",
 * "Missing required parameter: …") but were not captured from the live API.
 */

export interface OpenAIErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
  [extra: string]: unknown;
}

/** An error the fake answers with: HTTP status plus OpenAI's `{ error: {...} }` body. */
export class FakeApiError extends Error {
  readonly status: number;
  readonly error: OpenAIErrorObject;
  readonly headers: Record<string, string>;
  /** Sent instead of `{ error }` when set (a scripted failure with a custom body). */
  readonly body: unknown;

  constructor(
    status: number,
    error: OpenAIErrorObject,
    headers: Record<string, string> = {},
    body?: unknown,
  ) {
    super(error.message);
    this.status = status;
    this.error = error;
    this.headers = headers;
    this.body = body;
  }
}

export function invalidRequest(message: string, param: string | null, code: string | null): FakeApiError {
  return new FakeApiError(400, { message, type: "invalid_request_error", param, code });
}

export function unknownParameter(param: string): FakeApiError {
  return invalidRequest(`Unknown parameter: '${param}'.`, param, "unknown_parameter");
}

export function moderationBlockedError(
  categories: readonly string[] = ["violence"],
  stage: "input" | "output" = "input",
): OpenAIErrorObject {
  return {
    message:
      "Your request was rejected by the safety system. If you believe this is an error, contact us at " +
      `help.openai.com and include the request ID. safety_violations=[${categories.join(", ")}].`,
    type: "image_generation_user_error",
    param: null,
    code: "moderation_blocked",
    moderation_details: { moderation_stage: stage, categories: [...categories] },
  };
}

export const RATE_LIMIT_ERROR: OpenAIErrorObject = {
  message:
    "Rate limit reached for gpt-image-2 in organization org-fake on images per min (IPM): Limit 5, Used 5, " +
    "Requested 1. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more.",
  type: "requests",
  param: null,
  code: "rate_limit_exceeded",
};

export const SERVER_ERROR: OpenAIErrorObject = {
  message: "The server had an error while processing your request. Sorry about that!",
  type: "server_error",
  param: null,
  code: null,
};

/** `ImageModel` in openai 7.59.0, without the retired gpt-image-1 and dall-e models. */
export const IMAGE_MODELS = [
  "gpt-image-2",
  "gpt-image-2-2026-04-21",
  "gpt-image-1.5",
  "gpt-image-1-mini",
  "chatgpt-image-latest",
  "gpt-image-2.5-sunburst",
  "gpt-image-2.5-sunburst-2026-09-08",
  "gpt-image-2.5-flare",
  "gpt-image-2.5-flare-2026-09-08",
  "gpt-image-2.6-sunburst",
  "gpt-image-2.6-flare",
] as const;

const rejectsInputFidelity = (model: string) => model === "gpt-image-2" || model.startsWith("gpt-image-2-");
const hasExtraQualities = (model: string) => /^gpt-image-2\.[56]-/.test(model);

export const PROMPT_MAX_CHARS = 32_000;
export const SIZE_LIMITS = {
  multiple: 16,
  maxRatio: 3,
  minPixels: 655_360,
  maxPixels: 8_294_400,
  maxEdge: 3840,
};

export type Format = "png" | "jpeg" | "webp";
export type Quality = "low" | "medium" | "high" | "xhigh" | "max";

/** A validated request, with `auto` resolved to what the fake produces. */
export interface ImageOptions {
  model: string;
  width: number;
  height: number;
  /** `WxH` of the output, never `auto`. */
  size: string;
  quality: Quality;
  format: Format;
  background: "transparent" | "opaque";
  partialImages: number;
  n: number;
  stream: boolean;
}

/** Reads parameters the same way from a JSON body (typed values) and from multipart fields (strings). */
class FieldReader {
  readonly #fields: Record<string, unknown>;
  readonly #multipart: boolean;
  readonly #prefix: string;

  constructor(fields: Record<string, unknown>, multipart: boolean, prefix = "") {
    this.#fields = fields;
    this.#multipart = multipart;
    this.#prefix = prefix;
  }

  name(key: string): string {
    return this.#prefix + key;
  }

  /** JSON null means "not given", as the real API treats nullable parameters. */
  raw(key: string): unknown {
    const value = this.#fields[key];
    return value === null ? undefined : value;
  }

  string(key: string): string | undefined {
    const value = this.raw(key);
    if (value === undefined) return undefined;
    if (typeof value !== "string") throw invalidType(this.name(key), "a string", value);
    return value;
  }

  enumeration<T extends string>(key: string, allowed: readonly T[], fallback: NoInfer<T>): T {
    const value = this.string(key);
    if (value === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      const list = allowed.map((a) => `'${a}'`);
      const supported =
        list.length > 1 ? `${list.slice(0, -1).join(", ")}, and ${list.at(-1)}` : list.join("");
      throw invalidRequest(
        `Invalid value: '${value}'. Supported values are: ${supported}.`,
        this.name(key),
        "invalid_value",
      );
    }
    return value as T;
  }

  integer(key: string, min: number, max: number, fallback: number): number;
  integer(key: string, min: number, max: number): number | undefined;
  integer(key: string, min: number, max: number, fallback?: number): number | undefined {
    let value = this.raw(key);
    if (value === undefined) return fallback;
    if (this.#multipart && typeof value === "string" && /^-?\d+$/.test(value)) value = Number(value);
    if (typeof value !== "number" || !Number.isInteger(value))
      throw invalidType(this.name(key), "an integer", value);
    const name = this.name(key);
    if (value < min) {
      throw invalidRequest(
        `Invalid '${name}': integer below minimum value. Expected a value >= ${min}, but got ${value} instead.`,
        name,
        "integer_below_min_value",
      );
    }
    if (value > max) {
      throw invalidRequest(
        `Invalid '${name}': integer above maximum value. Expected a value <= ${max}, but got ${value} instead.`,
        name,
        "integer_above_max_value",
      );
    }
    return value;
  }

  boolean(key: string): boolean {
    const value = this.raw(key);
    if (value === undefined) return false;
    if (typeof value === "boolean") return value;
    if (this.#multipart && (value === "true" || value === "false")) return value === "true";
    throw invalidType(this.name(key), "a boolean", value);
  }
}

function invalidType(name: string, expected: string, value: unknown): FakeApiError {
  const got = Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`;
  return invalidRequest(
    `Invalid type for '${name}': expected ${expected}, but got ${got} instead.`,
    name,
    "invalid_type",
  );
}

/** Parses and checks a size; `auto` becomes 1024x1024 (what the fake renders for it). */
export function checkSize(size: string, param: string): { width: number; height: number } {
  if (size === "auto") return { width: 1024, height: 1024 };
  const match = /^(\d+)x(\d+)$/.exec(size);
  const fail = (why: string) => invalidRequest(`Invalid size '${size}'. ${why}`, param, "invalid_value");
  if (!match) throw fail("Size must be 'auto' or WIDTHxHEIGHT, for example '1024x1024'.");
  const width = Number(match[1]);
  const height = Number(match[2]);
  const { multiple, maxRatio, minPixels, maxPixels, maxEdge } = SIZE_LIMITS;
  if (width % multiple !== 0 || height % multiple !== 0) {
    throw fail("Width and height must both be divisible by 16.");
  }
  if (Math.max(width, height) > maxEdge) throw fail(`The longest edge must be at most ${maxEdge} pixels.`);
  if (Math.max(width, height) > maxRatio * Math.min(width, height)) {
    throw fail("The aspect ratio must be between 1:3 and 3:1.");
  }
  if (width * height < minPixels || width * height > maxPixels) {
    throw fail(`The total number of pixels must be between ${minPixels} and ${maxPixels}.`);
  }
  return { width, height };
}

export type ImageEndpoint = "generate" | "edit" | "tool";

/** Parameters each endpoint knows (openai 7.59.0 types); anything else is an unknown parameter. */
const KNOWN: Record<ImageEndpoint, readonly string[]> = {
  generate: [
    ...["prompt", "model", "n", "size", "quality", "output_format", "output_compression", "background"],
    ...["moderation", "partial_images", "stream", "user", "safety_identifier"],
  ],
  edit: [
    ...["prompt", "model", "n", "size", "quality", "output_format", "output_compression", "background"],
    ...[
      "partial_images",
      "stream",
      "user",
      "safety_identifier",
      "input_fidelity",
      "image",
      "image[]",
      "mask",
    ],
  ],
  tool: [
    ...[
      "type",
      "model",
      "size",
      "quality",
      "output_format",
      "output_compression",
      "background",
      "moderation",
    ],
    ...["partial_images", "action", "input_fidelity", "input_image_mask"],
  ],
};

/**
 * Validates gpt-image parameters for one endpoint. For `tool` (the Responses image_generation tool) names are
 * reported as `tools[i].x`, and `input_fidelity` on gpt-image-2 gets the body the real API sends for it.
 */
export function validateImageParams(
  fields: Record<string, unknown>,
  endpoint: ImageEndpoint,
  options: { multipart?: boolean; prefix?: string; defaultModel?: string } = {},
): ImageOptions & { prompt: string } {
  for (const key of Object.keys(fields)) {
    if (!KNOWN[endpoint].includes(key)) throw unknownParameter((options.prefix ?? "") + key);
  }
  const read = new FieldReader(fields, options.multipart ?? false, options.prefix);
  const model = read.enumeration<string>("model", IMAGE_MODELS, options.defaultModel ?? "gpt-image-2");

  let prompt = "";
  if (endpoint !== "tool") {
    const value = read.string("prompt");
    if (value === undefined || value === "") {
      throw invalidRequest("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter");
    }
    if (value.length > PROMPT_MAX_CHARS) {
      throw invalidRequest(
        `Invalid 'prompt': string too long. Expected a string with maximum length ${PROMPT_MAX_CHARS}, ` +
          `but got a string with length ${value.length} instead.`,
        "prompt",
        "string_above_max_length",
      );
    }
    prompt = value;
  }

  const size = read.string("size") ?? "auto";
  const { width, height } = checkSize(size, read.name("size"));
  const qualities = ["low", "medium", "high", "auto", ...(hasExtraQualities(model) ? ["xhigh", "max"] : [])];
  const quality = read.enumeration("quality", qualities, "auto");
  const format = read.enumeration("output_format", ["png", "jpeg", "webp"] as const, "png");
  const background = read.enumeration("background", ["transparent", "opaque", "auto"] as const, "auto");
  if (background === "transparent" && format === "jpeg") {
    throw invalidRequest(
      "Transparent background is not supported with output_format 'jpeg'. Use 'png' or 'webp'.",
      read.name("background"),
      "invalid_value",
    );
  }
  const compression = read.integer("output_compression", 0, 100);
  if (compression !== undefined && format === "png") {
    throw invalidRequest(
      "output_compression is only supported for the 'jpeg' and 'webp' output formats.",
      read.name("output_compression"),
      "invalid_value",
    );
  }
  const partialImages = read.integer("partial_images", 0, 3, 0);
  read.enumeration("moderation", ["low", "auto"] as const, "auto");
  read.enumeration("action", ["generate", "edit", "auto"] as const, "auto");
  if (read.raw("input_fidelity") !== undefined && rejectsInputFidelity(model)) {
    throw new FakeApiError(400, {
      message: `The model '${model}' does not support the 'input_fidelity' parameter.`,
      type: "image_generation_user_error",
      param: endpoint === "tool" ? "tools" : "input_fidelity",
      code: "invalid_input_fidelity_model",
    });
  }
  read.enumeration("input_fidelity", ["high", "low"] as const, "low");
  return {
    model,
    prompt,
    width,
    height,
    size: `${width}x${height}`,
    quality: (quality === "auto" ? "medium" : quality) as Quality,
    format,
    background: background === "transparent" ? "transparent" : "opaque",
    partialImages,
    n: endpoint === "tool" ? 1 : read.integer("n", 1, 10, 1),
    stream: endpoint === "tool" ? false : read.boolean("stream"),
  };
}

/** Output tokens per image at 1024x1024, as gpt-image-1 reported them; scaled by pixel count. */
const OUTPUT_TOKENS: Record<Quality, number> = { low: 272, medium: 1056, high: 4160, xhigh: 6240, max: 8320 };

export interface ImageUsage {
  input_tokens: number;
  input_tokens_details: { image_tokens: number; text_tokens: number };
  output_tokens: number;
  output_tokens_details: { image_tokens: number; text_tokens: number };
  total_tokens: number;
}

/** Plausible, deterministic token counts: ~4 characters per text token, vision-style tiles for input images. */
export function imageUsage(
  prompt: string,
  inputs: readonly { width: number; height: number }[],
  options: Pick<ImageOptions, "width" | "height" | "quality">,
  images: number,
): ImageUsage {
  const text = Math.max(1, Math.ceil(prompt.length / 4));
  const imageIn = inputs.reduce(
    (sum, i) => sum + 85 + 170 * Math.ceil(i.width / 512) * Math.ceil(i.height / 512),
    0,
  );
  const perImage = Math.ceil(
    (OUTPUT_TOKENS[options.quality] * options.width * options.height) / (1024 * 1024),
  );
  const out = perImage * images;
  return {
    input_tokens: text + imageIn,
    input_tokens_details: { image_tokens: imageIn, text_tokens: text },
    output_tokens: out,
    output_tokens_details: { image_tokens: out, text_tokens: 0 },
    total_tokens: text + imageIn + out,
  };
}

/** Renders one output image: distinct per request, index and (for partials) partial number, via the seed. */
export function renderImage(options: ImageOptions, seed: string): Promise<Buffer> {
  return makeImage({
    width: options.width,
    height: options.height,
    format: options.format,
    seed,
    transparent: options.background === "transparent",
  });
}
