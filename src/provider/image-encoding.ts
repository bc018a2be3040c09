import { toFile } from "openai";
import type { OutputFormat } from "../domain.ts";
import type { ImageInput, ProviderImage } from "../ports.ts";

/** How images travel to and from OpenAI: multipart files, base64 data URLs, and base64 results. */

const MIME: Record<OutputFormat, string> = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };
const EXTENSION: Record<OutputFormat, string> = { png: "png", jpeg: "jpg", webp: "webp" };

/** A multipart file part with a real name and content type (`image-0.png`, `image/png`). */
export function asUpload(input: ImageInput, name: string) {
  return toFile(input.bytes, `${name}.${EXTENSION[input.format]}`, { type: MIME[input.format] });
}

/** For the Responses API's `input_image.image_url` and the tool's `input_image_mask`. */
export function dataUrl(input: ImageInput): string {
  return `data:${MIME[input.format]};base64,${input.bytes.toString("base64")}`;
}

/** Trusts the bytes over the label: the format comes from the magic bytes whenever they are recognisable. */
export function decodeImage(base64: string, label: string | null | undefined): ProviderImage {
  const bytes = Buffer.from(base64, "base64");
  const format = sniffFormat(bytes) ?? (label === "jpeg" || label === "webp" ? label : "png");
  return { bytes, format };
}

export function sniffFormat(b: Buffer): OutputFormat | null {
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return "png";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length >= 12 && b.toString("latin1", 0, 4) === "RIFF" && b.toString("latin1", 8, 12) === "WEBP")
    return "webp";
  return null;
}
