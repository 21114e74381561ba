import { z } from "zod";
import type { Route } from "./routes.js";

const REF_PREFIX = "#/components/schemas/";
const SHARED = "__shared";

/**
 * The OpenAPI 3.1 document of the routes, generated from their zod schemas (one component per
 * schema, named by the registry below), never written by hand.
 */
export function openApiDocument(
  routes: readonly Route[],
  names: Map<z.ZodType, string>,
  info: { version: string },
): Record<string, unknown> {
  const registry = z.registry<{ id: string }>();
  for (const [schema, id] of names) registry.add(schema, { id });
  const generated = z.toJSONSchema(registry, {
    io: "input",
    unrepresentable: "any",
    target: "draft-2020-12",
    uri: (id) => `${REF_PREFIX}${id}`,
  }) as {
    schemas: Record<string, Record<string, unknown>>;
  };
  const schemas = hoistShared(generated.schemas);
  const ref = (schema: z.ZodType) => {
    const id = names.get(schema);
    if (!id) throw new Error("a route's schema is not named in the OpenAPI registry");
    return { $ref: `${REF_PREFIX}${id}` };
  };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters = [
      ...[...route.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
        name: m[1],
        in: "path",
        required: true,
        schema: { type: "string" },
      })),
      ...(route.query ?? []).map((q) => ({
        name: q.name,
        in: "query",
        required: false,
        description: q.description,
        schema: q.schema,
      })),
      ...(route.headers ?? []).map((h) => ({
        name: h.name,
        in: "header",
        required: false,
        description: h.description,
        schema: { type: "string" },
      })),
    ];
    const responses = Object.fromEntries(
      Object.entries(route.responses).map(([status, r]) => [
        status,
        {
          description: r.description,
          ...(r.schema ? { content: { [r.contentType ?? "application/json"]: { schema: ref(r.schema) } } } : {}),
        },
      ]),
    );
    (paths[route.path] ??= {})[route.method.toLowerCase()] = {
      operationId: route.operationId,
      summary: route.summary,
      ...(parameters.length ? { parameters } : {}),
      ...(route.body
        ? {
            requestBody: {
              required: true,
              description: route.body.description,
              content: { [route.body.contentType ?? "application/json"]: { schema: ref(route.body.schema) } },
            },
          }
        : {}),
      responses,
      security: route.scope ? [{ bearer: [route.scope] }] : [],
      ...(route.scope ? { "x-scope": route.scope } : {}),
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "opencode-dispatch",
      version: info.version,
      description:
        "A persistent job queue for opencode. Bearer tokens carry scopes: enqueue, read, admin (admin allows everything).",
    },
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "DISPATCH_API_TOKENS: token:scope+scope" },
      },
    },
  };
}

/** zod puts schemas used by several components under `__shared.$defs`: each becomes a component. */
function hoistShared(schemas: Record<string, Record<string, unknown>>): Record<string, unknown> {
  const shared = (schemas[SHARED]?.$defs ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [id, schema] of Object.entries(schemas)) if (id !== SHARED) out[id] = schema;
  for (const [id, schema] of Object.entries(shared)) out[`Shared_${id}`] = schema;
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite);
    if (!value || typeof value !== "object") return value;
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([key]) => key !== "$schema")
      .map(([key, v]) => {
        if (key === "$ref" && typeof v === "string") {
          const m = /^#\/components\/schemas\/__shared#\/\$defs\/(.+)$/.exec(v) ?? /^#\/\$defs\/(.+)$/.exec(v);
          return [key, m ? `${REF_PREFIX}Shared_${m[1]}` : v];
        }
        return [key, rewrite(v)];
      });
    return Object.fromEntries(entries);
  };
  return rewrite(out) as Record<string, unknown>;
}
