import { setTimeout as sleep } from "node:timers/promises";
import type { Quality, UsageEntry } from "../src/domain.ts";
import type { EditRequest, ImageProvider, ImageRequest, ImageResult, ProviderImage } from "../src/ports.ts";
import { type Fixture, pngSize, withTextChunk } from "./fixtures.ts";

/**
 * An ImageProvider that answers at once (or after `delayMs`, to hold many calls in flight) with pre-made PNGs.
 * Every image it returns has unique bytes (see `withTextChunk`), so the engine stores each one as a new blob,
 * as it would with a real provider. Usage and cost are made up but shaped like gpt-image-2's.
 */
export class InstantImageProvider implements ImageProvider {
  /** Hold each call this long before answering; 0 answers at once. May be changed between phases. */
  delayMs: number;
  /** Calls in progress now, and the most seen at once since the last `resetPeak()`. */
  inFlight = 0;
  peakInFlight = 0;
  calls = 0;
  readonly #fixtures: readonly Fixture[];
  readonly #model: string;

  constructor(options: { fixtures: readonly Fixture[]; delayMs?: number; model?: string }) {
    if (options.fixtures.length === 0) throw new Error("InstantImageProvider needs at least one fixture");
    this.#fixtures = options.fixtures;
    this.delayMs = options.delayMs ?? 0;
    this.#model = options.model ?? "gpt-image-2";
  }

  resetPeak(): void {
    this.peakInFlight = this.inFlight;
  }

  generate(request: ImageRequest, signal?: AbortSignal): Promise<ImageResult> {
    return this.#answer(request, null, signal);
  }

  edit(request: EditRequest, signal?: AbortSignal): Promise<ImageResult> {
    const first = request.images[0];
    return this.#answer(request, first ? pngSize(first.bytes) : null, signal, request.images.length);
  }

  async #answer(
    request: ImageRequest,
    inputSize: { width: number; height: number } | null,
    signal: AbortSignal | undefined,
    inputImages = 0,
  ): Promise<ImageResult> {
    this.calls++;
    this.inFlight++;
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await sleep(this.delayMs, undefined, signal ? { signal } : {});
      signal?.throwIfAborted();
      const fixture = this.#pick(parseWxH(request.params.size) ?? inputSize);
      const images: ProviderImage[] = [];
      for (let index = 0; index < request.params.n; index++) {
        images.push({ bytes: withTextChunk(fixture.bytes, `${this.calls}.${index}`), format: "png" });
      }
      return {
        images,
        usage: [fakeUsage(this.#model, request, fixture, inputImages)],
        requestId: `req_bench_${this.calls}`,
        revisedPrompt: null,
      };
    } finally {
      this.inFlight--;
    }
  }

  /** The fixture closest in shape (then in pixel count) to what was asked for; the first when nothing was. */
  #pick(wanted: { width: number; height: number } | null): Fixture {
    const first = this.#fixtures[0] as Fixture;
    if (!wanted) return first;
    const score = (f: Fixture) =>
      Math.abs(Math.log(f.width / f.height / (wanted.width / wanted.height))) * 10 +
      Math.abs(Math.log((f.width * f.height) / (wanted.width * wanted.height)));
    return this.#fixtures.reduce((best, f) => (score(f) < score(best) ? f : best), first);
  }
}

/** Time spent inside provider calls, keyed by prompt (the benchmark gives every turn its own prompt). */
export class TimedImageProvider implements ImageProvider {
  readonly #inner: ImageProvider;
  readonly #msByPrompt = new Map<string, number>();

  constructor(inner: ImageProvider) {
    this.#inner = inner;
  }

  /** Total milliseconds spent in provider calls for this prompt (all attempts); undefined if never called. */
  providerMs(prompt: string): number | undefined {
    return this.#msByPrompt.get(prompt);
  }

  generate(request: ImageRequest, signal?: AbortSignal): Promise<ImageResult> {
    return this.#time(request.prompt, () => this.#inner.generate(request, signal));
  }

  edit(request: EditRequest, signal?: AbortSignal): Promise<ImageResult> {
    return this.#time(request.prompt, () => this.#inner.edit(request, signal));
  }

  async #time(prompt: string, call: () => Promise<ImageResult>): Promise<ImageResult> {
    const start = performance.now();
    try {
      return await call();
    } finally {
      this.#msByPrompt.set(prompt, (this.#msByPrompt.get(prompt) ?? 0) + performance.now() - start);
    }
  }
}

function parseWxH(size: string): { width: number; height: number } | null {
  const match = /^(\d+)x(\d+)$/.exec(size);
  return match ? { width: Number(match[1]), height: Number(match[2]) } : null;
}

/** Output tokens per megapixel by quality, roughly gpt-image-1's published table scaled by area. */
const OUTPUT_TOKENS_PER_MEGAPIXEL: Record<Quality, number> = {
  low: 272,
  medium: 1056,
  high: 4160,
  auto: 4160,
};
const PRICE_PER_TOKEN = { text: 5e-6, imageIn: 10e-6, imageOut: 40e-6 };

function fakeUsage(model: string, request: ImageRequest, fixture: Fixture, inputImages: number): UsageEntry {
  const megapixels = (fixture.width * fixture.height) / (1024 * 1024);
  const inputTextTokens = Math.ceil(request.prompt.length / 4);
  const inputImageTokens = inputImages * Math.round(megapixels * 765);
  const outputImageTokens =
    request.params.n * Math.round(megapixels * OUTPUT_TOKENS_PER_MEGAPIXEL[request.params.quality]);
  const costUsd =
    inputTextTokens * PRICE_PER_TOKEN.text +
    inputImageTokens * PRICE_PER_TOKEN.imageIn +
    outputImageTokens * PRICE_PER_TOKEN.imageOut;
  return {
    model,
    inputTokens: inputTextTokens + inputImageTokens,
    inputTextTokens,
    inputImageTokens,
    outputTokens: outputImageTokens,
    outputImageTokens,
    reasoningTokens: 0,
    totalTokens: inputTextTokens + inputImageTokens + outputImageTokens,
    costUsd: Math.round(costUsd * 1e6) / 1e6,
  };
}
