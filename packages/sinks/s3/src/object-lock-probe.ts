/**
 * The Object Lock probe behind `offchannel sink-check`: tries, on a real endpoint, every
 * guarantee the S3 sink relies on, and reports which hold. Some S3-compatible servers accept
 * Object Lock headers and enforce nothing; this finds out before any record is trusted to them.
 *
 * It works in a scratch prefix (`<prefix>offchannel-sink-check/<run>/`) with seconds-long
 * retention, waits for that retention to end, and deletes what it wrote. It never changes a
 * bucket setting and never touches other keys.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { type S3ClientOptions, createS3Client } from './s3-client.ts';
import { ObjectStore } from './object-store.ts';
import { isTransient, nameOf, statusOf, toSinkError } from './s3-errors.ts';
import { assertBucketName, normalizePrefix, parseS3Url } from './s3-layout.ts';

/** One guarantee, tried. `info` findings are facts that do not decide suitability. */
export interface ProbeCheck {
  readonly id: string;
  readonly title: string;
  readonly status: 'pass' | 'fail' | 'info';
  readonly detail: string;
}

export interface ProbeReport {
  readonly bucket: string;
  readonly scratch: string;
  /** True when every check passed (info findings aside): the sink's guarantees hold here. */
  readonly ok: boolean;
  readonly checks: readonly ProbeCheck[];
  /** Whether every scratch object could be removed afterwards. */
  readonly cleanedUp: boolean;
}

export interface ProbeOptions extends S3ClientOptions {
  /** `s3://bucket/prefix`, or `bucket` (and `prefix`). */
  readonly url?: string;
  readonly bucket?: string;
  readonly prefix?: string;
  /** Retention of the scratch objects, seconds (default 10): the probe waits about this long once. */
  readonly retentionSeconds?: number;
  /** Called as each check completes (for live output). */
  readonly onCheck?: (check: ProbeCheck) => void;
}

/** The folder (under the archive prefix) that probes write to; audits ignore it. */
export const PROBE_FOLDER = 'offchannel-sink-check/';

export async function probeObjectLock(options: ProbeOptions): Promise<ProbeReport> {
  const location = options.url === undefined ? { bucket: options.bucket ?? '', prefix: normalizePrefix(options.prefix) } : parseS3Url(options.url);
  assertBucketName(location.bucket);
  const seconds = options.retentionSeconds ?? 10;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) throw new RangeError('retentionSeconds must be 1–600');
  const client = createS3Client({ ...options, maxAttempts: options.maxAttempts ?? 2 });
  try {
    return await new Probe(client, location.bucket, `${location.prefix}${PROBE_FOLDER}${new Date().toISOString().replaceAll(':', '').replace('.', '-')}-${randomBytes(4).toString('hex')}/`, seconds, options.onCheck).run();
  } finally {
    client.destroy();
  }
}

class Probe {
  private readonly checks: ProbeCheck[] = [];
  /** The latest retain-until date given to a scratch object. */
  private latest = new Date(0);
  private readonly written = new Set<string>();

  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly scratch: string;
  private readonly seconds: number;
  private readonly onCheck: ((check: ProbeCheck) => void) | undefined;

  constructor(client: S3Client, bucket: string, scratch: string, seconds: number, onCheck: ((check: ProbeCheck) => void) | undefined) {
    this.client = client;
    this.bucket = bucket;
    this.scratch = scratch;
    this.seconds = seconds;
    this.onCheck = onCheck;
  }

  async run(): Promise<ProbeReport> {
    const settingsOk = await this.settings();
    if (settingsOk) {
      // The first write to a new bucket can be slow (a store creating its pools): not part of the test.
      await this.put(`${this.scratch}warm-up`, 'warm-up');
      const original = await this.lockedObject();
      if (original) {
        await this.integrity();
        await this.deletion(original);
        await this.retentionChanges(original);
        await this.overwrites(original);
        await this.race();
        const held = await this.legalHold();
        await this.wait();
        await this.expiry(original, held);
      }
    }
    const cleanedUp = await this.cleanUp();
    return { bucket: this.bucket, scratch: this.scratch, ok: this.checks.every((check) => check.status !== 'fail'), checks: this.checks, cleanedUp };
  }

  private record(id: string, title: string, status: ProbeCheck['status'], detail: string): boolean {
    const check = { id, title, status, detail };
    this.checks.push(check);
    this.onCheck?.(check);
    return status !== 'fail';
  }

  /** Sends `command`; resolves with the result, or with the refusal's S3 error name. */
  private async attempt<T>(send: () => Promise<T>): Promise<{ ok: true; result: T } | { ok: false; error: string; status: number | undefined }> {
    try {
      return { ok: true, result: await send() };
    } catch (error) {
      if (statusOf(error) === undefined || (statusOf(error) ?? 0) >= 500) throw toSinkError(error, 'sink-check', this.bucket);
      return { ok: false, error: nameOf(error), status: statusOf(error) };
    }
  }

  private put(key: string, body: string, extra: Partial<PutObjectCommandInput> = {}, md5: string | undefined = createHash('md5').update(body).digest('base64')) {
    this.written.add(key);
    return this.attempt(() => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ...(md5 === undefined ? {} : { ContentMD5: md5 }), ...extra })));
  }

  /** Retention headers ending `seconds` from now (each object gets its own date). */
  private lock(): Partial<PutObjectCommandInput> & { ObjectLockRetainUntilDate: Date } {
    const until = new Date(Date.now() + this.seconds * 1000);
    if (until > this.latest) this.latest = until;
    return { ObjectLockMode: 'COMPLIANCE', ObjectLockRetainUntilDate: until };
  }

  /**
   * A refusal only proves something while the retention is still running: if the store took
   * longer than the retention to get here, the check is inconclusive (and counted as failed).
   */
  private inconclusive(id: string, title: string, until: Date): boolean {
    if (Date.now() < until.getTime() - 250) return false;
    this.record(id, title, 'fail', `inconclusive: the store took longer than the ${this.seconds}-second retention to get here; run again with a longer retention (--retention-seconds)`);
    return true;
  }

  private async settings(): Promise<boolean> {
    let settings;
    try {
      settings = await new ObjectStore(this.client, this.bucket).bucketSettings();
    } catch (error) {
      throw toSinkError(error, 'open: read the bucket versioning', this.bucket);
    }
    const { lockError, defaultRetention: rule } = settings;
    if (lockError !== undefined && isTransient(lockError)) throw toSinkError(lockError, 'sink-check', this.bucket);
    const versioned = this.record('versioning', 'Bucket versioning is enabled', settings.versioning === 'Enabled' ? 'pass' : 'fail', `versioning is ${settings.versioning ?? 'off'}`);
    const enabled = settings.objectLock;
    this.record('object-lock', 'Object Lock is enabled on the bucket', enabled ? 'pass' : 'fail', enabled ? (rule ? `default retention ${rule.Mode ?? '?'} ${rule.Years ? `${rule.Years} years` : `${rule.Days ?? '?'} days`} (offchannel sets retention on every object itself)` : 'no default retention (offchannel sets retention on every object itself)') : lockError === undefined ? 'not enabled' : `not enabled (${nameOf(lockError)})`);
    return versioned && enabled;
  }

  private async lockedObject(): Promise<{ key: string; versionId: string; body: string; until: Date } | undefined> {
    const key = `${this.scratch}locked`;
    const body = `offchannel sink-check ${randomBytes(8).toString('hex')}`;
    const lock = this.lock();
    const until = lock.ObjectLockRetainUntilDate;
    const put = await this.put(key, body, lock);
    if (!put.ok || !put.result.VersionId) {
      this.record('write-locked', 'An object can be written with COMPLIANCE retention', 'fail', put.ok ? 'no version id returned' : `refused: ${put.error}`);
      return undefined;
    }
    this.record('write-locked', 'An object can be written with COMPLIANCE retention', 'pass', `version ${put.result.VersionId}`);
    const head = await this.attempt(() => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, VersionId: put.result.VersionId })));
    const recorded = head.ok && head.result.ObjectLockMode === 'COMPLIANCE' && Math.abs((head.result.ObjectLockRetainUntilDate?.getTime() ?? 0) - until.getTime()) < 2000;
    this.record('retention-recorded', 'The store records the retention it was given', recorded ? 'pass' : 'fail', head.ok ? `mode ${head.result.ObjectLockMode ?? 'none'}, until ${head.result.ObjectLockRetainUntilDate?.toISOString() ?? 'none'}` : `HEAD refused: ${head.error}`);
    return { key, versionId: put.result.VersionId, body, until };
  }

  private async integrity(): Promise<void> {
    const wrong = await this.put(`${this.scratch}bad-digest`, 'some bytes', this.lock(), createHash('md5').update('other bytes').digest('base64'));
    this.record('digest-checked', 'An upload whose Content-MD5 does not match is refused', wrong.ok ? 'fail' : 'pass', wrong.ok ? 'accepted a body that does not match its Content-MD5' : `refused (${wrong.error})`);
    const none = await this.put(`${this.scratch}no-digest`, 'some bytes', this.lock(), undefined);
    this.record('digest-required', 'Locked uploads must carry a checksum', 'info', none.ok ? 'not required by this store (AWS requires it); offchannel always sends Content-MD5 and SHA-256' : `required (${none.error}), as on AWS; offchannel always sends one`);
  }

  private async deletion(original: { key: string; versionId: string; until: Date }): Promise<void> {
    if (this.inconclusive('delete-refused', 'A locked version cannot be deleted', original.until)) return;
    const plain = await this.attempt(() => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: original.key, VersionId: original.versionId })));
    this.record('delete-refused', 'A locked version cannot be deleted', plain.ok ? 'fail' : 'pass', plain.ok ? 'DELETED — retention is not enforced' : `refused (${plain.error})`);
    const bypass = await this.attempt(() => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: original.key, VersionId: original.versionId, BypassGovernanceRetention: true })));
    this.record('bypass-refused', 'Not even with the governance bypass', bypass.ok ? 'fail' : 'pass', bypass.ok ? 'DELETED with x-amz-bypass-governance-retention — the lock is not COMPLIANCE' : `refused (${bypass.error})`);
  }

  private async retentionChanges(original: { key: string; versionId: string; until: Date }): Promise<void> {
    const { until } = original;
    if (this.inconclusive('shorten-refused', 'COMPLIANCE retention cannot be shortened', until)) return;
    const shorter = await this.attempt(() => this.client.send(new PutObjectRetentionCommand({ Bucket: this.bucket, Key: original.key, VersionId: original.versionId, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: new Date(until.getTime() - 1000) } })));
    this.record('shorten-refused', 'COMPLIANCE retention cannot be shortened', shorter.ok ? 'fail' : 'pass', shorter.ok ? 'retention was shortened' : `refused (${shorter.error})`);
    const governance = await this.attempt(() => this.client.send(new PutObjectRetentionCommand({ Bucket: this.bucket, Key: original.key, VersionId: original.versionId, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: until } })));
    this.record('mode-change-refused', 'COMPLIANCE cannot be downgraded to GOVERNANCE', governance.ok ? 'fail' : 'pass', governance.ok ? 'mode was changed' : `refused (${governance.error})`);
  }

  private async overwrites(original: { key: string; versionId: string; body: string }): Promise<void> {
    const conditional = await this.put(original.key, 'conditional overwrite', { ...this.lock(), IfNoneMatch: '*' });
    this.record('conditional-write', 'If-None-Match: * refuses an existing key', 'info', conditional.ok ? 'not enforced by this store: offchannel detects racing writers by version order instead' : conditional.status === 412 ? 'enforced (412): racing writers are refused outright' : `refused (${conditional.error})`);
    await this.put(original.key, 'plain overwrite', this.lock());
    await this.attempt(() => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: original.key })));
    const read = await this.attempt(() => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: original.key, VersionId: original.versionId })));
    const intact = read.ok && (await read.result.Body?.transformToString()) === original.body;
    this.record('original-kept', 'Overwrites and plain deletes leave the locked version intact', intact ? 'pass' : 'fail', intact ? 'an overwrite made a new version, a delete made a marker; the original reads back unchanged' : `the original version ${read.ok ? 'changed' : `cannot be read (${read.error})`}`);
    const listed = await this.attempt(() => this.client.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: original.key })));
    const oldestLast = listed.ok && listed.result.Versions?.at(-1)?.VersionId === original.versionId;
    this.record('version-order', 'Versions are listed newest first', oldestLast ? 'pass' : 'fail', oldestLast ? 'the first version written is listed last' : 'the listing order differs: offchannel could not tell which racing writer came first');
  }

  /** Two writers, several rounds: exactly one may see its version as the oldest each time. */
  private async race(): Promise<void> {
    const rounds = 8;
    let exact = 0;
    for (let round = 0; round < rounds; round++) {
      const key = `${this.scratch}race-${round}`;
      const attempts = await Promise.all(['a', 'b'].map(async (writer) => {
        const put = await this.put(key, `writer ${writer}`, { ...this.lock(), IfNoneMatch: '*' });
        if (!put.ok) return false;
        const listed = await this.attempt(() => this.client.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: key })));
        return listed.ok && listed.result.Versions?.at(-1)?.VersionId === put.result.VersionId;
      }));
      if (attempts.filter(Boolean).length === 1) exact++;
    }
    this.record('compare-and-append', 'Of two racing writers exactly one wins', exact === rounds ? 'pass' : 'fail', `${exact} of ${rounds} rounds had exactly one winner`);
  }

  private async legalHold(): Promise<{ key: string; versionId: string } | undefined> {
    const key = `${this.scratch}held`;
    const put = await this.put(key, 'held', { ...this.lock(), ObjectLockLegalHoldStatus: 'ON' });
    if (!put.ok || !put.result.VersionId) {
      this.record('legal-hold', 'A legal hold can be placed', 'fail', put.ok ? 'no version id' : `refused (${put.error})`);
      return undefined;
    }
    return { key, versionId: put.result.VersionId };
  }

  /** Until every scratch object's retention has ended. */
  private async wait(): Promise<void> {
    const ms = this.latest.getTime() - Date.now() + 1500;
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
  }

  private async expiry(original: { key: string; versionId: string }, held: { key: string; versionId: string } | undefined): Promise<void> {
    if (held) {
      const whileHeld = await this.attempt(() => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: held.key, VersionId: held.versionId })));
      this.record('legal-hold', 'A legal hold keeps a version after its retention ends', whileHeld.ok ? 'fail' : 'pass', whileHeld.ok ? 'the held version was deleted once retention ended' : `refused after expiry (${whileHeld.error})`);
      await this.attempt(() => this.client.send(new PutObjectLegalHoldCommand({ Bucket: this.bucket, Key: held.key, VersionId: held.versionId, LegalHold: { Status: 'OFF' } })));
    }
    const expired = await this.attempt(() => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: original.key, VersionId: original.versionId })));
    this.record('expiry', 'After retention ends (and without a hold) a version can be disposed of', expired.ok ? 'pass' : 'fail', expired.ok ? 'deleted after expiry' : `still refused after expiry (${expired.error}): records could never be disposed of`);
  }

  /** Deletes every version and marker the probe made (all expired by now). */
  private async cleanUp(): Promise<boolean> {
    let clean = true;
    try {
      const listed = await this.client.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: this.scratch }));
      const entries = [...(listed.Versions ?? []), ...(listed.DeleteMarkers ?? [])];
      for (const entry of entries) {
        if (!entry.Key) continue;
        const removed = await this.attempt(() => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: entry.Key, ...(entry.VersionId ? { VersionId: entry.VersionId } : {}) })));
        if (!removed.ok) clean = false;
      }
      if (listed.IsTruncated) clean = false;
    } catch {
      clean = false;
    }
    return clean;
  }
}
