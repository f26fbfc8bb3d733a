/**
 * Reply serialization without zod at reply time. Each route's response schema
 * (zod, the one source of truth) is turned into JSON Schema once, when the
 * route is compiled, and fast-json-stringify builds a serializer from it: a
 * reply costs one generated function, not a zod encode and JSON.stringify.
 *
 * What changes against fastify-type-provider-zod's serializerCompiler: a reply
 * is no longer checked against its schema on the way out (the views build
 * replies from typed engine state; test/http/serializer.test.ts holds every
 * route's serializer against zod's). Keys a schema does not declare are
 * dropped as zod drops them; a schema JSON Schema cannot express (z.undefined
 * of a 204) keeps zod's serializer.
 */
import fastJson from 'fast-json-stringify';
import type { FastifySerializerCompiler } from 'fastify';
import { serializerCompiler as zodSerializerCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';

type Json = Record<string, unknown>;

/**
 * zod writes `.nullable()` as anyOf [T, {type: null}]; fast-json-stringify
 * answers anyOf by validating each branch at run time. A plain typed T with
 * null becomes type [T, "null"], which it writes directly.
 */
function simplify(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(simplify);
  if (typeof node !== 'object' || node === null) return node;
  const o: Json = {};
  for (const [k, v] of Object.entries(node as Json)) o[k] = simplify(v);
  const any = o.anyOf;
  if (Array.isArray(any) && any.length === 2) {
    const [a, b] = any as Json[];
    const nul = (x: Json | undefined) => x !== undefined && x.type === 'null' && Object.keys(x).length === 1;
    const t = nul(b) ? a : nul(a) ? b : undefined;
    if (t !== undefined && typeof t.type === 'string' && t.type !== 'object' && t.type !== 'array') {
      const { anyOf: _, ...rest } = o;
      const merged: Json = { ...rest, ...t, type: [t.type, 'null'] };
      if (Array.isArray(t.enum)) merged.enum = [...(t.enum as unknown[]), null];
      return merged;
    }
  }
  return o;
}

/** The JSON Schema of a zod schema as replies see it, or undefined when it has none. */
export function replyJsonSchema(schema: z.ZodType): Json | undefined {
  try {
    const json = z.toJSONSchema(schema, { io: 'output', target: 'draft-7', unrepresentable: 'throw' }) as Json;
    delete json.$schema;
    return simplify(json) as Json;
  } catch {
    return undefined;
  }
}

/** One serializer per zod schema: Problem, Descriptor … are shared by many routes and statuses. */
const compiled = new WeakMap<z.ZodType, (data: unknown) => string>();

export const fastSerializerCompiler: FastifySerializerCompiler<unknown> = (route) => {
  const schema = route.schema as unknown;
  const zod = schema instanceof z.ZodType ? schema
    : typeof schema === 'object' && schema !== null && (schema as { properties?: unknown }).properties instanceof z.ZodType
      ? (schema as { properties: z.ZodType }).properties : undefined;
  if (zod !== undefined) {
    const done = compiled.get(zod);
    if (done !== undefined) return done;
  }
  const json = zod === undefined ? undefined : replyJsonSchema(zod);
  if (json === undefined) return (zodSerializerCompiler as unknown as FastifySerializerCompiler<unknown>)(route);
  try {
    const f = fastJson(json as unknown as Parameters<typeof fastJson>[0]) as (data: unknown) => string;
    compiled.set(zod!, f);
    return f;
  } catch {
    return (zodSerializerCompiler as unknown as FastifySerializerCompiler<unknown>)(route);
  }
};
