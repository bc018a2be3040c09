import pLimit from "p-limit";
import type { OutputFormat } from "../../src/domain.ts";
import { AppError } from "../../src/errors.ts";

/**
 * People's attachments, whatever the platform: which file types gpt-image-2 takes, which hosts a download may go
 * to, and reading a download without ever holding more than a cap. Each adapter's `files.ts` adds its
 * platform's own rules (credentials, what a refusal looks like).
 */

const IMAGE_FORMATS: Readonly<Record<string, OutputFormat>> = {
  "image/png": "png",
  "image/jpeg": "jpeg",
  "image/webp": "webp",
};

/** The image format a MIME type names (`image/png; charset=…` and any case too), if gpt-image-2 takes it. */
export function imageFormatOf(mimeType: string | null | undefined): OutputFormat | undefined {
  const type = (mimeType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  return IMAGE_FORMATS[type];
}

/** The platform's own file hosts, plus the host of a configured API base (a proxy, or the tests' fake). */
export function fileHosts(platformHosts: readonly string[], apiUrl: string | undefined): Set<string> {
  const hosts = new Set(platformHosts);
  if (apiUrl) hosts.add(new URL(apiUrl).host);
  return hosts;
}

/** An attachment as both platforms describe it. */
export interface AttachedFile {
  name: string;
  mimeType: string | null | undefined;
  /** As the platform declared it, when it did. */
  size: number | undefined;
  url: string | undefined;
}

export interface AttachmentRules {
  /** The hosts a download may go to (`fileHosts`). */
  allowedHosts: ReadonlySet<string>;
  maxBytes: number;
  /** "Slack", "Discord": where a file must be hosted, for the message when it is not. */
  platform: string;
}

/**
 * Checks an attachment before anything is downloaded or recorded: an image type gpt-image-2 takes, within the
 * cap as declared, on the platform's own file host. Throws AppError with a message for the person.
 */
export function checkAttachedImage(
  file: AttachedFile,
  rules: AttachmentRules,
): { format: OutputFormat; url: URL } {
  const format = imageFormatOf(file.mimeType);
  if (!format) throw unsupportedAttachment(file.name, "attach PNG, JPEG or WebP images.");
  if (file.size !== undefined && file.size > rules.maxBytes)
    throw attachmentTooLarge(file.name, rules.maxBytes);
  const url = file.url && URL.canParse(file.url) ? new URL(file.url) : null;
  if (!url || !/^https?:$/.test(url.protocol) || !rules.allowedHosts.has(url.host))
    throw unsupportedAttachment(file.name, `it is not hosted on ${rules.platform}.`);
  return { format, url };
}

export function unsupportedAttachment(name: string, reason: string): AppError {
  return new AppError("unsupported_attachment", `${name}: ${reason}`, {
    userMessage: `I can't use ${name}: ${reason}`,
  });
}

function attachmentTooLarge(name: string, maxBytes: number): AppError {
  const mb = Math.floor(maxBytes / (1024 * 1024));
  return new AppError("attachment_too_large", `${name} is over ${maxBytes} bytes`, {
    userMessage: `${name} is too large; images up to ${mb} MB work.`,
  });
}

/** How long one attachment may take to download, headers and body. */
const DOWNLOAD_TIMEOUT_MS = 30_000;
/** Attachments this process downloads at once, whatever the platform: what it holds in memory stays bounded. */
const downloads = pLimit(4);

/**
 * Fetches an attachment and reads its response with `read`, within the time limit and one of the process's
 * download slots; a download that runs out of time is refused with a message, not left hanging.
 */
export function download<T>(
  url: URL | string,
  init: RequestInit,
  name: string,
  read: (response: Response) => Promise<T>,
  timeoutMs = DOWNLOAD_TIMEOUT_MS,
): Promise<T> {
  return downloads(async () => {
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      return await read(await fetch(url, { ...init, signal }));
    } catch (error) {
      if (!signal.aborted) throw error;
      throw new AppError("unsupported_attachment", `${name}: download timed out`, {
        userMessage: `I couldn't download ${name} in time. Please try again.`,
        cause: error,
      });
    }
  });
}

/**
 * The body of a download, read as it streams and cut off (the download cancelled) as soon as it passes
 * `maxBytes`, whatever size the platform declared.
 */
export async function readCapped(response: Response, name: string, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body ?? []) {
    total += chunk.length;
    // Leaving the loop by throwing cancels the stream, so the rest is never downloaded.
    if (total > maxBytes) throw attachmentTooLarge(name, maxBytes);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
