import type OpenAI from "openai";
import type {
  Response as OpenAIResponse,
  ResponseCreateParamsBase,
  ResponseInputItem,
  Tool,
} from "openai/resources/responses/responses";
import type { OutputFormat } from "../domain.ts";
import { AppError } from "../errors.ts";
import type { EditRequest, ImageRequest, ImageResult, PartialImage, ProviderImage } from "../ports.ts";
import type { CallTracker } from "./call-ledger.ts";
import { dataUrl, decodeImage } from "./image-encoding.ts";
import { errorFromInfo } from "./openai-errors.ts";
import {
  addUsageCounts,
  imageUsageCounts,
  type PricedUsageEntry,
  reasoningUsageCounts,
  type UsageCounts,
} from "./pricing.ts";

/**
 * "Think" turns through the Responses API (reference/protocols.md C7): the reasoning model reads the prompt
 * (and, for edits, the images as `input_image` data URLs), plans, and calls the `image_generation` tool, which
 * runs the image model. The tool makes one image per call, so n images are n concurrent calls.
 */

export interface ThinkContext {
  client: OpenAI;
  imageModel: string;
  thinkModel: string;
  partialImages: number;
  tracker: CallTracker;
  reportPartial(request: ImageRequest, partial: PartialImage): void;
  entry(model: string, counts: UsageCounts): PricedUsageEntry;
}

interface CallResult {
  image: ProviderImage;
  revisedPrompt: string | null;
  requestId: string | null;
  response: OpenAIResponse;
}

/** The first failure aborts the other calls, so a turn that will fail anyway stops spending. */
export async function thinkImages(
  ctx: ThinkContext,
  request: ImageRequest,
  edit: EditRequest | null,
  signal: AbortSignal | undefined,
): Promise<ImageResult> {
  const local = new AbortController();
  const combined = signal ? AbortSignal.any([signal, local.signal]) : local.signal;
  const partials = { next: 0 };
  // One request body for every call: the input images are encoded once, however many images are asked for.
  const body = requestBody(ctx, request, edit);
  let firstError: unknown;
  const calls = Array.from({ length: request.params.n }, () =>
    respond(ctx, request, body, combined, partials).catch((error: unknown) => {
      firstError ??= error;
      local.abort();
      throw error;
    }),
  );
  const settled = await Promise.allSettled(calls);
  if (settled.some((s) => s.status === "rejected")) throw firstError;
  const results = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));

  // Two rows however many calls: the reasoning model's tokens and the image model's (`tool_usage.image_gen`).
  let think: UsageCounts | null = null;
  let image: UsageCounts | null = null;
  for (const { response } of results) {
    if (response.usage) {
      const counts = reasoningUsageCounts(response.usage);
      think = think ? addUsageCounts(think, counts) : counts;
    }
    const imageGen = response.tool_usage?.image_gen;
    if (imageGen) {
      const counts = imageUsageCounts([imageGen]);
      image = image ? addUsageCounts(image, counts) : counts;
    }
  }
  return {
    images: results.map((r) => r.image),
    usage: [
      ...(think ? [ctx.entry(ctx.thinkModel, think)] : []),
      ...(image ? [ctx.entry(ctx.imageModel, image)] : []),
    ],
    requestId: results[0]?.requestId ?? null,
    revisedPrompt: results.find((r) => r.revisedPrompt)?.revisedPrompt ?? null,
  };
}

/** The Responses API request for one image: the planner, the image tool, and the prompt with any images. */
function requestBody(
  ctx: ThinkContext,
  request: ImageRequest,
  edit: EditRequest | null,
): ResponseCreateParamsBase {
  const { params } = request;
  const streaming = request.onPartialImage !== undefined;
  const tool: Tool.ImageGeneration = {
    type: "image_generation",
    model: ctx.imageModel,
    size: params.size,
    quality: params.quality,
    output_format: params.format,
    background: params.background,
    // Say what is wanted: left to `auto`, the planner may draw something new instead of editing.
    action: edit ? "edit" : "generate",
    ...(streaming ? { partial_images: ctx.partialImages } : {}),
    ...(edit?.mask ? { input_image_mask: { image_url: dataUrl(edit.mask) } } : {}),
  };
  const input: string | ResponseInputItem[] = edit
    ? [
        {
          role: "user",
          content: [
            { type: "input_text", text: request.prompt },
            ...edit.images.map((img) => ({
              type: "input_image" as const,
              image_url: dataUrl(img),
              detail: "auto" as const,
            })),
          ],
        },
      ]
    : request.prompt;
  return {
    model: ctx.thinkModel,
    input,
    tools: [tool],
    tool_choice: { type: "image_generation" },
    ...(request.safetyIdentifier ? { safety_identifier: request.safetyIdentifier } : {}),
  };
}

async function respond(
  ctx: ThinkContext,
  request: ImageRequest,
  body: ResponseCreateParamsBase,
  signal: AbortSignal,
  partials: { next: number },
): Promise<CallResult> {
  const { params } = request;
  const tracked = ctx.tracker.begin(request.ledger, "responses");
  let answer: { response: OpenAIResponse; requestId: string | null };
  try {
    answer = await answerOf(ctx, request, body, signal, partials, tracked.headers);
  } catch (error) {
    await tracked.failed(error);
    throw error;
  }
  // A response bills its tokens whatever it says, a refusal or a moderation failure included.
  await tracked.answered(usageEntries(ctx, answer.response));
  const { response, requestId } = answer;
  return { ...imageFromResponse(response, requestId, params.format), requestId, response };
}

/** One Responses call, streamed (partials reported as they come) or not, to its final response object. */
async function answerOf(
  ctx: ThinkContext,
  request: ImageRequest,
  body: ResponseCreateParamsBase,
  signal: AbortSignal,
  partials: { next: number },
  headers: Record<string, string>,
): Promise<{ response: OpenAIResponse; requestId: string | null }> {
  const { params } = request;
  if (request.onPartialImage === undefined) {
    const { data, request_id } = await ctx.client.responses
      .create({ ...body, stream: false }, { signal, headers })
      .withResponse();
    return { response: data, requestId: request_id };
  }
  const { data: events, request_id } = await ctx.client.responses
    .create({ ...body, stream: true }, { signal, headers })
    .withResponse();
  let response: OpenAIResponse | undefined;
  for await (const event of events) {
    if (event.type === "response.image_generation_call.partial_image") {
      const partial = decodeImage(event.partial_image_b64, event.output_format ?? params.format);
      ctx.reportPartial(request, { index: partials.next++, ...partial });
    } else if (
      event.type === "response.completed" ||
      event.type === "response.failed" ||
      event.type === "response.incomplete"
    ) {
      response = event.response;
    }
  }
  // An aborted stream ends quietly in the SDK; make it an abort again rather than "stream ended early".
  signal.throwIfAborted();
  if (!response) {
    throw new AppError(
      "provider_unavailable",
      `OpenAI's response stream ended early (request ${request_id})`,
      {
        userMessage: "OpenAI stopped answering part-way. The request will be tried again.",
        retryable: true,
      },
    );
  }
  return { response, requestId: request_id };
}

/** One response's own tokens: the reasoning model's, and the image model's (`tool_usage.image_gen`). */
function usageEntries(ctx: ThinkContext, response: OpenAIResponse) {
  const imageGen = response.tool_usage?.image_gen;
  return [
    ...(response.usage ? [ctx.entry(ctx.thinkModel, reasoningUsageCounts(response.usage))] : []),
    ...(imageGen ? [ctx.entry(ctx.imageModel, imageUsageCounts([imageGen]))] : []),
  ];
}

/** The image of a finished Responses call, or the AppError that says why there is none. */
function imageFromResponse(
  response: OpenAIResponse,
  requestId: string | null,
  format: OutputFormat,
): { image: ProviderImage; revisedPrompt: string | null } {
  if (response.error) throw errorFromInfo({ ...response.error, requestId });
  const calls = response.output.filter((item) => item.type === "image_generation_call");
  const done = calls.find((call) => call.result);
  if (done?.result) {
    return {
      image: decodeImage(done.result, done.output_format ?? format),
      revisedPrompt: done.revised_prompt ?? null,
    };
  }
  const failed = calls.find((call) => call.error)?.error;
  if (failed) throw errorFromInfo({ ...failed, requestId });
  if (response.status === "incomplete" && response.incomplete_details?.reason === "content_filter") {
    throw errorFromInfo({
      code: "moderation_blocked",
      message: "response incomplete: content_filter",
      requestId,
    });
  }
  // The planner answered in words instead of calling the tool (a refusal, usually): trying again won't help.
  const said = response.output_text ? `: ${response.output_text.slice(0, 300)}` : "";
  throw new AppError(
    "provider_rejected",
    `${response.model} made no image (status ${response.status}, request ${requestId})${said}`,
    { userMessage: `OpenAI's planner did not produce an image${said}`, retryable: false },
  );
}
