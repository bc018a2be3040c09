import { randomBytes } from "node:crypto";
import { sniffImageFormat } from "./images.ts";
import {
  FakeApiError,
  type ImageOptions,
  imageUsage,
  invalidRequest,
  moderationBlockedError,
  type OpenAIErrorObject,
  renderImage,
  SERVER_ERROR,
  unknownParameter,
  validateImageParams,
} from "./openai-rules.ts";
import type { EndpointContext } from "./openai-server.ts";

/**
 * `POST /v1/responses` with one `image_generation` tool (reference/protocols.md C7): the "think" path, where a
 * reasoning model plans the picture and calls gpt-image-2. The fake "plans" by rewriting the prompt, renders one
 * image per call, and answers with the C7 response shape, or the C7 event sequence when `stream` is true.
 */

/** `ResponseCreateParamsBase` in openai 7.59.0. */
const KNOWN_PARAMS = [
  ...["access_programs", "background", "background_options", "context_management", "conversation", "image"],
  ...["include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata", "model"],
  ...["moderation", "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key"],
  ...["prompt_cache_options", "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier"],
  ...["store", "stream", "stream_options", "temperature", "text", "tool_choice", "tools", "top_logprobs"],
  ...["top_p", "truncation", "user"],
];

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

export async function handleResponses(ctx: EndpointContext): Promise<void> {
  const { record, failure } = ctx;
  const body = record.body;
  for (const key of Object.keys(body)) if (!KNOWN_PARAMS.includes(key)) throw unknownParameter(key);
  if (typeof body.model !== "string" || body.model === "") {
    throw invalidRequest("Missing required parameter: 'model'.", "model", "missing_required_parameter");
  }
  const model = body.model;
  const input = readInput(body.input);
  record.images = input.images.map((i) => i.bytes);
  const tool = readImageTool(body.tools, body.tool_choice);
  if (tool?.mask) record.mask = tool.mask;
  const stream = body.stream === true;
  if (failure && "streamError" in failure && !stream)
    throw new FakeApiError(500, failure.error ?? SERVER_ERROR);

  const revisedPrompt = `${input.text.trim()} (as planned by the fake ${model})`;
  const action = input.images.length > 0 ? "edit" : "generate";
  const base = {
    id: id("resp"),
    object: "response",
    created_at: ctx.createdAt,
    error: null as OpenAIErrorObject | null,
    incomplete_details: null,
    instructions: typeof body.instructions === "string" ? body.instructions : null,
    metadata: body.metadata ?? {},
    model,
    parallel_tool_calls: true,
    temperature: 1,
    tool_choice: body.tool_choice ?? "auto",
    tools: Array.isArray(body.tools) ? body.tools : [],
    top_p: 1,
    previous_response_id: body.previous_response_id ?? null,
  };
  const usage = {
    input_tokens: Math.ceil(input.text.length / 4) + 85 * input.images.length + 20,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 96,
    output_tokens_details: { reasoning_tokens: 64 },
    total_tokens: 0,
  };
  usage.total_tokens = usage.input_tokens + usage.output_tokens;
  const text = tool ? "Here is your image." : "I can only describe images without the image_generation tool.";
  const message = {
    id: id("msg"),
    type: "message",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text", text, annotations: [] }],
  };
  const moderation =
    failure && "moderation" in failure ? moderationBlockedError(failure.categories, failure.stage) : null;
  const imageModel = String(
    (Array.isArray(body.tools) ? body.tools : []).find(
      (t: { type?: unknown }) => t?.type === "image_generation",
    )?.model ?? "gpt-image-2",
  );
  /** A response with usage bills it, whatever its status; `image_gen` only when the tool made an image. */
  const bill = (toolUsage?: { image_gen: object }) => {
    record.bills.push({ kind: "reasoning", model, usage: { ...usage } });
    if (toolUsage) record.bills.push({ kind: "image", model: imageModel, usage: { ...toolUsage.image_gen } });
  };

  if (!stream) {
    if (!tool) {
      bill();
      return ctx.sendJson(200, { ...base, status: "completed", output: [message], usage });
    }
    const call = await imageCall(
      tool.options,
      revisedPrompt,
      `${input.text}|${record.seq}`,
      moderation,
      action,
    );
    if (moderation) {
      bill();
      return ctx.sendJson(200, { ...base, status: "failed", error: moderation, output: [call], usage });
    }
    const toolUsage = {
      image_gen: imageUsage(revisedPrompt, input.images, tool.options, 1),
      web_search: { num_requests: 0 },
    };
    bill(toolUsage);
    return ctx.sendJson(200, {
      ...base,
      status: "completed",
      output: [call, message],
      usage,
      tool_usage: toolUsage,
    });
  }

  let sequence = 0;
  const sse = ctx.openStream((error, n) => ({
    type: "error",
    code: error.code,
    message: error.message,
    param: error.param,
    sequence_number: n,
  }));
  const send = (type: string, data: Record<string, unknown>) =>
    sse.send(type, { type, sequence_number: sequence++, ...data });
  send("response.created", { response: { ...base, status: "in_progress", output: [], usage: null } });
  send("response.in_progress", { response: { ...base, status: "in_progress", output: [], usage: null } });
  const output: unknown[] = [];
  if (tool) {
    const callId = id("ig");
    send("response.output_item.added", {
      output_index: 0,
      item: { id: callId, type: "image_generation_call", status: "in_progress", result: null },
    });
    send("response.image_generation_call.in_progress", { output_index: 0, item_id: callId });
    if (moderation) {
      const failed = {
        id: callId,
        type: "image_generation_call",
        status: "failed",
        result: null,
        error: moderation,
      };
      send("response.output_item.done", { output_index: 0, item: failed });
      bill();
      send("response.failed", {
        response: { ...base, status: "failed", error: moderation, output: [failed], usage },
      });
      return sse.end();
    }
    send("response.image_generation_call.generating", { output_index: 0, item_id: callId });
    const { width, height, format, quality, background } = tool.options;
    for (let p = 0; p < tool.options.partialImages && !sse.closed; p++) {
      const partial = await renderImage(tool.options, `${input.text}|${record.seq}|partial|${p}`);
      send("response.image_generation_call.partial_image", {
        output_index: 0,
        item_id: callId,
        partial_image_index: p,
        partial_image_b64: partial.toString("base64"),
        background,
        output_format: format,
        quality,
        size: `${width}x${height}`,
      });
    }
    const call = {
      ...(await imageCall(tool.options, revisedPrompt, `${input.text}|${record.seq}`, null, action)),
      id: callId,
    };
    send("response.image_generation_call.completed", { output_index: 0, item_id: callId });
    send("response.output_item.done", { output_index: 0, item: call });
    output.push(call);
  }
  sendMessage(send, output.length, message);
  output.push(message);
  const toolUsage = tool
    ? { image_gen: imageUsage(revisedPrompt, input.images, tool.options, 1), web_search: { num_requests: 0 } }
    : undefined;
  bill(toolUsage);
  send("response.completed", {
    response: { ...base, status: "completed", output, usage, tool_usage: toolUsage },
  });
  sse.end();
}

async function imageCall(
  options: ImageOptions,
  revisedPrompt: string,
  seed: string,
  failed: OpenAIErrorObject | null,
  action: "generate" | "edit",
) {
  const common = {
    id: id("ig"),
    type: "image_generation_call",
    action,
    background: options.background,
    output_format: options.format,
    quality: options.quality,
    size: options.size,
  };
  if (failed) return { ...common, status: "failed", result: null, revised_prompt: null, error: failed };
  const bytes = await renderImage(options, seed);
  return { ...common, status: "completed", result: bytes.toString("base64"), revised_prompt: revisedPrompt };
}

/** The assistant's closing message, as the text events a real stream sends for it. */
function sendMessage(
  send: (type: string, data: Record<string, unknown>) => void,
  outputIndex: number,
  message: { id: string; content: { text: string }[] },
): void {
  const text = message.content[0]?.text ?? "";
  const where = { item_id: message.id, output_index: outputIndex, content_index: 0 };
  send("response.output_item.added", {
    output_index: outputIndex,
    item: { ...message, status: "in_progress", content: [] },
  });
  send("response.content_part.added", { ...where, part: { type: "output_text", text: "", annotations: [] } });
  send("response.output_text.delta", { ...where, delta: text, logprobs: [] });
  send("response.output_text.done", { ...where, text, logprobs: [] });
  send("response.content_part.done", { ...where, part: { type: "output_text", text, annotations: [] } });
  send("response.output_item.done", { output_index: outputIndex, item: message });
}

interface DecodedImage {
  bytes: Buffer;
  width: number;
  height: number;
}

/** `input` is a string, or a list of messages whose content is a string or input_text / input_image parts. */
function readInput(input: unknown): { text: string; images: DecodedImage[] } {
  if (typeof input === "string" && input !== "") return { text: input, images: [] };
  if (!Array.isArray(input) || input.length === 0) {
    throw invalidRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter");
  }
  const texts: string[] = [];
  const images: DecodedImage[] = [];
  input.forEach((item: Record<string, unknown>, i) => {
    if (item?.type === "image_generation_call" || item?.type === "item_reference") return;
    if (item?.role === undefined || (item.type !== undefined && item.type !== "message")) {
      throw invalidRequest(`Invalid 'input[${i}]': expected a message.`, `input[${i}]`, "invalid_value");
    }
    if (typeof item.content === "string") {
      texts.push(item.content);
      return;
    }
    if (!Array.isArray(item.content)) {
      throw invalidRequest(
        `Missing required parameter: 'input[${i}].content'.`,
        `input[${i}].content`,
        "missing_required_parameter",
      );
    }
    item.content.forEach((part: Record<string, unknown>, j) => {
      const where = `input[${i}].content[${j}]`;
      if (part?.type === "input_text" && typeof part.text === "string") texts.push(part.text);
      else if (part?.type === "input_image") images.push(decodeDataUrl(part.image_url, `${where}.image_url`));
      else throw invalidRequest(`Invalid value for '${where}.type'.`, `${where}.type`, "invalid_value");
    });
  });
  return { text: texts.join("\n"), images };
}

/** The fake never downloads anything: images must be base64 `data:` URLs (what the provider sends). */
function decodeDataUrl(url: unknown, param: string): DecodedImage {
  const match = typeof url === "string" ? /^data:([\w/+.-]+);base64,(.*)$/s.exec(url) : null;
  if (!match) {
    throw new FakeApiError(400, {
      message: `Invalid image URL for '${param}': the fake OpenAI server accepts only base64 data URLs.`,
      type: "invalid_request_error",
      param,
      code: "invalid_image_url",
    });
  }
  const bytes = Buffer.from(match[2] ?? "", "base64");
  const format = sniffImageFormat(bytes);
  if (!format) {
    throw new FakeApiError(400, {
      message: `Invalid image data for '${param}': expected base64 of a png, jpeg or webp image.`,
      type: "invalid_request_error",
      param,
      code: bytes.length === 0 ? "invalid_base64_image" : "unsupported_image_media_type",
    });
  }
  // Dimensions only feed token counts; the PNG/WebP/JPEG headers would give them, a fixed guess is enough.
  return { bytes, width: 1024, height: 1024 };
}

interface ImageTool {
  options: ImageOptions;
  mask: Buffer | null;
}

function readImageTool(tools: unknown, toolChoice: unknown): ImageTool | null {
  if (tools !== undefined && !Array.isArray(tools)) {
    throw invalidRequest("Invalid type for 'tools': expected an array.", "tools", "invalid_type");
  }
  let found: ImageTool | null = null;
  for (const [i, tool] of (tools ?? []).entries()) {
    if (typeof tool !== "object" || tool === null || typeof tool.type !== "string") {
      throw invalidRequest(
        `Missing required parameter: 'tools[${i}].type'.`,
        `tools[${i}].type`,
        "missing_required_parameter",
      );
    }
    if (tool.type !== "image_generation") continue;
    if (found)
      throw invalidRequest("Only one image_generation tool may be given.", `tools[${i}]`, "invalid_value");
    const { input_image_mask: mask, ...fields } = tool as Record<string, unknown>;
    const options = validateImageParams(fields, "tool", { prefix: `tools[${i}].` });
    const maskUrl = (mask as { image_url?: unknown } | undefined)?.image_url;
    found = {
      options,
      mask:
        mask === undefined ? null : decodeDataUrl(maskUrl, `tools[${i}].input_image_mask.image_url`).bytes,
    };
  }
  const choice = (toolChoice as { type?: unknown } | undefined)?.type;
  if (choice === "image_generation" && !found) {
    throw invalidRequest(
      "Tool choice 'image_generation' not found in 'tools' parameter.",
      "tool_choice",
      "invalid_value",
    );
  }
  return found;
}
