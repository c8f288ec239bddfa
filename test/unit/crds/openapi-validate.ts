/**
 * A small structural validator for the schemas `crds/builder.ts` emits: types, required fields,
 * enums, bounds, patterns, sizes and list-map key uniqueness, with field paths written the way the
 * API server writes them (`spec.expose[1].port`). CEL rules are not evaluated here: the
 * integration tests against a real kube-apiserver do that. Used by unit tests only.
 */
import type { JsonSchemaProps } from '../../../crds/builder.js';

export interface SchemaIssue {
  field: string;
  detail: string;
}

const child = (path: string, name: string) => (path === '' ? name : `${path}.${name}`);

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

export function validateStructural(schema: JsonSchemaProps, value: unknown, path = ''): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  const add = (detail: string, field = path) => issues.push({ field, detail });
  const t = typeOf(value);
  if (schema.type !== undefined && t !== schema.type) {
    add(`Invalid value: "${t}": must be of type ${schema.type}`);
    return issues;
  }
  switch (schema.type) {
    case 'string': {
      const s = value as string;
      if (schema.enum !== undefined && !schema.enum.includes(s)) add(`Unsupported value: "${s}"`);
      if (schema.maxLength !== undefined && [...s].length > schema.maxLength) {
        add(`Too long: may not be more than ${schema.maxLength} bytes`);
      }
      if (schema.minLength !== undefined && [...s].length < schema.minLength) {
        add(`Invalid value: should be at least ${schema.minLength} chars long`);
      }
      if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(s)) {
        add(`Invalid value: "${s}": spec should match '${schema.pattern}'`);
      }
      break;
    }
    case 'integer': {
      const n = value as number;
      if (schema.minimum !== undefined && n < schema.minimum) {
        add(`Invalid value: ${n}: should be greater than or equal to ${schema.minimum}`);
      }
      if (schema.maximum !== undefined && n > schema.maximum) {
        add(`Invalid value: ${n}: should be less than or equal to ${schema.maximum}`);
      }
      break;
    }
    case 'array': {
      const a = value as unknown[];
      if (schema.maxItems !== undefined && a.length > schema.maxItems) {
        add(`Too many: ${a.length}: must have at most ${schema.maxItems} items`);
      }
      if (schema.minItems !== undefined && a.length < schema.minItems) {
        add(`Invalid value: should have at least ${schema.minItems} items`);
      }
      const keys = schema['x-kubernetes-list-map-keys'];
      if (schema['x-kubernetes-list-type'] === 'map' && keys !== undefined) {
        const seen = new Set<string>();
        a.forEach((item, i) => {
          const k = JSON.stringify(keys.map((key) => (item as Record<string, unknown>)[key]));
          if (seen.has(k)) add(`Duplicate value: ${k}`, `${path}[${i}]`);
          seen.add(k);
        });
      }
      if (schema['x-kubernetes-list-type'] === 'set') {
        const seen = new Set<string>();
        a.forEach((item, i) => {
          const k = JSON.stringify(item);
          if (seen.has(k)) add(`Duplicate value: ${k}`, `${path}[${i}]`);
          seen.add(k);
        });
      }
      if (schema.items !== undefined) {
        const items = schema.items;
        a.forEach((item, i) => {
          issues.push(...validateStructural(items, item, `${path}[${i}]`));
        });
      }
      break;
    }
    case 'object': {
      const o = value as Record<string, unknown>;
      for (const r of schema.required ?? []) if (!Object.hasOwn(o, r)) add('Required value', child(path, r));
      if (schema.maxProperties !== undefined && Object.keys(o).length > schema.maxProperties) {
        add(`Too many: must have at most ${schema.maxProperties} items`);
      }
      for (const [k, v] of Object.entries(o)) {
        const prop = schema.properties?.[k] ?? schema.additionalProperties;
        // Unknown fields are pruned by the server (or refused by strict field validation).
        if (prop !== undefined) issues.push(...validateStructural(prop, v, child(path, k)));
      }
      break;
    }
    default:
      break;
  }
  return issues;
}

/** Every node of a schema with its path (`spec.expose[].port`), for checks over the whole tree. */
export function* walkSchema(schema: JsonSchemaProps, path = ''): Generator<[string, JsonSchemaProps]> {
  yield [path, schema];
  for (const [k, v] of Object.entries(schema.properties ?? {})) yield* walkSchema(v, child(path, k));
  if (schema.items !== undefined) yield* walkSchema(schema.items, `${path}[]`);
  if (schema.additionalProperties !== undefined) yield* walkSchema(schema.additionalProperties, `${path}.*`);
}
