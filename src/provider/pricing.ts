import type { ImageParams, UsageEntry } from "../domain.ts";

/**
 * Per-token prices, to estimate what a turn cost. Estimates only: OpenAI's invoice is the truth. Cached-input
 * discounts are ignored (the usage we record has no cached-token field), so estimates err slightly high.
 *
 * USD per 1M tokens, as listed on https://openai.com/api/pricing, checked 2026-11-28 through third-party copies
 * of that page (tokenmix.ai "GPT Image 2 Pricing Guide" 2026-04-29, llmreference.com, benchr.org "GPT-5.5
 * pricing explained"); the page itself could not be fetched from the build machine.
 *   gpt-image-2      text in $5, image in $8, image out $30, text out $10
 *   gpt-image-1.5    text in $5, image in $8, image out $32, text out $10
 *   gpt-image-1      text in $5, image in $10, image out $40 (shut down 2026-10-23; kept for old rows)
 *   gpt-image-1-mini text in $2, image in $2.50, image out $8
 *   gpt-5.5          in $5, out $30 (reasoning tokens are billed as output; ≤ 272K input tokens)
 * The 2.5/2.6 "sunburst"/"flare" models have no published token prices here yet: they are unpriced.
 */

export interface ModelPrice {
  /** Text (and, for reasoning models, all) input tokens. */
  textInput: number;
  /** Image input tokens; reasoning models bill images as ordinary input. */
  imageInput: number;
  /** Image output tokens; 0 for text models. */
  imageOutput: number;
  /** Text output tokens, reasoning tokens included. */
  textOutput: number;
}

const PER_MILLION = 1_000_000;

/**
 * The price table in force, named by the day it was checked. Every ledger row keeps the version it was priced
 * with; when prices change, add the new table under a new version and point `PRICE_VERSION` at it — rows already
 * written keep their cost.
 */
export const PRICE_VERSION = "2026-11-28";

export const PRICES: Readonly<Record<string, ModelPrice>> = {
  "gpt-image-2": { textInput: 5, imageInput: 8, imageOutput: 30, textOutput: 10 },
  "gpt-image-1.5": { textInput: 5, imageInput: 8, imageOutput: 32, textOutput: 10 },
  "gpt-image-1": { textInput: 5, imageInput: 10, imageOutput: 40, textOutput: 0 },
  "gpt-image-1-mini": { textInput: 2, imageInput: 2.5, imageOutput: 8, textOutput: 0 },
  "gpt-5.5": { textInput: 5, imageInput: 5, imageOutput: 0, textOutput: 30 },
};

/** The token counts pricing needs; a subset of UsageEntry. */
export type TokenCounts = Pick<
  UsageEntry,
  "inputTextTokens" | "inputImageTokens" | "outputTokens" | "outputImageTokens"
>;

/** Looks a model up by name, then without a `-YYYY-MM-DD` snapshot suffix (`gpt-image-2-2026-04-21`). */
export function priceOf(model: string): ModelPrice | undefined {
  return PRICES[model] ?? PRICES[model.replace(/-\d{4}-\d{2}-\d{2}$/, "")];
}

/**
 * Estimated USD cost of one call's usage. Unknown models cost 0 with `priced: false`, so a new model never
 * breaks a turn; the entry carries the flag and the provider logs it once.
 */
export function estimateCost(model: string, usage: TokenCounts): { costUsd: number; priced: boolean } {
  const price = priceOf(model);
  if (!price) return { costUsd: 0, priced: false };
  const outputText = Math.max(0, usage.outputTokens - usage.outputImageTokens);
  const micros =
    usage.inputTextTokens * price.textInput +
    usage.inputImageTokens * price.imageInput +
    usage.outputImageTokens * price.imageOutput +
    outputText * price.textOutput;
  // Round to a millionth of a dollar so sums stored in the database don't drift with float noise.
  return { costUsd: Math.round(micros) / PER_MILLION, priced: true };
}

// ---------------------------------------------------------------------------------------------------------
// What a turn will cost, before it runs
// ---------------------------------------------------------------------------------------------------------

/**
 * Image output tokens per image at 1024x1024 by quality, as OpenAI published them for its GPT image models
 * (gpt-image-1: 272 / 1056 / 4160), scaled by pixel count for other sizes. `auto` is counted as `medium`, and
 * `auto` size as 1024x1536, the largest of the standard sizes.
 */
const OUTPUT_TOKENS_1024: Record<ImageParams["quality"], number> = {
  low: 272,
  medium: 1056,
  high: 4160,
  auto: 1056,
};
/** A "think" call's planner: generous for the reasoning it does before calling the image tool. */
const PLANNER_TOKENS = { input: 2_000, output: 2_000 };

export interface TurnEstimateInput {
  params: ImageParams;
  promptChars: number;
  /** The images sent with the call (the image edited, references), by their pixel size. */
  inputs: readonly { width: number; height: number }[];
  imageModel: string;
  thinkModel: string;
}

/**
 * What a turn is expected to cost at today's prices: the basis of budget reservations and of "Draw it for about
 * $X?". Errs high where it must guess (unknown tokens of `auto`, the planner's reasoning); a model without a
 * known price is estimated as gpt-image-2, so no turn is ever free to a budget.
 */
export function estimateTurnUsd(input: TurnEstimateInput): number {
  const { params } = input;
  const [width, height] = params.size === "auto" ? [1024, 1536] : params.size.split("x").map(Number);
  const perImage = Math.ceil(
    (OUTPUT_TOKENS_1024[params.quality] * (width ?? 1024) * (height ?? 1024)) / (1024 * 1024),
  );
  const imageIn = input.inputs.reduce(
    (sum, i) => sum + 85 + 170 * Math.ceil(i.width / 512) * Math.ceil(i.height / 512),
    0,
  );
  const textIn = Math.ceil(input.promptChars / 4) + 50;
  const image = priceOf(input.imageModel) ?? (PRICES["gpt-image-2"] as ModelPrice);
  // Each think image is its own planner call with the inputs; plain calls send the inputs once for all n.
  const calls = params.think ? params.n : 1;
  let micros =
    calls * (textIn * image.textInput + imageIn * image.imageInput) + params.n * perImage * image.imageOutput;
  if (params.think) {
    const planner = priceOf(input.thinkModel) ?? (PRICES["gpt-5.5"] as ModelPrice);
    micros +=
      params.n *
      ((PLANNER_TOKENS.input + textIn + imageIn) * planner.textInput +
        PLANNER_TOKENS.output * planner.textOutput);
  }
  return Math.ceil(micros) / PER_MILLION;
}

// ---------------------------------------------------------------------------------------------------------
// OpenAI usage objects → UsageEntry rows
// ---------------------------------------------------------------------------------------------------------

/** A UsageEntry without its model and cost: what is summed across the calls of one turn. */
export type UsageCounts = Omit<UsageEntry, "model" | "costUsd">;

/** `priced: false` marks a model with no known price: its cost is 0 until a price is added above. */
export type PricedUsageEntry = UsageEntry & { priced: boolean };

export function pricedEntry(model: string, counts: UsageCounts): PricedUsageEntry {
  const { costUsd, priced } = estimateCost(model, counts);
  return { model, ...counts, costUsd, priced };
}

/** The Images API's `usage` (also a streamed `*.completed` event's, and Responses' `tool_usage.image_gen`). */
export interface ImageTokenUsage {
  input_tokens: number;
  input_tokens_details?: { image_tokens: number; text_tokens: number };
  output_tokens: number;
  output_tokens_details?: { image_tokens: number; text_tokens: number };
  total_tokens: number;
}

export function imageUsageCounts(usages: readonly ImageTokenUsage[]): UsageCounts {
  const sum = (pick: (u: ImageTokenUsage) => number | undefined) =>
    usages.reduce((s, u) => s + (pick(u) ?? 0), 0);
  return {
    inputTokens: sum((u) => u.input_tokens),
    // Without details, count all input as text (the cheaper guess) and all output as image (what these emit).
    inputTextTokens: sum((u) => u.input_tokens_details?.text_tokens ?? u.input_tokens),
    inputImageTokens: sum((u) => u.input_tokens_details?.image_tokens),
    outputTokens: sum((u) => u.output_tokens),
    outputImageTokens: sum((u) => u.output_tokens_details?.image_tokens ?? u.output_tokens),
    reasoningTokens: 0,
    totalTokens: sum((u) => u.total_tokens),
  };
}

/** A Responses API `usage`: the reasoning model's own tokens (reasoning tokens are part of the output). */
export function reasoningUsageCounts(usage: {
  input_tokens: number;
  output_tokens: number;
  output_tokens_details?: { reasoning_tokens: number };
  total_tokens: number;
}): UsageCounts {
  return {
    inputTokens: usage.input_tokens,
    inputTextTokens: usage.input_tokens,
    inputImageTokens: 0,
    outputTokens: usage.output_tokens,
    outputImageTokens: 0,
    reasoningTokens: usage.output_tokens_details?.reasoning_tokens ?? 0,
    totalTokens: usage.total_tokens,
  };
}

export function addUsageCounts(a: UsageCounts, b: UsageCounts): UsageCounts {
  const sum = { ...a };
  for (const key of Object.keys(b) as (keyof UsageCounts)[]) sum[key] += b[key];
  return sum;
}
