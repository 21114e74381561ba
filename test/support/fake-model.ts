/**
 * A scriptable fake OpenAI-compatible model server (node:http only) for driving a real
 * `opencode serve` in tests.
 *
 * What opencode 1.18.33 sends (observed with FAKE_MODEL_DEBUG=1 via fake-model.test.ts):
 * - Every call is `POST /v1/chat/completions` with `stream: true`,
 *   `stream_options: {include_usage: true}`, `max_tokens: 32000`. It never calls `GET /v1/models`.
 * - Title generation: on the FIRST prompt of each session (only), opencode makes one extra call
 *   with the `small_model` (model "echo" here even when the prompt uses fake/priced), no `tools`,
 *   sent just before the real call. Its messages are: system "You are a title generator. You
 *   output ONLY a thread title. ...", user "Generate a title for this conversation:\n", user
 *   <prompt text>. Detected by that system text (or that user line); answered "Fake title",
 *   not recorded, no script step consumed, directives ignored (so [[hang]] etc. only hit the
 *   real call). The real agent call has a ~9.6k-char system prompt, 10 tools
 *   (bash edit glob grep read skill task todowrite webfetch write) and `tool_choice: "auto"`.
 * - The prompt text arrives verbatim as a string `content` through the SDK (`opencode run "..."`
 *   on the CLI wraps it in literal double quotes!). Earlier turns of the session are replayed as
 *   user/assistant messages (roles system,user,assistant,user on a second prompt).
 * - A tool call is followed by a second request ending in assistant(tool_calls) + `{role:"tool",
 *   tool_call_id, content}`; for bash `echo hi` the content is "hi\n".
 * - Errors: `[[status:401]]` (body type "authentication_error") comes back from
 *   `session.prompt` as HTTP 200 with `info.error = {name:"APIError", data:{message:"fake error
 *   401", statusCode:401, isRetryable:false, responseHeaders, responseBody (our JSON, as a
 *   string), metadata:{url}}}` after ~0.3 s, with exactly one model call (no retry). 5xx/429
 *   (and, per the notes, a 401 whose body says server_error) are retried with backoff for ~1 min.
 * - Tokens/cost: the final `usage` chunk is used as is: `info.tokens.input/output` equal our
 *   prompt_tokens/completion_tokens (~2400 input for a first prompt, because of the system prompt)
 *   and `info.cost` = tokens x config cost / 1e6 (2.399 for fake/priced on "hello fake model").
 * - Timing: the first prompt on a freshly started server takes ~4 s; later ones ~0.3-0.8 s.
 *
 * Directives in the LAST user message text steer the reply (scripted steps take precedence):
 *   [[delay:MS]] [[status:CODE]] [[status:429:retry-after=2]] [[status:401:type=server_error]]
 *   [[hang]] [[slow:MS]]
 *   [[tool:NAME:JSON_ARGS]] [[reply:TEXT]] [[transcript]]
 *   [[rounds:N]]  N bash tool rounds (`echo round k`), one per model call, then the default text
 * Default reply: `echo: <last user text>` (verbatim, directives included), or
 * `tool done: <first 200 chars of the tool result>` when the last message is a tool result.
 *
 * Provider quota (`quota({ calls, perMs })`, or `startFakeModel({ quota })`; `quota(null)` or
 * `reset()` turns it off): a SLIDING-WINDOW limit shared by every non-title chat request, like a
 * provider's per-key rate limit. A request is admitted while fewer than `calls` admitted requests
 * arrived in the last `perMs` ms; otherwise it is answered at once, before scripted steps and
 * directives, with HTTP 429, header `retry-after: <whole seconds until the oldest admitted call
 * leaves the window, rounded up, at least 1>` and body `{error:{message:"fake quota exceeded",
 * type:"rate_limit_error", code:"429"}}`. So a client that honours retry-after is admitted on its
 * retry (unless someone else took the slot). Rejected requests:
 * - are NOT recorded in `requests` / `calls()` (those keep meaning "requests the model handled",
 *   including ones a directive or step answered with an error), consume no script step, and do not
 *   count against the quota; they are counted by `rejected(substring?)` and kept in
 *   `rejectedRequests`;
 * - never include title-generation requests: those bypass the quota and do not count against it.
 * Admitted requests count at arrival, whatever their answer ([[status:500]], [[hang]] included).
 * Calling `quota(...)` again starts with an empty window.
 * What opencode 1.18.33 does with such a 429 (probed against a real `opencode serve`): ~15 ms
 * after it, a `session.status` event `{type:"retry", attempt:1, message:"fake quota exceeded"
 * (our error.message), next: <epoch ms of the next try = now + retry-after x 1000, no cap>}`;
 * no `retry` part and no `session.error` are emitted. It calls again ~10 ms after `next`
 * (never before), up to 5 retries (6 calls), then `info.error = APIError{statusCode:429,
 * isRetryable:true, responseHeaders:{"retry-after":...}}`. `session.abort` during the wait
 * returns the prompt at once with NO error on the message (empty parts, no `finish`; unlike an
 * abort during a model call, which gives MessageAbortedError) and no further model call is made.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ChatMessage {
  role: string;
  content?: string | Array<{ type: string; text?: string }> | null;
  tool_calls?: unknown[];
  tool_call_id?: string;
  [key: string]: unknown;
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  tools?: unknown[];
  [key: string]: unknown;
}

export interface Step {
  text?: string;
  status?: number;
  headers?: Record<string, string>;
  delayMs?: number;
  hang?: boolean;
  toolCall?: { name: string; args: unknown };
  /** With `toolCall`: text the model writes before the call (its own words on why). */
  say?: string;
}

/** A sliding-window quota: at most `calls` admitted non-title requests in any `perMs` ms. */
export interface Quota {
  calls: number;
  perMs: number;
}

export interface FakeModelOptions {
  /** Start with this quota in force (same as calling `quota()` right after start). */
  quota?: Quota;
}

export interface FakeModel {
  /** Base URL including /v1, e.g. http://127.0.0.1:PORT/v1 */
  url: string;
  /** Every non-title chat request body received and admitted by the quota, in order. */
  requests: ChatRequest[];
  /** Non-title requests answered 429 by the quota (not in `requests`), in order. */
  rejectedRequests: ChatRequest[];
  /** Queue responses consumed in order by non-title requests (before directives apply). */
  script(...steps: Step[]): void;
  /**
   * Turn on a provider quota shared by all non-title requests (sliding window, see the header),
   * or turn it off with `null`. Either way the window starts empty; `rejected()` is not cleared.
   */
  quota(limit: Quota | null): void;
  /** Number of requests the quota answered 429 whose last user text contains `substring` (all if omitted). */
  rejected(substring?: string): number;
  /** Clear requests, rejected requests, script and quota (turned off). */
  reset(): void;
  /** Number of recorded requests whose last user text contains `substring` (all if omitted). */
  calls(substring?: string): number;
  /** Idempotent; also ends hanging responses. */
  close(): Promise<void>;
}

/** A full plan for one response. */
interface Plan {
  delayMs: number;
  hang: boolean;
  status?: number;
  /** The error body's `type` (defaults by status; "server_error" makes opencode retry even a 4xx). */
  errorType?: string;
  headers: Record<string, string>;
  text: string;
  slowMs?: number;
  toolCall?: { name: string; args: unknown };
  say?: string;
}

const DEBUG = process.env.FAKE_MODEL_DEBUG === "1";

export function messageText(message: ChatMessage | undefined): string {
  const content = message?.content;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .filter((p) => p.type === "text" && typeof p.text === "string")
      .map((p) => p.text)
      .join("\n");
  }
  return "";
}

/** Text of the last `role: "user"` message of a request ("" if none). */
export function lastUserText(req: ChatRequest): string {
  const users = req.messages.filter((m) => m.role === "user");
  return messageText(users[users.length - 1]);
}

export function isTitleRequest(req: ChatRequest): boolean {
  return req.messages.some((m) => {
    const text = messageText(m);
    return (
      (m.role === "system" && text.includes("You are a title generator")) ||
      (m.role === "user" && text.startsWith("Generate a title for this conversation"))
    );
  });
}

function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** Finds `[[tool:NAME:JSON]]`, trying each `]]` as the end until the JSON parses. */
function parseToolDirective(text: string): { name: string; args: unknown } | undefined {
  const match = /\[\[tool:([^:\]]+):/.exec(text);
  if (!match) return undefined;
  const start = match.index + match[0].length;
  for (let end = text.indexOf("]]", start); end !== -1; end = text.indexOf("]]", end + 1)) {
    try {
      return { name: match[1] ?? "", args: JSON.parse(text.slice(start, end)) as unknown };
    } catch {
      // keep looking for a later "]]"
    }
  }
  throw new Error(`fake-model: bad tool directive in ${JSON.stringify(text)}`);
}

function defaultText(req: ChatRequest): string {
  const last = req.messages[req.messages.length - 1];
  if (last?.role === "tool") return `tool done: ${messageText(last).slice(0, 200)}`;
  return `echo: ${lastUserText(req)}`;
}

function planFromDirectives(req: ChatRequest): Plan {
  const text = lastUserText(req);
  const lastIsTool = req.messages[req.messages.length - 1]?.role === "tool";
  const plan: Plan = { delayMs: 0, hang: false, headers: {}, text: defaultText(req) };
  const delay = /\[\[delay:(\d+)\]\]/.exec(text);
  if (delay) plan.delayMs = Number(delay[1]);
  const slow = /\[\[slow:(\d+)\]\]/.exec(text);
  if (slow) plan.slowMs = Number(slow[1]);
  if (text.includes("[[hang]]")) plan.hang = true;
  const status = /\[\[status:(\d{3})(?::retry-after=(\d+))?(?::type=(\w+))?\]\]/.exec(text);
  if (status) {
    plan.status = Number(status[1]);
    if (status[2] !== undefined) plan.headers["retry-after"] = status[2];
    if (status[3] !== undefined) plan.errorType = status[3];
  }
  const reply = /\[\[reply:([\s\S]*?)\]\]/.exec(text);
  if (reply) plan.text = reply[1] ?? "";
  if (text.includes("[[transcript]]")) {
    const users = req.messages.filter((m) => m.role === "user").map(messageText);
    plan.text = JSON.stringify(users);
  }
  // The tool directive only applies to the first call; the follow-up with the tool result
  // gets the default "tool done: ..." text.
  if (!lastIsTool) plan.toolCall = parseToolDirective(text);
  // [[rounds:N]]: N bash rounds (`echo round k`), one per call, then the default text.
  const rounds = /\[\[rounds:(\d+)\]\]/.exec(text);
  if (rounds) {
    const lastUser = req.messages.map((m) => m.role).lastIndexOf("user");
    const done = req.messages.slice(lastUser + 1).filter((m) => m.role === "tool").length;
    if (done < Number(rounds[1]))
      plan.toolCall = { name: "bash", args: { command: `echo round ${done + 1}`, description: `round ${done + 1}` } };
  }
  return plan;
}

function planFromStep(step: Step, req: ChatRequest): Plan {
  return {
    delayMs: step.delayMs ?? 0,
    hang: step.hang ?? false,
    status: step.status,
    headers: step.headers ?? {},
    text: step.text ?? defaultText(req),
    toolCall: step.toolCall,
    say: step.say,
  };
}

function approxTokens(chars: number): number {
  return Math.max(1, Math.ceil(chars / 4));
}

function usageFor(req: ChatRequest, output: string) {
  const promptChars = req.messages.reduce((n, m) => n + messageText(m).length, 0);
  const prompt_tokens = approxTokens(promptChars);
  const completion_tokens = approxTokens(output.length);
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

function splitInto(text: string, parts: number): string[] {
  if (text.length === 0) return [""];
  const size = Math.max(1, Math.ceil(text.length / parts));
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

function checkQuota(limit: Quota): Quota {
  if (!Number.isInteger(limit.calls) || limit.calls < 0) throw new Error(`fake-model: bad quota calls ${limit.calls}`);
  if (!Number.isFinite(limit.perMs) || limit.perMs <= 0) throw new Error(`fake-model: bad quota perMs ${limit.perMs}`);
  return { calls: limit.calls, perMs: limit.perMs };
}

export async function startFakeModel(options: FakeModelOptions = {}): Promise<FakeModel> {
  const requests: ChatRequest[] = [];
  const rejectedRequests: ChatRequest[] = [];
  const steps: Step[] = [];
  let limit: Quota | undefined = options.quota && checkQuota(options.quota);
  /** Arrival times (ms) of admitted requests still inside the quota window, oldest first. */
  let admitted: number[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let counter = 0;
  let closed = false;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  async function respond(req: ChatRequest, plan: Plan, res: http.ServerResponse): Promise<void> {
    if (plan.hang) return; // never answered; close() destroys the socket
    if (plan.delayMs > 0) await sleep(plan.delayMs);
    if (closed || res.destroyed) return;

    if (plan.status !== undefined && plan.status >= 400) {
      const body = {
        error: {
          message: `fake error ${plan.status}`,
          type: plan.errorType ?? errorType(plan.status),
          code: String(plan.status),
        },
      };
      res.writeHead(plan.status, { "content-type": "application/json", ...plan.headers });
      res.end(JSON.stringify(body));
      return;
    }

    const id = `chatcmpl-fake-${++counter}`;
    const created = Math.floor(Date.now() / 1000);
    const model = req.model;
    const toolCall = plan.toolCall && {
      index: 0,
      id: `call_fake_${counter}`,
      type: "function",
      function: { name: plan.toolCall.name, arguments: JSON.stringify(plan.toolCall.args ?? {}) },
    };
    const output = toolCall ? toolCall.function.arguments : plan.text;
    const usage = usageFor(req, output);
    const finish = toolCall ? "tool_calls" : "stop";

    if (!req.stream) {
      res.writeHead(200, { "content-type": "application/json", ...plan.headers });
      res.end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model,
          choices: [
            {
              index: 0,
              message: toolCall
                ? { role: "assistant", content: null, tool_calls: [toolCall] }
                : { role: "assistant", content: plan.text },
              finish_reason: finish,
            },
          ],
          usage,
        }),
      );
      return;
    }

    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
      ...plan.headers,
    });
    const send = (choices: unknown[], extra: Record<string, unknown> = {}) => {
      if (!res.destroyed) {
        const chunk = { id, object: "chat.completion.chunk", created, model, choices, ...extra };
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      }
    };
    send([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]);
    if (toolCall) {
      if (plan.say) send([{ index: 0, delta: { content: plan.say }, finish_reason: null }]);
      send([{ index: 0, delta: { tool_calls: [toolCall] }, finish_reason: null }]);
    } else {
      const pieces = plan.slowMs !== undefined ? splitInto(plan.text, 5) : [plan.text];
      for (const [i, piece] of pieces.entries()) {
        if (i > 0 && plan.slowMs) await sleep(plan.slowMs);
        if (closed || res.destroyed) return;
        send([{ index: 0, delta: { content: piece }, finish_reason: null }]);
      }
    }
    send([{ index: 0, delta: {}, finish_reason: finish }]);
    send([], { usage });
    if (!res.destroyed) res.end("data: [DONE]\n\n");
  }

  async function handleChat(body: string, res: http.ServerResponse): Promise<void> {
    const req = JSON.parse(body) as ChatRequest;
    if (!Array.isArray(req.messages)) throw new Error("messages missing");
    if (isTitleRequest(req)) {
      if (DEBUG) console.error(`[fake-model] title request (model ${req.model}, ${req.tools?.length ?? 0} tools)`);
      await respond(req, { delayMs: 0, hang: false, headers: {}, text: "Fake title" }, res);
      return;
    }
    if (limit) {
      const now = Date.now();
      const { calls, perMs } = limit;
      admitted = admitted.filter((t) => t > now - perMs);
      if (admitted.length >= calls) {
        rejectedRequests.push(req);
        // calls === 0 rejects everything: tell the client to come back after a full window.
        const freeAt = (calls === 0 ? now : (admitted[admitted.length - calls] ?? now)) + perMs;
        const retryAfter = Math.max(1, Math.ceil((freeAt - now) / 1000));
        if (DEBUG)
          console.error(`[fake-model] quota: rejected ${JSON.stringify(lastUserText(req))}, retry-after ${retryAfter}`);
        res.writeHead(429, { "content-type": "application/json", "retry-after": String(retryAfter) });
        res.end(JSON.stringify({ error: { message: "fake quota exceeded", type: "rate_limit_error", code: "429" } }));
        return;
      }
      admitted.push(now);
    }
    requests.push(req);
    const step = steps.shift();
    const plan = step ? planFromStep(step, req) : planFromDirectives(req);
    if (DEBUG) {
      const roles = req.messages.map((m) => m.role).join(",");
      console.error(
        `[fake-model] #${requests.length} roles=${roles} last=${JSON.stringify(lastUserText(req))} plan=${JSON.stringify(plan)}`,
      );
    }
    await respond(req, plan, res);
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "").split("?")[0] ?? "";
      const body = Buffer.concat(chunks).toString("utf8");
      if (DEBUG) console.error(`[fake-model] ${req.method} ${req.url}`);
      if (req.method === "GET" && path.endsWith("/models")) {
        const data = ["echo", "priced"].map((id) => ({ id, object: "model", created: 0, owned_by: "fake" }));
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ object: "list", data }));
        return;
      }
      if (req.method === "POST" && path.endsWith("/chat/completions")) {
        handleChat(body, res).catch((err: unknown) => {
          if (res.headersSent) {
            res.destroy();
            return;
          }
          res.writeHead(400, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { message: String(err), type: "invalid_request_error" } }));
        });
        return;
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `no route ${req.method} ${path}` } }));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    rejectedRequests,
    script(...more: Step[]) {
      steps.push(...more);
    },
    quota(next: Quota | null) {
      limit = next ? checkQuota(next) : undefined;
      admitted = [];
    },
    rejected(substring?: string) {
      if (substring === undefined) return rejectedRequests.length;
      return rejectedRequests.filter((r) => lastUserText(r).includes(substring)).length;
    },
    reset() {
      requests.length = 0;
      rejectedRequests.length = 0;
      steps.length = 0;
      limit = undefined;
      admitted = [];
    },
    calls(substring?: string) {
      if (substring === undefined) return requests.length;
      return requests.filter((r) => lastUserText(r).includes(substring)).length;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        closed = true;
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
