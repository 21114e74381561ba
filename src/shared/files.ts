import { readFileSync, statSync } from "node:fs";
import { basename, extname, resolve } from "node:path";
import { z } from "zod";

/** Files attached to a prompt travel inside the job as data URLs, so any worker can read them. */
export const FILE_LIMITS = {
  count: 20,
  /** Bytes per file, before base64. */
  fileBytes: 5 * 1024 * 1024,
  /** Bytes of all a task's files together, before base64. */
  totalBytes: 20 * 1024 * 1024,
} as const;

const MIME_BY_EXT: Record<string, string> = {
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".pdf": "application/pdf",
};

const Mime = z.string().regex(/^[\w.+-]+\/[\w.+-]+$/, 'must be a MIME type such as "text/plain"');
const Filename = z.string().min(1).max(255);

/** A file as a producer gives it: a path (read at enqueue time), or an inline data URL. */
export const FileInput = z.union([
  z.string().min(1),
  z.strictObject({ path: z.string().min(1), mime: Mime.optional(), filename: Filename.optional() }),
  z.strictObject({
    url: z.string().startsWith("data:", "must be a data: URL"),
    mime: Mime,
    filename: Filename.optional(),
  }),
]);
export type FileInput = z.input<typeof FileInput>;

/** A file as it travels in the job: opencode's file part (`type: "file"` is added by the worker). */
export const FilePart = z.strictObject({
  filename: Filename,
  mime: Mime,
  url: z
    .string()
    .startsWith("data:")
    .max(Math.ceil((FILE_LIMITS.fileBytes * 4) / 3) + 200),
});
export type FilePart = z.infer<typeof FilePart>;

/** Raised while reading a file; the message names the file. */
class FileProblem extends Error {}

function describeFsError(path: string, error: NodeJS.ErrnoException): string {
  if (error.code === "ENOENT") return `"${path}": no such file`;
  if (error.code === "EACCES") return `"${path}": permission denied`;
  if (error.code === "EISDIR") return `"${path}": is a directory`;
  return `"${path}": ${error.message}`;
}

/** Text is UTF-8 without NUL bytes; opencode inlines `text/plain` files into the prompt. */
function looksLikeText(bytes: Buffer): boolean {
  if (bytes.includes(0)) return false;
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes).includes("\uFFFD") === false;
}

function readFilePart(
  path: string,
  mime: string | undefined,
  filename: string | undefined,
): { part: FilePart; bytes: number } {
  const full = resolve(path);
  let bytes: Buffer;
  try {
    const stat = statSync(full);
    if (stat.isDirectory()) throw new FileProblem(`"${path}": is a directory`);
    if (stat.size > FILE_LIMITS.fileBytes)
      throw new FileProblem(`"${path}": ${stat.size} bytes, more than the ${FILE_LIMITS.fileBytes} allowed per file`);
    bytes = readFileSync(full);
  } catch (error) {
    if (error instanceof FileProblem) throw error;
    throw new FileProblem(describeFsError(path, error as NodeJS.ErrnoException));
  }
  if (bytes.length > FILE_LIMITS.fileBytes)
    throw new FileProblem(`"${path}": more than the ${FILE_LIMITS.fileBytes} bytes allowed per file`);
  const type = mime ?? MIME_BY_EXT[extname(full).toLowerCase()] ?? (looksLikeText(bytes) ? "text/plain" : undefined);
  if (!type)
    throw new FileProblem(
      `"${path}": a binary file; only text, images and PDF are attached unless a mime type is given`,
    );
  return {
    part: { filename: filename ?? basename(full), mime: type, url: `data:${type};base64,${bytes.toString("base64")}` },
    bytes: bytes.length,
  };
}

function dataUrlBytes(url: string): number {
  const comma = url.indexOf(",");
  const data = url.slice(comma + 1);
  return url.slice(0, comma).endsWith(";base64")
    ? Math.floor((data.length * 3) / 4)
    : Buffer.byteLength(decodeURIComponent(data));
}

/**
 * Turns the files of a task into file parts: paths are read now (relative ones from the current
 * directory), so a missing, unreadable or too large file is an input error at enqueue time.
 */
export const FilesInput = z
  .array(FileInput)
  .max(FILE_LIMITS.count)
  .transform((inputs, ctx): FilePart[] => {
    const parts: FilePart[] = [];
    let total = 0;
    inputs.forEach((input, index) => {
      try {
        if (typeof input === "string" || "path" in input) {
          const { path, mime, filename } =
            typeof input === "string" ? { path: input, mime: undefined, filename: undefined } : input;
          const { part, bytes } = readFilePart(path, mime, filename);
          parts.push(part);
          total += bytes;
        } else {
          const bytes = dataUrlBytes(input.url);
          if (bytes > FILE_LIMITS.fileBytes)
            throw new FileProblem(`${bytes} bytes, more than the ${FILE_LIMITS.fileBytes} allowed per file`);
          parts.push({ filename: input.filename ?? `file-${index + 1}`, mime: input.mime, url: input.url });
          total += bytes;
        }
      } catch (error) {
        if (!(error instanceof FileProblem)) throw error;
        ctx.addIssue({ code: "custom", message: error.message, path: [index] });
      }
    });
    if (total > FILE_LIMITS.totalBytes) {
      ctx.addIssue({
        code: "custom",
        message: `${total} bytes in all, more than the ${FILE_LIMITS.totalBytes} allowed per task`,
      });
    }
    return parts;
  });
