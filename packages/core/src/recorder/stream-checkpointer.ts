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
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { Logger } from '../logger/logger.ts';
import { leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { CompactRange, consistencyProof, treeRoot } from '../merkle/merkle-proofs.ts';
import { type Tile, TileBuilder, TileSource } from '../merkle/tiles.ts';
import { verifyConsistency } from '../merkle/verify-proofs.ts';
import { checkpointOrigin, formatCheckpoint, parseCheckpoint } from '../note/checkpoint.ts';
import type { NoteSigner, NoteVerifier } from '../note/ed25519-key.ts';
import { openNote, parseNote, signNote } from '../note/signed-note.ts';
import type { Sink } from '../sink/sink.ts';

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

export class StreamCheckpointer {
  readonly stream: string;
  private readonly sink: Sink;
  private readonly options: CheckpointOptions;
  private readonly logger: Logger;
  private readonly tiles = new TileBuilder();
  private readonly compact = new CompactRange();
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

  private constructor(stream: string, sink: Sink, options: CheckpointOptions, logger: Logger) {
    this.stream = stream;
    this.sink = sink;
    this.options = options;
    this.logger = logger;
  }

  /** Loads the stream's latest stored checkpoint, to be checked against the records as they are fed. */
  static async open(stream: string, sink: Sink, options: CheckpointOptions, logger: Logger): Promise<StreamCheckpointer> {
    const checkpointer = new StreamCheckpointer(stream, sink, options, logger);
    const sizes = await sink.checkpoints(stream);
    const latest = sizes.at(-1);
    if (latest !== undefined) {
      const bytes = await sink.getCheckpoint(stream, latest, 'note');
      try {
        const note = bytes ?? new Uint8Array(0);
        const { signatures } = parseNote(note);
        const { signer } = options;
        // Our own signature on it must verify; another key's (an earlier, rotated key) is taken on its content.
        const text = signatures.some((signature) => signature.name === signer.name && signature.keyId === signer.keyId) ? openNote(note, [signer.verifier]).text : parseNote(note).text;
        const checkpoint = parseCheckpoint(text);
        if (checkpoint.size !== latest) throw new Error(`its text says size ${checkpoint.size}`);
        checkpointer.expected = { size: checkpoint.size, root: checkpoint.root };
      } catch (error) {
        checkpointer.refuse(`the stored checkpoint at size ${latest} is unreadable or its signature fails (${(error as Error).message})`);
      }
    }
    return checkpointer;
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

  /** Records that became durable, in stream order. `fromStorage` when read back at startup (their full tiles may exist). */
  feed(records: readonly Uint8Array[]): void {
    for (const record of records) {
      const leaf = leafHash(record);
      this.compact.append(leaf);
      for (const tile of this.tiles.append(leaf)) this.writeTile(tile);
      if (this.expected?.size === this.compact.size) this.checkExpected();
    }
  }

  /** Called when the stream's records were all read at startup: a checkpoint beyond them means records were removed. */
  caughtUp(): void {
    if (this.expected && this.expected.size > this.compact.size) {
      this.refuse(`a checkpoint was signed at size ${this.expected.size} but the stream has only ${this.compact.size} records — records were removed`);
    }
  }

  /** True when the schedule says a checkpoint is due. */
  due(): boolean {
    const added = this.compact.size - Math.max(this.signed?.size ?? 0, this.scheduledSize);
    if (added <= 0 || this.refused !== undefined) return false;
    return added >= (this.options.everyRecords ?? 1000) || Date.now() - this.lastSignedAt >= (this.options.everyMs ?? 60_000);
  }

  /** Signs a checkpoint at the current size, unless nothing was added. Serialized; errors are logged and kept in `state`. */
  checkpoint(): Promise<void> {
    this.scheduledSize = this.compact.size;
    const run = this.signing.then(() => this.sign());
    this.signing = run.catch((error: unknown) => {
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
    const size = this.compact.size;
    const previous = this.signed;
    if (size === 0 || size === previous?.size) return;
    // Snapshot everything for this size before awaiting: appends may continue meanwhile.
    const root = this.compact.root();
    const partials = this.tiles.partialTiles();
    const pending = [...this.tileWrites];
    const retry = this.failedTiles.splice(0);
    await Promise.all(pending);
    for (const tile of [...retry, ...partials]) await this.sink.putTile(this.stream, tile, tile.bytes);
    if (this.failedTiles.length > 0) throw new Error('some full tiles could not be written; retrying at the next checkpoint');

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
