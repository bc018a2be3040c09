import { AppError } from "../../src/errors.ts";

/** What Slack puts in `event.files[]` (the fields we use). */
export interface SlackFile {
  id: string;
  name?: string;
  mimetype?: string;
  size?: number;
  url_private?: string;
  url_private_download?: string;
}

export const IMAGE_MIME_TYPES = new Set(["image/png", "image/jpeg", "image/webp"]);

export interface DownloadOptions {
  botToken: string;
  /** Hosts the bot may send its token to: Slack's file host, plus the configured API host (proxies, fakes). */
  allowedHosts: ReadonlySet<string>;
  maxBytes: number;
}

export function allowedFileHosts(apiUrl: string | undefined): Set<string> {
  const hosts = new Set(["files.slack.com"]);
  if (apiUrl) hosts.add(new URL(apiUrl).host);
  return hosts;
}

/**
 * Downloads a user's attachment with the bot token — only from Slack's own file host, only images of the kinds
 * gpt-image-2 takes, and never more than `maxBytes`. Slack answers a request without access with an HTML login
 * page (status 200), so the content type is checked too.
 */
export async function downloadSlackImage(file: SlackFile, options: DownloadOptions): Promise<Buffer> {
  const name = file.name ?? file.id;
  const reject = (message: string) =>
    new AppError("unsupported_attachment", `${name}: ${message}`, {
      userMessage: `I can't use ${name}: ${message}`,
    });
  if (!file.mimetype || !IMAGE_MIME_TYPES.has(file.mimetype))
    throw reject("attach PNG, JPEG or WebP images.");
  if (file.size !== undefined && file.size > options.maxBytes) {
    throw new AppError("attachment_too_large", `${name} is ${file.size} bytes`, {
      userMessage: `${name} is too large; images up to ${Math.floor(options.maxBytes / 1024 / 1024)} MB work.`,
    });
  }
  const raw = file.url_private_download ?? file.url_private;
  const url = raw && URL.canParse(raw) ? new URL(raw) : null;
  if (!url || !options.allowedHosts.has(url.host)) throw reject("it is not hosted on Slack.");

  const response = await fetch(url, {
    headers: { authorization: `Bearer ${options.botToken}` },
    redirect: "manual",
  });
  const type = response.headers.get("content-type") ?? "";
  if (response.status !== 200 || type.startsWith("text/html")) {
    await response.body?.cancel();
    throw reject("Slack did not let me download it (is the app allowed to read files here?).");
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.body ?? []) {
    total += chunk.length;
    if (total > options.maxBytes) {
      throw new AppError("attachment_too_large", `${name} exceeded ${options.maxBytes} bytes`, {
        userMessage: `${name} is too large; images up to ${Math.floor(options.maxBytes / 1024 / 1024)} MB work.`,
      });
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
