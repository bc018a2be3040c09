import type { IncomingMessage, ServerResponse } from "node:http";
import {
  appendMessage,
  botMessage,
  hostFile,
  nextTs,
  type SlackState,
  slackId,
  type UploadRecord,
} from "./slack-state.ts";
import {
  applyFailure,
  blocksArg,
  botEvent,
  channelArg,
  type Failures,
  formData,
  hang,
  isProcessedHang,
  jsonArg,
  required,
  SlackApiError,
  str,
  threadArg,
  type WebApiMethod,
} from "./slack-web-api.ts";

/**
 * Files: the three steps of `files.uploadV2` (`files.getUploadURLExternal`, the upload URL POST,
 * `files.completeUploadExternal`, which shares the files into a channel or thread as a `file_share` message),
 * `files.info`, and the file host behind `url_private` / `url_private_download`.
 */

export const FILE_METHODS: Record<string, WebApiMethod> = {
  "files.getUploadURLExternal": (state, args) => {
    const filename = required(args, "filename");
    const length = Number(required(args, "length"));
    if (!Number.isInteger(length) || length < 1)
      throw new SlackApiError("invalid_arguments", "[ERROR] length must be a positive integer");
    const fileId = slackId("F");
    const ticket = slackId("", 24).toLowerCase();
    const upload: UploadRecord = { fileId, filename, length, bytes: null, completed: false };
    const altText = str(args, "alt_text");
    const snippetType = str(args, "snippet_type");
    if (altText !== undefined) upload.alt_text = altText;
    if (snippetType !== undefined) upload.snippet_type = snippetType;
    state.pendingUploads.set(fileId, upload);
    state.uploadTickets.set(ticket, fileId);
    state.uploads.push(upload);
    return { upload_url: `${state.baseUrl}/upload/v1/${ticket}`, file_id: fileId };
  },

  "files.completeUploadExternal": (state, args) => {
    const files = jsonArg(args, "files", "invalid_arguments");
    if (!Array.isArray(files) || files.length === 0 || files.some((f) => typeof f?.id !== "string"))
      throw new SlackApiError("invalid_arguments", "[ERROR] files must be a JSON array of {id, title?}");
    const channel = str(args, "channel_id") !== undefined ? channelArg(state, args, "channel_id") : undefined;
    if (!channel && str(args, "thread_ts"))
      throw new SlackApiError("invalid_arguments", "[ERROR] thread_ts needs channel_id");
    const threadTs = channel ? threadArg(state, channel.id, args) : undefined;
    const initialComment = str(args, "initial_comment");
    const blocks = blocksArg(args);
    const uploads = (files as Array<{ id: string; title?: string }>).map((entry) => {
      const upload = state.pendingUploads.get(entry.id);
      if (!upload?.bytes) throw new SlackApiError("file_not_found", `[ERROR] ${entry.id} was not uploaded`);
      return { upload, bytes: upload.bytes, title: entry.title };
    });
    const done = uploads.map(({ upload, bytes, title }) => {
      state.pendingUploads.delete(upload.fileId);
      Object.assign(upload, {
        completed: true,
        title: title ?? upload.filename,
        ...(channel ? { channel_id: channel.id } : {}),
        ...(threadTs ? { thread_ts: threadTs } : {}),
        ...(initialComment !== undefined ? { initial_comment: initialComment } : {}),
      });
      return hostFile(
        state,
        {
          bytes,
          name: upload.filename,
          title: upload.title,
          ...(upload.alt_text ? { altText: upload.alt_text } : {}),
        },
        upload.fileId,
      );
    });
    if (channel) {
      const ts = nextTs(state);
      for (const { upload } of uploads) upload.messageTs = ts;
      const message = botMessage(state, {
        ts,
        subtype: "file_share",
        text: initialComment ?? "",
        files: done,
        upload: true,
        display_as_bot: false,
        ...(blocks ? { blocks } : {}),
        ...(threadTs ? { thread_ts: threadTs } : {}),
      });
      appendMessage(state, channel.id, message);
      botEvent(state, channel.id, message);
    }
    return { files: done };
  },

  "files.info": (state, args) => {
    const hosted = state.files.get(required(args, "file", "file_not_found"));
    if (!hosted) throw new SlackApiError("file_not_found");
    return { file: hosted.file, comments: [], response_metadata: { next_cursor: "" } };
  },

  // Sunset by Slack on 2025-11-12; @slack/web-api still has it, files.uploadV2 is the replacement.
  "files.upload": () => {
    throw new SlackApiError("method_deprecated");
  },
};

/**
 * `POST /upload/v1/<ticket>`: the bytes of one `files.getUploadURLExternal` file, raw or as the only file part
 * of a multipart body (the Web API client sends one part named `body`). Answers exactly `200 OK - <bytes>`; a
 * byte count that differs from the declared `length` is refused with 400 so the mistake cannot go unnoticed.
 */
export async function handleUpload(
  state: SlackState,
  failures: Failures,
  ticket: string,
  req: IncomingMessage,
  raw: Buffer,
  res: ServerResponse,
): Promise<void> {
  const text = (status: number, body: string) => {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
    res.end(body);
  };
  const fileId = state.uploadTickets.get(ticket);
  const upload = fileId ? state.pendingUploads.get(fileId) : undefined;
  if (req.method !== "POST" || !upload) return text(404, "Not Found");
  const failure = failures.get("upload")?.shift();
  if (failure && !isProcessedHang(failure)) {
    if ("hang" in failure) return hang(state, req, upload, false);
    if (applyFailure(failure, req, res, () => {})) return;
  }
  const answer = await receiveUpload(state, ticket, upload, req, raw);
  if (failure && isProcessedHang(failure)) return hang(state, req, upload, true);
  text(answer.status, answer.body);
}

/** Stores the bytes of an upload POST; the answer Slack gives (exactly `200 OK - <bytes>` when they are good). */
async function receiveUpload(
  state: SlackState,
  ticket: string,
  upload: UploadRecord,
  req: IncomingMessage,
  raw: Buffer,
): Promise<{ status: number; body: string }> {
  let bytes = raw;
  let encoding = "raw";
  if ((req.headers["content-type"] ?? "").startsWith("multipart/form-data")) {
    const form = await formData(req, raw).catch(() => null);
    const parts = form ? [...form.entries()].filter(([, value]) => typeof value !== "string") : [];
    const [part] = parts;
    if (!part || parts.length !== 1) return { status: 400, body: "expected exactly one file part" };
    bytes = Buffer.from(await (part[1] as Blob).arrayBuffer());
    encoding = `multipart:${part[0]}`;
  }
  if (bytes.length !== upload.length)
    return {
      status: 400,
      body: `length mismatch: files.getUploadURLExternal said ${upload.length}, got ${bytes.length}`,
    };
  upload.bytes = bytes;
  upload.encoding = encoding;
  state.uploadTickets.delete(ticket);
  return { status: 200, body: `OK - ${bytes.length}` };
}

/** `url_private(_download)`: the bytes with the bot token; otherwise, like Slack, a 200 HTML sign-in page. */
export function serveFile(
  req: IncomingMessage,
  res: ServerResponse,
  state: SlackState,
  failures: Failures,
  path: string,
) {
  const [, , key = "", ...rest] = path.split("/");
  const fileId = key.startsWith(`${state.teamId}-`) ? key.slice(state.teamId.length + 1) : "";
  const hosted = state.files.get(fileId);
  if (!hosted || rest.length === 0)
    return void res.writeHead(404, { "content-type": "text/html" }).end("<h1>404</h1>");
  const authorized = req.headers.authorization === `Bearer ${state.botToken}`;
  state.downloads.push({ fileId, path, authorized });
  if (!authorized) {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "private, no-cache" });
    return void res.end(
      `<!DOCTYPE html><html lang="en"><head><title>Slack</title></head><body>` +
        `<h1>Sign in to ${state.teamName}</h1><form action="/signin" method="post"></form></body></html>`,
    );
  }
  const failure = failures.get("download")?.shift();
  if (failure) {
    if ("hang" in failure) return hang(state, req, {}, false);
    if (applyFailure(failure, req, res, () => {})) return;
  }
  const download = rest[0] === "download";
  res.writeHead(200, {
    "content-type": hosted.file.mimetype,
    "content-length": String(hosted.bytes.length),
    ...(download
      ? { "content-disposition": `attachment; filename="${encodeURIComponent(hosted.file.name)}"` }
      : {}),
  });
  res.end(req.method === "HEAD" ? undefined : hosted.bytes);
}
