import { type ImageInfo, imageInfo, sniffImageFormat } from "./images.ts";
import {
  FakeApiError,
  imageUsage,
  invalidRequest,
  moderationBlockedError,
  renderImage,
  SERVER_ERROR,
  validateImageParams,
} from "./openai-rules.ts";
import type { EndpointContext, RecordedRequest } from "./openai-server.ts";

/**
 * The Images API of the fake: `POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart),
 * non-streaming (`ImagesResponse`, protocols.md C4) or streaming (`image_generation.*` / `image_edit.*`, C5).
 */

const MAX_IMAGE_BYTES = 50 * 1024 * 1024;
const MAX_MASK_BYTES = 4 * 1024 * 1024;

export async function handleImages(ctx: EndpointContext, kind: "generate" | "edit"): Promise<void> {
  const { record, failure } = ctx;
  // File parts count as given parameters too, so an unknown file field is rejected like an unknown scalar.
  const fields = { ...record.body, ...Object.fromEntries(record.files.map((f) => [f.field, f])) };
  const params = validateImageParams(fields, kind, { multipart: kind === "edit" });
  const inputs = kind === "edit" ? await checkEditFiles(record) : [];
  if (failure && "moderation" in failure) {
    throw new FakeApiError(400, moderationBlockedError(failure.categories, failure.stage));
  }
  if (failure && "streamError" in failure && !params.stream)
    throw new FakeApiError(500, failure.error ?? SERVER_ERROR);

  const seed = (i: number) => `${params.prompt}|${record.seq}|${i}`;
  const common = {
    background: params.background,
    output_format: params.format,
    quality: params.quality,
    size: params.size,
  };
  if (!params.stream) {
    const images = await Promise.all(
      Array.from({ length: params.n }, (_, i) => renderImage(params, seed(i))),
    );
    const usage = imageUsage(params.prompt, inputs, params, params.n);
    record.bills.push({ kind: "image", model: String(record.body.model), usage: { ...usage } });
    ctx.sendJson(200, {
      created: ctx.createdAt,
      ...common,
      data: images.map((bytes) => ({ b64_json: bytes.toString("base64") })),
      usage,
    });
    return;
  }
  // One run of partials and one completed event per image. Usage is split so the events add up to the
  // request's total: the first completed event carries the input tokens, every one carries its own output.
  const prefix = kind === "generate" ? "image_generation" : "image_edit";
  const sse = ctx.openStream((error) => ({ type: "error", error }));
  for (let i = 0; i < params.n && (!sse.closed || sse.abandoned); i++) {
    for (let p = 0; p < params.partialImages && !sse.closed; p++) {
      const partial = await renderImage(params, `${seed(i)}|partial|${p}`);
      sse.send(`${prefix}.partial_image`, {
        type: `${prefix}.partial_image`,
        b64_json: partial.toString("base64"),
        partial_image_index: p,
        created_at: ctx.createdAt,
        ...common,
      });
    }
    // Ended by our own error event (a stream that broke): this image is never made, so never billed. A client
    // that went away is another matter: the generation runs on and is billed (`abandoned`).
    if (sse.closed && !sse.abandoned) break;
    const bytes = await renderImage(params, seed(i));
    const usage = imageUsage(params.prompt, i === 0 ? inputs : [], params, 1);
    if (i > 0) usage.input_tokens = usage.input_tokens_details.text_tokens = 0;
    usage.total_tokens = usage.input_tokens + usage.output_tokens;
    record.bills.push({ kind: "image", model: String(record.body.model), usage: { ...usage } });
    sse.send(`${prefix}.completed`, {
      type: `${prefix}.completed`,
      b64_json: bytes.toString("base64"),
      created_at: ctx.createdAt,
      ...common,
      usage,
    });
  }
  sse.end();
}

/** Edits: 1–16 png/jpeg/webp images (by magic bytes), and an optional PNG mask the size of the first image. */
async function checkEditFiles(record: RecordedRequest): Promise<ImageInfo[]> {
  for (const field of ["image", "image[]", "mask"]) {
    if (typeof record.body[field] === "string" && !record.files.some((f) => f.field === field)) {
      throw invalidRequest(
        `Invalid type for '${field}': expected a file, but got a string instead.`,
        field,
        "invalid_type",
      );
    }
  }
  const images = record.files.filter((f) => f.field === "image" || f.field === "image[]");
  if (images.length === 0) {
    throw invalidRequest("Missing required parameter: 'image'.", "image", "missing_required_parameter");
  }
  if (images.length > 16) {
    throw invalidRequest(
      `Invalid 'image': array too long. Expected an array with maximum length 16, but got an array with length ${images.length} instead.`,
      "image",
      "array_above_max_length",
    );
  }
  const infos: ImageInfo[] = [];
  for (const file of images) {
    if (!sniffImageFormat(file.bytes)) {
      throw invalidRequest(
        `Invalid file '${file.field}': unsupported mimetype ('${file.contentType || "application/octet-stream"}'). ` +
          "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
        file.field,
        "unsupported_file_mimetype",
      );
    }
    if (file.bytes.length > MAX_IMAGE_BYTES) {
      throw invalidRequest(
        `Invalid file '${file.field}': file exceeds the 50 MB limit.`,
        file.field,
        "file_too_large",
      );
    }
    infos.push(await decode(file.bytes, file.field));
  }
  const masks = record.files.filter((f) => f.field === "mask");
  if (masks.length > 1) throw invalidRequest("Only one 'mask' may be given.", "mask", "invalid_value");
  const [mask] = masks;
  const [first] = infos;
  if (mask && first) {
    if (sniffImageFormat(mask.bytes) !== "png") {
      throw invalidRequest(
        `Invalid file 'mask': unsupported mimetype ('${mask.contentType || "application/octet-stream"}'). ` +
          "Supported file formats are 'image/png'.",
        "mask",
        "unsupported_file_mimetype",
      );
    }
    if (mask.bytes.length > MAX_MASK_BYTES) {
      throw invalidRequest("Invalid file 'mask': file exceeds the 4 MB limit.", "mask", "file_too_large");
    }
    const info = await decode(mask.bytes, "mask");
    if (info.width !== first.width || info.height !== first.height) {
      throw invalidRequest(
        `Invalid mask: the mask (${info.width}x${info.height}) must have the same dimensions as the first image ` +
          `(${first.width}x${first.height}).`,
        "mask",
        "invalid_mask_image",
      );
    }
  }
  return infos;
}

async function decode(bytes: Buffer, field: string): Promise<ImageInfo> {
  try {
    return await imageInfo(bytes);
  } catch {
    throw invalidRequest(
      `Invalid file '${field}': the image could not be decoded.`,
      field,
      "invalid_image_file",
    );
  }
}
