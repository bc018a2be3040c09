import {
  checkAttachedImage,
  download,
  fileHosts,
  readCapped,
  unsupportedAttachment,
} from "../shared/files.ts";

/** What Slack puts in `event.files[]` (the fields we use). */
export interface SlackFile {
  id: string;
  name?: string;
  mimetype?: string;
  size?: number;
  url_private?: string;
  url_private_download?: string;
}

export interface DownloadOptions {
  botToken: string;
  /** Hosts the bot may send its token to: Slack's file host, plus the configured API host (proxies, fakes). */
  allowedHosts: ReadonlySet<string>;
  maxBytes: number;
}

export function allowedFileHosts(apiUrl: string | undefined): Set<string> {
  return fileHosts(["files.slack.com"], apiUrl);
}

/**
 * Downloads a user's attachment with the bot token — only from Slack's own file host, only images of the kinds
 * gpt-image-2 takes, and never more than `maxBytes`. Slack answers a request without access with an HTML login
 * page (status 200), so the content type is checked too.
 */
export async function downloadSlackImage(file: SlackFile, options: DownloadOptions): Promise<Buffer> {
  const name = file.name ?? file.id;
  const { url } = checkAttachedImage(
    { name, mimeType: file.mimetype, size: file.size, url: file.url_private_download ?? file.url_private },
    { ...options, platform: "Slack" },
  );
  const init = { headers: { authorization: `Bearer ${options.botToken}` }, redirect: "manual" as const };
  return download(url, init, name, async (response) => {
    const type = response.headers.get("content-type") ?? "";
    if (response.status !== 200 || type.startsWith("text/html")) {
      await response.body?.cancel();
      throw unsupportedAttachment(
        name,
        "Slack did not let me download it (is the app allowed to read files here?).",
      );
    }
    return readCapped(response, name, options.maxBytes);
  });
}
