import { Writable } from "node:stream";
import { DiscordAPIError } from "discord.js";
import { describe, expect, it } from "vitest";
import { createLogger, redactUrlSecrets } from "../src/logger.ts";

/** What reaches the log: never a token, a secret in a URL, or image bytes, whatever an error carries. */
function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger("info", stream), text: () => lines.join("") };
}

const TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQtdG9rZW4tdmFsdWU";

describe("logs", () => {
  it("keep a failed Discord request's URL but not its interaction token, and drop its body and files", () => {
    const { logger, text } = capture();
    const error = new DiscordAPIError(
      { code: 50027, message: "Invalid Webhook Token" },
      50027,
      401,
      "PATCH",
      `https://discord.com/api/v10/webhooks/1300000000000000001/${TOKEN}/messages/@original`,
      { files: [{ name: "v1-1.png", data: Buffer.from("PNG BYTES 0123456789") }], body: { content: "hi" } },
    );
    logger.warn({ err: error }, "could not edit the reply");
    const logged = text();
    expect(logged).toContain("/webhooks/1300000000000000001/[redacted]/messages/@original");
    expect(logged).toContain("Invalid Webhook Token");
    expect(logged).not.toContain(TOKEN);
    expect(logged).not.toContain("requestBody");
    expect(logged).not.toContain(Buffer.from("PNG BYTES").toString("base64"));
    expect(logged).not.toContain("PNG BYTES");
  });

  it("censor tokens, keys and bytes wherever they appear in logged objects", () => {
    const { logger, text } = capture();
    logger.info(
      { token: "t-1", config: { apiKey: "sk-2", botToken: "xoxb-3" }, image: { bytes: Buffer.from("raw") } },
      "starting",
    );
    const logged = text();
    for (const secret of ["t-1", "sk-2", "xoxb-3", "raw"]) expect(logged).not.toContain(secret);
  });

  it("redact Slack's response_url and Discord's interaction callbacks in any text", () => {
    expect(redactUrlSecrets("POST https://hooks.slack.com/commands/T1/123/abcDEF failed")).toBe(
      "POST https://hooks.slack.com/commands/[redacted] failed",
    );
    expect(redactUrlSecrets(`/interactions/1500000000000000002/${TOKEN}/callback`)).toBe(
      "/interactions/1500000000000000002/[redacted]/callback",
    );
    expect(redactUrlSecrets("nothing secret here")).toBe("nothing secret here");
  });
});
