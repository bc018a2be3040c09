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

/** The URL when it is http(s) on one of `hosts`; null for anything else. */
export function urlOnHosts(raw: string | undefined, hosts: ReadonlySet<string>): URL | null {
  const url = raw && URL.canParse(raw) ? new URL(raw) : null;
  return url && /^https?:$/.test(url.protocol) && hosts.has(url.host) ? url : null;
}

export function unsupportedAttachment(name: string, reason: string, cause?: unknown): AppError {
  return new AppError("unsupported_attachment", `${name}: ${reason}`, {
    userMessage: `I can't use ${name}: ${reason}`,
    cause,
  });
}

export function attachmentTooLarge(name: string, maxBytes: number): AppError {
  const mb = Math.floor(maxBytes / (1024 * 1024));
  return new AppError("attachment_too_large", `${name} is over ${maxBytes} bytes`, {
    userMessage: `${name} is too large; images up to ${mb} MB work.`,
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
