/**
 * Key material given where a key file or a verifier key belongs is never printed back: not by
 * verify, verify-proof, export, demo, nor capture's config check. The message says what kind
 * of key it was and what to give instead.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateEd25519NoteKey, generateStateKey } from '@offchannel/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeKeyMaterial } from './keys.ts';
import { runCli } from './testing/run-cli.ts';

const signer = generateEd25519NoteKey('archive.example/offchannel');
const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const stateKey = generateStateKey();
/** Secret key texts, and the part of each that must never appear in output. */
// A signing key's secret is the base64 after `PRIVATE+KEY+<name>+<id>+`, which may itself contain '+'.
const secrets: { name: string; text: string; secret: string; kind: RegExp }[] = [
  { name: 'a signing key', text: signer.signerKeyText(), secret: signer.signerKeyText().split('+').slice(4).join('+'), kind: /signing \(private\) key/ },
  { name: 'a PEM private key', text: pem, secret: pem.split('\n')[1] as string, kind: /PEM private key/ },
  { name: 'a state key', text: stateKey, secret: stateKey, kind: /key material/ },
];
let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-keys-'));
  await runCli(['demo', '--archive', path.join(work, 'archive'), '--no-connectors', '--no-export'], work);
}, 60_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Every place a command takes a key or a key file's name. */
function commands(secret: string): [string, () => string[]][] {
  const archive = 'archive'; // beside `work`, filled in when the test runs
  // `--option=value`: a PEM key starts with a dash, which would otherwise read as an option.
  const at = (argv: string[]) => () =>
    argv
      .map((arg) => (arg === archive || arg.startsWith('w:') ? path.join(work, arg.replace(/^w:/, '')) : arg))
      .flatMap((arg, index, all) => (arg.startsWith('--') && all[index + 1] === secret ? [`${arg}=${secret}`] : arg === secret ? [] : [arg]));
  return [
    ['verify --key', at(['verify', archive, '--key', secret])],
    ['verify --key (second)', at(['verify', archive, '--key', signer.verifierKey, '--key', secret])],
    ['verify --report-key', at(['verify', archive, '--report', 'w:report.json', '--report-key', secret])],
    ['verify --tsa-cert', at(['verify', archive, '--key', signer.verifierKey, '--tsa-cert', secret])],
    ['verify-proof --key', at(['verify-proof', 'w:no-proof.json', '--key', secret])],
    ['export --key', at(['export', archive, '--format', 'jsonl', '--out', 'w:out', '--key', secret])],
    ['demo --signing-key', at(['demo', '--archive', 'w:demo2', '--no-connectors', '--signing-key', secret])],
    ['demo --signing-key --create-key', at(['demo', '--archive', 'w:demo3', '--no-connectors', '--signing-key', secret, '--create-key'])],
  ];
}

describe('key material on the command line', () => {
  for (const { name, text, secret, kind } of secrets) {
    for (const [where, argv] of commands(text)) {
      it(`${where} with ${name}: refused, the key is not printed, its kind is named`, { timeout: 60_000 }, async () => {
        const { code, stdout, stderr } = await runCli(argv(), work);
        expect(code).toBe(2);
        expect(`${stdout}${stderr}`).not.toContain(secret);
        expect(stderr).toMatch(kind);
        expect(stderr).toContain('not printed');
      });
    }
  }

  it('a key file that holds a signing key instead of verifier keys: named by path, its content not printed', { timeout: 60_000 }, async () => {
    const file = path.join(work, 'wrong.pub');
    await writeFile(file, `${signer.signerKeyText()}\n`);
    const { code, stderr } = await runCli(['verify', path.join(work, 'archive'), '--key', file], work);
    expect(code).toBe(2);
    expect(stderr).toContain(file);
    expect(stderr).toMatch(/signing \(private\) key/);
    expect(stderr).not.toContain(secrets[0]?.secret);
  });

  it('describes keys without mistaking paths for them', () => {
    expect(describeKeyMaterial(signer.verifierKey)).toBe('a verifier key');
    expect(describeKeyMaterial('./keys/archive.pub')).toBeUndefined();
    expect(describeKeyMaterial('/etc/offchannel/signing.key')).toBeUndefined();
    expect(describeKeyMaterial(`/etc/offchannel/${signer.signerKeyText()}`)).toBe('a signing (private) key');
  });
});

describe('key material in the capture config', () => {
  for (const { name, text, secret, kind } of secrets) {
    for (const key of ['signing', 'state'] as const) {
      it(`${key}.keyFile holding ${name}: refused, not printed`, { timeout: 60_000 }, async () => {
        const config = path.join(work, `config-${key}.json`);
        const state = key === 'state' ? { dir: './state', keyFile: text } : { dir: './state', keyFile: './state.key' };
        await writeFile(config, JSON.stringify({ archive: { dir: './archive' }, state, ...(key === 'signing' ? { signing: { keyFile: text } } : {}), connectors: [{ channel: 'demo', account: 'alice' }] }), { mode: 0o600 });
        const { code, stdout, stderr } = await runCli(['capture', '--config', config, '--check'], work);
        expect(code).toBe(2);
        expect(`${stdout}${stderr}`).not.toContain(secret);
        expect(stderr).toMatch(kind);
        expect(stderr).toContain(`config.${key}.keyFile`);
      });
    }
  }
});
