import { createHash } from "node:crypto";
import sharp from "sharp";

/**
 * Real, cheap test images. Every image is a solid background with a vertical band and a square whose colours
 * and positions come from a SHA-256 of the seed, so different seeds give different pixels (and bytes), while
 * the same seed always gives the same image. Encoding is tuned for speed, not size.
 */
export type ImageFormat = "png" | "jpeg" | "webp";

export interface MakeImageOptions {
  width: number;
  height: number;
  format?: ImageFormat;
  seed?: string | number;
  /** Transparent background (png and webp only; jpeg has no alpha). */
  transparent?: boolean;
}

export async function makeImage(options: MakeImageOptions): Promise<Buffer> {
  const { width, height, format = "png", seed = 0, transparent = false } = options;
  const hash = createHash("sha256").update(String(seed)).digest();
  const byte = (i: number) => hash[i] ?? 0;
  const channels = transparent && format !== "jpeg" ? 4 : 3;
  const color = (i: number, alpha: number) => [byte(i), byte(i + 1), byte(i + 2), alpha].slice(0, channels);

  // Raw pixels built by hand: sharp's composite always adds an alpha channel, and opaque output should be RGB.
  const rowBytes = width * channels;
  const row = Buffer.alloc(rowBytes);
  const background = Buffer.from(color(0, 0));
  for (let x = 0; x < width; x++) background.copy(row, x * channels);
  const band = Math.max(1, Math.floor(width / 6));
  const bandLeft = hash.readUInt16BE(6) % (width - band + 1);
  const bandPixel = Buffer.from(color(3, 255));
  for (let x = bandLeft; x < bandLeft + band; x++) bandPixel.copy(row, x * channels);
  const pixels = Buffer.alloc(rowBytes * height);
  for (let y = 0; y < height; y++) row.copy(pixels, y * rowBytes);

  const square = Math.max(1, Math.floor(Math.min(width, height) / 5));
  const squareLeft = hash.readUInt16BE(11) % (width - square + 1);
  const squareTop = hash.readUInt16BE(13) % (height - square + 1);
  const squareRow = Buffer.alloc(square * channels);
  const squarePixel = Buffer.from(color(8, 255));
  for (let x = 0; x < square; x++) squarePixel.copy(squareRow, x * channels);
  for (let y = squareTop; y < squareTop + square; y++)
    squareRow.copy(pixels, y * rowBytes + squareLeft * channels);

  const image = sharp(pixels, { raw: { width, height, channels } });
  switch (format) {
    case "png":
      return image.png({ compressionLevel: 1, adaptiveFiltering: false }).toBuffer();
    case "jpeg":
      return image.jpeg({ quality: 80 }).toBuffer();
    case "webp":
      return image.webp({ quality: 80, effort: 0 }).toBuffer();
  }
}

export function makePng(width: number, height: number, seed: string | number = 0): Promise<Buffer> {
  return makeImage({ width, height, format: "png", seed });
}

/** The format named by the file's magic bytes; null for anything that is not png, jpeg or webp. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    b.length >= 8 &&
    b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  ) {
    return "png";
  }
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length >= 12 && b.toString("latin1", 0, 4) === "RIFF" && b.toString("latin1", 8, 12) === "WEBP") {
    return "webp";
  }
  return null;
}

export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
  hasAlpha: boolean;
}

/** Decodes the header (sharp) and throws when the bytes are not a png, jpeg or webp image. */
export async function imageInfo(bytes: Uint8Array): Promise<ImageInfo> {
  const format = sniffImageFormat(bytes);
  if (!format) throw new Error("not a png, jpeg or webp image");
  const meta = await sharp(bytes).metadata();
  return { format, width: meta.width, height: meta.height, hasAlpha: meta.hasAlpha };
}
