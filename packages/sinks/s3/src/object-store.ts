/**
 * Internal: the few S3 operations the sink uses, on one bucket, with errors mapped to
 * offchannel errors. Every write carries Content-MD5 and a SHA-256 checksum (AWS refuses Object
 * Lock uploads without an integrity header; other servers accept them silently, so the sink
 * always sends one) and COMPLIANCE retention.
 */
import { createHash } from 'node:crypto';
import {
  type DefaultRetention,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  type ListObjectVersionsCommandOutput,
  PutObjectCommand,
  PutObjectLegalHoldCommand,
  PutObjectRetentionCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { isPreconditionFailed, statusOf, toSinkError } from './s3-errors.ts';

/** One stored version of a key. */
export interface Version {
  readonly key: string;
  readonly versionId: string;
  /** The ETag without quotes (the MD5 of the bytes for a plain single-part upload). */
  readonly etag: string;
  readonly size: number;
}

/** All versions of one key, oldest last, and how many delete markers it has. */
export interface KeyVersions {
  readonly key: string;
  /** The oldest version: the object, as far as offchannel is concerned. */
  readonly oldest: Version;
  /** Every version, newest first (as S3 lists them). */
  readonly versions: readonly Version[];
  readonly deleteMarkers: number;
}

/** A bucket's versioning and Object Lock settings. */
export interface BucketSettings {
  /** `Enabled`, `Suspended`, or undefined (never enabled). */
  readonly versioning: string | undefined;
  readonly objectLock: boolean;
  readonly defaultRetention: DefaultRetention | undefined;
  /** Why the Object Lock configuration could not be read (unmapped SDK error), if it could not. */
  readonly lockError: unknown;
}

export interface PutOptions {
  readonly retainUntil: Date;
  readonly legalHold?: boolean;
  /** Send `If-None-Match: *` (create only if absent). */
  readonly ifNoneMatch?: boolean;
}

export interface PutResult {
  readonly versionId: string | undefined;
  readonly md5: string;
  /** True when the store answered 412: the key already existed (stores that enforce conditional writes). */
  readonly exists: boolean;
}

export interface LockState {
  readonly mode: string | undefined;
  readonly retainUntil: Date | undefined;
  readonly legalHold: boolean;
}

type Entry = { readonly key: string; readonly version?: Version };

export class ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;

  constructor(client: S3Client, bucket: string) {
    this.client = client;
    this.bucket = bucket;
  }

  /**
   * Every key under `prefix` (after `after`, exclusive), in key order, with its versions.
   * Servers differ on whether a listing's key marker is inclusive; keys ≤ `after` are dropped here.
   */
  async *keys(prefix: string, options: { readonly after?: string; readonly pageSize?: number } = {}): AsyncIterable<KeyVersions> {
    for await (const group of this.groups(prefix, options)) {
      const oldest = group.versions.at(-1);
      if (oldest) yield { key: group.key, oldest, versions: group.versions, deleteMarkers: group.deleteMarkers };
    }
  }

  /** Like {@link ObjectStore.keys}, but also keys that have only delete markers (for the audit). */
  async *groups(prefix: string, options: { readonly after?: string; readonly pageSize?: number } = {}): AsyncIterable<{ readonly key: string; readonly versions: readonly Version[]; readonly deleteMarkers: number }> {
    let keyMarker = options.after;
    let versionIdMarker: string | undefined;
    let group: { key: string; versions: Version[]; deleteMarkers: number } | undefined;
    for (;;) {
      const page = await this.list(prefix, keyMarker, versionIdMarker, options.pageSize ?? 1000);
      for (const entry of mergePage(page)) {
        if (options.after !== undefined && entry.key <= options.after) continue;
        if (group && group.key !== entry.key) {
          yield group;
          group = undefined;
        }
        group ??= { key: entry.key, versions: [], deleteMarkers: 0 };
        if (entry.version) group.versions.push(entry.version);
        else group.deleteMarkers++;
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      versionIdMarker = page.NextVersionIdMarker;
      if (keyMarker === undefined) break;
    }
    if (group) yield group;
  }

  /** The versions of exactly `key`, or `undefined` when it has none. */
  async versionsOf(key: string): Promise<KeyVersions | undefined> {
    for await (const entry of this.keys(key, { pageSize: 100 })) {
      if (entry.key === key) return entry;
      if (entry.key > key) break;
    }
    return undefined;
  }

  /** The keys of one listing page under `prefix` (versions and delete markers count against `maxKeys`). */
  async page(prefix: string, maxKeys: number): Promise<{ readonly keys: readonly string[]; readonly truncated: boolean }> {
    const page = await this.list(prefix, undefined, undefined, maxKeys);
    const keys = [...new Set((page.Versions ?? []).flatMap((version) => (version.Key === undefined ? [] : [version.Key])))].sort();
    return { keys, truncated: page.IsTruncated === true };
  }

  /** The first key under `prefix` after `after`, or `undefined`. */
  async keyAfter(prefix: string, after: string | undefined): Promise<string | undefined> {
    for await (const entry of this.keys(prefix, { ...(after === undefined ? {} : { after }), pageSize: 8 })) return entry.key;
    return undefined;
  }

  /** The "directories" directly under `prefix` (delimiter `/`), without the prefix and slash. */
  async children(prefix: string): Promise<string[]> {
    const names = new Set<string>();
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    for (;;) {
      const page = await this.list(prefix, keyMarker, versionIdMarker, 1000, '/');
      for (const common of page.CommonPrefixes ?? []) if (common.Prefix) names.add(common.Prefix.slice(prefix.length, -1));
      if (!page.IsTruncated || page.NextKeyMarker === undefined) break;
      keyMarker = page.NextKeyMarker;
      versionIdMarker = page.NextVersionIdMarker;
    }
    return [...names].sort();
  }

  /**
   * The bucket's versioning and Object Lock settings. Throws (the unmapped SDK error) only when
   * the versioning cannot be read; a bucket without an Object Lock configuration, or one whose
   * configuration cannot be read, has `objectLock: false` (and `lockError` says why, if read failed).
   */
  async bucketSettings(): Promise<BucketSettings> {
    const versioning = await this.client.send(new GetBucketVersioningCommand({ Bucket: this.bucket }));
    try {
      const configuration = (await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }))).ObjectLockConfiguration;
      return { versioning: versioning.Status, objectLock: configuration?.ObjectLockEnabled === 'Enabled', defaultRetention: configuration?.Rule?.DefaultRetention, lockError: undefined };
    } catch (error) {
      const missing = (error as { name?: string }).name === 'ObjectLockConfigurationNotFoundError';
      return { versioning: versioning.Status, objectLock: false, defaultRetention: undefined, lockError: missing ? undefined : error };
    }
  }

  async put(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    const md5 = createHash('md5').update(body).digest();
    try {
      const result = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ContentType: 'application/octet-stream',
          ContentMD5: md5.toString('base64'),
          ChecksumSHA256: createHash('sha256').update(body).digest('base64'),
          ObjectLockMode: 'COMPLIANCE',
          ObjectLockRetainUntilDate: options.retainUntil,
          ...(options.legalHold ? { ObjectLockLegalHoldStatus: 'ON' as const } : {}),
          ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
        }),
      );
      return { versionId: result.VersionId, md5: md5.toString('hex'), exists: false };
    } catch (error) {
      if (options.ifNoneMatch && isPreconditionFailed(error)) return { versionId: undefined, md5: md5.toString('hex'), exists: true };
      throw error; // the caller decides: an ambiguous failure may still have stored the object
    }
  }

  /** The bytes of one version (or a byte range of it); `undefined` if it is gone. */
  async get(key: string, versionId: string, range?: string): Promise<Uint8Array | undefined> {
    try {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId, ...(range ? { Range: range } : {}) }));
      return result.Body ? await result.Body.transformToByteArray() : new Uint8Array(0);
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw toSinkError(error, `read ${key}`, this.bucket);
    }
  }

  async lockState(key: string, versionId: string): Promise<LockState> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId }));
      return { mode: head.ObjectLockMode, retainUntil: head.ObjectLockRetainUntilDate, legalHold: head.ObjectLockLegalHoldStatus === 'ON' };
    } catch (error) {
      throw toSinkError(error, `read the lock of ${key}`, this.bucket);
    }
  }

  /** Extends a version's COMPLIANCE retention to `until` (never shortens: the store refuses that). */
  async extendRetention(key: string, versionId: string, until: Date): Promise<void> {
    try {
      await this.client.send(new PutObjectRetentionCommand({ Bucket: this.bucket, Key: key, VersionId: versionId, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: until } }));
    } catch (error) {
      throw toSinkError(error, `extend the retention of ${key}`, this.bucket);
    }
  }

  async setLegalHold(key: string, versionId: string, on: boolean): Promise<void> {
    try {
      await this.client.send(new PutObjectLegalHoldCommand({ Bucket: this.bucket, Key: key, VersionId: versionId, LegalHold: { Status: on ? 'ON' : 'OFF' } }));
    } catch (error) {
      throw toSinkError(error, `set the legal hold of ${key}`, this.bucket);
    }
  }

  private async list(prefix: string, keyMarker: string | undefined, versionIdMarker: string | undefined, maxKeys: number, delimiter?: string): Promise<ListObjectVersionsCommandOutput> {
    try {
      return await this.client.send(
        new ListObjectVersionsCommand({
          Bucket: this.bucket,
          Prefix: prefix,
          MaxKeys: maxKeys,
          ...(keyMarker === undefined ? {} : { KeyMarker: keyMarker }),
          ...(versionIdMarker === undefined ? {} : { VersionIdMarker: versionIdMarker }),
          ...(delimiter === undefined ? {} : { Delimiter: delimiter }),
        }),
      );
    } catch (error) {
      throw toSinkError(error, `list ${prefix || 'the bucket'}`, this.bucket);
    }
  }
}

/** A page's versions and delete markers merged in key order (versions of one key keep their newest-first order). */
function mergePage(page: ListObjectVersionsCommandOutput): Entry[] {
  const entries: (Entry & { readonly index: number })[] = [];
  let index = 0;
  for (const version of page.Versions ?? []) {
    if (version.Key === undefined) continue;
    entries.push({ index: index++, key: version.Key, version: { key: version.Key, versionId: version.VersionId ?? 'null', etag: (version.ETag ?? '').replaceAll('"', '').toLowerCase(), size: version.Size ?? 0 } });
  }
  for (const marker of page.DeleteMarkers ?? []) if (marker.Key !== undefined) entries.push({ index: index++, key: marker.Key });
  return entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.index - b.index));
}
