import { describe, expect, it } from 'vitest';
import type { RowBundle, SqlRow } from './chat-db/chat-db.ts';
import { RAW_ROW_FORMAT, decodeRawRow, encodeRawRow, encodeRow } from './raw-row.ts';

/** The raw-row format as first defined: JSON.stringify of the object form. */
function reference(bundle: RowBundle): string {
  const row = (value: SqlRow | undefined) => (value === undefined ? null : encodeRow(value));
  return JSON.stringify({ format: RAW_ROW_FORMAT, version: 1, message: encodeRow(bundle.message), handle: row(bundle.handle), chat: row(bundle.chat), otherHandle: row(bundle.otherHandle), attachments: bundle.attachments.map(encodeRow) });
}

describe('the raw row blob', () => {
  const hostile: SqlRow = { ROWID: 9_007_199_254_740_993n, guid: 'g"\\\u2028\u0000', text: null, ratio: 1.5, count: 3, nan: Number.NaN, blob: new Uint8Array([0, 1, 255]), lone: '👍\ud800', ['we"ird']: '' };
  const bundles: RowBundle[] = [
    { message: hostile, attachments: [hostile, {}], handle: hostile, chat: { ROWID: 1n } },
    { message: {}, attachments: [] },
    { message: { ROWID: 1n, attributedBody: new Uint8Array(new ArrayBuffer(16), 4, 8).fill(7) }, attachments: [], otherHandle: { id: 'x' } },
  ];

  it('is byte for byte the JSON of its object form, for hostile column names and values', () => {
    for (const bundle of bundles) expect(new TextDecoder().decode(encodeRawRow(bundle))).toBe(reference(bundle));
  });

  it('decodes to a bundle that encodes to the same bytes (SQLite stores no NaN: a NaN REAL reads back as NULL)', () => {
    const { nan: _nan, ...readable } = hostile;
    for (const bundle of [...bundles.slice(1), { message: readable, attachments: [readable], chat: readable }]) {
      const bytes = encodeRawRow(bundle);
      expect(Buffer.from(encodeRawRow(decodeRawRow(bytes)))).toEqual(Buffer.from(bytes));
    }
  });
});
