import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { Agent, fetch as undiciFetch } from "undici";
import { endOpencodeCall, opencodeCallSpan } from "../../shared/tracing.js";

export type { OpencodeClient };

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

/**
 * Node's fetch gives up on a response whose headers take more than 300 s, and a blocking
 * `session.prompt` sends its headers only when the agent is done. This fetch has no header or
 * body timeout; every call is bounded by its AbortSignal instead.
 */
const patient = new Agent({ headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 10_000 });

async function patientFetch(input: Request): Promise<Response> {
  const span = opencodeCallSpan(input); // when called inside a traced attempt
  try {
    const response = await undiciFetch(input.url, {
      method: input.method,
      headers: [...input.headers.entries()],
      body: input.body,
      duplex: "half",
      signal: input.signal,
      dispatcher: patient,
    });
    endOpencodeCall(span, { status: response.status });
    return response;
  } catch (error) {
    endOpencodeCall(span, { error });
    throw error;
  }
}

export function createClient(server: { url: string; authorization: string | undefined }): OpencodeClient {
  return createOpencodeClient({
    baseUrl: server.url,
    headers: server.authorization ? { authorization: server.authorization } : {},
    fetch: patientFetch as unknown as typeof fetch,
  });
}
