/**
 * The validatorCompiler of every route: zod's answer, at a cost linear in the
 * input and with at most MAX_ISSUES issues.
 *
 * zod validates a whole array before it reports, and builds one issue per bad
 * element (several for a union): a 2 MiB body of `{}` list elements is
 * millions of issue objects and a multi-second (or out-of-memory) reply. Here
 * the containers whose issue count grows with the input (arrays, records, and
 * what holds them) are walked by hand and the walk stops at the first issues;
 * everything else is given to zod as it is, so values, defaults, coercions
 * and messages stay zod's. Arrays of bounded elements are handed to zod in
 * slices of ARRAY_SLICE elements: the first slice with an issue ends the walk.
 *
 * The value is the one zod would give (object keys in schema order, unknown
 * keys stripped or refused as the object says); test/http/validate.test.ts
 * holds the two against each other.
 */
import type { FastifySchemaCompiler } from 'fastify';
import { safeParse, type $ZodType } from 'zod/v4/core';

/** Issues reported at most; validation stops once it has them. */
export const MAX_ISSUES = 5;
/** Elements of a bounded-element array validated per zod call. */
const ARRAY_SLICE = 256;
/** Characters of one issue message kept (an unrecognized_keys message lists every key). */
const MESSAGE_MAX = 160;

export interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  [k: string]: unknown;
}

type Def = {
  type: string;
  shape?: Record<string, $ZodType>;
  catchall?: $ZodType;
  element?: $ZodType;
  innerType?: $ZodType;
  options?: $ZodType[];
  keyType?: $ZodType;
  valueType?: $ZodType;
  checks?: unknown[];
  in?: $ZodType;
  out?: $ZodType;
};

const defOf = (s: $ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

const NEVER_FAILS = new Set(['unknown', 'any']);
const unboundedCache = new WeakMap<$ZodType, boolean>();

/** Can the number of issues zod reports for `s` grow with the input? */
function unbounded(s: $ZodType): boolean {
  let v = unboundedCache.get(s);
  if (v !== undefined) return v;
  unboundedCache.set(s, false); // recursion guard (z.lazy is not used by the schemas)
  const d = defOf(s);
  switch (d.type) {
    case 'array': v = !NEVER_FAILS.has(defOf(d.element!).type); break;
    case 'record': v = !NEVER_FAILS.has(defOf(d.valueType!).type) || defOf(d.keyType!).type !== 'string'; break;
    case 'object':
      v = Object.values(d.shape ?? {}).some(unbounded) || (d.catchall !== undefined && defOf(d.catchall).type !== 'never' && !NEVER_FAILS.has(defOf(d.catchall).type));
      break;
    case 'optional': case 'nullable': case 'default': case 'prefault': case 'readonly': case 'nonoptional': case 'catch':
      v = unbounded(d.innerType!); break;
    case 'union': v = d.options!.some(unbounded); break;
    case 'pipe': v = unbounded(d.in!) || unbounded(d.out!); break;
    default: v = false;
  }
  unboundedCache.set(s, v);
  return v;
}

interface Walk {
  issues: Issue[];
}

function leaf(s: $ZodType, value: unknown, path: PropertyKey[], w: Walk): unknown {
  const r = safeParse(s, value);
  if (r.success) return r.data;
  for (const i of r.error.issues) {
    if (w.issues.length >= MAX_ISSUES) break;
    w.issues.push(bounded({ ...(i as unknown as Issue), path: [...path, ...i.path] }));
  }
  return undefined;
}

/** An issue of bounded size: a short message, the first few keys, no nested union errors. */
function bounded(i: Issue): Issue {
  if (i.message.length > MESSAGE_MAX) i.message = `${i.message.slice(0, MESSAGE_MAX)}…`;
  if (Array.isArray(i.keys) && i.keys.length > MAX_ISSUES) i.keys = i.keys.slice(0, MAX_ISSUES);
  if (Array.isArray(i.errors)) delete i.errors;
  if ('input' in i) delete i.input;
  return i;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const full = (w: Walk) => w.issues.length >= MAX_ISSUES;

function walk(s: $ZodType, value: unknown, path: PropertyKey[], w: Walk): unknown {
  if (!unbounded(s)) return leaf(s, value, path, w);
  const d = defOf(s);
  switch (d.type) {
    case 'optional':
      return value === undefined ? undefined : walk(d.innerType!, value, path, w);
    case 'nullable':
      return value === null ? null : walk(d.innerType!, value, path, w);
    case 'array': {
      if (!Array.isArray(value) || (d.checks !== undefined && d.checks.length > 0)) break;
      const el = d.element!;
      const out = new Array<unknown>(value.length);
      if (!unbounded(el)) {
        for (let i = 0; i < value.length && !full(w); i += ARRAY_SLICE) {
          const r = safeParse(s, value.slice(i, i + ARRAY_SLICE));
          if (!r.success) {
            // Issue paths start at the slice's own index 0.
            for (const iss of r.error.issues) {
              if (full(w)) break;
              const [first, ...rest] = iss.path;
              w.issues.push(bounded({ ...(iss as unknown as Issue), path: [...path, typeof first === 'number' ? first + i : (first ?? i), ...rest] }));
            }
            return undefined;
          }
          const part = r.data;
          const arr = part as unknown[];
          for (let j = 0; j < arr.length; j++) out[i + j] = arr[j];
        }
        return full(w) ? undefined : out;
      }
      for (let i = 0; i < value.length && !full(w); i++) out[i] = walk(el, value[i], [...path, i], w);
      return out;
    }
    case 'record': {
      if (!isPlainObject(value) || defOf(d.keyType!).type !== 'string' || (defOf(d.keyType!).checks?.length ?? 0) > 0) break;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(value)) {
        if (full(w)) break;
        const v = walk(d.valueType!, value[k], [...path, k], w);
        if (v !== undefined || value[k] === undefined) out[k] = v;
      }
      return out;
    }
    case 'object': {
      if (!isPlainObject(value)) break;
      const shape = d.shape ?? {};
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(shape)) {
        if (full(w)) break;
        const v = walk(shape[k]!, value[k], [...path, k], w);
        if (v === undefined) {
          if (k in value) out[k] = undefined;
        } else out[k] = v;
      }
      const catchall = d.catchall;
      if (catchall !== undefined && !full(w)) {
        const strict = defOf(catchall).type === 'never';
        const unknownKeys: string[] = [];
        for (const k of Object.keys(value)) {
          if (Object.prototype.hasOwnProperty.call(shape, k)) continue;
          if (strict) {
            unknownKeys.push(k);
            if (unknownKeys.length >= MAX_ISSUES) break;
          } else {
            if (full(w)) break;
            out[k] = walk(catchall, value[k], [...path, k], w);
          }
        }
        if (unknownKeys.length > 0 && !full(w)) {
          const list = unknownKeys.map((k) => JSON.stringify(k)).join(', ');
          w.issues.push({ code: 'unrecognized_keys', keys: unknownKeys, path: [...path], message: `Unrecognized key${unknownKeys.length > 1 ? 's' : ''}: ${list}` });
        }
      }
      return out;
    }
    case 'union': {
      // zod: the first option that passes; else one invalid_union issue.
      for (const option of d.options!) {
        const trial: Walk = { issues: [] };
        const v = walk(option, value, path, trial);
        if (trial.issues.length === 0) return v;
      }
      w.issues.push({ code: 'invalid_union', path: [...path], message: 'Invalid input' });
      return undefined;
    }
  }
  // A wrapper this walk does not know, or a value of the wrong type: zod answers at once.
  return leaf(s, value, path, w);
}

/** zod's value for `data`, or at most MAX_ISSUES issues. */
export function boundedParse(schema: $ZodType, data: unknown): { value: unknown; issues: null } | { value: undefined; issues: Issue[] } {
  const w: Walk = { issues: [] };
  const value = walk(schema, data, [], w);
  return w.issues.length === 0 ? { value, issues: null } : { value: undefined, issues: w.issues };
}

const ZOD_ERROR = Symbol.for('ZodFastifySchemaValidationError');

/** Issues in the shape fastify-type-provider-zod gives Fastify (hasZodFastifySchemaValidationErrors knows them). */
export function fastifyErrors(issues: Issue[]) {
  return issues.map((issue) => {
    const { path, code, message, ...params } = issue;
    return {
      [ZOD_ERROR]: true,
      keyword: code,
      instancePath: `/${path.map(String).join('/')}`,
      schemaPath: `#/${path.map(String).join('/')}/${code}`,
      message,
      params,
    };
  });
}

/** Drop-in for fastify-type-provider-zod's validatorCompiler. */
export const boundedValidatorCompiler: FastifySchemaCompiler<$ZodType> = ({ schema }) => (data: unknown) => {
  const r = boundedParse(schema, data);
  if (r.issues === null) return { value: r.value };
  return { error: fastifyErrors(r.issues) as never };
};
