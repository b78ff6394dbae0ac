/**
 * Internal: signs one stream's checkpoints.
 *
 * It sees every durable record of the stream exactly once, in order (the stream log feeds it
 * after each successful append, and with the records it reads back at startup), and keeps the
 * stream's Merkle state: a compact range for the root and a tile builder whose full tiles are
 * written to the sink as they complete.
 *
 * Signing a checkpoint at size n: write the right-edge partial tiles for n; read the tree back
 * from the stored tiles and check that it has the expected root and that it is consistent with
 * the last checkpoint this stream has (RFC 9162 consistency proof); only then sign the C2SP
 * checkpoint note and store it; then, if configured, timestamp it (RFC 3161) and store the
 * token beside it. A log must never sign two inconsistent checkpoints: if the stored history
 * does not match the records (the archive was altered, or a checkpoint forged), this
 * checkpointer refuses to sign anything for the stream and says why.
 *
 * Nothing is signed until the stream's Merkle state at startup is known to match the newest
 * stored checkpoint (`caughtUp`): signing earlier would sign whatever the archive holds,
 * rewritten or not. The state is restored from the stored tiles of that checkpoint when they
 * reproduce its signed root (`restoreFromTiles`: a few tile reads, whatever the stream's
 * length), and otherwise rebuilt by reading the stream from its first record and checking it
 * against the checkpoint. Either way every checkpoint signed later extends exactly the signed
 * history. After a restore, the stored record at the checkpoint's size must be the signed leaf
 * (an inclusion proof): a history rewritten with a recomputed chain changes that record and is
 * refused, as a full read-back would refuse it. A record altered below it without recomputing
 * the chain breaks the chain, which `offchannel verify` reports (it checks every record against
 * every checkpoint); the recorder itself goes on extending the signed history only.
 *
 * The archive's own checkpoints can be deleted by whoever rewrites it; with a `memory` the
 * capture host also remembers the last checkpoint it signed for each stream, outside the
 * archive, and refuses to continue a stream whose archive no longer holds it.
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { Logger } from '../logger/logger.ts';
import { leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { CompactRange, consistencyProof, treeRoot } from '../merkle/merkle-proofs.ts';
import { restoreTree } from '../merkle/restore-tree.ts';
import { TILE_WIDTH, type Tile, TileBuilder, TileSource } from '../merkle/tiles.ts';
import { verifyConsistency } from '../merkle/verify-proofs.ts';
import { checkpointOrigin, formatCheckpoint, parseCheckpoint } from '../note/checkpoint.ts';
import type { NoteSigner, NoteVerifier } from '../note/ed25519-key.ts';
import { openNote, signNote } from '../note/signed-note.ts';
import { readRecordAt } from '../sink/read-record-at.ts';
import { checkpointsAfter } from '../sink/checkpoint-range.ts';
import type { Sink } from '../sink/sink.ts';
import type { StateStore } from '../state/secret-store.ts';
import type { WitnessClient } from '../witness/witness-client.ts';

/** How and when the recorder signs checkpoints. */
export interface CheckpointOptions {
  /** The archive's signing key (see `offchannel keygen`). Its name prefixes every stream's origin. */
  readonly signer: NoteSigner & { readonly verifier: NoteVerifier };
  /** Sign once this many records were added since the last checkpoint. Default 1,000. */
  readonly everyRecords?: number;
  /** Sign at least this often (ms) while records were added. Default 60,000. */
  readonly everyMs?: number;
  /**
   * Optional external anchor (RFC 3161): given the signed note's bytes, resolve with a
   * timestamp token (DER), which is stored beside the checkpoint. A failure is logged and the
   * checkpoint stays valid without a token.
   */
  readonly timestamp?: (note: Uint8Array) => Promise<Uint8Array>;
  /**
   * Verifier keys the archive was signed with before `signer` (after a key rotation). The newest
   * stored checkpoint must verify with `signer` or one of these; checkpoints signed by any other
   * key are ignored (the verifier reports them).
   */
  readonly previousVerifiers?: readonly NoteVerifier[];
  /**
   * Where this host remembers the last checkpoint it signed for each stream (size and root, one
   * entry per stream name), outside the archive — typically a scope of the capture host's state
   * store. At startup the archive must still hold that checkpoint, unchanged; otherwise signing
   * is refused for the stream. Without it, whoever can rewrite the archive can also delete its
   * newest checkpoints and have the recorder sign the rewritten history.
   */
  readonly memory?: StateStore;
  /**
   * Independent witnesses (c2sp.org/tlog-witness): every checkpoint signed, and at start the
   * newest one stored, is submitted to each in the background (see witness-client.ts). A
   * witness that shows the log forked stops signing for the stream. Or the archive log
   * (`witness/archive-log.ts`), which takes each checkpoint as an entry and is witnessed as one log.
   */
  readonly witnesses?: Pick<WitnessClient, 'submit'>;
}

/** Where a stream's checkpointing stands. */
export interface CheckpointState {
  readonly stream: string;
  /** Records the checkpointer has seen (the durable stream size). */
  readonly size: number;
  /** Size of the last checkpoint stored for the stream (0 if none). */
  readonly signedSize: number;
  /** Why the checkpointer refuses to sign, if it does. */
  readonly refused?: string;
  /** The last signing or timestamping error, if any. */
  readonly lastError?: string;
}

/** Thrown when signing would contradict the stream's checkpoint history. */
export class CheckpointRefusedError extends OffchannelError {
  constructor(stream: string, reason: string) {
    super('CHECKPOINT_REFUSED', `stream ${stream}: refusing to sign a checkpoint: ${reason}. Run \`offchannel verify <archive> --key <verifier key>\`.`);
  }
}

const encoder = new TextEncoder();

/** Internal: a reason to refuse signing, found while loading. */
class Refusal extends Error {}

export class StreamCheckpointer {
  readonly stream: string;
  private readonly sink: Sink;
  private readonly options: CheckpointOptions;
  private readonly logger: Logger;
  private tiles = new TileBuilder();
  private compact = new CompactRange();
  private readonly tileWrites = new Set<Promise<void>>();
  private failedTiles: Tile[] = [];
  /** The last checkpoint stored for this stream (loaded at start, then each one signed). */
  private signed: { size: number; root: Uint8Array } | undefined;
  /** The stored checkpoint, until the records fed so far reach its size and it is checked. */
  private expected: { size: number; root: Uint8Array } | undefined;
  private refused: string | undefined;
  private lastError: string | undefined;
  private signing: Promise<void> = Promise.resolve();
  /** Size of the newest checkpoint scheduled (signed or being signed), so the schedule does not pile up. */
  private scheduledSize = 0;
  private lastSignedAt = Date.now();
  /** Set once the stored records were all fed at startup; nothing is signed before. */
  private caughtUpDone = false;

  private constructor(stream: string, sink: Sink, options: CheckpointOptions, logger: Logger) {
    this.stream = stream;
    this.sink = sink;
    this.options = options;
    this.logger = logger;
  }

  /**
   * Loads the newest stored checkpoint signed by this signer (or a previous key), to be checked
   * against the records as they are fed, and checks it against this host's memory.
   */
  static async open(stream: string, sink: Sink, options: CheckpointOptions, logger: Logger): Promise<StreamCheckpointer> {
    const checkpointer = new StreamCheckpointer(stream, sink, options, logger);
    try {
      checkpointer.expected = await checkpointer.newestStored();
      await checkpointer.checkMemory();
    } catch (error) {
      if (!(error instanceof Refusal)) throw error;
      checkpointer.refuse(error.message);
    }
    return checkpointer;
  }

  /**
   * Restores the Merkle state at the newest stored checkpoint from its stored tiles, so that only
   * the records after it need to be read. Used only when the stream holds at least that many
   * records (`headSeq`), the checkpoint passed the memory check, and the tiles reproduce its
   * signed root; otherwise nothing changes and the records are read from the start. Returns
   * the size restored (0 when nothing was).
   */
  async restoreFromTiles(headSeq: number): Promise<number> {
    const expected = this.expected;
    if (!expected || this.refused !== undefined || this.compact.size > 0 || expected.size > headSeq) return 0;
    const restored = await restoreTree(expected.size, expected.root, (tile) => this.sink.getTile(this.stream, tile));
    // The stored record at that size must be the signed leaf. Each record carries its
    // predecessor's hash, so a history rewritten with a recomputed chain changes this record
    // too: it is caught here, as a full read-back would catch it.
    const last = restored && (await readRecordAt(this.sink, this.stream, expected.size));
    const signedLeaf = last && (await restored?.isLastLeaf(last));
    if (!restored || !last || signedLeaf === undefined) {
      this.logger.warn({ stream: this.stream, size: expected.size }, 'Merkle state not restored from the stored tiles; reading the stream from its first record');
      return 0;
    }
    if (!signedLeaf) {
      this.refuse(`the records 1–${expected.size} no longer hash to the root of the checkpoint signed at that size — the stream was altered after it was signed`);
    }
    this.compact = restored.compact;
    this.tiles = restored.tiles;
    this.expected = undefined;
    this.signed = expected;
    this.scheduledSize = expected.size;
    return expected.size;
  }

  /**
   * The newest stored checkpoint with a signature by a trusted key (unknown keys' notes are
   * skipped). Looks at the checkpoints near the stored head first (those above it too), then
   * further down only if none there is ours: a year of history is not listed at every start.
   */
  private async newestStored(): Promise<{ size: number; root: Uint8Array } | undefined> {
    const top = (await this.sink.head(this.stream)).seq;
    let below = Number.POSITIVE_INFINITY;
    for (let window = 1024; ; window *= 16) {
      const after = Math.max(0, top - window);
      const sizes = (await checkpointsAfter(this.sink, this.stream, after)).filter((size) => size < below);
      for (let index = sizes.length - 1; index >= 0; index--) {
        const size = sizes[index] as number;
        const checkpoint = await this.readStored(size);
        if (checkpoint === 'foreign') {
          this.logger.warn({ stream: this.stream, size }, 'a stored checkpoint is signed by no key this recorder knows; ignored (offchannel verify reports it)');
          continue;
        }
        if (checkpoint) return checkpoint;
      }
      if (after === 0) return undefined;
      below = after + 1;
    }
  }

  /** The checkpoint stored at `size`: verified, `'foreign'` when no trusted key signed it, `undefined` when absent. Throws {@link Refusal}. */
  private async readStored(size: number): Promise<{ size: number; root: Uint8Array } | 'foreign' | undefined> {
    const bytes = await this.sink.getCheckpoint(this.stream, size, 'note');
    if (!bytes) return undefined;
    const { signer } = this.options;
    const trusted = [signer.verifier, ...(this.options.previousVerifiers ?? [])];
    try {
      let opened;
      try {
        opened = openNote(bytes, trusted);
      } catch (error) {
        if (OffchannelError.hasCode(error, 'NOTE_UNVERIFIED')) return 'foreign';
        throw error;
      }
      const checkpoint = parseCheckpoint(opened.text);
      if (!opened.verified.some((signature) => checkpoint.origin === checkpointOrigin(signature.name, this.stream))) throw new Error(`its origin "${checkpoint.origin}" is not this stream's`);
      if (checkpoint.size !== size) throw new Error(`its text says size ${checkpoint.size}`);
      return { size, root: checkpoint.root };
    } catch (error) {
      throw new Refusal(`the stored checkpoint at size ${size} is unreadable or its signature fails (${(error as Error).message})`);
    }
  }

  /** The checkpoint this host last signed must still be in the archive, unchanged. */
  private async checkMemory(): Promise<void> {
    const { memory } = this.options;
    if (!memory) return;
    const remembered = await memory.getJson<{ size?: unknown; root?: unknown }>(this.stream);
    if (remembered === undefined) return;
    if (typeof remembered !== 'object' || remembered === null || !Number.isSafeInteger(remembered.size) || typeof remembered.root !== 'string' || !/^[0-9a-f]{64}$/.test(remembered.root)) {
      throw new Refusal('this host\'s memory of the last checkpoint it signed is malformed; restore it from backup (it is not re-created automatically)');
    }
    const size = remembered.size as number;
    const newest = this.expected?.size ?? 0;
    if (newest < size) {
      throw new Refusal(`this host signed a checkpoint at size ${size}, but the newest checkpoint in the archive is at size ${newest}: checkpoints were removed from the archive (and records may have been rewritten)`);
    }
    const stored = size === newest ? this.expected : await this.readStored(size);
    if (typeof stored !== 'object' || Buffer.from(stored.root).toString('hex') !== remembered.root) {
      throw new Refusal(`the checkpoint this host signed at size ${size} is ${stored === undefined ? 'missing from' : 'different in'} the archive`);
    }
  }

  get state(): CheckpointState {
    return {
      stream: this.stream,
      size: this.compact.size,
      signedSize: this.signed?.size ?? 0,
      ...(this.refused === undefined ? {} : { refused: this.refused }),
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  /**
   * The Merkle head of the durable records (size and root), once caught up and unless the
   * stream was refused; `undefined` otherwise (nothing trustworthy to attest).
   */
  get merkleHead(): { readonly size: number; readonly root: Uint8Array } | undefined {
    if (!this.caughtUpDone || this.refused !== undefined) return undefined;
    return { size: this.compact.size, root: this.compact.root() };
  }

  /** Records fed so far (the next record fed must have seq `size + 1`). */
  get size(): number {
    return this.compact.size;
  }

  /** True once {@link StreamCheckpointer.caughtUp} ran. */
  get isCaughtUp(): boolean {
    return this.caughtUpDone;
  }

  /** Records that became durable, in stream order, each exactly once. */
  feed(records: readonly Uint8Array[]): void {
    for (const record of records) {
      const leaf = leafHash(record);
      this.compact.append(leaf);
      for (const tile of this.tiles.append(leaf)) this.writeTile(tile);
      if (this.expected?.size === this.compact.size) this.checkExpected();
    }
  }

  /** Called when the stream's records were all read (or restored) at startup: a checkpoint beyond them means records were removed. */
  caughtUp(): void {
    this.caughtUpDone = true;
    if (this.expected && this.expected.size > this.compact.size) {
      this.refuse(`a checkpoint was signed at size ${this.expected.size} but the stream has only ${this.compact.size} records — records were removed`);
    }
    // Cosignatures missing from before a restart (a witness was down) are asked for again.
    const signed = this.signed;
    if (signed && this.refused === undefined && this.options.witnesses) {
      void this.sink.getCheckpoint(this.stream, signed.size, 'note').then(
        (note) => {
          if (note) this.witness(signed.size, note);
        },
        () => undefined,
      );
    }
  }

  /** Hands a stored checkpoint to the witnesses (background). */
  private witness(size: number, note: Uint8Array): void {
    this.options.witnesses?.submit({
      stream: this.stream,
      size,
      note,
      proof: (from) => consistencyProof(new TileSource(size, (tile) => this.sink.getTile(this.stream, tile)), from, size),
      onFork: (reason) => {
        this.refuse(reason);
      },
    });
  }

  /** True when the schedule says a checkpoint is due. */
  due(): boolean {
    const added = this.compact.size - Math.max(this.signed?.size ?? 0, this.scheduledSize);
    if (added <= 0 || this.refused !== undefined || !this.caughtUpDone) return false;
    return added >= (this.options.everyRecords ?? 1000) || Date.now() - this.lastSignedAt >= (this.options.everyMs ?? 60_000);
  }

  /** Signs a checkpoint at the current size, unless nothing was added. Serialized; errors are logged and kept in `state`. */
  checkpoint(): Promise<void> {
    this.scheduledSize = this.compact.size;
    const run = this.signing.then(() => this.sign());
    this.signing = run.catch((error: unknown) => {
      // Let the schedule try again even if no record arrives.
      this.scheduledSize = this.signed?.size ?? 0;
      this.lastError = (error as Error).message;
      const code = (error as { code?: unknown }).code;
      this.logger.error({ stream: this.stream, code: typeof code === 'string' ? code : undefined }, 'checkpoint not signed');
    });
    return run;
  }

  /** Waits for signing and tile writes in flight. */
  async idle(): Promise<void> {
    await this.signing;
    await Promise.allSettled([...this.tileWrites]);
  }

  private async sign(): Promise<void> {
    if (this.refused !== undefined) throw new CheckpointRefusedError(this.stream, this.refused);
    // Before the stored records were all read back and checked, there is nothing safe to sign.
    if (!this.caughtUpDone || this.expected !== undefined) return;
    const size = this.compact.size;
    const previous = this.signed;
    if (size === 0 || size === previous?.size) return;
    // Snapshot everything for this size before awaiting: appends may continue meanwhile.
    const root = this.compact.root();
    const partials = this.tiles.partialTiles();
    const pending = [...this.tileWrites];
    const retry = this.failedTiles.splice(0);
    await Promise.all(pending);
    let failed = 0;
    for (const tile of [...retry, ...partials]) {
      try {
        await this.sink.putTile(this.stream, tile, tile.bytes);
      } catch {
        failed++;
        // Partial tiles are made afresh for every checkpoint; full ones must be kept for a retry.
        if (tile.width === TILE_WIDTH) this.failedTiles.push(tile);
      }
    }
    if (failed > 0 || this.failedTiles.length > 0) throw new Error('some Merkle tiles could not be written; retrying at the next checkpoint');

    // Read the tree back from storage: it must have this root, and extend the last checkpoint.
    const stored = new TileSource(size, (tile) => this.sink.getTile(this.stream, tile));
    if (!sameHash(await treeRoot(stored), root)) throw new CheckpointRefusedError(this.stream, `the stored tiles do not reproduce the root at size ${size}`);
    if (previous) {
      const proof = await consistencyProof(stored, previous.size);
      if (!verifyConsistency(previous.size, size, previous.root, root, proof)) {
        this.refuse(`the tree at size ${size} is not consistent with the checkpoint at size ${previous.size}`);
        throw new CheckpointRefusedError(this.stream, this.refused ?? '');
      }
    }

    const { signer } = this.options;
    const note = encoder.encode(signNote(formatCheckpoint({ origin: checkpointOrigin(signer.name, this.stream), size, root }), [signer]));
    await this.sink.putCheckpoint(this.stream, size, 'note', note);
    this.signed = { size, root };
    this.lastSignedAt = Date.now();
    this.lastError = undefined;
    this.logger.info({ stream: this.stream, size, root: Buffer.from(root).toString('hex'), note: sha256Hex(note) }, 'checkpoint signed');
    this.witness(size, note);
    if (this.options.memory) {
      try {
        await this.options.memory.setJson(this.stream, { size, root: Buffer.from(root).toString('hex') });
      } catch (error) {
        // The archive holds the checkpoint; the memory only lags, which the next start tolerates.
        this.lastError = `remembering the checkpoint at size ${size}: ${(error as Error).message}`;
        this.logger.error({ stream: this.stream, size }, 'the signed checkpoint could not be remembered in the state store');
      }
    }

    if (this.options.timestamp) {
      try {
        const token = await this.options.timestamp(note);
        await this.sink.putCheckpoint(this.stream, size, 'rfc3161', token);
        this.logger.info({ stream: this.stream, size }, 'checkpoint timestamped');
      } catch (error) {
        this.lastError = `timestamp for size ${size}: ${(error as Error).message}`;
        const code = (error as { code?: unknown }).code;
        this.logger.warn({ stream: this.stream, size, code: typeof code === 'string' ? code : undefined }, 'checkpoint could not be timestamped; it stays valid without a token');
      }
    }
  }

  private checkExpected(): void {
    const expected = this.expected as { size: number; root: Uint8Array };
    this.expected = undefined;
    if (sameHash(this.compact.root(), expected.root)) {
      this.signed = expected;
      this.scheduledSize = expected.size;
    } else {
      this.refuse(`the records 1–${expected.size} no longer hash to the root of the checkpoint signed at that size — the stream was altered after it was signed`);
    }
  }

  private writeTile(tile: Tile): void {
    const write = this.sink.putTile(this.stream, tile, tile.bytes).then(
      () => undefined,
      () => {
        this.failedTiles.push(tile);
      },
    );
    this.tileWrites.add(write);
    void write.then(() => this.tileWrites.delete(write));
  }

  private refuse(reason: string): void {
    if (this.refused !== undefined) return;
    this.refused = reason;
    this.logger.error({ stream: this.stream }, `checkpointing stopped for this stream: ${reason}`);
  }
}
