/**
 * Flow control of requests (protocol version 4; docs/PROTOCOL.md, "Flow control"), as two small state machines that
 * know nothing of sockets: `SendWindow` on the side that sends requests, `ReceiveWindow` on the side that takes them.
 *
 * The invariants a connection keeps with them:
 * 1. It never stops reading from its peer, so the answers to its own asks always get through. (Until version 4 it
 *    paused reading once 8 MiB were queued to the peer: a caller with 16 MiB of asks in flight stopped reading its
 *    replies, its peer stopped reading in turn, and both waited on each other; issue 12.)
 * 2. It hands the peer's requests to endpoints only while less than `BACKLOG_BYTES` are queued to the peer; later
 *    ones wait in the `ReceiveWindow`, in order, so a peer that does not read cannot make it produce replies
 *    without end.
 * 3. The peer may have at most this side's window of requests outstanding: sent and not credited back. This side
 *    credits requests once it has handed them to endpoints, so what waits never exceeds the window, and a peer
 *    that sends more breaks the protocol and is closed. Symmetrically, requests to the peer beyond its window wait
 *    in the `SendWindow` until the peer credits them.
 * Deadlock freedom: both sides always read, and a backlog drains as the peer reads it; so what waits in a
 * `ReceiveWindow` is handed over and credited, and what waits in a `SendWindow` goes out. No side waits on a side
 * that waits on it.
 */
import * as Wire from "./wire.js"

/**
 * Bytes queued to the peer (in the connection and in the socket) from which the peer's requests wait instead of
 * being handed to endpoints: replies to a peer that does not read stop growing near here.
 */
export const BACKLOG_BYTES = 4 * 1024 * 1024

/** A request waiting for the peer's window, with its id (0 for a tell) so that forgetting an ask can drop it. */
interface Held {
  readonly frame: Wire.OutFrame
  readonly id: number
  readonly cost: number
}

/** The sending side: which requests may go now, and which wait for the peer's credit (in order). */
export class SendWindow {
  /** Request cost (`Wire.requestCost`) sent to the peer and not yet credited back. */
  outstanding = 0
  /** The peer's receive window; until its hello, the least any peer announces. */
  private peerWindow = Wire.MIN_WINDOW
  private held: Array<Held> = []

  /** Requests waiting for credit. */
  get waiting(): number {
    return this.held.length
  }

  /** May `frame` go now? If so it counts as outstanding; if not, it waits behind the others. */
  offer(frame: Wire.OutFrame, id: number): boolean {
    const cost = Wire.requestCost(frame.size)
    if (this.held.length === 0 && this.fits(cost)) {
      this.outstanding += cost
      return true
    }
    this.held.push({ frame, id, cost })
    return false
  }

  // Alone, any request may go: a window smaller than one request must not stop the connection for good.
  private fits(cost: number): boolean {
    return this.outstanding === 0 || this.outstanding + cost <= this.peerWindow
  }

  /** The waiting requests the window now has room for, in order; they count as outstanding from now on. */
  release(): Array<Wire.OutFrame> {
    const held = this.held
    let sent = 0
    while (sent < held.length && this.fits(held[sent]!.cost)) this.outstanding += held[sent++]!.cost
    if (sent === 0) return []
    this.held = held.slice(sent)
    return held.slice(0, sent).map((request) => request.frame)
  }

  /** The peer's hello announced its window. */
  setPeerWindow(window: number): void {
    this.peerWindow = window
  }

  /** The peer credited `bytes`; a protocol error's detail if it credited more than was outstanding. */
  credit(bytes: number): string | undefined {
    if (bytes > this.outstanding) return `a credit of ${bytes} bytes with only ${this.outstanding} outstanding`
    this.outstanding -= bytes
    return undefined
  }

  /** Drops the waiting request with this id; true if it was waiting (and so was never sent). */
  forget(id: number): boolean {
    if (this.held.length === 0) return false
    const index = this.held.findIndex((request) => request.id === id)
    if (index < 0) return false
    this.held.splice(index, 1)
    return true
  }

  /** The connection closed: nothing waiting will go. */
  clear(): void {
    this.held = []
  }
}

/** What `ReceiveWindow.admit` decided. */
export type Admission = "now" | "later" | { readonly violation: string }

const LATER: Admission = "later"

/** The receiving side: which of the peer's requests go to endpoints now, which wait (in order), and the credits. */
export class ReceiveWindow {
  /** Copies of the frame bodies of the requests that wait, in arrival order. */
  private waiting: Array<Uint8Array | undefined> | undefined = undefined
  private head = 0
  private waitingCost = 0
  /** Cost of the requests handed over since the last credit. */
  private uncredited = 0

  /** `window`: the receive window this side announced in its hello. */
  constructor(readonly window: number) {}

  /** Do requests wait? Then every new one waits behind them, to keep the order. */
  get hasWaiting(): boolean {
    return this.waiting !== undefined
  }

  /**
   * A request arrived (`body`: its frame body). It goes `now` unless the backlog to the peer is full or others wait;
   * then it waits (`later`), unless waiting would exceed the window: the peer broke the protocol.
   */
  admit(body: Uint8Array, backlogFull: boolean): Admission {
    if (this.waiting === undefined && !backlogFull) return "now"
    this.waitingCost += Wire.requestCost(body.length)
    if (this.waitingCost > this.window) {
      return {
        violation: `the peer sent requests beyond the receive window of ${this.window} bytes (it does not read its ` +
          `replies or does not follow the flow control of protocol version ${Wire.VERSION})`
      }
    }
    // A copy: the frame is a view of a socket read that is not this connection's to keep.
    ;(this.waiting ??= []).push(body.slice())
    return LATER
  }

  /** The next waiting request's body, taken out of the queue; undefined when none waits. */
  next(): Uint8Array | undefined {
    const waiting = this.waiting
    if (waiting === undefined) return undefined
    const body = waiting[this.head]!
    waiting[this.head++] = undefined
    this.waitingCost -= Wire.requestCost(body.length)
    if (this.head === waiting.length) {
      this.waiting = undefined
      this.head = 0
    }
    return body
  }

  /**
   * A request of `bodyBytes` was handed over; the credit to send now, or 0. Credits go in batches of a quarter of
   * the window: a sender waits only with more than half its window outstanding, which such a credit releases.
   */
  handedOver(bodyBytes: number): number {
    this.uncredited += Wire.requestCost(bodyBytes)
    if (this.uncredited < this.window / 4) return 0
    const credit = this.uncredited
    this.uncredited = 0
    return credit
  }

  /** The connection closed: nothing waiting will be handed over. */
  clear(): void {
    this.waiting = undefined
    this.head = 0
    this.waitingCost = 0
  }
}
