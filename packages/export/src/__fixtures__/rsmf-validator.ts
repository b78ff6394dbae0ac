import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsImport from 'ajv-formats';

/** Relativity's official RSMF 2.0 JSON schema and samples, kept in the repository (BSD licence: see LICENSE and README.md there). */
export const RSMF_FIXTURES = path.resolve(import.meta.dirname, '../rsmf/__fixtures__/relativity');

const addFormats = addFormatsImport as unknown as (ajv: Ajv) => Ajv;

/**
 * The schema compiled with ajv. `strict`: `date-time` is RFC 3339 (a UTC offset is required),
 * which is what we promise to write. Relaxed: ISO 8601 local times without an offset are also
 * accepted, as Relativity's own tools do for their samples.
 */
export function rsmfValidator(mode: 'strict' | 'relaxed'): ValidateFunction {
  const schema = JSON.parse(readFileSync(path.join(RSMF_FIXTURES, 'rsmf_schema_2_0_0.json'), 'utf8')) as object;
  const ajv = new Ajv({ allErrors: true, strict: false });
  addFormats(ajv);
  // ajv-formats does not implement idn-email; accept what a plain e-mail check accepts.
  ajv.addFormat('idn-email', /^[^\s@]+@[^\s@]+$/u);
  if (mode === 'relaxed') ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?$/i);
  return ajv.compile(schema);
}

/** `instancePath message` for each error, for readable assertions. */
export function errorsOf(validate: ValidateFunction): string[] {
  return (validate.errors ?? []).map((error) => `${error.instancePath} ${error.message ?? ''}`);
}
