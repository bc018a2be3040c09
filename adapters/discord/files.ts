import sharp from "sharp";
import type { OutputFormat } from "../../src/domain.ts";
import { AppError } from "../../src/errors.ts";
import type { ImageInput } from "../../src/ports.ts";
import { checkAttachedImage, download, fileHosts, readCapped } from "../shared/files.ts";
import type { DiscordFile } from "./client.ts";

/**
 * Files in and out of Discord: people's attachments downloaded as reference images (only from Discord's CDN,
 * only images gpt-image-2 takes, never more than a cap), and our images made to fit a server's upload limit.
 */

/** Discord's attachment hosts, plus the host of a configured API base (a proxy, or the tests' fake). */
export function allowedFileHosts(apiUrl: string | undefined): Set<string> {
  return fileHosts(["cdn.discordapp.com", "media.discordapp.net"], apiUrl);
}

export interface DownloadOptions {
  allowedHosts: ReadonlySet<string>;
  maxBytes: number;
  /** How long one download may take; 30 s by default (`shared/files.ts`). */
  timeoutMs?: number | undefined;
}

/**
 * Checks an attachment before anything is recorded: an image type, within the cap, on Discord's CDN. Throws
 * AppError with a message for the person who attached it.
 */
export function checkAttachment(file: DiscordFile, options: DownloadOptions): OutputFormat {
  const attached = { name: file.name, mimeType: file.contentType, size: file.size, url: file.url };
  return checkAttachedImage(attached, { ...options, platform: "Discord" }).format;
}

/**
 * Downloads an attachment from Discord's CDN. Attachment URLs are signed, so no credentials are sent (the bot
 * token never leaves for the CDN), redirects are refused, and the body is cut off past `maxBytes`.
 */
export async function downloadAttachment(file: DiscordFile, options: DownloadOptions): Promise<ImageInput> {
  const format = checkAttachment(file, options);
  const bytes = await download(
    file.url,
    { redirect: "error" },
    file.name,
    async (response) => {
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new AppError("unsupported_attachment", `${file.name}: HTTP ${response.status}`, {
          userMessage: `I couldn't download ${file.name} from Discord (it may have expired). Attach it again.`,
        });
      }
      return readCapped(response, file.name, options.maxBytes);
    },
    options.timeoutMs,
  ).catch((error: unknown) => {
    if (error instanceof AppError) throw error;
    throw new AppError("unsupported_attachment", `${file.name}: download failed`, {
      userMessage: `I couldn't download ${file.name} from Discord. Please try again.`,
      cause: error,
    });
  });
  return { bytes, format };
}

// ---------------------------------------------------------------------------------------------------------
// Upload limits
// ---------------------------------------------------------------------------------------------------------

/** Discord's per-file upload limit by server boost tier (0–3), for when no interaction told us the real one. */
export function uploadLimitForTier(premiumTier: number): number {
  const MiB = 1024 * 1024;
  return premiumTier >= 3 ? 100 * MiB : premiumTier === 2 ? 50 * MiB : 10 * MiB;
}

export interface UploadFile {
  bytes: Buffer;
  format: OutputFormat;
  /** True when these are not the stored bytes but a smaller copy. */
  compressed: boolean;
}

/**
 * The image as it can be uploaded under `limit` bytes: the original when it fits; otherwise a WebP copy (it keeps
 * transparency, unlike JPEG) at falling quality, then at falling size, until it fits. The original stays in the
 * store; only the upload is smaller.
 */
export async function fitForUpload(bytes: Buffer, format: OutputFormat, limit: number): Promise<UploadFile> {
  if (bytes.length <= limit) return { bytes, format, compressed: false };
  const { width = 1024 } = await sharp(bytes).metadata();
  for (const scale of [1, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1]) {
    for (const quality of [90, 75, 60, 45]) {
      const copy = await sharp(bytes)
        .resize({ width: Math.max(16, Math.round(width * scale)), withoutEnlargement: true })
        .webp({ quality })
        .toBuffer();
      if (copy.length <= limit) return { bytes: copy, format: "webp", compressed: true };
    }
  }
  throw new AppError("attachment_too_large", `image of ${bytes.length} bytes cannot fit ${limit} bytes`, {
    userMessage: "The image is too large for this server's upload limit, even compressed.",
  });
}

/** A stream preview, made small: it is replaced a moment later and should not cost upload time. */
export async function previewCopy(bytes: Buffer): Promise<UploadFile> {
  const copy = await sharp(bytes)
    .resize({ width: 512, height: 512, fit: "inside", withoutEnlargement: true })
    .webp({ quality: 70 })
    .toBuffer();
  return { bytes: copy, format: "webp", compressed: true };
}
