/** Errors of the forwarder (see forwarder.ts). */
import { OffchannelError } from '../errors/offchannel-error.ts';

/** The target's copy of a stream is not a prefix of the spool's: the forwarder stops that stream there. */
export class ForwardDivergedError extends OffchannelError {
  readonly target: string;
  readonly stream: string;

  constructor(target: string, stream: string, problem: string) {
    super('FORWARD_DIVERGED', `target ${target}, stream ${stream}: ${problem}. Nothing more is copied for this stream to this target; find the other writer (or the restored spool) and run offchannel verify on both.`);
    this.target = target;
    this.stream = stream;
  }
}

/** `drain()` was called on a forwarder that is not running. */
export class ForwardStoppedError extends OffchannelError {
  constructor() {
    super('FORWARD_STOPPED', 'the forwarder is not running: call start() before drain()');
  }
}

/** `drain()` did not finish in time. */
export class ForwardTimeoutError extends OffchannelError {
  constructor(detail: string) {
    super('FORWARD_TIMEOUT', `forwarding did not catch up in time: ${detail}. The spool keeps everything; forwarding continues.`);
  }
}
