/**
 * A tiny typed builder for structural OpenAPI v3 schemas: every builder call returns both the JSON
 * schema node (what the CRD YAML carries) and, as a phantom type, the TypeScript type of the value
 * it describes. So `crds/schema.ts` is the one source of truth for both.
 *
 * Why not zod + `z.toJSONSchema`: a CRD needs `x-kubernetes-*` extensions, CEL rules with messages
 * and reasons, and a strict structural subset of JSON Schema (no `$ref`, no `anyOf` of types, no
 * `additionalProperties: false`); post-processing zod's output into that was more code than this.
 *
 * The builder makes the house rules hard to forget: every node needs a description, every string a
 * maxLength (or an enum), every list a maxItems, every integer both bounds. A unit test walks the
 * generated schemas and checks that too.
 */

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps that we emit. */
export interface JsonSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean';
  format?: string;
  description?: string;
  properties?: Record<string, JsonSchemaProps>;
  required?: string[];
  additionalProperties?: JsonSchemaProps;
  items?: JsonSchemaProps;
  enum?: string[];
  default?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-validations'?: ValidationRule[];
}

/** The `reason` values the API server accepts on a CEL rule; it picks the HTTP error's cause type. */
export type ValidationReason =
  | 'FieldValueInvalid'
  | 'FieldValueForbidden'
  | 'FieldValueRequired'
  | 'FieldValueDuplicate';

/** A CEL rule (`x-kubernetes-validations` entry). */
export interface ValidationRule {
  rule: string;
  /** Shown to the user; always set, because the default ("failed rule: ...") shows CEL, not intent. */
  message: string;
  /** A JSON path below the node carrying the rule that the error names, e.g. `.expose`. */
  fieldPath?: string;
  reason?: ValidationReason;
}

/** A schema node plus the TypeScript type it describes (phantom: never set at run time). */
export interface Schema<T> {
  readonly json: JsonSchemaProps;
  /** Phantom carrier of T; only used by `Infer`. */
  readonly __type?: T;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

interface Common {
  description: string;
  validations?: ValidationRule[];
}

const withRules = (json: JsonSchemaProps, rules: ValidationRule[] | undefined): JsonSchemaProps =>
  rules !== undefined && rules.length > 0 ? { ...json, 'x-kubernetes-validations': rules } : json;

export interface StringOptions extends Common {
  maxLength: number;
  minLength?: number;
  pattern?: string;
  format?: 'date-time' | 'int64';
  default?: string;
}

export function str(o: StringOptions): Schema<string> {
  const json: JsonSchemaProps = { type: 'string', description: o.description };
  if (o.format !== undefined) json.format = o.format;
  if (o.minLength !== undefined) json.minLength = o.minLength;
  json.maxLength = o.maxLength;
  if (o.pattern !== undefined) json.pattern = o.pattern;
  if (o.default !== undefined) json.default = o.default;
  return { json: withRules(json, o.validations) };
}

export interface EnumOptions<V extends string> extends Common {
  values: readonly V[];
  default?: V;
}

export function enumOf<const V extends string>(o: EnumOptions<V>): Schema<V> {
  const json: JsonSchemaProps = { type: 'string', description: o.description, enum: [...o.values] };
  if (o.default !== undefined) json.default = o.default;
  return { json: withRules(json, o.validations) };
}

export interface IntegerOptions extends Common {
  minimum: number;
  maximum: number;
  format?: 'int32' | 'int64';
  default?: number;
}

export function int(o: IntegerOptions): Schema<number> {
  const json: JsonSchemaProps = { type: 'integer', description: o.description };
  if (o.format !== undefined) json.format = o.format;
  json.minimum = o.minimum;
  json.maximum = o.maximum;
  if (o.default !== undefined) json.default = o.default;
  return { json: withRules(json, o.validations) };
}

export function bool(o: Common & { default?: boolean }): Schema<boolean> {
  const json: JsonSchemaProps = { type: 'boolean', description: o.description };
  if (o.default !== undefined) json.default = o.default;
  return { json: withRules(json, o.validations) };
}

export interface ArrayOptions extends Common {
  maxItems: number;
  minItems?: number;
  /** `map` lists need `mapKeys`; the API server then rejects duplicate keys itself. */
  listType?: 'atomic' | 'set' | 'map';
  mapKeys?: string[];
}

export function arr<T>(items: Schema<T>, o: ArrayOptions): Schema<T[]> {
  const json: JsonSchemaProps = { type: 'array', description: o.description, items: items.json };
  if (o.minItems !== undefined) json.minItems = o.minItems;
  json.maxItems = o.maxItems;
  if (o.listType !== undefined) json['x-kubernetes-list-type'] = o.listType;
  if (o.mapKeys !== undefined) json['x-kubernetes-list-map-keys'] = o.mapKeys;
  return { json: withRules(json, o.validations) };
}

export interface MapOptions extends Common {
  maxProperties: number;
}

/** A string-keyed map (`additionalProperties`); key rules go in `validations` (`self.all(k, ...)`). */
export function map<T>(values: Schema<T>, o: MapOptions): Schema<Record<string, T>> {
  const json: JsonSchemaProps = {
    type: 'object',
    description: o.description,
    maxProperties: o.maxProperties,
    additionalProperties: values.json,
  };
  return { json: withRules(json, o.validations) };
}

/** A property of an object: required or optional (`?` in the TypeScript type). */
export interface Prop<T, R extends boolean> {
  readonly schema: Schema<T>;
  readonly required: R;
}

export const req = <T>(schema: Schema<T>): Prop<T, true> => ({ schema, required: true });
export const opt = <T>(schema: Schema<T>): Prop<T, false> => ({ schema, required: false });

// biome-ignore lint/suspicious/noExplicitAny: variance of the phantom type parameter in a constraint.
type AnyProp = Prop<any, boolean>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type RequiredKeys<P> = { [K in keyof P]: P[K] extends Prop<unknown, true> ? K : never }[keyof P];
type OptionalKeys<P> = Exclude<keyof P, RequiredKeys<P>>;
type PropType<P> = P extends Prop<infer T, boolean> ? T : never;

export type ObjectType<P extends Record<string, AnyProp>> = Simplify<
  { [K in RequiredKeys<P>]: PropType<P[K]> } & { [K in OptionalKeys<P>]?: PropType<P[K]> }
>;

export function obj<P extends Record<string, AnyProp>>(
  props: P,
  o: Common & { default?: Record<string, unknown>; mapType?: 'atomic' | 'granular' },
): Schema<ObjectType<P>> {
  const properties: Record<string, JsonSchemaProps> = {};
  const required: string[] = [];
  for (const [name, p] of Object.entries(props)) {
    properties[name] = p.schema.json;
    if (p.required) required.push(name);
  }
  const json: JsonSchemaProps = { type: 'object', description: o.description, properties };
  if (required.length > 0) json.required = required;
  if (o.default !== undefined) json.default = o.default;
  if (o.mapType !== undefined) json['x-kubernetes-map-type'] = o.mapType;
  return { json: withRules(json, o.validations) };
}
