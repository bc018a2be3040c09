import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  allowedFileHosts,
  checkAttachment,
  downloadAttachment,
  fitForUpload,
  previewCopy,
  uploadLimitForTier,
} from "../adapters/discord/files.ts";
import { AppError } from "../src/errors.ts";
import { makeImage, makePng, sniffImageFormat } from "./fakes/images.ts";

/** A stand-in CDN on 127.0.0.1: serves `/big` (over any cap), `/png`, `/gone` (404) and records headers. */
let server: Server;
let base = "";
let png: Buffer;
const seen: IncomingHttpHeaders[] = [];

beforeAll(async () => {
  png = await makePng(64, 64, "cdn");
  server = createServer((req, res) => {
    seen.push(req.headers);
    if (req.url?.startsWith("/png")) return void res.writeHead(200, { "content-type": "image/png" }).end(png);
    if (req.url?.startsWith("/big")) {
      res.writeHead(200, { "content-type": "image/png" });
      res.write(Buffer.alloc(64 * 1024));
      return void res.end(Buffer.alloc(64 * 1024));
    }
    if (req.url?.startsWith("/redirect"))
      return void res.writeHead(302, { location: "http://example.invalid/x.png" }).end();
    res.writeHead(404, { "content-type": "text/plain" }).end("This content is no longer available.");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const options = () => ({ allowedHosts: allowedFileHosts(`${base}/api`), maxBytes: 100 * 1024 });
const file = (
  path: string,
  overrides: Partial<{ contentType: string | null; size: number; name: string }> = {},
) => ({
  name: "in.png",
  url: `${base}${path}`,
  contentType: "image/png",
  size: 100,
  ...overrides,
});

async function appError(promise: Promise<unknown> | (() => unknown)): Promise<AppError> {
  const error = await (typeof promise === "function" ? Promise.resolve().then(promise) : promise).then(
    () => expect.unreachable("expected an AppError"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

describe("attachments", () => {
  it("are taken only from Discord's CDN (or the configured API host), as PNG, JPEG or WebP within the cap", async () => {
    expect(allowedFileHosts(undefined)).toEqual(new Set(["cdn.discordapp.com", "media.discordapp.net"]));
    expect(checkAttachment(file("/png"), options())).toBe("png");
    expect(checkAttachment(file("/x", { contentType: "image/jpeg" }), options())).toBe("jpeg");
    expect(
      (await appError(() => checkAttachment(file("/x", { contentType: "image/gif" }), options()))).code,
    ).toBe("unsupported_attachment");
    expect(
      (await appError(() => checkAttachment(file("/x", { contentType: null }), options()))).userMessage,
    ).toMatch(/PNG, JPEG or WebP/);
    expect((await appError(() => checkAttachment(file("/x", { size: 200 * 1024 }), options()))).code).toBe(
      "attachment_too_large",
    );
    const elsewhere = { ...file("/png"), url: "https://evil.example/in.png" };
    expect((await appError(() => checkAttachment(elsewhere, options()))).userMessage).toMatch(
      /not hosted on Discord/,
    );
  });

  it("downloads without credentials, and stops past the cap, on a 404 or on a redirect", async () => {
    const downloaded = await downloadAttachment(file("/png"), options());
    expect(downloaded.bytes.equals(png)).toBe(true);
    expect(seen.at(-1)?.authorization).toBeUndefined();
    // The size Discord reported was small, but the body is not: the stream is cut off.
    expect((await appError(downloadAttachment(file("/big"), options()))).code).toBe("attachment_too_large");
    expect((await appError(downloadAttachment(file("/gone"), options()))).userMessage).toMatch(
      /couldn't download/,
    );
    expect((await appError(downloadAttachment(file("/redirect"), options()))).code).toBe(
      "unsupported_attachment",
    );
  });
});

describe("upload limits", () => {
  it("knows Discord's limits by boost tier", () => {
    expect(uploadLimitForTier(0)).toBe(10 * 1024 * 1024);
    expect(uploadLimitForTier(1)).toBe(10 * 1024 * 1024);
    expect(uploadLimitForTier(2)).toBe(50 * 1024 * 1024);
    expect(uploadLimitForTier(3)).toBe(100 * 1024 * 1024);
  });

  it("sends the original when it fits, else a WebP copy that fits (transparency kept)", async () => {
    const original = await makeImage({ width: 1024, height: 1024, seed: "big", transparent: true });
    expect(await fitForUpload(original, "png", original.length)).toEqual({
      bytes: original,
      format: "png",
      compressed: false,
    });
    const limit = Math.floor(original.length / 4);
    const copy = await fitForUpload(original, "png", limit);
    expect(copy.compressed).toBe(true);
    expect(copy.format).toBe("webp");
    expect(copy.bytes.length).toBeLessThanOrEqual(limit);
    expect(sniffImageFormat(copy.bytes)).toBe("webp");
    expect((await sharp(copy.bytes).metadata()).hasAlpha).toBe(true);
    expect((await appError(fitForUpload(original, "png", 10))).code).toBe("attachment_too_large");
  });

  it("previews are small WebP copies", async () => {
    const preview = await previewCopy(await makePng(1536, 1024, "preview"));
    const meta = await sharp(preview.bytes).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["webp", 512, 341]);
  });
});
