/**
 * What a connection sends, and when. Frames queued during a turn of the event loop go out in one corked write at
 * its end (a microtask), after a `drain` when the socket's buffer is full; runs of small chunks are joined first.
 * A turn that queues many small frames (a burst of tells) writes each 16 KiB of them at once instead, so that the
 * peer works on the first while this side is still producing the rest.
 * Requests (Connect, Ask, Tell) go through the peer's receive window (./flow.ts) and wait, in order, for its credit.
 */
import type { Duplex } from "node:stream"
import { SendWindow } from "./flow.js"
import type { Instruments } from "./metrics.js"
import * as Wire from "./wire.js"

/**
 * Small frames queued in one turn are written as soon as they reach this many bytes. Measured on tell-32B-remote
 * (bursts of 1,000 tells, then an ask; client and server on separate cores), alternating settings: without it the
 * server waits while the client encodes the whole burst, 300–380k tells/s; at 16 KiB the two overlap, 390–480k;
 * 8 KiB did as well, 32 KiB a little less, 64 KiB not at all. ask-1KiB-256 (256 KiB of replies per turn) stayed
 * within noise. Large values (a frame's tail) do not count: they are written as they are anyway.
 */
export const EARLY_WRITE_BYTES = 16 * 1024

/** The queue of frames to a peer and the socket they go to. */
export class Outbox {
  private queue: Array<Uint8Array> = []
  private queuedBytes = 0
  /** Bytes of frames without a tail queued since the last write. */
  private smallBytes = 0
  private stream: Duplex | undefined = undefined
  private flushScheduled = false
  /** The stream's buffer is full: write again on its `drain`. */
  private draining = false
  /** Requests to the peer beyond its window wait here. */
  readonly window = new SendWindow()

  /** `onWritable` runs after a write that left the socket's buffer with room: the owner may catch up then. */
  constructor(private readonly instruments: Instruments, private readonly onWritable: () => void) {}

  /** Bytes queued to the peer, here and in the socket. */
  get backlog(): number {
    return this.queuedBytes + (this.stream?.writableLength ?? 0)
  }

  /** Starts writing to `stream`; frames queued until now (the hello) go out. */
  attach(stream: Duplex): void {
    this.stream = stream
    this.flush()
  }

  /** Stops listening to `stream`'s drains (it is being destroyed). */
  detach(stream: Duplex): void {
    stream.off("drain", this.drained)
  }

  /** Queues a frame; it goes out at the end of this turn, or at once if small frames have piled up. */
  push(frame: Wire.OutFrame): void {
    if (this.instruments.enabled) this.instruments.frame("out", frame.size)
    this.queue.push(frame.bytes)
    this.queuedBytes += frame.bytes.length
    if (frame.tail !== undefined) {
      this.queue.push(frame.tail)
      this.queuedBytes += frame.tail.length
    } else if ((this.smallBytes += frame.bytes.length) >= EARLY_WRITE_BYTES) {
      // The end-of-turn flush, if scheduled, stays scheduled for what this turn queues after this write.
      this.write()
      return
    }
    if (!this.flushScheduled) {
      // Writing at once would write each frame on its own; writing once the current turn is over sends everything
      // queued in that turn in one write.
      this.flushScheduled = true
      queueMicrotask(this.flush)
    }
  }

  /** Queues a request if the peer's window has room for it, else keeps it until a credit makes room. */
  request(frame: Wire.OutFrame, id: number): void {
    if (this.window.offer(frame, id)) this.push(frame)
  }

  /** The peer credited `bytes`: requests that now fit go out. A protocol error's detail if the credit is wrong. */
  credit(bytes: number): string | undefined {
    const wrong = this.window.credit(bytes)
    if (wrong === undefined && this.window.waiting > 0) this.sendReleased()
    return wrong
  }

  /** The peer's hello announced its receive window. */
  setPeerWindow(window: number): void {
    this.window.setPeerWindow(window)
    if (this.window.waiting > 0) this.sendReleased()
  }

  private sendReleased(): void {
    for (const frame of this.window.release()) this.push(frame)
  }

  /** Writes everything queued, unless the socket is draining (then its `drain` will). */
  readonly flush = (): void => {
    this.flushScheduled = false
    this.write()
  }

  private write(): void {
    const stream = this.stream
    if (stream === undefined || this.draining || this.queue.length === 0) return
    if (!stream.writable) {
      this.queue = []
      this.queuedBytes = 0
      this.smallBytes = 0
      return
    }
    const batch = coalesce(this.queue)
    this.queue = []
    this.queuedBytes = 0
    this.smallBytes = 0
    let ok: boolean
    if (batch.length === 1) {
      ok = stream.write(batch[0])
    } else {
      ok = true
      stream.cork()
      for (const chunk of batch) ok = stream.write(chunk) && ok
      stream.uncork()
    }
    if (!ok) {
      this.draining = true
      stream.once("drain", this.drained)
      return
    }
    this.onWritable()
  }

  private readonly drained = (): void => {
    this.draining = false
    // A write tells the owner itself when the socket has room left; with nothing to write, tell it here.
    if (this.queue.length > 0) this.write()
    else this.onWritable()
  }
}

/** Up to this many bytes of small queued chunks are copied into one buffer, so that they cost one write. */
const COALESCE_BYTES = 256 * 1024

/**
 * The chunks to write for a batch of frames. Every chunk costs a pass through Node's stream machinery, which for
 * small chunks costs more than copying them, so each run of small chunks becomes one buffer; large values (a
 * frame's tail) go as they are.
 */
export const coalesce = (chunks: Array<Uint8Array>): [Uint8Array, ...Array<Uint8Array>] => {
  if (chunks.length === 1) return chunks as [Uint8Array]
  const out: Array<Uint8Array> = []
  let run: Array<Uint8Array> = []
  let runBytes = 0
  for (const chunk of chunks) {
    if (chunk.length >= Wire.TAIL_BYTES || runBytes + chunk.length > COALESCE_BYTES) {
      if (run.length > 0) out.push(run.length === 1 ? run[0]! : Buffer.concat(run, runBytes))
      run = []
      runBytes = 0
    }
    if (chunk.length >= Wire.TAIL_BYTES) {
      out.push(chunk)
    } else {
      run.push(chunk)
      runBytes += chunk.length
    }
  }
  if (run.length > 0) out.push(run.length === 1 ? run[0]! : Buffer.concat(run, runBytes))
  return out as [Uint8Array, ...Array<Uint8Array>]
}
