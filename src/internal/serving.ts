/**
 * The calls one connection serves for its peer: its requests (Connect, Ask, Tell) handed to endpoints in arrival
 * order, within the flow control of ./flow.ts; the asks being served, which a Cancel names; and their replies,
 * encoded by ./codec.ts. The connection owns one and hands it every request frame.
 */
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Tracer from "effect/Tracer"
import * as RpcAddress from "../RpcAddress.js"
import {
  MailboxFullError,
  MethodNotServedError,
  RecipientUnreachableError,
  type RpcCallError,
  RpcSerializationError
} from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import * as Codec from "./codec.js"
import type { ConnectionOwner, OpenFailure } from "./connection.js"
import { BACKLOG_BYTES, ReceiveWindow } from "./flow.js"
import * as Exchange from "./exchange.js"
import { Invocation, isRefusal, NoToken, qualified, type Resume, servedGateway } from "./invocation.js"
import type { Outbox } from "./outbox.js"
import * as Wire from "./wire.js"

/** A request frame, decoded. */
export type RequestMessage = Extract<Wire.Message, { _tag: "Connect" | "Ask" | "Tell" }>

/** What serving needs of its connection. */
export interface ServingConnection {
  readonly owner: ConnectionOwner
  readonly outbox: Outbox
  /** What the peer said in its hello (requests come only after it). */
  readonly peer: { readonly incarnation: string } | undefined
  /** Is the connection closed (nothing is answered any more)? */
  readonly isClosed: () => boolean
  /** The largest frame both sides accept. */
  readonly limit: () => number
  readonly protocolError: (detail: string) => void
}

/** The serving side of one connection. */
export class Serving {
  /** Asks received and not yet answered, by the peer's request id: what a Cancel names. */
  private readonly asks = new Map<number, Invocation>()
  /** The peer's requests that wait while much is queued to it. */
  readonly window: ReceiveWindow
  /** A heartbeat request arrived while the backlog was large: it is answered once the backlog is small again. */
  private heartbeatOwed = false

  constructor(private readonly connection: ServingConnection) {
    this.window = new ReceiveWindow(Wire.windowFor(connection.owner.config.maximumFrameSize))
  }

  /** Asks being served. */
  get size(): number {
    return this.asks.size
  }

  /** The peer gave up ask `id`: its handler is skipped if it has not started. */
  cancel(id: number): void {
    this.asks.get(id)?.cancel(true)
  }

  /** A heartbeat request: answered at once, or once the backlog to the peer is small again (one answer for all). */
  heartbeat(): void {
    const outbox = this.connection.outbox
    if (outbox.backlog < BACKLOG_BYTES) outbox.push(Wire.heartbeatReply)
    else this.heartbeatOwed = true
  }

  /** The connection closed: the asks' handlers may still run, but nobody will read their answers. */
  close(): void {
    for (const invocation of this.asks.values()) invocation.cancel(true)
    this.asks.clear()
    this.window.clear()
  }

  /**
   * A request from the peer: handed over at once, unless much is queued to the peer or earlier requests wait;
   * then it waits too, within the window this side announced (./flow.ts).
   */
  request(message: RequestMessage, body: Uint8Array): void {
    const admission = this.window.admit(body, this.connection.outbox.backlog >= BACKLOG_BYTES)
    if (admission === "now") return this.handOver(message, body.length)
    if (admission !== "later") this.connection.protocolError(admission.violation)
  }

  /** Hands a request to its endpoint (or answers a Connect), and credits it back to the peer in batches. */
  private handOver(message: RequestMessage, bodyBytes: number): void {
    if (message._tag === "Connect") this.onConnect(message)
    else this.onCall(message)
    const credit = this.window.handedOver(bodyBytes)
    if (credit > 0 && !this.connection.isClosed()) this.connection.outbox.push(Wire.credit(credit))
  }

  /** The outbox wrote and the socket has room: answer an owed heartbeat, then hand over waiting requests. */
  readonly caughtUp = (): void => {
    if (!this.window.hasWaiting && !this.heartbeatOwed) return
    if (this.connection.isClosed() || this.connection.outbox.backlog >= BACKLOG_BYTES) return
    if (this.heartbeatOwed) {
      this.heartbeatOwed = false
      this.connection.outbox.push(Wire.heartbeatReply)
    }
    while (this.window.hasWaiting && this.connection.outbox.backlog < BACKLOG_BYTES && !this.connection.isClosed()) {
      const body = this.window.next()!
      // It decoded as a request when it arrived; the copy decodes the same.
      this.handOver(Wire.decode(body) as RequestMessage, body.length)
    }
  }

  private readonly addressOf = (endpointId: string): string => {
    const { authority, protocol } = this.connection.owner
    return RpcAddress.format({ protocol, authority, endpointId })
  }

  /**
   * Answers a connect: at once when the endpoint serves the gateway with the caller's fingerprint (or a verdict on
   * the pair is cached); otherwise with this side's snapshot (`Compare`), and, once the caller has sent its own, with
   * this service's verdict (./exchange.ts).
   */
  private onConnect(connect: Extract<Wire.Message, { _tag: "Connect" }>): void {
    const { outbox, owner } = this.connection
    const answer = (refusal: OpenFailure | undefined, notServed?: ReadonlyArray<string>) =>
      outbox.push(Wire.connected(connect.id, refusal?.reason ?? null, refusal?.detail ?? "", notServed))
    const recipient = owner.lookup(connect.endpointId)
    if (recipient === undefined) {
      return answer({
        reason: "UnknownEndpoint",
        detail: `no endpoint "${connect.endpointId}" runs on RpcService ${owner.serviceName} at ${owner.authority}`
      })
    }
    const served = servedGateway(recipient, connect.gateway)
    if (isRefusal(served)) return answer(served)
    // The versions first: a token Schema that changed is a difference to name by path, not an invalid token.
    const tokenRefusal = () => recipient.checkConnectToken(connect.token === undefined ? NoToken : connect.token.value)
    if (served.fingerprint === connect.fingerprint) return answer(tokenRefusal())
    const peer = this.connection.peer!.incarnation
    const who = "the endpoint's service"
    let judgement = owner.verdicts.cached(peer, connect.fingerprint, served.fingerprint, who)
    if (judgement === undefined) {
      if (connect.snapshot === undefined) return outbox.push(Wire.compare(connect.id, Exchange.textOf(served)))
      const theirs = Exchange.readPeerSnapshot(connect.snapshot, connect.gateway, connect.fingerprint, "the caller's")
      if (Result.isFailure(theirs)) return answer({ reason: "GatewayMismatch", detail: theirs.failure })
      judgement = owner.verdicts.judge(peer, theirs.success, Exchange.snapshotOf(served), who)
    }
    if (!judgement.accept) return answer({ reason: "GatewayMismatch", detail: judgement.message })
    const refusal = tokenRefusal()
    answer(refusal, refusal === undefined ? judgement.notServed : undefined)
  }

  /** The address and qualified method of a call: only errors need them, so only error paths build them. */
  private target(call: Codec.CallMessage): { readonly address: string; readonly method: string } {
    return { address: this.addressOf(call.endpointId), method: qualified(call.gateway, call.method) }
  }

  /** Answers an ask that cannot be delivered with `error`; a tell has nobody to answer. */
  private reject(call: Codec.CallMessage, error: RpcCallError): void {
    if (call._tag === "Ask") this.sendReply(call, undefined, Exit.fail(error))
  }

  private onCall(call: Codec.CallMessage): void {
    const isAsk = call._tag === "Ask"
    const recipient = this.connection.owner.lookup(call.endpointId)
    if (recipient === undefined) {
      return this.reject(
        call,
        new RecipientUnreachableError({
          ...this.target(call),
          reason: "no endpoint with this id runs on the service (it has terminated, or never existed)"
        })
      )
    }
    const spec = Codec.methodOf(recipient.served.get(call.gateway)?.methods, call.method)
    if (spec === undefined || (spec.kind === "tell") !== !isAsk) {
      // Another version of the gateway: a method only the caller's has (a tell has nobody to tell; it is counted).
      this.connection.owner.instruments.reject("not_served")
      return this.reject(
        call,
        new MethodNotServedError({
          ...this.target(call),
          kind: isAsk ? "ask" : "tell",
          ...(spec === undefined ? {} : { served: spec.kind })
        })
      )
    }
    if (isAsk && this.asks.size >= this.connection.owner.config.maxAsksPerConnection) {
      this.connection.owner.instruments.reject("mailbox_full")
      const capacity = this.connection.owner.config.maxAsksPerConnection
      return this.reject(call, new MailboxFullError({ ...this.target(call), capacity, limit: "maxAsksPerConnection" }))
    }
    const payload = Wire.decodeValue(spec.payload, call.payload)
    if (Result.isFailure(payload)) {
      return this.reject(
        call,
        new RpcSerializationError({
          ...this.target(call),
          direction: "request",
          operation: "decode",
          detail: payload.failure
        })
      )
    }
    const token = call.token === undefined ? NoToken : recipient.decodeToken(call.token.value)
    const timeout = call.timeout ?? Infinity
    // The peer's clock is not this one: the deadline is the time left when it was sent, counted from arrival.
    const deadline = timeout === Infinity ? Infinity : this.connection.owner.now() + timeout
    const span = call.trace === undefined || !this.connection.owner.tracing ? undefined : Tracer.externalSpan(call.trace)
    const invocation = new Invocation(
      call.gateway,
      call.method,
      payload.success,
      token,
      isAsk ? this.replyTo(call, spec) : undefined,
      timeout,
      deadline,
      span
    )
    if (isAsk) this.asks.set(call.id, invocation)
    // A tell refused by a full mailbox has nobody to tell; the rejection metric has counted it.
    recipient.deliver(invocation)
  }

  private replyTo(call: Codec.CallMessage, spec: RpcGateway.Method): Resume {
    return (exit) => this.sendReply(call, spec, exit)
  }

  /** Encodes and sends a reply; what cannot be encoded or is too large becomes a typed error reply. */
  private sendReply(call: Codec.CallMessage, spec: RpcGateway.Method | undefined, exit: Exit.Exit<unknown, unknown>): void {
    if (this.connection.isClosed()) return
    const served = this.asks.get(call.id)
    if (served !== undefined) {
      this.asks.delete(call.id)
      // The caller cancelled it: nobody reads the answer.
      if (served.cancelled) return
    }
    let frame = Codec.encodeReply(call, spec, exit, this.addressOf)
    const limit = this.connection.limit()
    if (frame.size > limit) {
      this.connection.owner.instruments.reject("oversized")
      frame = Codec.tooLargeReply(call, frame.size, limit, this.addressOf)
    }
    this.connection.outbox.push(frame)
  }

}
