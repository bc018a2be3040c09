import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { detectFormat, sniffImageFormat } from "../src/engine/image-checks.ts";

/** What the engine accepts as an image, decided by the bytes themselves. */
const tiny = (format: "png" | "jpeg" | "webp" | "gif" | "tiff") =>
  sharp({ create: { width: 4, height: 4, channels: 3, background: "red" } })
    .toFormat(format)
    .toBuffer();

describe("image checks", () => {
  it("name PNG, JPEG and WebP by their magic numbers, and nothing else", async () => {
    for (const format of ["png", "jpeg", "webp"] as const)
      expect(sniffImageFormat(await tiny(format))).toBe(format);
    for (const format of ["gif", "tiff"] as const) expect(sniffImageFormat(await tiny(format))).toBeNull();
    expect(sniffImageFormat(Buffer.from("<!DOCTYPE html>"))).toBeNull();
    expect(sniffImageFormat(Buffer.from("RIFF\0\0\0\0WAVEfmt "))).toBeNull(); // RIFF, but audio
    expect(sniffImageFormat(new Uint8Array())).toBeNull();
  });

  it("accept an image only when the decoder agrees with its first bytes", async () => {
    await expect(detectFormat(await tiny("webp"))).resolves.toBe("webp");
    // A TIFF is an image sharp reads, but not one gpt-image-2 takes: refused before decoding.
    await expect(detectFormat(await tiny("tiff"))).rejects.toMatchObject({ code: "unsupported_attachment" });
    const pngMagicOnJpeg = Buffer.concat([
      (await tiny("png")).subarray(0, 8),
      (await tiny("jpeg")).subarray(8),
    ]);
    await expect(detectFormat(pngMagicOnJpeg)).rejects.toMatchObject({ code: "unsupported_attachment" });
  });
});
