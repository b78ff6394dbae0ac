/**
 * Internal: the checkpoint half of `verifyArchive` for one stream.
 *
 * Before the stream is read: every stored checkpoint note must carry a verifying signature from
 * a given key (a failing signature by a given key is critical: forgery), name this stream in
 * its origin, and state the size it is filed under; its RFC 3161 token, if any, must verify.
 * Checkpoints gathered elsewhere (an earlier audit, a second archive) join them, and two
 * verified checkpoints of one size with different roots are reported as equivocation.
 *
 * While the stream is read: each verified record's leaf hash extends the tree, and at every
 * checkpointed size the recomputed root must equal the signed one. This is what catches a
 * stream rewritten with a consistently recomputed chain.
 *
 * After: a checkpoint beyond the last record means records were removed; successive
 * checkpoints must be provably consistent (RFC 9162, built from the stored tiles); records after
 * the last checkpoint are reported as not yet checkpointed; a stream with records and no valid
 * checkpoint fails. Every full Merkle tile stored for the stream is compared with the tile
 * recomputed from the records (proofs are served from tiles, so a wrong one must not hide);
 * with trusted TSA certificates given, checkpoints without a timestamp token are reported.
 */
import type { X509Certificate } from 'node:crypto';
import { NoteError } from '../errors/note-errors.ts';
import { OffchannelError } from '../errors/offchannel-error.ts';
import { HASH_BYTES, leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { CompactRange, consistencyProof, treeRoot } from '../merkle/merkle-proofs.ts';
import { type RestoredTree, restoreTree, treeFromTiles } from '../merkle/restore-tree.ts';
import { TILE_HEIGHT, TILE_WIDTH, type Tile, TileBuilder, type TileId, TileSource } from '../merkle/tiles.ts';
import { sha256Hex } from '../hash/sha256.ts';
import { verifyConsistency } from '../merkle/verify-proofs.ts';
import { checkpointOrigin, parseCheckpoint } from '../note/checkpoint.ts';
import type { NoteVerifier } from '../note/ed25519-key.ts';
import { type CosignatureStatus, type CosignatureVerifier, checkCosignatures } from '../note/cosignature.ts';
import { openNote, parseNote } from '../note/signed-note.ts';
import { cosignedFile } from '../witness/witness-client.ts';
import type { Sink } from '../sink/sink.ts';
import { verifyTimestampToken } from '../timestamp/rfc3161.ts';
import type { AttestedHead } from './attestation-check.ts';
import type { VerificationFailure } from './verify-archive.ts';

/** A checkpoint that verified, as reported. */
export interface CheckpointSummary {
  readonly size: number;
  /** Root hash, hex. */
  readonly root: string;
  /** Name of the key whose signature verified. */
  readonly signedBy: string;
  /** Where it came from: the archive, or a checkpoint given to the verifier. */
  readonly source: 'archive' | 'given';
  /** RFC 3161 time, when a token verified. */
  readonly timestamp?: { readonly genTime: string; readonly trusted: boolean; readonly tsa: string };
  /** Valid witness cosignatures (with `witnesses` given): who, and when (ISO 8601) it cosigned. */
  readonly cosignedBy?: readonly { readonly witness: string; readonly time: string }[];
}

interface Verified {
  readonly size: number;
  readonly root: Uint8Array;
  readonly signedBy: string;
  readonly source: 'archive' | 'given';
  genTime?: Date;
  timestamp?: CheckpointSummary['timestamp'];
  cosignatures?: readonly CosignatureStatus[];
}

export interface CheckpointCheckOptions {
  readonly verifiers: readonly NoteVerifier[];
  readonly extraCheckpoints?: readonly Uint8Array[];
  readonly tsaCertificates?: readonly X509Certificate[];
  /**
   * The checkpoint an earlier audit verified (incremental verification): only checkpoints at its
   * size or later are read, it is checked like a signed one (same-size checkpoints must agree,
   * later ones must be provably consistent with it), and the tree can resume from its tiles.
   */
  readonly since?: VerifiedCheckpoint;
  /**
   * Witness policy: the newest checkpoint must carry valid cosignatures from at least `quorum`
   * of these witnesses (default: all), and every record must be covered by such a checkpoint.
   */
  readonly witnesses?: readonly CosignatureVerifier[];
  readonly quorum?: number;
  /**
   * Sizes of this stream's checkpoints included in an archive-log checkpoint that carries the
   * quorum (`archive-log-check.ts`): witnessed like a cosigned checkpoint. Given whenever the
   * archive has an archive log (empty when none of this stream's is included).
   */
  readonly archiveLogIncluded?: ReadonlySet<number>;
  /** Heads of this stream that host attestations signed (see `attestation-check.ts`), ascending by size. */
  readonly attested?: readonly AttestedHead[];
}

/** Stored tiles read at once while a stream is verified. */
const TILE_READS = 8;

/** A recomputed full tile, and what its stored copy turned out to be once read. */
interface StoredTileCheck {
  readonly id: TileId;
  readonly digest: string;
  stored?: 'same' | 'different' | 'missing';
}

/** A checkpoint verified by an earlier audit (see `verified-state.ts`). */
export interface VerifiedCheckpoint {
  readonly size: number;
  readonly root: Uint8Array;
}

export class CheckpointCheck {
  private readonly stream: string;
  private readonly sink: Sink;
  private readonly failures: VerificationFailure[] = [];
  private readonly warnings: VerificationFailure[] = [];
  private readonly verified: Verified[] = [];
  /** Distinct sizes to check against the recomputed tree, ascending. */
  private readonly targets: { size: number; roots: Verified[] }[] = [];
  private compact = new CompactRange();
  private tiles = new TileBuilder();
  /** Every full tile the records make: its id and the SHA-256 of its bytes (not the bytes: a stream can be huge). */
  private readonly fullTiles: StoredTileCheck[] = [];
  /** Recomputed tiles whose stored copy is yet to be read, and the reads under way (see `readTile`). */
  private readonly tileQueue: StoredTileCheck[] = [];
  private readonly tileReaders = new Set<Promise<void>>();
  private abandoned = false;
  private next = 0;
  /** Attested heads still to compare, ascending by size. */
  private attested: AttestedHead[] = [];
  private nextAttested = 0;
  private unstamped: number[] = [];
  private witnesses: readonly CosignatureVerifier[] = [];
  private quorum = 0;
  private archiveLogIncluded: ReadonlySet<number> | undefined;

  private constructor(stream: string, sink: Sink) {
    this.stream = stream;
    this.sink = sink;
  }

  static async load(stream: string, sink: Sink, options: CheckpointCheckOptions): Promise<CheckpointCheck> {
    const check = new CheckpointCheck(stream, sink);
    const { since } = options;
    check.witnesses = options.witnesses ?? [];
    check.quorum = options.quorum ?? check.witnesses.length;
    check.archiveLogIncluded = options.archiveLogIncluded;
    check.attested = (options.attested ?? []).filter((head) => head.size > 0).sort((a, b) => a.size - b.size);
    if (since) check.verified.push({ size: since.size, root: since.root, signedBy: 'an earlier audit', source: 'given' });
    for (const size of await sink.checkpoints(stream)) {
      // An incremental run does not re-read what the earlier audit checked.
      if (since && size < since.size) continue;
      const note = await sink.getCheckpoint(stream, size, 'note');
      if (!note) continue;
      const verified = check.open(note, options.verifiers, 'archive', size);
      if (!verified) continue;
      const token = await sink.getCheckpoint(stream, size, 'rfc3161');
      if (token) check.checkToken(verified, note, token, options.tsaCertificates ?? []);
      else check.unstamped.push(size);
      if (options.witnesses?.length) verified.cosignatures = await check.readCosignatures(size, note, options.witnesses);
      check.verified.push(verified);
    }
    for (const note of options.extraCheckpoints ?? []) {
      const verified = check.open(note, options.verifiers, 'given');
      if (verified) check.verified.push(verified);
    }
    check.checkEquivocation();
    check.checkTimeOrder();
    if ((options.tsaCertificates ?? []).length > 0 && check.unstamped.length > 0) {
      const sizes = check.unstamped;
      check.warnings.push({
        stream,
        seq: sizes[0] as number,
        code: 'TIMESTAMP_MISSING',
        message: `stream ${stream}: ${sizes.length} checkpoint${sizes.length === 1 ? ' has' : 's have'} no RFC 3161 token although a TSA is trusted (size${sizes.length === 1 ? '' : 's'} ${sizes.slice(0, 5).join(', ')}${sizes.length > 5 ? ', …' : ''}): the timestamp was never obtained or was removed`,
      });
    }
    const bySize = new Map<number, Verified[]>();
    for (const entry of check.verified) bySize.set(entry.size, [...(bySize.get(entry.size) ?? []), entry]);
    for (const size of [...bySize.keys()].sort((a, b) => a - b)) if (size > 0) check.targets.push({ size, roots: bySize.get(size) ?? [] });
    return check;
  }

  /**
   * Resumes the recomputed tree at the earlier audit's checkpoint from the stored tiles, so
   * that only the records after it are fed. Returns the restored tree (to check the record at
   * that size with `isLastLeaf`), or `undefined` — nothing changed — when the tiles are missing
   * or do not reproduce its root: then the stream is read from its first record.
   */
  async resume(since: VerifiedCheckpoint): Promise<RestoredTree | undefined> {
    if (this.compact.size !== 0) return undefined;
    const restored = await restoreTree(since.size, since.root, (tile) => this.sink.getTile(this.stream, tile));
    if (!restored) return undefined;
    this.compact = restored.compact;
    this.tiles = restored.tiles;
    while ((this.targets[this.next]?.size ?? Number.POSITIVE_INFINITY) <= since.size) this.next++;
    this.skipAttestedBelow(since);
    return restored;
  }

  /**
   * Continues the tree after a spool's pruned prefix of `size` records, from the stored tiles
   * (no root vouches for them: the next signed checkpoint after `size` checks every hash used).
   * The newest checkpoint within the prefix is checked against the tiles instead of records.
   * False when the tiles are missing: nothing changed.
   */
  async resumeAfterPruned(size: number): Promise<boolean> {
    if (this.compact.size !== 0) return false;
    const later = (await this.sink.checkpoints(this.stream)).filter((checkpoint) => checkpoint > size);
    const restored = await treeFromTiles(size, (tile) => this.sink.getTile(this.stream, tile), later);
    if (!restored) return false;
    this.compact = restored.compact;
    this.tiles = restored.tiles;
    let newest: { size: number; roots: Verified[] } | undefined;
    while ((this.targets[this.next]?.size ?? Number.POSITIVE_INFINITY) <= size) newest = this.targets[this.next++];
    for (const checkpoint of newest?.roots ?? []) {
      if (!(await restoreTree(checkpoint.size, checkpoint.root, (tile) => this.sink.getTile(this.stream, tile)))) {
        this.fail('CHECKPOINT_ROOT_MISMATCH', checkpoint.size, `the stored tiles do not reproduce the root signed at size ${checkpoint.size} (records 1–${size} were pruned from this spool): the tiles were altered`, true);
      }
    }
    this.skipAttestedBelow({ size, root: restored.compact.root() });
    return true;
  }

  /**
   * Attested heads at or below the size an incremental run resumes from: one at that size is
   * compared with its root; smaller ones cannot be recomputed without reading the records again
   * and are reported as unchecked (an attestation made after the earlier audit should not
   * state a head older than a checkpoint that audit already saw).
   */
  private skipAttestedBelow(since: VerifiedCheckpoint): void {
    const skipped: AttestedHead[] = [];
    while ((this.attested[this.nextAttested]?.size ?? Number.POSITIVE_INFINITY) <= since.size) {
      const head = this.attested[this.nextAttested++] as AttestedHead;
      if (head.size === since.size) this.compareAttested(head, since.root, since.size);
      else if (head.size > 0) skipped.push(head);
    }
    if (skipped.length > 0) {
      this.warnings.push({ stream: this.stream, seq: skipped[0]?.size as number, code: 'ATTESTATION_UNCHECKED', message: `stream ${this.stream}: ${skipped.length} attested head${skipped.length === 1 ? '' : 's'} (first at size ${skipped[0]?.size ?? 0}, in attestation ${skipped[0]?.by ?? ''}) lie before the checkpoint the earlier audit verified and were not recomputed; verify without --since to check them` });
    }
  }

  private compareAttested(head: AttestedHead, root: Uint8Array, seq: number): void {
    if (!sameHash(root, head.root)) {
      this.fail('ATTESTATION_ROOT_MISMATCH', seq, `records 1–${head.size} do not hash to the root attested at that size in attestation ${head.by}: the stream was rewritten, or the attestation altered, after it was signed`, true);
    }
  }

  /** One verified record, in order. */
  feed(bytes: Uint8Array, seq: number): void {
    this.feedLeaf(leafHash(bytes), seq);
  }

  /** The leaf hash of one verified record, in order. */
  feedLeaf(leaf: Uint8Array, seq: number): void {
    // The compact range completes each level-0 tile's subtree as it goes: the tile builder reuses its root.
    const tileRoot = this.compact.append(leaf, TILE_HEIGHT);
    this.keepTiles(this.tiles.append(leaf, this.compact.size === this.tiles.size + 1 ? tileRoot : undefined));
    this.reached(seq);
  }

  /**
   * The leaf hashes (`leaves`, 32 bytes each) of `count` verified records in order, the first
   * of record `firstSeq`, as {@link feedLeaf} of each would take them. `tileRoots` has the root
   * of every level-0 tile that lies wholly among them, in order (hashed by the thread that
   * hashed the leaves, see verify-chunk.ts): such a tile is taken whole — its leaves kept for
   * the tile check, its root added to the tree — unless a signed or attested size falls inside
   * it, where the roots must be compared leaf by leaf.
   */
  feedLeaves(leaves: Uint8Array, count: number, firstSeq: number, tileRoots?: Uint8Array): void {
    const first = (TILE_WIDTH - ((firstSeq - 1) % TILE_WIDTH)) % TILE_WIDTH;
    for (let index = 0; index < count; ) {
      const size = this.compact.size;
      const tile = (index - first) / TILE_WIDTH;
      const end = size + TILE_WIDTH;
      const whole =
        tileRoots !== undefined &&
        size === firstSeq - 1 + index &&
        this.tiles.size === size &&
        index >= first &&
        Number.isInteger(tile) &&
        (tile + 1) * HASH_BYTES <= tileRoots.length &&
        index + TILE_WIDTH <= count &&
        (this.targets[this.next]?.size ?? end) >= end &&
        (this.attested[this.nextAttested]?.size ?? end) >= end;
      if (!whole) {
        this.feedLeaf(leaves.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES), firstSeq + index);
        index++;
        continue;
      }
      const root = tileRoots.slice(tile * HASH_BYTES, (tile + 1) * HASH_BYTES);
      this.compact.appendSubtree(TILE_HEIGHT, root);
      this.keepTiles(this.tiles.appendTile(leaves.subarray(index * HASH_BYTES, (index + TILE_WIDTH) * HASH_BYTES), root));
      index += TILE_WIDTH;
      this.reached(firstSeq + index - 1);
    }
  }

  private keepTiles(tiles: readonly Tile[]): void {
    for (const tile of tiles) {
      const entry: StoredTileCheck = { id: { level: tile.level, index: tile.index, width: tile.width }, digest: sha256Hex(tile.bytes) };
      this.fullTiles.push(entry);
      this.readTile(entry);
    }
  }

  /** Compares the roots due at the tree's size (record `seq` was the last leaf added). */
  private reached(seq: number): void {
    if (this.attested[this.nextAttested]?.size === this.compact.size) {
      const root = this.compact.root();
      while (this.attested[this.nextAttested]?.size === this.compact.size) this.compareAttested(this.attested[this.nextAttested++] as AttestedHead, root, seq);
    }
    const target = this.targets[this.next];
    if (target?.size !== this.compact.size) return;
    this.next++;
    const root = this.compact.root();
    for (const checkpoint of target.roots) {
      if (!sameHash(root, checkpoint.root)) {
        this.fail('CHECKPOINT_ROOT_MISMATCH', seq, `records 1–${seq} no longer hash to the root signed at size ${checkpoint.size}${checkpoint.source === 'given' ? ' (in a checkpoint given to the verifier)' : ''}: the stream was rewritten or records were altered after it was signed`, true);
      }
    }
  }

  /** Final checks once the stream was read (`records` verified records; `complete` when nothing stopped the read early). */
  async finish(records: number, complete: boolean): Promise<{ failures: VerificationFailure[]; warnings: VerificationFailure[]; checkpoints: CheckpointSummary[] }> {
    const sizes = this.targets.map((target) => target.size);
    if (!complete) this.abandon();
    await this.tileReadsDone();
    if (complete) {
      const beyond = sizes.filter((size) => size > records);
      if (beyond.length > 0) {
        this.fail('CHECKPOINT_BEYOND_STREAM', records + 1, `a checkpoint was signed at size ${beyond.at(-1) ?? 0} but the stream has only ${records} records: records were removed after they were signed`, true);
      }
      const attestedBeyond = this.attested.filter((head) => head.size > records).at(-1);
      if (attestedBeyond) {
        this.fail('ATTESTATION_BEYOND_STREAM', records + 1, `attestation ${attestedBeyond.by} states ${attestedBeyond.size} records but the stream has only ${records}: records were removed after they were attested`, true);
      }
      const covered = sizes.filter((size) => size <= records).at(-1) ?? 0;
      if (records > 0 && this.verified.length === 0) {
        this.fail('NO_CHECKPOINT', 1, `the stream has ${records} records but no checkpoint signed by a given key`, false);
      } else if (records > covered) {
        this.warnings.push({ stream: this.stream, seq: covered + 1, code: 'NOT_CHECKPOINTED', message: `stream ${this.stream}: records ${covered + 1}–${records} are not yet covered by a signed checkpoint` });
      }
      await this.checkConsistency(sizes.filter((size) => size <= records));
      await this.checkFullTiles(covered);
      if (this.witnesses.length > 0) this.checkWitnessPolicy(records);
    }
    return {
      failures: this.failures,
      warnings: this.warnings,
      checkpoints: this.verified
        .sort((a, b) => a.size - b.size)
        .map((entry) => ({
          size: entry.size,
          root: Buffer.from(entry.root).toString('hex'),
          signedBy: entry.signedBy,
          source: entry.source,
          ...(entry.timestamp ? { timestamp: entry.timestamp } : {}),
          ...(entry.cosignatures
            ? { cosignedBy: entry.cosignatures.flatMap((status) => (status.state === 'valid' ? [{ witness: status.witness, time: new Date(status.time * 1000).toISOString() }] : [])) }
            : {}),
        })),
    };
  }

  private open(note: Uint8Array, verifiers: readonly NoteVerifier[], source: Verified['source'], filedAs?: number): Verified | undefined {
    const where = filedAs === undefined ? 'a given checkpoint' : `the checkpoint filed at size ${filedAs}`;
    let opened;
    try {
      opened = openNote(note, verifiers);
    } catch (error) {
      if (!(error instanceof NoteError)) throw error;
      if (source === 'given' && error.code === 'NOTE_UNVERIFIED') return undefined; // for another key or stream: not ours to judge
      const forged = error.code === 'NOTE_BAD_SIGNATURE';
      this.fail(forged ? 'CHECKPOINT_FORGED' : error.code === 'NOTE_UNVERIFIED' ? 'CHECKPOINT_UNTRUSTED' : 'CHECKPOINT_MALFORMED', filedAs, `${where}: ${error.message}`, forged);
      return undefined;
    }
    let checkpoint;
    try {
      checkpoint = parseCheckpoint(opened.text);
    } catch (error) {
      this.fail('CHECKPOINT_MALFORMED', filedAs, `${where}: ${(error as Error).message}`, false);
      return undefined;
    }
    const signedBy = opened.verified.map((signature) => signature.name);
    const matching = signedBy.find((name) => checkpoint.origin === checkpointOrigin(name, this.stream));
    if (!matching) {
      if (source === 'given') return undefined; // another stream's checkpoint
      this.fail('CHECKPOINT_ORIGIN', filedAs, `${where}: its origin "${checkpoint.origin}" is not this stream's log (expected "<key name>/${this.stream}")`, true);
      return undefined;
    }
    if (filedAs !== undefined && checkpoint.size !== filedAs) {
      this.fail('CHECKPOINT_SIZE_MISMATCH', filedAs, `${where} says size ${checkpoint.size}`, true);
      return undefined;
    }
    return { size: checkpoint.size, root: checkpoint.root, signedBy: matching, source };
  }

  /**
   * Each named witness's cosignature of the checkpoint filed at `size`: lines in the note itself
   * and the witness's own copy (`<size>.cosigned-<id>`), which must be a copy of exactly this
   * checkpoint. A cosignature line that does not verify is reported (the note or the line was
   * altered), as is a witness copy of another checkpoint (the checkpoint was replaced after it
   * was witnessed).
   */
  private async readCosignatures(size: number, note: Uint8Array, witnesses: readonly CosignatureVerifier[]): Promise<CosignatureStatus[]> {
    const text = parseNote(note).text;
    return Promise.all(
      witnesses.map(async (witness): Promise<CosignatureStatus> => {
        const sources: Uint8Array[] = [note];
        const copy = await this.sink.getCheckpoint(this.stream, size, cosignedFile(witness));
        if (copy) {
          let copyText: string | undefined;
          try {
            copyText = parseNote(copy).text;
          } catch {
            copyText = undefined;
          }
          if (copyText === text) sources.push(copy);
          else {
            this.fail('COSIGNED_COPY_MISMATCH', size, `the copy cosigned by witness ${witness.name} at size ${size} is not of this checkpoint: the checkpoint was replaced after it was witnessed (a fork)`, true);
            return { witness: witness.name, state: 'invalid' };
          }
        }
        const statuses = sources.map((source) => checkCosignatures(source, [witness])[0] as CosignatureStatus);
        const invalid = statuses.find((status) => status.state === 'invalid');
        if (invalid) {
          this.fail('COSIGNATURE_INVALID', size, `the cosignature of witness ${witness.name} on the checkpoint at size ${size} does not verify: the checkpoint or the cosignature was altered`, true);
          return invalid;
        }
        const valid = statuses.filter((status) => status.state === 'valid');
        return valid.length > 0 ? valid.reduce((a, b) => (a.state === 'valid' && b.state === 'valid' && b.time < a.time ? b : a)) : { witness: witness.name, state: 'missing' };
      }),
    );
  }

  /**
   * The witness policy once the stream was read: the newest checkpoint needs `quorum` valid
   * cosignatures, and records after the newest checkpoint that has them are a failure — they
   * may have been rewritten after deleting the checkpoints the witnesses saw (docs/witnessing.md).
   */
  private checkWitnessPolicy(records: number): void {
    const archive = this.verified.filter((entry) => entry.source === 'archive' && entry.cosignatures).sort((a, b) => a.size - b.size);
    const valid = (entry: Verified): number => (entry.cosignatures ?? []).filter((status) => status.state === 'valid').length;
    const newest = archive.at(-1);
    const included = this.archiveLogIncluded;
    const isWitnessed = (entry: Verified): boolean => valid(entry) >= this.quorum || included?.has(entry.size) === true;
    const witnessed = archive.filter(isWitnessed);
    if (newest && !isWitnessed(newest) && included) {
      this.fail('ARCHIVE_LOG_INCLUSION_MISSING', newest.size, `the newest checkpoint (size ${newest.size}) is not included in an archive-log checkpoint that ${this.quorum} witness${this.quorum === 1 ? '' : 'es'} cosigned, and has ${valid(newest)} cosignature${valid(newest) === 1 ? '' : 's'} of its own`, false);
    } else if (newest && !isWitnessed(newest)) {
      const missing = (newest.cosignatures ?? []).filter((status) => status.state === 'missing').map((status) => status.witness);
      this.fail('WITNESS_QUORUM', newest.size, `the newest checkpoint (size ${newest.size}) has ${valid(newest)} valid witness cosignature${valid(newest) === 1 ? '' : 's'}, the policy needs ${this.quorum}${missing.length > 0 ? ` (missing: ${missing.join(', ')})` : ''}`, false);
    }
    const older = archive.filter((entry) => entry !== newest && !isWitnessed(entry)).map((entry) => entry.size);
    if (older.length > 0) {
      this.warnings.push({
        stream: this.stream,
        seq: older[0] as number,
        code: 'COSIGNATURE_MISSING',
        message: `stream ${this.stream}: ${older.length} older checkpoint${older.length === 1 ? ' has' : 's have'} fewer than ${this.quorum} cosignatures (size${older.length === 1 ? '' : 's'} ${older.slice(0, 5).join(', ')}${older.length > 5 ? ', …' : ''}); they are covered by the consistency proofs to a newer witnessed checkpoint`,
      });
    }
    const witnessedSize = witnessed.at(-1)?.size ?? 0;
    if (records > witnessedSize) {
      this.fail('UNWITNESSED_RECORDS', witnessedSize + 1, `${witnessedSize > 0 ? `the witnessed state is stale: the newest checkpoint ${this.quorum} witness${this.quorum === 1 ? '' : 'es'} cosigned is at size ${witnessedSize}, and ` : ''}records ${witnessedSize + 1}–${records} are not covered by a checkpoint that ${this.quorum} witness${this.quorum === 1 ? '' : 'es'} cosigned: they may have been rewritten after the newest witnessed checkpoints were deleted (or capture has not been stopped cleanly since)`, false);
    }
  }

  private checkToken(verified: Verified, note: Uint8Array, token: Uint8Array, trusted: readonly X509Certificate[]): void {
    try {
      const info = verifyTimestampToken(token, note, { trusted });
      verified.genTime = info.genTime;
      verified.timestamp = { genTime: info.genTime.toISOString(), trusted: info.trusted, tsa: info.tsa.subject.replaceAll('\n', ', ') };
      if (!info.trusted) {
        this.warnings.push({ stream: this.stream, seq: verified.size, code: 'TIMESTAMP_UNTRUSTED', message: `stream ${this.stream}: the timestamp of the checkpoint at size ${verified.size} verifies, but its TSA was not checked against a trusted certificate (give --tsa-cert)` });
      }
    } catch (error) {
      const message = OffchannelError.isInstance(error) ? error.message : String(error);
      this.fail('TIMESTAMP_INVALID', verified.size, `the RFC 3161 token of the checkpoint at size ${verified.size} does not verify: ${message}`, false);
    }
  }

  private checkEquivocation(): void {
    const seen = new Map<number, Verified>();
    for (const entry of this.verified) {
      const first = seen.get(entry.size);
      if (!first) seen.set(entry.size, entry);
      else if (!sameHash(first.root, entry.root)) {
        this.fail('EQUIVOCATION', entry.size, `two checkpoints signed for size ${entry.size} have different roots (${Buffer.from(first.root).toString('hex').slice(0, 16)}… from ${first.source}, ${Buffer.from(entry.root).toString('hex').slice(0, 16)}… from ${entry.source}): the log forked`, true);
      }
    }
  }

  private checkTimeOrder(): void {
    const stamped = this.verified.filter((entry) => entry.genTime).sort((a, b) => a.size - b.size);
    for (let index = 1; index < stamped.length; index++) {
      const [earlier, later] = [stamped[index - 1] as Verified, stamped[index] as Verified];
      if ((later.genTime as Date) < (earlier.genTime as Date)) {
        this.fail('TIMESTAMP_ORDER', later.size, `the checkpoint at size ${later.size} is timestamped before the one at size ${earlier.size}`, false);
      }
    }
  }

  private async checkConsistency(sizes: readonly number[]): Promise<void> {
    for (let index = 0; index < sizes.length; index++) {
      const size = sizes[index] as number;
      const roots = this.targets.find((target) => target.size === size)?.roots ?? [];
      const root = roots[0]?.root;
      if (!root) continue;
      const tiles = new TileSource(size, (tile) => this.sink.getTile(this.stream, tile));
      try {
        if (!sameHash(await treeRoot(tiles), root)) this.fail('TILE_MISMATCH', size, `the stored Merkle tiles do not reproduce the root signed at size ${size}: proofs built from them would be wrong`, false);
        const previous = sizes[index - 1];
        const previousRoot = previous === undefined ? undefined : this.targets.find((target) => target.size === previous)?.roots[0]?.root;
        if (previous !== undefined && previousRoot) {
          const proof = await consistencyProof(tiles, previous);
          if (!verifyConsistency(previous, size, previousRoot, root, proof)) {
            this.fail('CHECKPOINT_INCONSISTENT', size, `the checkpoints at sizes ${previous} and ${size} are not consistent (no valid RFC 9162 consistency proof)`, true);
          }
        }
      } catch {
        this.warnings.push({ stream: this.stream, seq: size, code: 'TILES_MISSING', message: `stream ${this.stream}: Merkle tiles for size ${size} are missing or unreadable; roots were checked against the records directly, but proofs cannot be served from tiles` });
      }
    }
  }

  /**
   * Starts reading the stored copy of a tile just recomputed, while the records are still being
   * read: the reads (one file each) then overlap the record checks instead of all waiting for
   * the end. At most {@link TILE_READS} at once; {@link checkFullTiles} waits for them all.
   */
  private readTile(entry: StoredTileCheck): void {
    this.tileQueue.push(entry);
    if (this.tileReaders.size >= TILE_READS || this.abandoned) return;
    const reader = (async () => {
      for (let next = this.tileQueue.shift(); next && !this.abandoned; next = this.tileQueue.shift()) {
        try {
          const bytes = await this.sink.getTile(this.stream, next.id);
          next.stored = bytes === undefined ? 'missing' : sha256Hex(bytes) === next.digest ? 'same' : 'different';
        } catch {
          next.stored = 'missing';
        }
      }
    })();
    this.tileReaders.add(reader);
    void reader.finally(() => this.tileReaders.delete(reader));
  }

  /** Waits for the tile reads started so far (and reads any left in the queue). */
  private async tileReadsDone(): Promise<void> {
    while (this.tileReaders.size > 0) await Promise.all([...this.tileReaders]);
    if (this.tileQueue.length > 0 && !this.abandoned) {
      const left = this.tileQueue.splice(0);
      for (const entry of left) this.readTile(entry);
      await this.tileReadsDone();
    }
  }

  /**
   * This check will not be finished (the stream is verified again from the start, on one
   * thread): no more tile reads are started; those under way end on their own.
   */
  abandon(): void {
    this.abandoned = true;
    this.tileQueue.length = 0;
  }

  /** Every stored full tile must equal the recomputed one; those within checkpointed records must exist. */
  private async checkFullTiles(covered: number): Promise<void> {
    await this.tileReadsDone();
    let missing = 0;
    let mismatched = 0;
    for (const entry of this.fullTiles) {
      const end = (entry.id.index + 1) * TILE_WIDTH ** (entry.id.level + 1);
      // Never read (only after the check was abandoned): counted as missing, never as a match.
      if (entry.stored === 'missing' || entry.stored === undefined) {
        if (end <= covered) missing++;
      } else if (entry.stored === 'different') {
        if (mismatched++ < 5) {
          this.fail('TILE_MISMATCH', entry.id.index * TILE_WIDTH ** (entry.id.level + 1) + 1, `the stored Merkle tile ${entry.id.level}/${entry.id.index} does not match the records it covers: inclusion proofs built from it would fail`, false);
        }
      }
    }
    if (mismatched > 5) this.fail('TILE_MISMATCH', undefined, `${mismatched - 5} more stored Merkle tiles do not match the records`, false);
    if (missing > 0) {
      this.warnings.push({ stream: this.stream, code: 'TILES_MISSING', message: `stream ${this.stream}: ${missing} of the ${this.fullTiles.length} full Merkle tiles of signed records are missing; proofs will be recomputed from the records` });
    }
  }

  private fail(code: string, seq: number | undefined, message: string, critical: boolean): void {
    this.failures.push({ stream: this.stream, ...(seq === undefined ? {} : { seq }), code, message: `stream ${this.stream}${seq === undefined ? '' : ` seq ${seq}`}: ${message}`, ...(critical ? { severity: 'critical' as const } : {}) });
  }
}
