import { createHash, randomBytes } from 'node:crypto';
import type { AttachmentInput, CaptureInput } from '@offchannel/core';
import { proto } from '@whiskeysockets/baileys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaUnavailableError, createMediaDownloader, type MediaDownloader } from './media-download.ts';
import { EVENT_FORMAT, UNENCODABLE_FORMAT, archiveKeysOf, encodeEventEvidence, mapDeleteForMe, mapEnvelope, mapMediaOutcome, mapWhatsAppEvent, type MapDependencies, type MediaOutcome } from './map-whatsapp.ts';
import { RAW_FORMAT, decodeRawEvidence, encodeRawEvidence, freezeMessage, type CapturedEnvelope } from './raw-envelope.ts';
import {
  JIDS,
  ciphertextStub,
  editContent,
  encryptMedia,
  envelope,
  groupStub,
  mediaContent,
  reactionContent,
  revokeContent,
  secretEditContent,
  textContent,
} from './testing/fixtures.ts';
import { startMediaServer, type MediaServer } from './testing/media-server.ts';

let server: MediaServer;
beforeAll(async () => {
  server = await startMediaServer();
});
afterAll(async () => {
  await server.close();
});

function deps(secrets = new Map<string, Uint8Array>()): MapDependencies {
  const aliases = new Map<string, string[]>([
    [JIDS.alice, [JIDS.aliceLid]],
    [JIDS.aliceLid, [JIDS.alice]],
  ]);
  return {
    me: { id: JIDS.me, lid: JIDS.meLid },
    aliases: (jid) => aliases.get(jid) ?? [],
    secretOf: (chat, id) => secrets.get(`${chat}/${id}`),
  };
}

const t = 1_790_000_000;
const input = async (env: CapturedEnvelope, d = deps()): Promise<CaptureInput> => (mapEnvelope(env, d)).input;
const downloader = (options: { maxBytes?: number } = {}) => createMediaDownloader({ ...server.downloaderOptions, timeoutMs: 5000, ...options });

/** Maps a media message, then downloads its media the way the connector does and maps the outcome. */
async function withMedia(env: CapturedEnvelope, download: MediaDownloader = downloader()): Promise<{ message: CaptureInput; followUp: CaptureInput | undefined }> {
  const mapped = mapEnvelope(env, deps());
  if (!mapped.media) return { message: mapped.input, followUp: undefined };
  let outcome: MediaOutcome;
  try {
    outcome = { bytes: await download(mapped.media.ref) };
  } catch (error) {
    if (!(error instanceof MediaUnavailableError)) throw error;
    outcome = { reason: error.reason };
  }
  return { message: mapped.input, followUp: mapMediaOutcome(mapped.media, outcome) };
}

describe('mapEnvelope: messages', () => {
  it('maps an inbound direct text with identity, aliases, time and raw evidence', async () => {
    const message = envelope(await textContent('Buy 100 ACME at 12.50', JIDS.alice), { from: JIDS.alice, id: 'T1', t, alt: JIDS.aliceLid, pushName: 'Alice' });
    const env = freezeMessage(message, 'notify');
    const mapped = mapEnvelope(env, deps());
    expect(mapped.input).toMatchObject({
      kind: 'message',
      key: `message:${JIDS.alice}:${JIDS.alice}:T1`,
      text: 'Buy 100 ACME at 12.50',
      direction: 'inbound',
      sentAt: new Date(t * 1000).toISOString(),
      conversation: { id: JIDS.alice, type: 'direct' },
      sender: { id: JIDS.alice, name: 'Alice', aliases: [JIDS.aliceLid] },
      native: { id: 'T1', chat: JIDS.alice, sender: JIDS.alice },
      meta: { origin: 'notify', addressingMode: 'pn' },
    });
    expect(mapped.messageSecret?.length).toBe(32);
    expect(mapped.stubKey).toBe(`undecryptable:${JIDS.alice}:${JIDS.alice}:T1`);
    // raw = the message's own protobuf bytes + the alias fields the encoding drops
    const raw = mapped.input.raw as { bytes: Uint8Array; format: string };
    expect(raw.format).toBe(RAW_FORMAT);
    const { sidecar, webMessageInfo } = decodeRawEvidence(raw.bytes);
    expect(Buffer.from(webMessageInfo).equals(Buffer.from(env.bytes))).toBe(true);
    expect(sidecar).toEqual({ origin: 'notify', key: { remoteJidAlt: JIDS.aliceLid, addressingMode: 'pn' }, receivedAt: env.receivedAt });
    expect(proto.WebMessageInfo.decode(webMessageInfo).message?.extendedTextMessage?.text ?? proto.WebMessageInfo.decode(webMessageInfo).message?.conversation).toBe('Buy 100 ACME at 12.50');
  });

  it('maps own group messages, replies, mentions and forwards', async () => {
    const content = await textContent('see above @alice', JIDS.me);
    content.extendedTextMessage = {
      text: 'see above @alice',
      contextInfo: { stanzaId: 'Q1', participant: JIDS.alice, mentionedJid: [JIDS.alice], isForwarded: true },
    };
    delete (content as { conversation?: unknown }).conversation;
    const mapped = mapEnvelope(freezeMessage(envelope(content, { from: JIDS.me, group: JIDS.group, id: 'G1', t }), 'append'), deps());
    expect(mapped.input).toMatchObject({
      kind: 'message',
      direction: 'outbound',
      conversation: { id: JIDS.group, type: 'group' },
      sender: { id: JIDS.me, aliases: [JIDS.meLid] },
      replyTo: { id: 'Q1', chat: JIDS.group, sender: JIDS.alice },
      mentions: [JIDS.alice],
      forwarded: true,
      meta: { origin: 'append' },
    });
    expect(mapped.ownContent).toBeInstanceOf(Uint8Array);
  });

  it.each([
    ['image', 'image/jpeg', undefined, 'chart'],
    ['video', 'video/mp4', undefined, 'clip'],
    ['audio', 'audio/ogg; codecs=opus', undefined, undefined],
    ['document', 'application/pdf', 'term-sheet.pdf', 'signed'],
    ['sticker', 'image/webp', undefined, undefined],
  ] as const)('records %s media as pending, then downloads, verifies and stores it in a follow-up', async (kind, mime, fileName, caption) => {
    const plain = randomBytes(3000 + kind.length);
    const media = await encryptMedia(plain, kind);
    const url = server.put(`ok-${kind}`, media.file);
    const content = mediaContent(kind, media, url, { ...(fileName ? { fileName } : {}), ...(caption ? { caption } : {}), ptt: kind === 'audio' });
    const env = freezeMessage(envelope(content, { from: JIDS.alice, id: `M-${kind}`, t }), 'notify');
    const { message, followUp } = await withMedia(env);
    expect(message.kind).toBe('message');
    const declared = { mime, ...(fileName ? { name: fileName } : {}), size: plain.length, sha256: createHash('sha256').update(plain).digest('hex') };
    expect(message.attachments).toEqual([{ status: 'unavailable', reason: 'download-pending', ...declared }]);
    if (caption) expect(message.text).toBe(caption);
    if (kind === 'audio') expect(message.meta).toMatchObject({ voice: true });
    const suffix = `${JIDS.alice}:${JIDS.alice}:M-${kind}`;
    expect(archiveKeysOf(env, deps().me)).toEqual({ message: `message:${suffix}`, attachment: `attachment:${suffix}` });
    expect(followUp).toMatchObject({
      kind: 'edit',
      key: `attachment:${suffix}`,
      target: message.native,
      sentAt: message.sentAt,
      conversation: message.conversation,
      sender: message.sender,
      direction: 'inbound',
      meta: { followUp: 'attachment' }, // no origin: a replay may fetch it, and the record derives from the archived message
    });
    expect(followUp?.raw).toBeUndefined(); // the message's raw envelope is the evidence
    expect(followUp?.text).toBeUndefined();
    const [attachment] = followUp?.attachments as [AttachmentInput & { bytes: Uint8Array; mime: string }];
    expect(Buffer.from(attachment.bytes).equals(plain)).toBe(true);
    expect(attachment.mime).toBe(mime);
    if (fileName) expect(attachment).toMatchObject({ name: fileName });
  });

  it('records tampered, expired and view-once media as unavailable with the reason', async () => {
    const plain = randomBytes(5000);
    const media = await encryptMedia(plain, 'image');
    const tampered = Uint8Array.from(media.file);
    tampered[100] = (tampered[100] ?? 0) ^ 0xff;
    const cases: [string, Uint8Array | number, string][] = [
      ['tampered', tampered, 'enc-hash-mismatch'],
      ['expired', 410, 'http-410'],
    ];
    for (const [name, body, reason] of cases) {
      const url = typeof body === 'number' ? server.fail(name, body) : server.put(name, body);
      const { followUp } = await withMedia(freezeMessage(envelope(mediaContent('image', media, url), { from: JIDS.alice, id: `U-${name}`, t }), 'notify'));
      expect(followUp?.attachments).toEqual([
        { status: 'unavailable', reason, mime: 'image/jpeg', size: 5000, sha256: createHash('sha256').update(plain).digest('hex') },
      ]);
    }
    // tampered but with a matching encSha256 (an attacker who controls the message too): the MAC catches it
    const forged = { ...media, fileEncSha256: Uint8Array.from(createHash('sha256').update(tampered).digest()) };
    const { followUp } = await withMedia(freezeMessage(envelope(mediaContent('image', forged, server.put('forged', tampered)), { from: JIDS.alice, id: 'U-forged', t }), 'notify'));
    expect(followUp?.attachments).toMatchObject([{ status: 'unavailable', reason: 'mac-mismatch' }]);

    // No media key: unavailable at once, nothing to download, no follow-up.
    const viewOnce = mediaContent('image', { ...media, mediaKey: new Uint8Array() }, 'https://mmg.whatsapp.net/x', { viewOnce: true });
    const viewOnceEnv = freezeMessage(envelope(viewOnce, { from: JIDS.alice, id: 'V1', t }), 'notify');
    const v = mapEnvelope(viewOnceEnv, deps());
    expect(v.input).toMatchObject({ kind: 'message', attachments: [{ status: 'unavailable', reason: 'view-once' }], meta: { viewOnce: true, wrappers: 'viewOnceV2' } });
    expect(v.media).toBeUndefined();
    expect(archiveKeysOf(viewOnceEnv, deps().me)?.attachment).toBeUndefined();
    const keyless = mapEnvelope(freezeMessage(envelope(mediaContent('image', { ...media, mediaKey: new Uint8Array() }, 'https://mmg.whatsapp.net/x'), { from: JIDS.alice, id: 'V3', t }), 'notify'), deps());
    expect(keyless.input.attachments).toMatchObject([{ status: 'unavailable', reason: 'no-media-key' }]);
    expect(keyless.media).toBeUndefined();
    const stub = await input(freezeMessage(ciphertextStub('Message absent from node', { from: JIDS.alice, id: 'V2', t }, true), 'notify'));
    expect(stub).toMatchObject({ kind: 'message', attachments: [{ status: 'unavailable', reason: 'view-once' }] });
  });
});

describe('mapEnvelope: edits, revokes, reactions', () => {
  const original = { remoteJid: JIDS.me, fromMe: true, id: 'ORIG1' }; // as Alice (the sender) sees her own message

  it('maps a plaintext edit (protocolMessage MESSAGE_EDIT) as a new record pointing at the original', async () => {
    const mapped = await input(freezeMessage(envelope(await editContent('Buy 50 ACME', original), { from: JIDS.alice, id: 'E1', t: t + 30 }), 'notify'));
    expect(mapped).toMatchObject({
      kind: 'edit',
      key: `edit:${JIDS.alice}:${JIDS.alice}:E1`,
      text: 'Buy 50 ACME',
      native: { id: 'E1' },
      target: { id: 'ORIG1', chat: JIDS.alice, sender: JIDS.alice },
    });
  });

  it('decrypts an encrypted edit with the original message secret, trying LID and phone-number forms', async () => {
    const secret = randomBytes(32);
    const secrets = new Map([[`${JIDS.alice}/ORIG1`, Uint8Array.from(secret)]]);
    // Alice's client used her LID for both JIDs: the connector must find that form through the aliases.
    const content = secretEditContent({ text: 'Buy 5 ACME', target: original, secret, originalSender: JIDS.aliceLid, editor: JIDS.aliceLid });
    const env = freezeMessage(envelope(content, { from: JIDS.alice, id: 'E2', t: t + 31 }), 'notify');
    const mapped = await input(env, deps(secrets));
    expect(mapped).toMatchObject({ kind: 'edit', text: 'Buy 5 ACME', target: { id: 'ORIG1', sender: JIDS.alice }, meta: { secretEncrypted: true } });
    const { sidecar } = decodeRawEvidence((mapped.raw as { bytes: Uint8Array }).bytes);
    expect(proto.Message.decode(Buffer.from(sidecar.decrypted ?? '', 'base64')).protocolMessage?.editedMessage?.conversation).toBe('Buy 5 ACME');

    // without the secret, or with a wrong one: undecryptable with its target, never dropped
    expect(await input(env, deps())).toMatchObject({ kind: 'undecryptable', problem: { reason: 'missing-message-secret' }, target: { id: 'ORIG1' } });
    const wrong = new Map([[`${JIDS.alice}/ORIG1`, Uint8Array.from(randomBytes(32))]]);
    expect(await input(env, deps(wrong))).toMatchObject({ kind: 'undecryptable', problem: { reason: 'secret-decrypt-failed' } });
  });

  it('maps sender and admin revokes with the target author from protocolMessage.key.participant', async () => {
    const own = await input(freezeMessage(envelope(await revokeContent(original), { from: JIDS.alice, id: 'R1', t }), 'notify'));
    expect(own).toMatchObject({ kind: 'delete', deletion: { scope: 'everyone' }, target: { id: 'ORIG1', sender: JIDS.alice } });
    expect(own.deletion).not.toHaveProperty('admin');

    const target = { remoteJid: JIDS.group, fromMe: false, id: 'GM1', participant: JIDS.bob };
    const admin = await input(freezeMessage(envelope(await revokeContent(target), { from: JIDS.alice, group: JIDS.group, id: 'R2', t }), 'notify'));
    expect(admin).toMatchObject({ kind: 'delete', sender: { id: JIDS.alice }, target: { id: 'GM1', chat: JIDS.group, sender: JIDS.bob }, deletion: { scope: 'everyone', admin: true } });
  });

  it('maps reactions added and removed', async () => {
    const target = { remoteJid: JIDS.alice, fromMe: true, id: 'MINE1' }; // after cleanMessage: my message
    const add = await input(freezeMessage(envelope(await reactionContent(target, '👍'), { from: JIDS.alice, id: 'X1', t }), 'notify'));
    expect(add).toMatchObject({ kind: 'reaction', reaction: { value: '👍', action: 'add' }, target: { id: 'MINE1', sender: JIDS.me } });
    const remove = await input(freezeMessage(envelope(await reactionContent(target, ''), { from: JIDS.alice, id: 'X2', t }), 'notify'));
    expect(remove).toMatchObject({ kind: 'reaction', reaction: { value: '*', action: 'remove' } });
  });

  it('maps delete-for-me as its own kind', () => {
    expect(mapDeleteForMe({ remoteJid: JIDS.alice, fromMe: false, id: 'T1' }, deps(), new Date(t * 1000))).toMatchObject({
      kind: 'delete',
      key: `delete-for-me:${JIDS.alice}:${JIDS.alice}:T1`,
      deletion: { scope: 'me' },
      sender: { id: JIDS.me },
      target: { id: 'T1', chat: JIDS.alice, sender: JIDS.alice },
    });
    expect(mapDeleteForMe({ remoteJid: JIDS.alice }, deps(), new Date())).toBeUndefined();
  });
});

describe('mapEnvelope: stubs, groups and bad input', () => {
  it('maps group membership and metadata stubs', async () => {
    const add = groupStub(proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_ADD, [JSON.stringify({ id: JIDS.bobLid, phoneNumber: JIDS.bob })], { from: JIDS.alice, group: JIDS.group, id: 'S1', t });
    expect(await input(freezeMessage(add, 'append'))).toMatchObject({
      kind: 'membership',
      sender: { id: JIDS.alice },
      membership: { action: 'add', members: [{ id: JIDS.bobLid, aliases: [JIDS.bob] }] },
    });
    const subject = mapEnvelope(freezeMessage(groupStub(proto.WebMessageInfo.StubType.GROUP_CHANGE_SUBJECT, ['Rates desk'], { from: JIDS.alice, group: JIDS.group, id: 'S2', t }), 'append'), deps());
    expect(subject.input).toMatchObject({ kind: 'membership', membership: { action: 'title', value: 'Rates desk' } });
    expect(subject.newTitle).toBe('Rates desk');
    const announce = await input(freezeMessage(groupStub(proto.WebMessageInfo.StubType.GROUP_CHANGE_ANNOUNCE, ['on'], { from: JIDS.alice, group: JIDS.group, id: 'S3', t }), 'append'));
    expect(announce).toMatchObject({ kind: 'membership', membership: { action: 'settings', value: 'GROUP_CHANGE_ANNOUNCE:on' } });
  });

  it('maps CIPHERTEXT stubs to undecryptable with the raw bytes', async () => {
    const stub = mapEnvelope(freezeMessage(ciphertextStub('Bad MAC', { from: JIDS.alice, id: 'C1', t }), 'notify'), deps());
    expect(stub.input).toMatchObject({ kind: 'undecryptable', key: `undecryptable:${JIDS.alice}:${JIDS.alice}:C1`, problem: { reason: 'bad-mac' } });
    expect(decodeRawEvidence((stub.input.raw as { bytes: Uint8Array }).bytes).webMessageInfo.length).toBeGreaterThan(10);
  });

  it('maps unknown message types to unsupported naming the field, with raw bytes', async () => {
    const content = proto.Message.create({ pollUpdateMessage: { pollCreationMessageKey: { id: 'P1' } } });
    expect(await input(freezeMessage(envelope(content, { from: JIDS.alice, id: 'P2', t }), 'notify'))).toMatchObject({
      kind: 'unsupported',
      problem: { reason: 'unknown-message-type', detail: 'pollUpdateMessage' },
      raw: { format: RAW_FORMAT },
    });
  });

  it('withholds raw bytes of protocol plumbing that carries account keys', async () => {
    const content = proto.Message.create({
      protocolMessage: { type: proto.Message.ProtocolMessage.Type.APP_STATE_SYNC_KEY_SHARE, appStateSyncKeyShare: { keys: [{ keyData: { keyData: randomBytes(32) } }] } },
    });
    const mapped = await input(freezeMessage(envelope(content, { from: JIDS.me, id: 'K1', t }), 'notify'));
    expect(mapped).toMatchObject({ kind: 'system', system: { event: 'whatsapp-protocol', fields: { type: 'APP_STATE_SYNC_KEY_SHARE' } } });
    expect(mapped.raw).toBeUndefined();
  });

  it('removes group sender-key material at the tap without touching the live message', async () => {
    const skdm = { groupId: JIDS.group, axolotlSenderKeyDistributionMessage: randomBytes(80) };
    const withContent = envelope(proto.Message.create({ senderKeyDistributionMessage: skdm, conversation: 'hello group' }), { from: JIDS.alice, group: JIDS.group, id: 'SK1', t });
    const env = freezeMessage(withContent, 'notify');
    expect(withContent.message?.senderKeyDistributionMessage).toBe(skdm); // Baileys' object unchanged
    expect(proto.WebMessageInfo.decode(env.bytes).message?.senderKeyDistributionMessage).toBeNull();
    const mapped = await input(env);
    expect(mapped).toMatchObject({ kind: 'message', text: 'hello group' });
    expect(decodeRawEvidence((mapped.raw as { bytes: Uint8Array }).bytes).sidecar.redacted).toEqual(['message.senderKeyDistributionMessage']);
    const alone = envelope(proto.Message.create({ senderKeyDistributionMessage: skdm }), { from: JIDS.alice, group: JIDS.group, id: 'SK2', t });
    expect(await input(freezeMessage(alone, 'notify'))).toMatchObject({ kind: 'system', system: { event: 'whatsapp-key-distribution' } });
  });

  it('maps wrapped, location, contact and poll messages', async () => {
    const wrapped = proto.Message.create({ ephemeralMessage: { message: { extendedTextMessage: { text: 'disappearing' } } } });
    expect(await input(freezeMessage(envelope(wrapped, { from: JIDS.alice, id: 'W1', t }), 'notify'))).toMatchObject({ text: 'disappearing', meta: { wrappers: 'ephemeral' } });
    const location = proto.Message.create({ locationMessage: { degreesLatitude: 51.5, degreesLongitude: -0.12, name: 'Office' } });
    expect(await input(freezeMessage(envelope(location, { from: JIDS.alice, id: 'L1', t }), 'notify'))).toMatchObject({ text: 'Office', meta: { latitude: '51.5', longitude: '-0.12' } });
    const card = proto.Message.create({ contactMessage: { displayName: 'Carol', vcard: 'BEGIN:VCARD\nFN:Carol\nEND:VCARD' } });
    const contact = await input(freezeMessage(envelope(card, { from: JIDS.alice, id: 'V1', t }), 'notify'));
    expect(contact.attachments).toMatchObject([{ mime: 'text/vcard', name: 'Carol' }]);
    const poll = proto.Message.create({ pollCreationMessageV3: { name: 'Lunch?', options: [{ optionName: 'yes' }, { optionName: 'no' }] } });
    expect(await input(freezeMessage(envelope(poll, { from: JIDS.alice, id: 'PO1', t }), 'notify'))).toMatchObject({ text: 'Lunch?\n- yes\n- no', meta: { poll: true } });
  });

  it('refuses absurd media sizes without downloading, and files larger than declared', async () => {
    const media = await encryptMedia(randomBytes(100), 'video');
    const before = server.requests;
    const huge = await withMedia(freezeMessage(envelope(mediaContent('video', { ...media, fileLength: 10 ** 12 }, server.put('huge', media.file)), { from: JIDS.alice, id: 'Z1', t }), 'notify'));
    expect(huge.followUp?.attachments).toMatchObject([{ status: 'unavailable', reason: 'too-large', size: 10 ** 12 }]);
    expect(server.requests).toBe(before);
    const lying = await withMedia(freezeMessage(envelope(mediaContent('video', { ...media, fileLength: 10 }, server.put('lying', media.file)), { from: JIDS.alice, id: 'Z3', t }), 'notify'), downloader({ maxBytes: 50 }));
    expect(lying.followUp?.attachments).toMatchObject([{ status: 'unavailable', reason: 'too-large' }]);
  });

  it('repairs hostile strings (lone surrogates) and refuses absurd ids, so every record stays valid', async () => {
    const bytes = Buffer.from(proto.WebMessageInfo.encode({ key: { remoteJid: JIDS.alice, id: 'S1' }, message: { conversation: 'pay XYZ now' }, pushName: 'ZZZ', messageTimestamp: t }).finish());
    const patch = (from: string) => bytes.indexOf(Buffer.from(from)) ;
    for (const marker of ['XYZ', 'ZZZ']) Buffer.from([0xed, 0xa0, 0x80]).copy(bytes, patch(marker)); // CESU-8 lone surrogate U+D800
    const env: CapturedEnvelope = { bytes: Uint8Array.from(bytes), extras: {}, origin: 'notify', receivedAt: 0 };
    const mapped = await input(env);
    expect(mapped).toMatchObject({ kind: 'message', text: 'pay \uFFFD now', sender: { name: '\uFFFD' }, meta: { textRepaired: true } });
    const longId = 'A'.repeat(300);
    const weird = freezeMessage(envelope(await textContent('x', JIDS.alice), { from: JIDS.alice, id: longId, t }), 'notify');
    expect(await input(weird)).toMatchObject({ kind: 'unsupported', problem: { reason: 'malformed-key' } });
  });

  it('turns truncated, malformed, hostile and huge protobufs into unsupported records, never a throw', async () => {
    const good = freezeMessage(envelope(await textContent('hello', JIDS.alice), { from: JIDS.alice, id: 'B1', t }), 'notify');
    const variants: Uint8Array[] = [
      good.bytes.subarray(0, Math.floor(good.bytes.length / 2)), // truncated
      Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // length prefix of 4 GiB
      Uint8Array.from(randomBytes(4096)), // noise
      new Uint8Array(0), // empty: decodes, but has no key
      Uint8Array.from(proto.WebMessageInfo.encode({ key: { remoteJid: JIDS.alice, id: 'H1' }, messageTimestamp: Number.MAX_SAFE_INTEGER }).finish()), // no content, absurd time
    ];
    for (const bytes of variants) {
      const mapped = await input({ ...good, bytes });
      expect(mapped.kind).toBe('unsupported');
      expect(mapped.raw).toMatchObject({ format: RAW_FORMAT });
      expect(mapped.key).toMatch(/^unsupported:/);
    }
  });
});

describe('mapWhatsAppEvent: every record from its raw bytes', () => {
  const at = '2026-11-21T09:00:00.000Z';
  const event = (evidence: Parameters<typeof encodeEventEvidence>[0]) => ({ raw: encodeEventEvidence(evidence), format: EVENT_FORMAT });

  it('maps an envelope blob exactly as mapEnvelope maps the envelope', async () => {
    const env = freezeMessage(envelope(await textContent('same either way', JIDS.alice), { from: JIDS.alice, id: 'E1', t, alt: JIDS.aliceLid }), 'notify', { receivedAt: 1 });
    const direct = mapEnvelope(env, deps());
    const fromBlob = mapWhatsAppEvent({ raw: encodeRawEvidence(env), format: RAW_FORMAT }, deps());
    expect(fromBlob.inputs).toEqual([direct.input]);
    expect(fromBlob.pairs).toEqual([[JIDS.alice, JIDS.aliceLid]]);
  });

  it('maps each evidence type, with the raw bytes kept, keys that dedupe, and what the book learns', () => {
    const identity = mapWhatsAppEvent(event({ type: 'identity', at, me: { id: JIDS.me, lid: JIDS.meLid } }), deps());
    expect(identity.inputs).toMatchObject([{ kind: 'system', key: `identity:${JIDS.me}:${JIDS.meLid}`, sentAt: at, system: { event: 'whatsapp-identity', fields: { id: JIDS.me, lid: JIDS.meLid } }, raw: { format: EVENT_FORMAT } }]);
    const directory = mapWhatsAppEvent(event({ type: 'directory', at, source: 'contacts', pairs: [[JIDS.bobLid, JIDS.bob]], titles: [[JIDS.group, 'Rates desk']] }), deps());
    expect(directory).toMatchObject({ pairs: [[JIDS.bobLid, JIDS.bob]], titles: [[JIDS.group, 'Rates desk']], inputs: [{ kind: 'system', system: { event: 'whatsapp-directory', fields: { source: 'contacts', pairs: '1', titles: '1' } } }] });
    const group = mapWhatsAppEvent(event({ type: 'group-metadata', at, group: { id: JIDS.group, subject: 'Rates desk', participants: [{ id: JIDS.alice, admin: 'admin' }, { id: JIDS.bob }] } }), deps());
    expect(group).toMatchObject({ titles: [[JIDS.group, 'Rates desk']], inputs: [{ kind: 'membership', conversation: { id: JIDS.group, type: 'group', title: 'Rates desk' }, membership: { action: 'join', members: [{ id: JIDS.alice }, { id: JIDS.bob }], value: 'Rates desk' } }] });
    const deleted = mapWhatsAppEvent(event({ type: 'delete-for-me', at, key: { remoteJid: JIDS.alice, fromMe: false, id: 'D1', participant: null } }), deps());
    expect(deleted.inputs).toMatchObject([{ kind: 'delete', key: `delete-for-me:${JIDS.alice}:${JIDS.alice}:D1`, deletion: { scope: 'me' }, raw: { format: EVENT_FORMAT } }]);
    expect(mapWhatsAppEvent(event({ type: 'delete-for-me', at, key: { remoteJid: JIDS.alice, id: 'bad\u0000id' } }), deps()).inputs).toEqual([]);
    const offline = (arrived: number) => mapWhatsAppEvent(event({ type: 'offline-count', at, announced: 4, arrived, total: 9, from: '2026-11-21T08:00:00.000Z', to: at }), deps()).inputs[0];
    expect(offline(1)).toMatchObject({ kind: 'gap', gap: { reason: 'offline-count-mismatch', missing: 3 } });
    expect(offline(4)).toMatchObject({ kind: 'system', system: { event: 'whatsapp-offline-complete', fields: { announced: '4', arrived: '4', total: '9' } } });
    expect(mapWhatsAppEvent(event({ type: 'phone-offline', at, lastSeen: '2026-11-14T09:00:00.000Z', days: 7 }), deps()).inputs[0]).toMatchObject({ key: 'phone-offline:2026-11-14T09:00:00.000Z:7' });
    expect(mapWhatsAppEvent(event({ type: 'history-missing', at, linkedAt: at, boundMs: 60_000 }), deps()).inputs[0]).toMatchObject({ kind: 'gap', gap: { reason: 'history-sync-missing', to: at } });
    expect(mapWhatsAppEvent(event({ type: 'tap-failure', at, error: 'RangeError' }), deps()).inputs[0]).toMatchObject({ kind: 'gap', gap: { reason: 'serialize-failed' }, meta: { error: 'RangeError' } });
    expect(mapWhatsAppEvent(event({ type: 'chat-cleared', at, jid: JIDS.group }), deps()).inputs[0]).toMatchObject({ kind: 'system', conversation: { id: JIDS.group, type: 'group' }, system: { event: 'chat-cleared-for-me' } });
    const json = Buffer.from('{"key":{"id":5}}');
    expect(mapWhatsAppEvent({ raw: json, format: UNENCODABLE_FORMAT }, deps()).inputs[0]).toMatchObject({ kind: 'unsupported', key: `unsupported:json:${createHash('sha256').update(json).digest('hex')}`, problem: { reason: 'unencodable-message' } });
  });

  it('throws (the runtime then records the bytes as unsupported) on bytes that are not in their format', () => {
    const hostile: [Uint8Array, string][] = [
      [Buffer.from('not json'), EVENT_FORMAT],
      [Buffer.from('{"type":"no-such-type","at":"2026-11-21T09:00:00.000Z"}'), EVENT_FORMAT],
      [Buffer.from('{"type":"identity","at":"not a time","me":{"id":"x"}}'), EVENT_FORMAT],
      [Buffer.from('WAX1\u0000\u0000\u0000\u0009{"x":1}'), RAW_FORMAT],
      [Buffer.from('{}'), 'whatsapp.unknown.v9'],
    ];
    for (const [raw, format] of hostile) expect(() => mapWhatsAppEvent({ raw, format }, deps())).toThrow();
  });
});
