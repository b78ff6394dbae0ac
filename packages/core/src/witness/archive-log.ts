/**
 * The archive log: one Merkle log per capture host whose entries are the streams' signed
 * checkpoint notes (leaf = SHA-256(0x00 ‖ note bytes), RFC 6962), checkpointed on its own
 * schedule and witnessed as ONE log — one add-checkpoint request per witness per interval,
 * whatever the number of streams (docs/witnessing.md).
 *
 * Its origin is the signing key's name (C2SP tlog-checkpoint's SHOULD), its checkpoints are
 * stored as `checkpoints/archive-log/<size>.note` (and `.cosigned-<id>`), its tree as tiles in
 * `tiles/archive-log/`. The level-0 tiles are the entries: the leaf hashes in order. A stream
 * checkpoint is witnessed once an archive checkpoint carrying the quorum includes its leaf.
 *
 * Crash safety: entries not yet in a signed archive checkpoint live in memory only. On start,
 * every stored stream checkpoint not in the archive log is appended again — first in the order
 * of any level-0 tile (full, then the widest partial one) already stored past the newest archive
 * checkpoint (a crash between writing tiles and signing: tiles are write-once, so the next note
 * must agree with them), then by stream name and size — so no stream checkpoint is ever left
 * out, and the order is deterministic.
 *
 * Cost does not grow with history: memory holds the tree's right edge (a compact range and the
 * partial tiles) and, per stream, the largest checkpoint size appended — a stream's checkpoints
 * grow monotonically, so that size is the dedup. Start-up restores the right edge from the
 * newest archive checkpoint's tiles and learns what is included from an {@link ArchiveLogIndex}
 * valid for that checkpoint; only without one (or when it is stale) are all entries read, a
 * tile at a time, into a flat set of their hashes (about 40 bytes an entry).
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import type { Logger } from '../logger/logger.ts';
import { leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { CompactRange, consistencyProof, treeRoot } from '../merkle/merkle-proofs.ts';
import { restoreTree } from '../merkle/restore-tree.ts';
import { TILE_WIDTH, type Tile, TileBuilder, type TileId, TileSource, tileCounts } from '../merkle/tiles.ts';
import { checkpointOrigin, formatCheckpoint, parseCheckpoint } from '../note/checkpoint.ts';
import type { NoteSigner, NoteVerifier } from '../note/ed25519-key.ts';
import { openNote, signNote } from '../note/signed-note.ts';
import { ARCHIVE_LOG } from '../sink/log-name.ts';
import { checkpointsAfter } from '../sink/checkpoint-range.ts';
import type { Sink } from '../sink/sink.ts';
import type { ArchiveLogIndex } from './archive-log-index.ts';
import { LeafSet } from './leaf-set.ts';
import type { WitnessClient, WitnessedCheckpoint } from './witness-client.ts';

export interface ArchiveLogOptions {
  readonly sink: Sink;
  /** The archive's signing key: its name is the archive log's origin. */
  readonly signer: NoteSigner & { readonly verifier: NoteVerifier };
  /** The log's name in the archive (`archive-log`, or `archive-log.s<k>of<n>` for a shard). */
  readonly log?: string;
  /** Where archive checkpoints are submitted (the per-stream checkpoints are not). */
  readonly witnesses?: Pick<WitnessClient, 'submit'>;
  readonly logger: Logger;
  /** Sign an archive checkpoint this often (ms) when entries were added. Default 60,000. */
  readonly everyMs?: number;
  /** The streams this host captures (a shard's); default all. Others' checkpoints are never appended at start. */
  readonly owns?: (stream: string) => boolean;
  /**
   * Where the included stream checkpoints are remembered across restarts (the capture host
   * opens one beside its key index). Without it, every start reads all entries.
   */
  readonly index?: ArchiveLogIndex;
}

/** The origin of archive log `log` for a key named `keyName`: the key name itself for `archive-log`. */
export function archiveLogOrigin(keyName: string, log: string = ARCHIVE_LOG): string {
  return log === ARCHIVE_LOG ? keyName : `${keyName}/${log}`;
}

/**
 * Calls `visit` with each leaf hash of a tree of `size` leaves, in order, from its level-0
 * tiles, one tile in memory at a time (a leaf is a view into its tile: copy it to keep it).
 * False, after visiting the leaves before it, when a tile is missing or the wrong size.
 */
export async function forEachLeaf(size: number, load: (tile: TileId) => Promise<Uint8Array | undefined>, visit: (leaf: Uint8Array, index: number) => void): Promise<boolean> {
  const { full, partialWidth } = tileCounts(size, 0);
  for (let index = 0; index <= full; index++) {
    const width = index < full ? TILE_WIDTH : partialWidth;
    if (width === 0) break;
    const bytes = await load({ level: 0, index, width });
    if (bytes?.length !== width * 32) return false;
    for (let at = 0; at < width; at++) visit(bytes.subarray(at * 32, at * 32 + 32), index * TILE_WIDTH + at);
  }
  return true;
}

/** The leaf hashes of a tree of `size` leaves, from its level-0 tiles; undefined when one is missing. Holds them all: prefer {@link forEachLeaf}. */
export async function readLeaves(size: number, load: (tile: TileId) => Promise<Uint8Array | undefined>): Promise<Uint8Array[] | undefined> {
  const leaves: Uint8Array[] = [];
  return (await forEachLeaf(size, load, (leaf) => leaves.push(leaf))) ? leaves : undefined;
}

const encoder = new TextEncoder();
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

interface Pending {
  readonly stream: string;
  readonly size: number;
  readonly leaf: Uint8Array;
}

/** One capture host's archive log. Feed it every stream checkpoint signed (it is the checkpointer's `witnesses`). */
export class ArchiveLog {
  readonly log: string;
  readonly origin: string;
  readonly #options: ArchiveLogOptions;
  /** Per stream, the largest checkpoint size appended: bounded by the number of streams. */
  readonly #included = new Map<string, number>();
  /** The entries appended since the newest archive checkpoint signed, in order. */
  #unsigned: { readonly stream: string; readonly size: number }[] = [];
  #compact = new CompactRange();
  #tiles = new TileBuilder();
  #fullTiles: Tile[] = [];
  /** The newest stream checkpoint's fork callback, per stream: a fork of the archive log stops every stream. */
  readonly #onFork = new Map<string, (reason: string) => void>();
  #signed: { size: number; root: Uint8Array } | undefined;
  #refused: string | undefined;
  #signing: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  private constructor(options: ArchiveLogOptions) {
    this.#options = options;
    this.log = options.log ?? ARCHIVE_LOG;
    this.origin = archiveLogOrigin(options.signer.name, this.log);
  }

  /**
   * Loads the newest archive checkpoint and its tiles, appends every stored stream checkpoint
   * not yet included (see the file comment), submits the newest archive checkpoint to the
   * witnesses again (cosignatures missing from before a restart), and starts the schedule.
   */
  static async open(options: ArchiveLogOptions): Promise<ArchiveLog> {
    const archiveLog = new ArchiveLog(options);
    await archiveLog.#restore();
    const every = options.everyMs ?? 60_000;
    archiveLog.#timer = setInterval(() => {
      archiveLog.checkpoint().catch(() => undefined);
    }, every);
    archiveLog.#timer.unref();
    return archiveLog;
  }

  /** Entries appended so far. */
  get size(): number {
    return this.#compact.size;
  }

  /** Size of the newest archive checkpoint signed (0 if none). */
  get signedSize(): number {
    return this.#signed?.size ?? 0;
  }

  /** Why the archive log stopped signing, if it did. */
  get refused(): string | undefined {
    return this.#refused;
  }

  /** A stream checkpoint was signed and stored: append its note as an entry (once). Returns at once. */
  submit(checkpoint: WitnessedCheckpoint): void {
    if (this.#refused !== undefined) {
      checkpoint.onFork(this.#refused);
      return;
    }
    this.#onFork.set(checkpoint.stream, (reason) => {
      checkpoint.onFork(reason);
    });
    this.#append(checkpoint.stream, checkpoint.size, leafHash(checkpoint.note));
  }

  /** Signs an archive checkpoint at the current size (unless nothing was added) and submits it to the witnesses. Serialized. */
  checkpoint(): Promise<void> {
    const run = this.#signing.then(() => this.#sign());
    this.#signing = run.catch((error: unknown) => {
      const code = (error as { code?: unknown }).code;
      this.#options.logger.error({ stream: this.log, code: typeof code === 'string' ? code : undefined }, 'archive checkpoint not signed; retried at the next interval');
    });
    return run;
  }

  /** Stops the schedule after a last archive checkpoint (a clean stop). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.checkpoint().catch(() => undefined);
  }

  #append(stream: string, size: number, leaf: Uint8Array): void {
    const known = this.#included.get(stream);
    if (known !== undefined && size <= known) return;
    this.#included.set(stream, size);
    this.#unsigned.push({ stream, size });
    this.#compact.append(leaf);
    this.#fullTiles.push(...this.#tiles.append(leaf));
  }

  async #sign(): Promise<void> {
    if (this.#refused !== undefined) return;
    const size = this.#compact.size;
    const entries = this.#unsigned.length;
    if (size === 0 || size === this.#signed?.size) return;
    const { sink, signer, logger } = this.#options;
    const root = this.#compact.root();
    const tiles = [...this.#fullTiles, ...this.#tiles.partialTiles()];
    for (const tile of tiles) await sink.putTile(this.log, tile, tile.bytes);
    this.#fullTiles = this.#fullTiles.filter((tile) => !tiles.includes(tile));
    const stored = new TileSource(size, (tile) => sink.getTile(this.log, tile));
    if (!sameHash(await treeRoot(stored), root)) {
      this.#refuse(`the stored tiles do not reproduce the archive log's root at size ${size}`);
      return;
    }
    const note = encoder.encode(signNote(formatCheckpoint({ origin: this.origin, size, root }), [signer]));
    await sink.putCheckpoint(this.log, size, 'note', note);
    this.#signed = { size, root };
    logger.info({ stream: this.log, size, root: hex(root) }, 'archive checkpoint signed');
    this.#remember(size, root, this.#unsigned.splice(0, entries));
    this.#witness(size, note);
  }

  /** Records in the index what archive checkpoint `size` includes; a failure only costs a rebuild at the next start. */
  #remember(size: number, root: Uint8Array, entries: readonly { stream: string; size: number }[], replace = false): void {
    const { index, logger } = this.#options;
    if (!index) return;
    const included = new Map<string, number>();
    for (const entry of entries) included.set(entry.stream, Math.max(entry.size, included.get(entry.stream) ?? 0));
    try {
      index.record(this.log, { size, root: hex(root) }, included, replace);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      logger.warn({ stream: this.log, size, code: typeof code === 'string' ? code : undefined }, 'archive log index not updated; it is rebuilt from the archive at the next start');
    }
  }

  /** What the index says archive checkpoint `size` includes, when it is valid for exactly that checkpoint. */
  #indexed(size: number, root: Uint8Array | undefined): Map<string, number> | undefined {
    const { index, logger } = this.#options;
    if (!index) return undefined;
    try {
      const head = index.head(this.log);
      if (size === 0) {
        // Nothing signed yet: an index that says otherwise is for an archive that is gone.
        if (head !== undefined && head.size !== 0) index.record(this.log, { size: 0, root: '' }, new Map(), true);
        return new Map();
      }
      if (root && head?.size === size && head.root === hex(root)) return index.streams(this.log);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      logger.warn({ stream: this.log, code: typeof code === 'string' ? code : undefined }, 'archive log index unreadable');
    }
    logger.warn({ stream: this.log, size }, 'archive log index missing or not for the newest archive checkpoint; rebuilding it from all entries of the archive log');
    return undefined;
  }

  #witness(size: number, note: Uint8Array): void {
    this.#options.witnesses?.submit({
      stream: this.log,
      size,
      note,
      proof: (from) => consistencyProof(new TileSource(size, (tile) => this.#options.sink.getTile(this.log, tile)), from, size),
      onFork: (reason) => {
        this.#refuse(reason);
      },
    });
  }

  #refuse(reason: string): void {
    if (this.#refused !== undefined) return;
    this.#refused = reason;
    clearInterval(this.#timer);
    this.#options.logger.error({ stream: this.log }, `archive log stopped signing: ${reason}`);
    // A fork of the archive log forks what every stream checkpoint relies on: stop them all.
    for (const onFork of this.#onFork.values()) onFork(`the archive log: ${reason}`);
  }

  async #restore(): Promise<void> {
    const { sink, signer, logger } = this.#options;
    const sizes = await sink.checkpoints(this.log);
    // The newest archive checkpoint this key signed; notes no key of ours signed are skipped (verify reports them).
    let newest: number | undefined;
    let root: Uint8Array | undefined;
    for (let index = sizes.length - 1; index >= 0 && newest === undefined; index--) {
      const size = sizes[index] as number;
      const bytes = await sink.getCheckpoint(this.log, size, 'note');
      try {
        const checkpoint = parseCheckpoint(openNote(bytes ?? new Uint8Array(), [signer.verifier]).text);
        newest = size;
        if (checkpoint.origin === this.origin && checkpoint.size === size) root = checkpoint.root;
      } catch (error) {
        if (OffchannelError.hasCode(error, 'NOTE_UNVERIFIED')) {
          logger.warn({ stream: this.log, size }, 'a stored archive checkpoint is signed by no key this host knows; ignored (offchannel verify reports it)');
          continue;
        }
        newest = size;
      }
    }
    const load = (tile: TileId) => sink.getTile(this.log, tile);
    if (newest !== undefined) {
      // The right edge only: a few tile reads whatever the size, checked against the signed root.
      const restored = root && (await restoreTree(newest, root, load));
      if (!root || !restored) {
        this.#refuse(`the newest archive checkpoint (size ${newest}) does not verify with this key, or its tiles do not reproduce its root — run offchannel verify`);
        return;
      }
      this.#compact = restored.compact;
      this.#tiles = restored.tiles;
      this.#signed = { size: newest, root };
    }
    const pending = await this.#notIncluded(newest, root);
    if (!pending) return;
    // Tiles written past the newest archive checkpoint (a crash between its tiles and its note)
    // fix the order of their entries: tiles are write-once, so the next note must match them.
    // First the full ones, then the widest partial tile after them.
    const takeOrder = (tile: Uint8Array, index: number, width: number): boolean => {
      for (let at = this.size - index * TILE_WIDTH; at < width; at++) {
        const leaf = Uint8Array.from(tile.subarray(at * 32, at * 32 + 32));
        const entry = pending.get(hex(leaf));
        if (!entry) {
          this.#refuse(`a stored archive-log tile holds entry ${index * TILE_WIDTH + at} whose stream checkpoint is not in the archive — run offchannel verify`);
          return false;
        }
        pending.delete(hex(leaf));
        this.#append(entry.stream, entry.size, leaf);
      }
      return true;
    };
    for (let index = Math.floor(this.size / TILE_WIDTH); ; index++) {
      const tile = await sink.getTile(this.log, { level: 0, index, width: TILE_WIDTH });
      if (!tile) break;
      if (!takeOrder(tile, index, TILE_WIDTH)) return;
    }
    // A partial tile can hold at most the entries still pending: no probe when none are.
    const edge = Math.floor(this.size / TILE_WIDTH);
    const taken = this.size - edge * TILE_WIDTH;
    for (let width = Math.min(TILE_WIDTH - 1, taken + pending.size); width > taken; width--) {
      const tile = await sink.getTile(this.log, { level: 0, index: edge, width });
      if (!tile) continue;
      if (!takeOrder(tile, edge, width)) return;
      break;
    }
    const rest = [...pending.values()].sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : a.size - b.size));
    for (const entry of rest) this.#append(entry.stream, entry.size, entry.leaf);
    if (rest.length > 0) logger.info({ stream: this.log, count: rest.length }, 'stream checkpoints not yet in the archive log appended');
    if (this.#signed) {
      const note = await sink.getCheckpoint(this.log, this.#signed.size, 'note');
      if (note) this.#witness(this.#signed.size, note);
    }
  }

  /**
   * Every stored stream checkpoint of ours not in archive checkpoint `newest`, by leaf (hex),
   * and `#included` set to what it includes — from the index, or from all its entries when
   * there is no index valid for it (the entries are dropped when this returns).
   * Undefined when the archive log refused (its entries do not reproduce the root).
   */
  async #notIncluded(newest: number | undefined, root: Uint8Array | undefined): Promise<Map<string, Pending> | undefined> {
    const { sink } = this.#options;
    const indexed = this.#indexed(newest ?? 0, root);
    let entries: LeafSet | undefined;
    if (!indexed && newest !== undefined) {
      // One tile at a time into a flat set: about 40 bytes an entry (docs/witnessing.md).
      const range = new CompactRange();
      const set = new LeafSet(newest);
      const whole = await forEachLeaf(newest, (tile) => sink.getTile(this.log, tile), (leaf) => {
        range.append(leaf);
        set.add(leaf);
      });
      if (!root || !whole || !sameHash(range.root(), root)) {
        this.#refuse(`the newest archive checkpoint (size ${newest}) does not verify with this key, or its tiles do not reproduce its root — run offchannel verify`);
        return undefined;
      }
      entries = set;
    }
    const included = indexed ?? new Map<string, number>();
    // Newest first per stream until an included one: with the index, down to its included size.
    const pending = new Map<string, Pending>();
    for (const stream of await sink.streams()) {
      if (this.#options.owns && !this.#options.owns(stream)) continue;
      const known = indexed?.get(stream);
      // With the index, only the checkpoints after the one it says is included.
      const streamSizes = await checkpointsAfter(sink, stream, known ?? 0);
      for (let index = streamSizes.length - 1; index >= 0; index--) {
        const size = streamSizes[index] as number;
        if (known !== undefined && size <= known) break;
        const note = await sink.getCheckpoint(stream, size, 'note');
        if (!note || !this.#isStreamCheckpoint(note, stream, size)) continue;
        const leaf = leafHash(note);
        if (entries?.has(leaf)) {
          included.set(stream, size);
          break;
        }
        pending.set(hex(leaf), { stream, size, leaf });
      }
    }
    for (const [stream, size] of included) this.#included.set(stream, size);
    if (!indexed && newest !== undefined && root) {
      this.#remember(newest, root, [...included].map(([stream, size]) => ({ stream, size })), true);
    }
    return pending;
  }

  /** True when `note` is `stream`'s checkpoint at `size`, signed by this archive's key. */
  #isStreamCheckpoint(note: Uint8Array, stream: string, size: number): boolean {
    try {
      const { signer } = this.#options;
      const checkpoint = parseCheckpoint(openNote(note, [signer.verifier]).text);
      return checkpoint.origin === checkpointOrigin(signer.name, stream) && checkpoint.size === size;
    } catch {
      return false;
    }
  }
}
