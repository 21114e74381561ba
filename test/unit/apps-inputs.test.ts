import { writeFileSync, mkdtempSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/shared/errors";
import { describeSchemaErrors, compileSchema, validateAgainst } from "../../src/shared/json-schema";
import { parseTask } from "../../src/shared/task";
import { signBody, verifySignature } from "../../src/shared/webhook";
import { webhookBackoff } from "../../src/worker/queue/webhooks";
import { repairPrompt } from "../../src/worker/session/structured";

const dir = mkdtempSync(join(tmpdir(), "apps-inputs-"));

describe("output schemas", () => {
  const schema = {
    type: "object",
    properties: {
      name: { type: "string" },
      items: {
        type: "array",
        items: { type: "object", properties: { price: { type: "number" } }, required: ["price"] },
      },
    },
    required: ["name"],
    additionalProperties: false,
  };

  it("names each field at fault", () => {
    expect(validateAgainst(schema, { name: "x", items: [{ price: 1 }] })).toEqual([]);
    expect(validateAgainst(schema, {})).toEqual(["name: is required"]);
    expect(validateAgainst(schema, { name: 1, extra: true, items: [{ price: 1 }, { price: "1" }, {}] })).toEqual([
      "extra: is not allowed",
      "name: must be string",
      "items.1.price: must be number",
      "items.2.price: is required",
    ]);
    expect(
      describeSchemaErrors([
        { keyword: "type", instancePath: "", schemaPath: "#/type", params: {}, message: "must be object" },
      ]),
    ).toEqual(["(root): must be object"]);
  });

  it("reads draft-07 and 2020-12 schemas (zod's converter writes 2020-12)", () => {
    const draft7 = {
      $schema: "http://json-schema.org/draft-07/schema#",
      type: "object",
      definitions: { n: { type: "number" } },
      properties: { a: { $ref: "#/definitions/n" } },
    };
    expect(validateAgainst(draft7, { a: "no" })).toEqual(["a: must be number"]);
    const d2020 = {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      $defs: { n: { type: "number" } },
      properties: { a: { $ref: "#/$defs/n" } },
    };
    expect(validateAgainst(d2020, { a: 1 })).toEqual([]);
    expect(compileSchema(d2020)).toBe(compileSchema({ ...d2020 })); // cached by content
  });

  it("a task's schema must be a valid JSON Schema with an object root", () => {
    expect(parseTask({ prompt: "p", schema }).schema).toEqual(schema);
    expect(() => parseTask({ prompt: "p", schema: { type: "string" } })).toThrow(
      /schema: the root must be \{"type": "object"\}/,
    );
    expect(() =>
      parseTask({ prompt: "p", schema: { type: "object", properties: { a: { type: "nonsense" } } } }),
    ).toThrow(/schema: not a valid JSON Schema/);
    expect(() => parseTask({ prompt: "p", schemaRetries: 11 })).toThrow(InputError);
  });

  it("the repair prompt lists every problem", () => {
    expect(repairPrompt(["age: is required", "name: must be string"])).toContain(
      "- age: is required\n- name: must be string\nCall the StructuredOutput tool again",
    );
  });
});

describe("file inputs", () => {
  it("reads paths into data URLs at parse time, text as text/plain", () => {
    const text = join(dir, "a.md");
    writeFileSync(text, "héllo\n");
    const png = join(dir, "pic.png");
    writeFileSync(png, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1]));
    const task = parseTask({
      prompt: "p",
      files: [text, { path: png, filename: "shot.png" }, { url: "data:text/plain;base64,aGk=", mime: "text/plain" }],
    });
    expect(task.files).toEqual([
      {
        filename: "a.md",
        mime: "text/plain",
        url: `data:text/plain;base64,${Buffer.from("héllo\n").toString("base64")}`,
      },
      {
        filename: "shot.png",
        mime: "image/png",
        url: `data:image/png;base64,${Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1]).toString("base64")}`,
      },
      { filename: "file-3", mime: "text/plain", url: "data:text/plain;base64,aGk=" },
    ]);
  });

  it("a missing, binary, or too large file is an input error naming it", () => {
    const bin = join(dir, "blob.bin");
    writeFileSync(bin, Buffer.from([0, 1, 2, 255]));
    expect(() => parseTask({ prompt: "p", files: [join(dir, "none.txt")] })).toThrow(
      `files.0: "${join(dir, "none.txt")}": no such file`,
    );
    expect(() => parseTask({ prompt: "p", files: [bin] })).toThrow(/files\.0: ".*blob\.bin": a binary file/);
    expect(parseTask({ prompt: "p", files: [{ path: bin, mime: "application/octet-stream" }] }).files?.[0]?.mime).toBe(
      "application/octet-stream",
    );
    expect(() => parseTask({ prompt: "p", files: [dir] })).toThrow(/is a directory/);
    const parts = [1, 2, 3, 4, 5].map((n) => {
      const path = join(dir, `part${n}.txt`);
      writeFileSync(path, "");
      truncateSync(path, 4.5 * 1024 * 1024);
      return path;
    });
    // NUL bytes from truncate make these binary: give the mime to test the total cap alone
    expect(() => parseTask({ prompt: "p", files: parts.map((path) => ({ path, mime: "text/plain" })) })).toThrow(
      /files: \d+ bytes in all, more than the 20971520 allowed per task/,
    );
    const big = join(dir, "big.txt");
    writeFileSync(big, "");
    truncateSync(big, 5 * 1024 * 1024 + 1);
    expect(() => parseTask({ prompt: "p", files: [big] })).toThrow(
      /files\.0: ".*big\.txt": 5242881 bytes, more than the 5242880 allowed per file/,
    );
    expect(() => parseTask({ prompt: "p", files: [{ url: "https://x/y", mime: "text/plain" }] })).toThrow(
      /must be a data: URL/,
    );
  });
});

describe("webhooks", () => {
  it("takes only http(s) URLs", () => {
    expect(parseTask({ prompt: "p", webhook: "https://example.com/hook?token=1" }).webhook).toBe(
      "https://example.com/hook?token=1",
    );
    expect(() => parseTask({ prompt: "p", webhook: "ftp://example.com/x" })).toThrow(/webhook: must be an http/);
    expect(() => parseTask({ prompt: "p", webhook: "not a url" })).toThrow(/webhook: must be an http/);
  });

  it("signs the raw body with HMAC-SHA256 and checks it in constant time", () => {
    const body = '{"jobId":"a","state":"completed"}';
    // echo -n '{"jobId":"a","state":"completed"}' | openssl dgst -sha256 -hmac s3cret
    const signature = signBody("s3cret", body);
    expect(signature).toBe("sha256=1d04d81ad702fa1e3e3c5df0602b065d2a49729bb803f5c1b0496686bc53cc42");
    expect(verifySignature("s3cret", body, signature)).toBe(true);
    expect(verifySignature("s3cret", body + " ", signature)).toBe(false);
    expect(verifySignature("other", body, signature)).toBe(false);
    expect(verifySignature("s3cret", body, undefined)).toBe(false);
    expect(verifySignature("s3cret", body, "sha256=short")).toBe(false);
  });

  it("backs off exponentially, capped at an hour", () => {
    expect([1, 2, 3, 4].map((n) => webhookBackoff(n, 5_000))).toEqual([5_000, 10_000, 20_000, 40_000]);
    expect(webhookBackoff(30, 5_000)).toBe(3_600_000);
  });
});
