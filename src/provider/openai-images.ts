import OpenAI from "openai";
import type { ImageEditStreamEvent, ImageGenStreamEvent, ImagesResponse } from "openai/resources/images";
import type { OutputFormat } from "../domain.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type {
  EditRequest,
  ImageProvider,
  ImageRequest,
  ImageResult,
  PartialImage,
  ProviderImage,
} from "../ports.ts";
import { CallTracker } from "./call-ledger.ts";
import { asUpload, decodeImage } from "./image-encoding.ts";
import { isAbort, toAppError } from "./openai-errors.ts";
import { type ThinkContext, thinkImages } from "./openai-think.ts";
import {
  type ImageTokenUsage,
  imageUsageCounts,
  type PricedUsageEntry,
  pricedEntry,
  type UsageCounts,
} from "./pricing.ts";

/**
 * gpt-image-2 through the official `openai` SDK. Plain turns use the Images API (`images.generate`,
 * `images.edit`); "think" turns use the Responses API, where a reasoning model plans the picture and calls the
 * `image_generation` tool. Streaming is used only when the caller wants partial images. Retries of 429/5xx are
 * left to the SDK (`maxRetries`, honouring `retry-after-ms`/`retry-after`); what still fails becomes an AppError.
 */

/** How many partial images to ask for when streaming (0–3); two give useful progress without much cost. */
const PARTIAL_IMAGES = 2;
const DEFAULT_BASE_URL = "https://api.openai.com/v1";
/** Per attempt. High-quality 4K images take minutes; three attempts must still fit Discord's 15-minute token. */
const DEFAULT_TIMEOUT_MS = 4 * 60_000;

export interface OpenAIImageProviderOptions {
  client: OpenAI;
  /** What sends the client's requests underneath the ledger (the global `fetch` by default). */
  fetch?: typeof globalThis.fetch;
  imageModel: string;
  thinkModel: string;
  logger?: Logger;
}

export class OpenAIImageProvider implements ImageProvider {
  readonly #client: OpenAI;
  readonly #imageModel: string;
  readonly #thinkModel: string;
  readonly #logger: Logger | undefined;
  readonly #unpricedWarned = new Set<string>();
  readonly #thinkContext: ThinkContext;
  readonly #tracker: CallTracker;

  constructor(options: OpenAIImageProviderOptions) {
    this.#tracker = new CallTracker(options.logger);
    // The same client, with every HTTP request it sends (retries included) going through the ledger.
    this.#client = options.client.withOptions({
      fetch: this.#tracker.wrap(options.fetch ?? globalThis.fetch),
    });
    this.#imageModel = options.imageModel;
    this.#thinkModel = options.thinkModel;
    this.#logger = options.logger;
    this.#thinkContext = {
      client: this.#client,
      imageModel: this.#imageModel,
      thinkModel: this.#thinkModel,
      partialImages: PARTIAL_IMAGES,
      tracker: this.#tracker,
      reportPartial: (request, partial) => this.#reportPartial(request, partial),
      entry: (model, counts) => this.#entry(model, counts),
    };
  }

  generate(request: ImageRequest, signal?: AbortSignal): Promise<ImageResult> {
    return this.#call(request, null, signal);
  }

  edit(request: EditRequest, signal?: AbortSignal): Promise<ImageResult> {
    if (request.images.length === 0) {
      return Promise.reject(new AppError("no_image_to_edit", "edit called without images"));
    }
    return this.#call(request, request, signal);
  }

  /** Logs each call at the boundary (parameters, request id, cost, latency; never prompts or image bytes). */
  async #call(
    request: ImageRequest,
    edit: EditRequest | null,
    signal: AbortSignal | undefined,
  ): Promise<ImageResult> {
    const { params } = request;
    const log = this.#logger?.child({
      call: `${params.think ? "think-" : ""}${edit ? "edit" : "generate"}`,
      n: params.n,
      size: params.size,
      quality: params.quality,
      format: params.format,
      inputImages: edit?.images.length ?? 0,
      stream: request.onPartialImage !== undefined,
    });
    const started = performance.now();
    try {
      const result = params.think
        ? await thinkImages(this.#thinkContext, request, edit, signal)
        : await this.#images(request, edit, signal);
      log?.info(
        {
          requestId: result.requestId,
          images: result.images.length,
          costUsd: result.usage.reduce((sum, u) => sum + u.costUsd, 0),
          ms: Math.round(performance.now() - started),
        },
        "openai call succeeded",
      );
      return result;
    } catch (error) {
      if (isAbort(error, signal)) throw error;
      const appError = toAppError(error);
      log?.warn(
        {
          code: appError.code,
          retryable: appError.retryable,
          ms: Math.round(performance.now() - started),
          err: appError.message,
        },
        "openai call failed",
      );
      throw appError;
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Images API
  // -------------------------------------------------------------------------------------------------------

  async #images(
    request: ImageRequest,
    edit: EditRequest | null,
    signal: AbortSignal | undefined,
  ): Promise<ImageResult> {
    const { params } = request;
    // Only parameters that are set; the SDK rejects null in multipart bodies and the API rejects some keys.
    const body = {
      model: this.#imageModel,
      prompt: request.prompt,
      n: params.n,
      size: params.size,
      quality: params.quality,
      output_format: params.format,
      background: params.background,
      ...(request.safetyIdentifier ? { safety_identifier: request.safetyIdentifier } : {}),
    };
    const streaming = request.onPartialImage !== undefined;
    const tracked = this.#tracker.begin(request.ledger, edit ? "images.edit" : "images.generate");
    const options = { signal, headers: tracked.headers };
    const streamed: ImageTokenUsage[] = [];
    try {
      let result: ImageResult;
      if (edit) {
        // Order matters: the image being edited first (the mask applies to it), then the reference images.
        const image = await Promise.all(edit.images.map((input, i) => asUpload(input, `image-${i}`)));
        const mask = edit.mask ? { mask: await asUpload(edit.mask, "mask") } : {};
        if (streaming) {
          const { data, request_id } = await this.#client.images
            .edit({ ...body, image, ...mask, stream: true, partial_images: PARTIAL_IMAGES }, options)
            .withResponse();
          result = await this.#collectImageStream(data, request, request_id, signal, streamed);
        } else {
          const { data, request_id } = await this.#client.images
            .edit({ ...body, image, ...mask }, options)
            .withResponse();
          result = this.#fromImagesResponse(data, request, request_id);
        }
      } else if (streaming) {
        const { data, request_id } = await this.#client.images
          .generate({ ...body, stream: true, partial_images: PARTIAL_IMAGES }, options)
          .withResponse();
        result = await this.#collectImageStream(data, request, request_id, signal, streamed);
      } else {
        const { data, request_id } = await this.#client.images.generate(body, options).withResponse();
        result = this.#fromImagesResponse(data, request, request_id);
      }
      await tracked.answered(result.usage);
      return result;
    } catch (error) {
      // A stream that broke after some images were completed was billed for those.
      const billed = streamed.length > 0 ? [this.#entry(this.#imageModel, imageUsageCounts(streamed))] : [];
      await tracked.failed(error, billed);
      throw error;
    }
  }

  #fromImagesResponse(
    response: ImagesResponse,
    request: ImageRequest,
    requestId: string | null,
  ): ImageResult {
    const fallback = (response.output_format as OutputFormat | undefined) ?? request.params.format;
    const images = (response.data ?? []).flatMap((d) =>
      d.b64_json ? [decodeImage(d.b64_json, fallback)] : [],
    );
    if (images.length === 0) throw noImages(requestId);
    const usage = response.usage ? [this.#entry(this.#imageModel, imageUsageCounts([response.usage]))] : [];
    return { images, usage, requestId, revisedPrompt: null };
  }

  /** Partials go to the callback; each image arrives in its own `*.completed` event (n > 1 gives n of them). */
  async #collectImageStream(
    events: AsyncIterable<ImageGenStreamEvent | ImageEditStreamEvent>,
    request: ImageRequest,
    requestId: string | null,
    signal: AbortSignal | undefined,
    usages: ImageTokenUsage[],
  ): Promise<ImageResult> {
    const images: ProviderImage[] = [];
    let partials = 0;
    for await (const event of events) {
      if (event.type === "image_generation.partial_image" || event.type === "image_edit.partial_image") {
        this.#reportPartial(request, {
          index: partials++,
          ...decodeImage(event.b64_json, event.output_format),
        });
      } else if (event.type === "image_generation.completed" || event.type === "image_edit.completed") {
        images.push(decodeImage(event.b64_json, event.output_format));
        // Each completed event reports its own image's tokens; the request's usage is their sum.
        if (event.usage) usages.push(event.usage);
      }
    }
    // An aborted stream ends quietly in the SDK; make it an abort again rather than "no images".
    signal?.throwIfAborted();
    if (images.length === 0) throw noImages(requestId);
    const usage = usages.length > 0 ? [this.#entry(this.#imageModel, imageUsageCounts(usages))] : [];
    return { images, usage, requestId, revisedPrompt: null };
  }

  #reportPartial(request: ImageRequest, partial: PartialImage): void {
    try {
      request.onPartialImage?.(partial);
    } catch (error) {
      // Progress is best-effort: a failing preview must not fail (and re-bill) the generation.
      this.#logger?.warn(
        { err: error instanceof Error ? error.message : String(error) },
        "onPartialImage threw",
      );
    }
  }

  #entry(model: string, counts: UsageCounts): PricedUsageEntry {
    const entry = pricedEntry(model, counts);
    if (!entry.priced && !this.#unpricedWarned.has(model)) {
      this.#unpricedWarned.add(model);
      this.#logger?.warn(
        { model },
        "no price known for model; its usage is recorded at cost 0 (src/provider/pricing.ts)",
      );
    }
    return entry;
  }
}

/**
 * Builds the SDK client from configuration. `maxRetries: 2` lets the SDK itself retry 408/409/429/5xx and
 * connection errors, waiting as `retry-after-ms`/`retry-after` say; the job queue retries what is left.
 */
export function createOpenAIImageProvider(
  config: {
    apiKey: string | undefined;
    baseUrl: string | undefined;
    imageModel: string;
    thinkModel: string;
    timeoutMs?: number;
  },
  logger?: Logger,
): OpenAIImageProvider {
  if (!config.apiKey) {
    throw new AppError("config_invalid", "OPENAI_API_KEY is not set; it is required to generate images", {
      userMessage: "This bot has no OpenAI API key configured.",
    });
  }
  const client = new OpenAI({
    apiKey: config.apiKey,
    // Passed explicitly so the SDK does not read OPENAI_BASE_URL itself: config.ts is the one reader of env.
    baseURL: config.baseUrl ?? DEFAULT_BASE_URL,
    maxRetries: 2,
    timeout: config.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return new OpenAIImageProvider({
    client,
    imageModel: config.imageModel,
    thinkModel: config.thinkModel,
    ...(logger ? { logger } : {}),
  });
}

function noImages(requestId: string | null): AppError {
  return new AppError("provider_unavailable", `OpenAI answered without any image (request ${requestId})`, {
    userMessage: "OpenAI answered without an image. The request will be tried again.",
    retryable: true,
  });
}
