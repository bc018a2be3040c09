import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { allowedFileHosts, downloadSlackImage } from "../adapters/slack/files.ts";
import { makePng } from "./fakes/images.ts";
import { type FakeSlack, startFakeSlack } from "./fakes/slack-server.ts";

/**
 * Attachments people put on a reply are fetched from Slack's file host with the bot token, and only when they
 * are images of a kind gpt-image-2 takes, small enough, and hosted by Slack. Real HTTP against the fake Slack,
 * which serves `url_private` with a bearer check and a sign-in page otherwise, as Slack does.
 */
let slack: FakeSlack;
let png: Buffer;

beforeAll(async () => {
  slack = await startFakeSlack();
  png = await makePng(256, 256, "reference");
});
afterAll(() => slack.close());
beforeEach(() => slack.reset());

const options = () => ({
  botToken: slack.botToken,
  allowedHosts: allowedFileHosts(slack.apiUrl),
  maxBytes: 1024 * 1024,
});

describe("downloadSlackImage", () => {
  it("downloads a person's image with the bot token, byte for byte", async () => {
    const file = slack.addUserFile({ bytes: png, name: "ref.png", mimetype: "image/png" });
    const bytes = await downloadSlackImage(file, options());
    expect(bytes.equals(png)).toBe(true);
    expect(slack.downloads).toEqual([expect.objectContaining({ fileId: file.id, authorized: true })]);
  });

  it("refuses what is not a PNG, JPEG or WebP image without downloading it", async () => {
    const file = slack.addUserFile({
      bytes: Buffer.from("%PDF-1.7"),
      name: "brief.pdf",
      mimetype: "application/pdf",
    });
    await expect(downloadSlackImage(file, options())).rejects.toMatchObject({
      code: "unsupported_attachment",
      userMessage: expect.stringMatching(/brief\.pdf.*PNG, JPEG or WebP/),
    });
    expect(slack.downloads).toEqual([]);
  });

  it("never sends the token to a host that is not Slack's", async () => {
    const file = slack.addUserFile({ bytes: png, name: "ref.png", mimetype: "image/png" });
    const elsewhere = {
      ...file,
      url_private: "http://127.0.0.1:9/steal.png",
      url_private_download: undefined,
    };
    await expect(downloadSlackImage(elsewhere, options())).rejects.toMatchObject({
      userMessage: expect.stringMatching(/not hosted on Slack/),
    });
    expect(allowedFileHosts(undefined)).toEqual(new Set(["files.slack.com"]));
  });

  it("refuses files over the size limit, declared or not", async () => {
    const big = Buffer.concat([png, Buffer.alloc(2 * 1024 * 1024)]);
    const declared = slack.addUserFile({ bytes: big, name: "big.png", mimetype: "image/png" });
    await expect(downloadSlackImage(declared, options())).rejects.toMatchObject({
      code: "attachment_too_large",
    });
    expect(slack.downloads).toEqual([]);
    // A file whose size Slack did not say is cut off while it streams.
    await expect(downloadSlackImage({ ...declared, size: undefined }, options())).rejects.toMatchObject({
      code: "attachment_too_large",
    });
    expect(slack.downloads).toHaveLength(1);
  });

  it("treats Slack's sign-in page (a wrong or missing token) as a refusal, not as image bytes", async () => {
    const file = slack.addUserFile({ bytes: png, name: "ref.png", mimetype: "image/png" });
    await expect(downloadSlackImage(file, { ...options(), botToken: "xoxb-wrong" })).rejects.toMatchObject({
      userMessage: expect.stringMatching(/did not let me download it/),
    });
    expect(slack.downloads).toEqual([expect.objectContaining({ authorized: false })]);
  });
});
