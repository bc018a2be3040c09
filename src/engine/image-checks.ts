import sharp from "sharp";
import type { OutputFormat } from "../domain.ts";
import { AppError } from "../errors.ts";

/**
 * What the engine accepts as an image: a person's reference (checked by its first bytes before any decoder sees
 * it) or the provider's output, decoded within a pixel limit either way.
 */

const FORMATS: Record<string, OutputFormat> = { png: "png", jpeg: "jpeg", webp: "webp" };

/** Larger than any image gpt-image-2 makes (3840x2160 is 8.3 MP) with room for photos; a decoder bomb is not. */
const MAX_INPUT_PIXELS = 50_000_000;

/** PNG, JPEG or WebP by their magic numbers; null for anything else. */
export function sniffImageFormat(bytes: Uint8Array): OutputFormat | null {
  const starts = (signature: readonly number[], at = 0) =>
    signature.every((byte, i) => bytes[at + i] === byte);
  if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "png";
  if (starts([0xff, 0xd8, 0xff])) return "jpeg";
  if (starts([0x52, 0x49, 0x46, 0x46]) && starts([0x57, 0x45, 0x42, 0x50], 8)) return "webp"; // RIFF….WEBP
  return null;
}

/** Width and height of an image, read within the pixel limit. */
export async function imageSize(bytes: Buffer): Promise<{ width: number; height: number }> {
  const { width, height } = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
  return { width, height };
}

/** The real format of uploaded bytes (never trust a file name); only what gpt-image-2 accepts. */
export async function detectFormat(bytes: Buffer): Promise<OutputFormat> {
  // The first bytes say what a file is before any decoder sees it; then sharp must agree, within a pixel limit
  // (a small file can claim an enormous image).
  const claimed = sniffImageFormat(bytes);
  const format = claimed
    ? await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS })
        .metadata()
        .then((meta) => (FORMATS[meta.format ?? ""] === claimed ? claimed : undefined))
        .catch(() => undefined)
    : undefined;
  if (!format) {
    throw new AppError("unsupported_attachment", "attachment is not png/jpeg/webp", {
      userMessage: "Reference images must be PNG, JPEG or WebP files.",
    });
  }
  return format;
}
