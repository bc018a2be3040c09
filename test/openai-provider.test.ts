import { createHash } from "node:crypto";
import OpenAI, { APIUserAbortError } from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_PARAMS, type ImageParams } from "../src/domain.ts";
import { AppError } from "../src/errors.ts";
import type { PartialImage } from "../src/ports.ts";
import { retryAfterMs } from "../src/provider/openai-errors.ts";
import { createOpenAIImageProvider, OpenAIImageProvider } from "../src/provider/openai-images.ts";
import { estimateCost, type PricedUsageEntry } from "../src/provider/pricing.ts";
import { imageInfo, makeImage, makePng } from "./fakes/images.ts";
import { type FakeOpenAI, type RecordedRequest, startFakeOpenAI } from "./fakes/openai-server.ts";

/**
 * The provider through the real openai SDK against the local fake (test/fakes/openai-server.ts): real HTTP,
 * real multipart and SSE, real images. No database, no network beyond 127.0.0.1.
 */

let fake: FakeOpenAI;

beforeAll(async () => {
  fake = await startFakeOpenAI();
});
afterAll(() => fake.close());
beforeEach(() => {
  fake.reset();
  fake.setLatency(0);
});

function provider(clientOptions: ConstructorParameters<typeof OpenAI>[0] = {}, imageModel = "gpt-image-2") {
  const client = new OpenAI({ apiKey: fake.apiKey, baseURL: fake.baseUrl, maxRetries: 2, ...clientOptions });
  return new OpenAIImageProvider({ client, imageModel, thinkModel: "gpt-5.5" });
}

const params = (overrides: Partial<ImageParams> = {}): ImageParams => ({ ...DEFAULT_PARAMS, ...overrides });
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => expect.unreachable("expected the call to fail"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

describe("Images API", () => {
  it("generates real images of the requested size and format, sending only the parameters that are set", async () => {
    const result = await provider().generate({
      prompt: "a lighthouse at dusk",
      params: params({ size: "1536x1024", quality: "low", format: "webp" }),
    });

    expect(result.images).toHaveLength(1);
    const [image] = result.images;
    expect(image?.format).toBe("webp");
    expect(await imageInfo(image?.bytes ?? Buffer.alloc(0))).toMatchObject({
      format: "webp",
      width: 1536,
      height: 1024,
    });

    const [request] = fake.requests;
    expect(request?.endpoint).toBe("images.generate");
    expect(request?.body).toEqual({
      model: "gpt-image-2",
      prompt: "a lighthouse at dusk",
      n: 1,
      size: "1536x1024",
      quality: "low",
      output_format: "webp",
      background: "auto",
    });
    expect(request?.headers.authorization).toBe("[redacted]");
    expect(result.requestId).toBe(request?.requestId);
    expect(result.revisedPrompt).toBeNull();
  });

  it("records usage with its estimated cost", async () => {
    const result = await provider().generate({ prompt: "a cat", params: params({ quality: "high" }) });
    const [usage] = result.usage as PricedUsageEntry[];
    expect(result.usage).toHaveLength(1);
    expect(usage).toMatchObject({ model: "gpt-image-2", priced: true, reasoningTokens: 0 });
    expect(usage?.outputImageTokens).toBeGreaterThan(0);
    expect(usage?.totalTokens).toBe((usage?.inputTokens ?? 0) + (usage?.outputTokens ?? 0));
    expect(usage?.costUsd).toBeCloseTo(estimateCost("gpt-image-2", usage as PricedUsageEntry).costUsd, 9);
    expect(usage?.costUsd).toBeGreaterThan(0);
  });

  it("returns n distinct images", async () => {
    const result = await provider().generate({ prompt: "three variations", params: params({ n: 3 }) });
    expect(result.images).toHaveLength(3);
    expect(new Set(result.images.map((i) => sha(i.bytes))).size).toBe(3);
    for (const image of result.images) expect((await imageInfo(image.bytes)).width).toBe(1024);
  });

  it("sends an edit exactly the bytes of the previous version first, then the references, and the mask", async () => {
    const previous = await makePng(1024, 1536, "previous version");
    const reference = await makeImage({ width: 800, height: 1000, format: "jpeg", seed: "reference" });
    const mask = await makePng(1024, 1536, "mask");

    const result = await provider().edit({
      prompt: "make the sky purple",
      params: params({ size: "1024x1536" }),
      images: [
        { bytes: previous, format: "png" },
        { bytes: reference, format: "jpeg" },
      ],
      mask: { bytes: mask, format: "png" },
    });

    const [request] = fake.requests as [RecordedRequest];
    expect(request.endpoint).toBe("images.edit");
    expect(request.images).toHaveLength(2);
    expect(request.images[0]?.equals(previous)).toBe(true);
    expect(request.images[1]?.equals(reference)).toBe(true);
    expect(request.mask?.equals(mask)).toBe(true);
    const parts = request.files.filter((f) => f.field !== "mask");
    expect(parts.map((f) => [f.field, f.filename, f.contentType])).toEqual([
      ["image[]", "image-0.png", "image/png"],
      ["image[]", "image-1.jpg", "image/jpeg"],
    ]);
    expect(request.body).toMatchObject({ model: "gpt-image-2", prompt: "make the sky purple", n: "1" });
    expect(await imageInfo(result.images[0]?.bytes ?? Buffer.alloc(0))).toMatchObject({
      width: 1024,
      height: 1536,
    });
  });

  it("streams partial images through the callback and returns the completed images", async () => {
    const partials: PartialImage[] = [];
    const result = await provider().generate({
      prompt: "a slow reveal",
      params: params({ n: 2, format: "png" }),
      onPartialImage: (p) => partials.push(p),
    });

    expect(fake.requests[0]?.body).toMatchObject({ stream: true, partial_images: 2 });
    expect(fake.requests[0]?.stream).toBe(true);
    expect(partials.map((p) => p.index)).toEqual([0, 1, 2, 3]);
    for (const p of partials) expect((await imageInfo(p.bytes)).format).toBe("png");
    expect(result.images).toHaveLength(2);
    expect(new Set([...partials, ...result.images].map((i) => sha(i.bytes))).size).toBe(6);
    expect(result.usage[0]?.outputImageTokens).toBeGreaterThan(0);
    expect(result.requestId).toBe(fake.requests[0]?.requestId);
  });

  it("streams an edit (image_edit.* events)", async () => {
    const partials: PartialImage[] = [];
    const previous = await makePng(1024, 1024, "streamed edit");
    const result = await provider().edit({
      prompt: "add a moon",
      params: params({ format: "jpeg" }),
      images: [{ bytes: previous, format: "png" }],
      onPartialImage: (p) => partials.push(p),
    });
    expect(fake.requests[0]?.images[0]?.equals(previous)).toBe(true);
    expect(fake.requests[0]?.body).toMatchObject({ stream: "true", partial_images: "2" });
    expect(partials).toHaveLength(2);
    expect(result.images.map((i) => i.format)).toEqual(["jpeg"]);
  });

  it("a throwing progress callback does not fail the generation", async () => {
    const result = await provider().generate({
      prompt: "x",
      params: params(),
      onPartialImage: () => {
        throw new Error("chat message deleted");
      },
    });
    expect(result.images).toHaveLength(1);
  });
});

describe("errors", () => {
  it("lets the SDK retry a 429 after retry-after, then succeeds", async () => {
    fake.failNext({ status: 429, retryAfterSeconds: 1 });
    const result = await provider().generate({ prompt: "busy", params: params() });
    expect(result.images).toHaveLength(1);
    expect(fake.requests.map((r) => [r.status, r.retryCount])).toEqual([
      [429, 0],
      [200, 1],
    ]);
  });

  it("retries a multipart edit too, resending the same bytes (the uploads are not a streaming body)", async () => {
    fake.failNext({ status: 503, retryAfterMs: 5 });
    const previous = await makePng(1024, 1024, "retried edit");
    await provider().edit({ prompt: "x", params: params(), images: [{ bytes: previous, format: "png" }] });
    expect(fake.requests.map((r) => [r.status, r.retryCount])).toEqual([
      [503, 0],
      [200, 1],
    ]);
    expect(fake.requests.every((r) => r.images[0]?.equals(previous))).toBe(true);
  });

  it("maps a persistent 429 to rate_limited, retryable, with retryAfterMs", async () => {
    fake.failNext(...Array.from({ length: 3 }, () => ({ status: 429, retryAfterMs: 25 })));
    const error = await rejection(provider().generate({ prompt: "busy", params: params() }));
    expect(error).toMatchObject({ code: "rate_limited", retryable: true, retryAfterMs: 25 });
    expect(fake.requests.map((r) => r.retryCount)).toEqual([0, 1, 2]);
  });

  it("maps moderation_blocked, without retrying", async () => {
    fake.failNext({ moderation: true, categories: ["violence"] });
    const error = await rejection(provider().generate({ prompt: "something blocked", params: params() }));
    expect(error.code).toBe("moderation_blocked");
    expect(error.retryable).toBe(false);
    expect(error.userMessage).toBe("OpenAI's safety system blocked this request. Try rewording the prompt.");
    expect(fake.requests).toHaveLength(1);
  });

  it("maps a persistent 500 to provider_unavailable, retryable", async () => {
    fake.failNext(...Array.from({ length: 3 }, () => ({ status: 500, retryAfterMs: 5 })));
    const error = await rejection(provider().generate({ prompt: "x", params: params() }));
    expect(error).toMatchObject({ code: "provider_unavailable", retryable: true });
    expect(fake.requests).toHaveLength(3);
  });

  it("maps mid-stream errors the same way", async () => {
    fake.failNext({ streamError: true, afterEvents: 1 });
    const partials: PartialImage[] = [];
    const failed = provider().generate({
      prompt: "x",
      params: params(),
      onPartialImage: (p) => partials.push(p),
    });
    expect(await rejection(failed)).toMatchObject({ code: "provider_unavailable", retryable: true });
    expect(partials).toHaveLength(1);

    fake.failNext({
      streamError: true,
      error: {
        message: "Your request was rejected by the safety system.",
        type: "image_generation_user_error",
        param: null,
        code: "moderation_blocked",
      },
    });
    const blocked = provider().generate({ prompt: "x", params: params(), onPartialImage: () => {} });
    expect(await rejection(blocked)).toMatchObject({ code: "moderation_blocked", retryable: false });
  });

  it("maps a 400 to provider_rejected with OpenAI's message for the user", async () => {
    const error = await rejection(
      provider().generate({ prompt: "x", params: params({ size: "1000x1000" }) }),
    );
    expect(error).toMatchObject({ code: "provider_rejected", retryable: false });
    expect(error.userMessage).toContain(
      "Invalid size '1000x1000'. Width and height must both be divisible by 16.",
    );
  });

  it("maps 401 to provider_auth", async () => {
    const error = await rejection(
      provider({ apiKey: "sk-wrong-key-1234" }).generate({ prompt: "x", params: params() }),
    );
    expect(error).toMatchObject({ code: "provider_auth", retryable: false });
  });

  it("maps connection failures and timeouts", async () => {
    fake.failNext({ disconnect: true });
    const lost = await rejection(provider({ maxRetries: 0 }).generate({ prompt: "x", params: params() }));
    expect(lost).toMatchObject({ code: "provider_unavailable", retryable: true });

    fake.setLatency(2_000);
    const slow = await rejection(
      provider({ maxRetries: 0, timeout: 200 }).generate({ prompt: "x", params: params() }),
    );
    expect(slow).toMatchObject({ code: "provider_timeout", retryable: true });
  });

  it("rethrows a caller's abort as an abort, not as a provider failure", async () => {
    fake.setLatency(2_000);
    const call = provider().generate({ prompt: "x", params: params() }, AbortSignal.timeout(100));
    await expect(call).rejects.toBeInstanceOf(APIUserAbortError);
  });

  it("reads retry-after-ms, then retry-after in seconds or as a date", () => {
    expect(retryAfterMs(new Headers({ "retry-after-ms": "1500.5", "retry-after": "9" }))).toBe(1501);
    expect(retryAfterMs(new Headers({ "retry-after": "2" }))).toBe(2000);
    const date = retryAfterMs(new Headers({ "retry-after": new Date(Date.now() + 30_000).toUTCString() }));
    expect(date).toBeGreaterThan(25_000);
    expect(retryAfterMs(new Headers())).toBeUndefined();
  });

  it("refuses to build a provider without an API key", () => {
    expect(() =>
      createOpenAIImageProvider({
        apiKey: undefined,
        baseUrl: undefined,
        imageModel: "gpt-image-2",
        thinkModel: "gpt-5.5",
      }),
    ).toThrow(expect.objectContaining({ code: "config_invalid" }));
  });
});

describe("think turns (Responses API)", () => {
  it("returns the image, the revised prompt and two usage rows", async () => {
    const result = await provider().generate({
      prompt: "a poster for our launch",
      params: params({ think: true, size: "1024x1536", quality: "medium" }),
    });
    const [request] = fake.requests;
    expect(request?.endpoint).toBe("responses");
    expect(request?.body).toMatchObject({
      model: "gpt-5.5",
      input: "a poster for our launch",
      tool_choice: { type: "image_generation" },
      tools: [
        {
          type: "image_generation",
          model: "gpt-image-2",
          size: "1024x1536",
          quality: "medium",
          output_format: "png",
          background: "auto",
          action: "generate",
        },
      ],
    });
    expect(await imageInfo(result.images[0]?.bytes ?? Buffer.alloc(0))).toMatchObject({
      width: 1024,
      height: 1536,
    });
    expect(result.revisedPrompt).toContain("a poster for our launch");
    expect(result.requestId).toBe(request?.requestId);
    const usage = result.usage as PricedUsageEntry[];
    expect(usage.map((u) => u.model)).toEqual(["gpt-5.5", "gpt-image-2"]);
    expect(usage[0]?.reasoningTokens).toBeGreaterThan(0);
    expect(usage[1]?.outputImageTokens).toBeGreaterThan(0);
    expect(usage.every((u) => u.priced && u.costUsd > 0)).toBe(true);
  });

  it("edits with input_image data URLs, one call per image, streaming partials", async () => {
    const previous = await makePng(1024, 1024, "think edit");
    const partials: PartialImage[] = [];
    const result = await provider().edit({
      prompt: "same scene, at night",
      params: params({ think: true, n: 2 }),
      images: [{ bytes: previous, format: "png" }],
      onPartialImage: (p) => partials.push(p),
    });
    expect(fake.requests).toHaveLength(2);
    for (const request of fake.requests) {
      expect(request.stream).toBe(true);
      expect(request.images[0]?.equals(previous)).toBe(true);
      expect(request.body).toMatchObject({ tools: [{ action: "edit", partial_images: 2 }] });
    }
    expect(result.images).toHaveLength(2);
    expect(partials.map((p) => p.index).sort()).toEqual([0, 1, 2, 3]);
    expect(result.usage).toHaveLength(2);
    const single = (
      await provider().edit({
        prompt: "x",
        params: params({ think: true }),
        images: [{ bytes: previous, format: "png" }],
      })
    ).usage;
    expect(result.usage[1]?.outputTokens).toBe(2 * (single[1]?.outputTokens ?? 0));
  });

  it("maps a moderation failure in the response, streamed or not", async () => {
    fake.failNext({ moderation: true });
    const plain = await rejection(provider().generate({ prompt: "x", params: params({ think: true }) }));
    expect(plain).toMatchObject({ code: "moderation_blocked", retryable: false });

    fake.failNext({ moderation: true });
    const streamed = provider().generate({
      prompt: "x",
      params: params({ think: true }),
      onPartialImage: () => {},
    });
    expect(await rejection(streamed)).toMatchObject({ code: "moderation_blocked", retryable: false });
  });
});

describe("think turns: failures", () => {
  it("maps a mid-stream error event", async () => {
    fake.failNext({ streamError: true, afterEvents: 3 });
    const failed = provider().generate({
      prompt: "x",
      params: params({ think: true }),
      onPartialImage: () => {},
    });
    expect(await rejection(failed)).toMatchObject({ code: "provider_unavailable", retryable: true });
  });

  it("reports the failing call's error, not the abort of its siblings", async () => {
    fake.failNext({
      status: 400,
      body: { error: { message: "Bad tool.", type: "invalid_request_error", param: "tools", code: null } },
    });
    const error = await rejection(
      provider().generate({ prompt: "x", params: params({ think: true, n: 3 }) }),
    );
    expect(error).toMatchObject({ code: "provider_rejected", retryable: false });
    expect(error.userMessage).toBe("OpenAI rejected the request: Bad tool.");
  });
});

describe("pricing", () => {
  it("prices known models (snapshots too) and flags unknown ones at cost 0", async () => {
    const counts = {
      inputTextTokens: 1_000_000,
      inputImageTokens: 0,
      outputTokens: 1_000_000,
      outputImageTokens: 1_000_000,
    };
    expect(estimateCost("gpt-image-2", counts)).toEqual({ costUsd: 35, priced: true });
    expect(estimateCost("gpt-image-2-2026-04-21", counts)).toEqual({ costUsd: 35, priced: true });
    expect(estimateCost("gpt-image-9", counts)).toEqual({ costUsd: 0, priced: false });

    const result = await provider({}, "gpt-image-2.6-flare").generate({ prompt: "x", params: params() });
    expect(result.usage[0]).toMatchObject({ model: "gpt-image-2.6-flare", costUsd: 0, priced: false });
  });
});

describe("the fake is strict", () => {
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${fake.baseUrl}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${fake.apiKey}`, "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  const errorOf = async (response: Response) => {
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("x-request-id")).toMatch(/^req_/);
    return ((await response.json()) as { error: Record<string, unknown> }).error;
  };

  it.each([
    ["1000x1000", "Width and height must both be divisible by 16."],
    ["4096x1024", "The longest edge must be at most 3840 pixels."],
    ["3072x768", "The aspect ratio must be between 1:3 and 3:1."],
    ["512x512", "The total number of pixels must be between 655360 and 8294400."],
    ["big", "Size must be 'auto' or WIDTHxHEIGHT"],
  ])("rejects size %s", async (size, message) => {
    const response = await post("/images/generations", { model: "gpt-image-2", prompt: "x", size });
    expect(response.status).toBe(400);
    expect(await errorOf(response)).toMatchObject({
      message: expect.stringContaining(`Invalid size '${size}'. ${message}`),
      type: "invalid_request_error",
      param: "size",
    });
  });

  it("accepts the largest and smallest legal sizes", async () => {
    for (const size of ["3840x2160", "1024x640", "auto"]) {
      const response = await post("/images/generations", {
        model: "gpt-image-2",
        prompt: "x",
        size,
        quality: "low",
      });
      expect(response.status, size).toBe(200);
    }
  });

  it.each([
    [{ response_format: "b64_json" }, "response_format"],
    [{ style: "vivid" }, "style"],
    [{ input_fidelity: "high" }, "input_fidelity"],
    [{ colour: "red" }, "colour"],
  ])("rejects unknown parameter %o on generations", async (extra, param) => {
    const response = await post("/images/generations", { model: "gpt-image-2", prompt: "x", ...extra });
    expect(response.status).toBe(400);
    expect(await errorOf(response)).toEqual({
      message: `Unknown parameter: '${param}'.`,
      type: "invalid_request_error",
      param,
      code: "unknown_parameter",
    });
  });

  it.each([
    [{ model: "dall-e-3" }, "model", "invalid_value"],
    [{ prompt: "" }, "prompt", "missing_required_parameter"],
    [{ prompt: "x".repeat(32_001) }, "prompt", "string_above_max_length"],
    [{ quality: "hd" }, "quality", "invalid_value"],
    [{ n: 0 }, "n", "integer_below_min_value"],
    [{ n: 11 }, "n", "integer_above_max_value"],
    [{ n: "2" }, "n", "invalid_type"],
    [{ output_format: "gif" }, "output_format", "invalid_value"],
    [{ background: "transparent", output_format: "jpeg" }, "background", "invalid_value"],
    [{ output_compression: 50 }, "output_compression", "invalid_value"],
    [{ partial_images: 4, stream: true }, "partial_images", "integer_above_max_value"],
  ])("rejects %o", async (override, param, code) => {
    const response = await post("/images/generations", { model: "gpt-image-2", prompt: "x", ...override });
    expect(response.status).toBe(400);
    expect(await errorOf(response)).toMatchObject({ param, code });
  });

  it("requires the API key and answers 404 for unknown routes", async () => {
    const missing = await post("/images/generations", { prompt: "x" }, { authorization: "" });
    expect(missing.status).toBe(401);
    const wrong = await post(
      "/images/generations",
      { prompt: "x" },
      { authorization: "Bearer sk-nope-123456" },
    );
    expect(wrong.status).toBe(401);
    expect(await errorOf(wrong)).toMatchObject({ code: "invalid_api_key", type: "invalid_request_error" });
    const unknown = await post("/images/variations", {});
    expect(unknown.status).toBe(404);
    expect(await errorOf(unknown)).toMatchObject({ message: "Invalid URL (POST /v1/images/variations)" });
    const notJson = await post("/images/generations", "{nope");
    expect(notJson.status).toBe(400);
  });

  describe("edits", () => {
    const edit = async (fill: (form: FormData) => Promise<void> | void) => {
      const form = new FormData();
      form.append("model", "gpt-image-2");
      form.append("prompt", "x");
      await fill(form);
      return fetch(`${fake.baseUrl}/images/edits`, {
        method: "POST",
        headers: { authorization: `Bearer ${fake.apiKey}` },
        body: form,
      });
    };
    const file = (bytes: Buffer, type: string) =>
      new Blob([new Uint8Array(bytes)], { type }) as Blob & { name?: string };

    it("rejects input_fidelity for gpt-image-2 with the real body", async () => {
      const png = await makePng(1024, 1024);
      const response = await edit((form) => {
        form.append("image", file(png, "image/png"), "a.png");
        form.append("input_fidelity", "high");
      });
      expect(response.status).toBe(400);
      expect(await errorOf(response)).toEqual({
        message: "The model 'gpt-image-2' does not support the 'input_fidelity' parameter.",
        type: "image_generation_user_error",
        param: "input_fidelity",
        code: "invalid_input_fidelity_model",
      });
    });

    it("checks images by their bytes, their count, and the mask", async () => {
      const png = await makePng(1024, 1024);
      const cases: [(form: FormData) => Promise<void> | void, string, string][] = [
        [() => {}, "image", "missing_required_parameter"],
        [
          (f) => f.append("image", file(Buffer.from("not an image"), "image/png"), "a.png"),
          "image",
          "unsupported_file_mimetype",
        ],
        [
          (f) => {
            for (let i = 0; i < 17; i++) f.append("image[]", file(png, "image/png"), "a.png");
          },
          "image",
          "array_above_max_length",
        ],
        [
          async (f) => {
            f.append("image", file(png, "image/png"), "a.png");
            f.append("mask", file(await makePng(1024, 1536), "image/png"), "m.png");
          },
          "mask",
          "invalid_mask_image",
        ],
        [
          async (f) => {
            f.append("image", file(png, "image/png"), "a.png");
            f.append(
              "mask",
              file(await makeImage({ width: 1024, height: 1024, format: "jpeg" }), "image/jpeg"),
              "m.jpg",
            );
          },
          "mask",
          "unsupported_file_mimetype",
        ],
      ];
      for (const [fill, param, code] of cases) {
        const response = await edit(fill);
        expect(response.status, code).toBe(400);
        expect(await errorOf(response)).toMatchObject({ param, code });
      }
      const json = await post("/images/edits", { prompt: "x" });
      expect(json.status).toBe(400);
    });
  });

  it("validates the Responses image_generation tool", async () => {
    const tool = { type: "image_generation", model: "gpt-image-2" };
    const cases: [Record<string, unknown>, Record<string, unknown>][] = [
      [
        { input: "x", tools: [tool] },
        { param: "model", code: "missing_required_parameter" },
      ],
      [
        { model: "gpt-5.5", input: "x", tools: [{ ...tool, input_fidelity: "high" }] },
        { param: "tools", code: "invalid_input_fidelity_model", type: "image_generation_user_error" },
      ],
      [{ model: "gpt-5.5", input: "x", tools: [{ ...tool, size: "1000x1000" }] }, { param: "tools[0].size" }],
      [
        { model: "gpt-5.5", input: "x", tools: [], tool_choice: { type: "image_generation" } },
        { param: "tool_choice" },
      ],
      [
        {
          model: "gpt-5.5",
          input: [
            { role: "user", content: [{ type: "input_image", image_url: "https://example.com/a.png" }] },
          ],
          tools: [tool],
        },
        { code: "invalid_image_url" },
      ],
      [
        { model: "gpt-5.5", input: "x", tools: [tool], response_format: "b64_json" },
        { code: "unknown_parameter" },
      ],
    ];
    for (const [body, expected] of cases) {
      const response = await post("/responses", body);
      expect(response.status, JSON.stringify(expected)).toBe(400);
      expect(await errorOf(response)).toMatchObject(expected);
    }
  });
});
