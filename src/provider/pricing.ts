import type { UsageEntry } from "../domain.ts";

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
