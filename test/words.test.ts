import { describe, expect, it } from "vitest";
import { inWords, usd } from "../src/words.ts";

describe("words people read", () => {
  it("durations: minutes under an hour, hours and minutes under two days, then days", () => {
    expect(inWords(0)).toBe("1 min"); // never "0 min": a reset is always ahead
    expect(inWords(59)).toBe("1 min");
    expect(inWords(45 * 60)).toBe("45 min");
    expect(inWords(6 * 3600)).toBe("6 h");
    expect(inWords(6 * 3600 + 60)).toBe("6 h 1 min");
    expect(inWords(3 * 86_400)).toBe("3 days");
  });

  it("dollars to the cent, and amounts under a cent say so", () => {
    expect(usd(0)).toBe("$0.00");
    expect(usd(0.004)).toBe("under $0.01");
    expect(usd(0.75)).toBe("$0.75");
    expect(usd(300)).toBe("$300.00");
  });
});
