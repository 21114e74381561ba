import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";

/** A task's output schema: a JSON Schema object (draft 2020-12 unless its `$schema` says draft-07). */
export type JsonSchema = Record<string, unknown>;

const draft7 = new Ajv({ allErrors: true, strict: false, validateFormats: false });
const draft2020 = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });

/** Compiled validators by schema text; a worker sees the same few schemas over and over. */
const cache = new Map<string, ValidateFunction>();
const CACHE_SIZE = 100;

function ajvFor(schema: JsonSchema): Ajv {
  const dialect = typeof schema.$schema === "string" ? schema.$schema : "";
  return /draft-0[4-7]/.test(dialect) ? draft7 : draft2020;
}

/** Compiles a schema (cached); throws with ajv's message when it is not a valid JSON Schema. */
export function compileSchema(schema: JsonSchema): ValidateFunction {
  const key = JSON.stringify(schema);
  const hit = cache.get(key);
  if (hit) return hit;
  const ajv = ajvFor(schema);
  // Compile without registering the schema's $id, so two schemas with one $id do not clash.
  const { $id: _id, ...anonymous } = schema;
  const validate = ajv.compile(anonymous);
  if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
  cache.set(key, validate);
  return validate;
}

/** Why a schema is unusable as an output schema, or null if it is fine. */
export function schemaProblem(schema: JsonSchema): string | null {
  if (schema.type !== "object") {
    return 'the root must be {"type": "object"} (the answer is the arguments of a tool call)';
  }
  try {
    compileSchema(schema);
    return null;
  } catch (error) {
    return `not a valid JSON Schema: ${(error as Error).message}`;
  }
}

/** Checks a value against a schema: the list of problems, each naming its field ([] when it matches). */
export function validateAgainst(schema: JsonSchema, value: unknown): string[] {
  const validate = compileSchema(schema);
  if (validate(value)) return [];
  return describeSchemaErrors(validate.errors ?? []);
}

/** `name: is required`, `items.2.price: must be number`, … (JSON pointers as dotted paths). */
export function describeSchemaErrors(errors: readonly ErrorObject[]): string[] {
  const out = new Set<string>();
  for (const error of errors) {
    const base = error.instancePath
      .split("/")
      .slice(1)
      .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    const params = error.params as Record<string, unknown>;
    if (error.keyword === "required") out.add(`${[...base, String(params.missingProperty)].join(".")}: is required`);
    else if (error.keyword === "additionalProperties")
      out.add(`${[...base, String(params.additionalProperty)].join(".")}: is not allowed`);
    else out.add(`${base.length ? base.join(".") : "(root)"}: ${error.message ?? error.keyword}`);
  }
  return [...out];
}
