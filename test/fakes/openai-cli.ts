import { startFakeOpenAI } from "./openai-server.ts";

/**
 * `npm run fake:openai`: the fake OpenAI server on PORT (default 4010), for trying the bot without an API key
 * or network. It prints the two variables to export, logs one line per request, and runs until Ctrl-C.
 */
const port = Number(process.env.PORT ?? 4010);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(1);
}

const fake = await startFakeOpenAI({
  port,
  apiKey: process.env.FAKE_OPENAI_API_KEY ?? "sk-fake-threadcanvas",
  latencyMs: Number(process.env.FAKE_OPENAI_LATENCY_MS ?? 0),
  onRequestDone(r) {
    const prompt =
      typeof r.body.prompt === "string"
        ? r.body.prompt
        : typeof r.body.input === "string"
          ? r.body.input
          : "";
    console.log(
      `${new Date().toISOString()} ${r.method} ${r.path} → ${r.status ?? "closed"}${r.stream ? " (stream)" : ""}` +
        `${r.images.length > 0 ? ` images=${r.images.length}` : ""} ${JSON.stringify(prompt.slice(0, 60))}`,
    );
    fake.requests.length = 0; // a long-running server should not keep every image it was sent
  },
});
console.log("Fake OpenAI API listening. Use it with:\n");
console.log(`OPENAI_BASE_URL=${fake.baseUrl}`);
console.log(`OPENAI_API_KEY=${fake.apiKey}`);
console.log("\nCtrl-C stops the server.");

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void fake.close().then(() => process.exit(0)));
}
