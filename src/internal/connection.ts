/**
 * One connection between two services: it multiplexes every endpoint and call in both directions over one
 * socket. Each chunk the socket reads is decoded and dispatched synchronously in the socket's own callback, so
 * calls from one sender reach the endpoint's mailbox in the order they were sent; every frame queued in one turn
 * of the event loop goes out in one corked write at the end of that turn; the heartbeat fiber declares the peer
 * dead when it has been silent for the configured pause. Closing a connection, for whatever reason, fails each
 * call in flight on it at once.
 *
 * The socket is used through Node's own stream interface rather than Effect's `Socket`: its pull and its writer
 * each cost a fiber resumption per read and per write, which was a quarter of the JavaScript time of a small
 * remote ask (docs/PERFORMANCE.md).
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import type { Duplex } from "node:stream"
import * as RpcAddress from "../RpcAddress.js"
import type { RpcConfig } from "../RpcConfig.js"
import {
  ConnectionFailureReason,
  describe,
  FrameTooLargeError,
  MailboxFullError,
  RecipientUnreachableError,
  RemoteDefectError,
  RpcCallError,
  RpcConnectionError,
  RpcSerializationError
} from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { ConnectionSnapshot } from "../RpcService.js"
import type { Pending } from "./client.js"
import { type EndpointRuntime, Invoke, NoToken, type Resume } from "./endpoint.js"
import * as Frame from "./frame.js"
import type { Instruments } from "./metrics.js"
import * as Wire from "./wire.js"

/** What a connection needs from the service it belongs to. */
export interface ConnectionHost {
  readonly serviceName: string
  readonly config: RpcConfig
  /** Fresh for every run of a service, so a peer can tell a restarted service from the one it knew. */
  readonly incarnation: string
  /** This service's advertised `host:port`. */
  readonly authority: string
  readonly protocol: "rpc" | "rpcs"
  readonly lookup: (endpointId: string) => EndpointRuntime | undefined
  /** An inbound connection's peer said who it is: calls to that peer may use this connection. */
  readonly register: (connection: Connection, peerAuthority: string) => void
  readonly unregister: (connection: Connection) => void
  readonly instruments: Instruments
  /** Give traced calls a server span (`RpcConfig.tracing`). */
  readonly tracing: boolean
}

/** One call out: the endpoint it goes to and what it carries. */
export interface OutboundCall {
  readonly address: string
  readonly endpointId: string
  readonly gateway: RpcGateway.Any
  readonly method: string
  readonly payload: unknown
  /** `NoToken` for an unfenced call. */
  readonly token: unknown
  /** An ask's timeout (Infinity for none): the receiver drops the ask once it has passed. */
  readonly timeoutMillis: number
  readonly span: Tracer.AnySpan | undefined
}

/** Why a connection could not be opened. */
export interface OpenFailure {
  readonly reason: ConnectionFailureReason
  readonly detail: string
}

/** An ask sent on this connection, waiting for its reply; also its caller's handle to cancel it. */
class PendingAsk implements Pending {
  readonly _tag = "Ask"
  constructor(
    readonly connection: Connection,
    readonly id: number,
    readonly call: OutboundCall,
    readonly spec: RpcGateway.Method,
    readonly resume: Resume
  ) {}

  cancel(interrupted: boolean): void {
    this.connection.forget(this.id, interrupted)
  }
}

interface PendingConnect {
  readonly _tag: "Connect"
  readonly resume: (failure: OpenFailure | undefined) => void
}

/** A request waiting for the peer's window, with its id (0 for a tell) so that forgetting an ask can drop it. */
interface HeldRequest {
  readonly frame: Wire.OutFrame
  readonly id: number
  readonly cost: number
}

type State = "opening" | "open" | "closed"

const qualify = (gateway: string, method: string) => `${gateway}.${method}`

const unreachable = (address: string, method: string, reason: string) =>
  Exit.fail(new RecipientUnreachableError({ address, method, reason }))

type InvokeMessage = Extract<Wire.Message, { _tag: "Ask" | "Tell" }>

type RequestMessage = Extract<Wire.Message, { _tag: "Connect" | "Ask" | "Tell" }>

const cannotEncodeRequest = (call: OutboundCall, detail: string) =>
  new RpcSerializationError({
    address: call.address,
    method: qualify(call.gateway.name, call.method),
    direction: "request",
    operation: "encode",
    detail
  })

const cannotDecodeReply = (pending: PendingAsk, detail: string) =>
  Exit.fail(
    new RpcSerializationError({
      address: pending.call.address,
      method: qualify(pending.call.gateway.name, pending.call.method),
      direction: "response",
      operation: "decode",
      detail
    })
  )

const encodeRpcError = (error: RpcCallError) => Wire.encodeValue(RpcCallError, error)
const decodeRpcError = (wire: unknown) => Wire.decodeValue(RpcCallError, wire)
const isRpcCallError = Schema.is(RpcCallError)

/** A connection, from the moment it is dialled or accepted until it closes. */
export class Connection {
  state: State = "opening"
  /** What the peer told about itself in its hello. */
  peer: { readonly incarnation: string; readonly service: string; readonly maximumFrameSize: number } | undefined
  /** Why the connection closed, once it has. */
  closedBecause: OpenFailure | undefined
  private nextId = 1
  private readonly pending = new Map<number, PendingAsk | PendingConnect>()
  /** Asks received on this connection and not yet answered, by the peer's request id: what a Cancel names. */
  private readonly serving = new Map<number, Invoke>()
  private clock: Clock.Clock | undefined
  private outbound: Array<Uint8Array> = []
  private outboundBytes = 0
  private stream: Duplex | undefined
  private flushScheduled = false
  /** The stream's buffer is full: write again on its `drain`. */
  private draining = false
  // Flow control (docs/PROTOCOL.md, "Flow control"). The invariants this connection keeps:
  // 1. It never stops reading from its peer, so the answers to its own asks always get through. (Until protocol
  //    version 4 it paused reading once 8 MiB were queued to the peer: a caller with 16 MiB of asks in flight
  //    stopped reading its replies, its peer stopped reading in turn, and both waited on each other.)
  // 2. It hands the peer's requests to endpoints only while less than BACKLOG_BYTES are queued to the peer; later
  //    ones wait in `deferred`, in order, so a peer that does not read cannot make it produce replies without end.
  // 3. The peer may have at most this side's `window` of requests outstanding: sent and not credited back. This
  //    side credits requests once it has handed them to endpoints, so `deferred` never holds more than the window,
  //    and a peer that sends more breaks the protocol and is closed. Symmetrically, requests to the peer beyond its
  //    window wait in `held` until it credits them.
  // Deadlock freedom: both sides always read, a backlog drains as the peer reads it, so `deferred` empties,
  // credits flow, and `held` empties; no side waits on a side that waits on it.
  /** Request cost (`Wire.requestCost`) sent to the peer and not yet credited back. */
  private outstanding = 0
  /** The peer's receive window; until its hello, the least any peer announces. */
  private peerWindow = Wire.MIN_WINDOW
  /** Requests beyond the peer's window, in send order. */
  private held: Array<HeldRequest> = []
  /** This side's receive window, announced in its hello. */
  private readonly window: number
  /** The peer's requests not yet handed to endpoints (copies of their frame bodies), in arrival order. */
  private deferred: Array<Uint8Array> | undefined = undefined
  private deferredHead = 0
  private deferredCost = 0
  /** Cost of the requests handed to endpoints since the last Credit. */
  private uncredited = 0
  /** A heartbeat request arrived while the backlog was large: it is answered once the backlog is small again. */
  private heartbeatOwed = false
  /**
   * When the peer last answered something this side sent (a heartbeat, an ask, a connect). Bytes that merely
   * arrive do not count: in a one-way partition the peer's own traffic still arrives while nothing of this
   * side's reaches it, and only missing answers tell.
   */
  private lastHeard = 0
  private heartbeatsUnanswered = 0
  /** A protocol error seen in a socket callback, logged by the connection's fiber. */
  private warning: string | undefined
  private readonly decoder: Frame.FrameDecoder
  /** Completes when both hellos are through; fails with why the connection could not be opened. */
  readonly opened = Deferred.makeUnsafe<void, OpenFailure>()
  /** Completes when the connection has closed. */
  readonly closed = Deferred.makeUnsafe<void>()

  constructor(
    readonly host: ConnectionHost,
    /** `host:port` of the peer as dialled, or its remote address for an accepted connection. */
    readonly peerLabel: string,
    readonly direction: "outbound" | "inbound"
  ) {
    // Until the peer's hello, nobody knows who it is: it may send no more than a hello needs.
    this.decoder = new Frame.FrameDecoder(Math.min(HELLO_LIMIT, host.config.maximumFrameSize))
    this.window = Wire.windowFor(host.config.maximumFrameSize)
    if (direction === "outbound") this.sendHello()
  }

  /** What introspection shows of this connection. */
  snapshot(): ConnectionSnapshot {
    let callsOut = 0
    for (const entry of this.pending.values()) if (entry._tag === "Ask") callsOut++
    return {
      peer: this.peerLabel,
      peerService: this.peer?.service,
      direction: this.direction,
      state: this.state,
      callsOut,
      callsIn: this.serving.size,
      bufferedBytes: this.outboundBytes + (this.stream?.writableLength ?? 0),
      silentMillis: this.clock === undefined ? 0 : this.clock.currentTimeMillisUnsafe() - this.lastHeard
    }
  }

  /** Drops interest in ask `id`; when its caller was interrupted, the peer is asked to skip it too. */
  forget(id: number, interrupted: boolean): void {
    if (!this.pending.delete(id)) return
    // An ask still held for window was never sent: dropping it is enough.
    if (this.held.length > 0) {
      const index = this.held.findIndex((request) => request.id === id)
      if (index >= 0) {
        this.held.splice(index, 1)
        return
      }
    }
    // While opening, the ask itself is still queued behind the hello, so the Cancel follows it.
    if (interrupted && this.state !== "closed") this.push(Wire.cancel(id))
  }

  private get limit(): number {
    const own = this.host.config.maximumFrameSize
    return this.peer === undefined ? own : Math.min(own, this.peer.maximumFrameSize)
  }

  private sendHello(): void {
    const { authority, config, incarnation, serviceName } = this.host
    this.push(Wire.hello(incarnation, serviceName, authority, config.maximumFrameSize, this.window))
  }

  /** Bytes queued to the peer, in this connection and in the socket. */
  private get backlog(): number {
    return this.outboundBytes + (this.stream?.writableLength ?? 0)
  }

  /** Sends a request (Connect, Ask, Tell) if the peer's window has room, else holds it, keeping the order. */
  private sendRequest(frame: Wire.OutFrame, id: number): void {
    const cost = Wire.requestCost(frame.size)
    // Alone, any request may go: a window smaller than one request must not stop the connection for good.
    if (this.held.length === 0 && (this.outstanding === 0 || this.outstanding + cost <= this.peerWindow)) {
      this.outstanding += cost
      this.push(frame)
    } else {
      this.held.push({ frame, id, cost })
    }
  }

  /** Sends the held requests the peer's window now has room for, in order. */
  private releaseHeld(): void {
    const held = this.held
    let sent = 0
    while (sent < held.length) {
      const request = held[sent]!
      if (this.outstanding !== 0 && this.outstanding + request.cost > this.peerWindow) break
      this.outstanding += request.cost
      this.push(request.frame)
      sent++
    }
    if (sent > 0) this.held = held.slice(sent)
  }

  private onCredit(bytes: number): void {
    if (bytes > this.outstanding) {
      this.protocolError(`a credit of ${bytes} bytes with only ${this.outstanding} outstanding`)
      return
    }
    this.outstanding -= bytes
    if (this.held.length > 0) this.releaseHeld()
  }

  private push(frame: Wire.OutFrame): void {
    if (this.host.instruments.enabled) this.host.instruments.frame("out", frame.size)
    this.outbound.push(frame.bytes)
    this.outboundBytes += frame.bytes.length
    if (frame.tail !== undefined) {
      this.outbound.push(frame.tail)
      this.outboundBytes += frame.tail.length
    }
    if (!this.flushScheduled) {
      // Writing at once would write each frame on its own; writing once the current turn is over sends everything
      // queued in that turn in one write.
      this.flushScheduled = true
      queueMicrotask(this.flush)
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    const stream = this.stream
    if (stream === undefined || this.draining || this.outbound.length === 0) return
    if (!stream.writable) {
      this.outbound = []
      this.outboundBytes = 0
      return
    }
    const batch = coalesce(this.outbound)
    this.outbound = []
    this.outboundBytes = 0
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
    if (this.deferred !== undefined || this.heartbeatOwed) this.catchUp()
  }

  private readonly drained = (): void => {
    this.draining = false
    this.flush()
    if (!this.draining && (this.deferred !== undefined || this.heartbeatOwed)) this.catchUp()
  }

  /** Once the backlog to the peer is small again: the owed heartbeat answer, then the deferred requests, in order. */
  private catchUp(): void {
    if (this.state === "closed" || this.backlog >= BACKLOG_BYTES) return
    if (this.heartbeatOwed) {
      this.heartbeatOwed = false
      this.push(Wire.heartbeatReply)
    }
    const deferred = this.deferred
    if (deferred === undefined) return
    while (this.deferredHead < deferred.length && this.backlog < BACKLOG_BYTES && (this.state as State) !== "closed") {
      const body = deferred[this.deferredHead]!
      deferred[this.deferredHead++] = undefined!
      const cost = Wire.requestCost(body.length)
      this.deferredCost -= cost
      // It decoded as a request when it arrived; the copy decodes the same.
      this.dispatch(Wire.decode(body) as RequestMessage, cost)
    }
    if (this.deferredHead === deferred.length) {
      this.deferred = undefined
      this.deferredHead = 0
    }
  }

  private takeId(): number {
    const id = this.nextId
    this.nextId = id === 0x7fffffff ? 1 : id + 1
    return id
  }

  private lostReason(): string {
    const because = this.closedBecause
    return `the connection to ${this.peerLabel} closed (${because?.detail ?? "closed"})`
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Calls out
  // ---------------------------------------------------------------------------------------------------------------

  /** The per-gateway handshake: does the peer's endpoint serve this gateway, built from the same Schemas? */
  handshake(address: string, endpointId: string, gateway: RpcGateway.Any): Effect.Effect<void, RpcConnectionError> {
    const fail = (failure: OpenFailure) =>
      Effect.fail(new RpcConnectionError({ address, gateway: gateway.name, ...failure }))
    return Deferred.await(this.opened).pipe(
      Effect.catch(fail),
      Effect.andThen(Effect.callback<void, RpcConnectionError>((resume) => {
        if (this.state === "closed") {
          resume(fail(this.closedBecause ?? { reason: "Unreachable", detail: "the connection closed" }))
          return
        }
        const id = this.takeId()
        this.pending.set(id, {
          _tag: "Connect",
          resume: (failure) => resume(failure === undefined ? Effect.void : fail(failure))
        })
        this.sendRequest(Wire.connect(id, endpointId, gateway.name, gateway.fingerprint), id)
        return Effect.sync(() => this.forget(id, false))
      }))
    )
  }

  /** Encodes the payload and token; a value that does not encode, or a frame over the limit, sends nothing. */
  private encodeCall(
    call: OutboundCall,
    tell: boolean,
    id: number
  ): Result.Result<Wire.OutFrame, RpcSerializationError | FrameTooLargeError> {
    const { address, gateway, method } = call
    const spec = (gateway.methods as RpcGateway.Methods)[method]!
    const encoded = Wire.encodeValue(spec.payload, call.payload)
    if (Result.isFailure(encoded)) return Result.fail(cannotEncodeRequest(call, encoded.failure))
    let frame: Wire.OutFrame
    try {
      const token = call.token === NoToken ? undefined : { value: call.token }
      const timeout = call.timeoutMillis === Infinity ? undefined : Math.max(0, Math.ceil(call.timeoutMillis))
      const span = call.span
      const trace = span === undefined
        ? undefined
        : { traceId: span.traceId, spanId: span.spanId, sampled: span.sampled }
      frame = Wire.invoke(tell, id, call.endpointId, gateway.name, method, token, timeout, trace, encoded.success)
    } catch (error) {
      return Result.fail(cannotEncodeRequest(call, `the fencing token cannot be packed: ${describe(error)}`))
    }
    const limit = this.limit
    if (frame.size > limit) {
      this.host.instruments.reject("oversized")
      const qualified = qualify(gateway.name, method)
      return Result.fail(
        new FrameTooLargeError({ address, method: qualified, direction: "request", size: frame.size, limit })
      )
    }
    return Result.succeed(frame)
  }

  /**
   * Sends an ask; `resume` gets the decoded reply, or a failure at once if the connection closes. Returns how to
   * forget the call (a reply arriving after that is dropped).
   */
  ask(call: OutboundCall, resume: Resume): Pending | undefined {
    if (this.state === "closed") {
      resume(unreachable(call.address, qualify(call.gateway.name, call.method), this.lostReason()))
      return undefined
    }
    const id = this.takeId()
    const frame = this.encodeCall(call, false, id)
    if (Result.isFailure(frame)) {
      resume(Exit.fail(frame.failure))
      return undefined
    }
    const spec = (call.gateway.methods as RpcGateway.Methods)[call.method]!
    const pending = new PendingAsk(this, id, call, spec, resume)
    this.pending.set(id, pending)
    this.sendRequest(frame.success, id)
    return pending
  }

  /** Sends a tell; returns the error to fail with when it cannot be sent. */
  tell(call: OutboundCall): RecipientUnreachableError | RpcSerializationError | FrameTooLargeError | undefined {
    if (this.state === "closed") {
      const method = qualify(call.gateway.name, call.method)
      return new RecipientUnreachableError({ address: call.address, method, reason: this.lostReason() })
    }
    const frame = this.encodeCall(call, true, 0)
    if (Result.isFailure(frame)) return frame.failure
    this.sendRequest(frame.success, 0)
    return undefined
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Frames in
  // ---------------------------------------------------------------------------------------------------------------

  private onFrame = (body: Uint8Array): void => {
    if (this.state === "closed") return
    if (this.host.instruments.enabled) this.host.instruments.frame("in", body.length)
    const message = Wire.decode(body)
    if (message instanceof Wire.WireError) {
      this.protocolError(message.detail)
      return
    }
    if (this.peer === undefined && message._tag !== "Hello" && message._tag !== "Close") {
      this.protocolError(`a ${message._tag} message before the hello`)
      return
    }
    switch (message._tag) {
      case "Hello":
        return this.onHello(message)
      case "Connect":
      case "Ask":
      case "Tell":
        return this.onRequest(message, body)
      case "Connected": {
        this.heard()
        const pending = this.pending.get(message.id)
        if (pending?._tag !== "Connect") return
        this.pending.delete(message.id)
        pending.resume(
          message.reason === null ? undefined : { reason: toReason(message.reason), detail: message.detail }
        )
        return
      }
      case "Reply":
        return this.onReply(message)
      case "Heartbeat":
        if (!message.reply) {
          // Answers to a peer that does not read must not pile up either: one owed answer stands for any number.
          if (this.backlog < BACKLOG_BYTES) this.push(Wire.heartbeatReply)
          else this.heartbeatOwed = true
        } else if (this.heartbeatsUnanswered > 0) {
          // Replies nobody asked for are no sign of life: a peer that never reads could send them blind.
          this.heartbeatsUnanswered = 0
          this.heard()
        }
        return
      case "Cancel":
        this.serving.get(message.id)?.cancel(true)
        return
      case "Credit":
        return this.onCredit(message.bytes)
      case "Close":
        this.close({ reason: toReason(message.reason), detail: `the peer closed it: ${message.detail}` }, false)
        return
    }
  }

  private onHello(hello: Extract<Wire.Message, { _tag: "Hello" }>): void {
    if (this.peer !== undefined) {
      this.protocolError("a second hello")
      return
    }
    if (hello.version !== Wire.VERSION) {
      const detail = `the peer speaks protocol version ${hello.version}, this service speaks version ${Wire.VERSION}; ` +
        `run the same major version of effect-actor-rpc on both sides`
      this.close({ reason: "VersionMismatch", detail }, true)
      return
    }
    this.peer = { incarnation: hello.incarnation, service: hello.service, maximumFrameSize: hello.maximumFrameSize }
    this.decoder.limit = this.host.config.maximumFrameSize
    this.peerWindow = hello.receiveWindow
    if (this.direction === "inbound") {
      this.sendHello()
      if (hello.authority !== null) this.host.register(this, hello.authority)
    }
    this.state = "open"
    Deferred.doneUnsafe(this.opened, Exit.void)
    if (this.held.length > 0) this.releaseHeld()
  }

  /**
   * A request from the peer: handed to its endpoint at once, unless the backlog to the peer is large or earlier
   * requests are still waiting (order), in which case it waits too, within the window this side announced.
   */
  private onRequest(message: RequestMessage, body: Uint8Array): void {
    const cost = Wire.requestCost(body.length)
    if (this.deferred === undefined && this.backlog < BACKLOG_BYTES) return this.dispatch(message, cost)
    this.deferredCost += cost
    if (this.deferredCost > this.window) {
      this.protocolError(
        `the peer sent requests beyond the receive window of ${this.window} bytes (it does not read its replies ` +
          `or does not follow the flow control of protocol version ${Wire.VERSION})`
      )
      return
    }
    // A copy: the frame is a view of a socket read that is not this connection's to keep.
    ;(this.deferred ??= []).push(body.slice())
  }

  /** Hands a request to its endpoint (or answers a Connect), and credits its cost back to the peer in batches. */
  private dispatch(message: RequestMessage, cost: number): void {
    if (message._tag === "Connect") this.onConnect(message)
    else this.onInvoke(message)
    this.uncredited += cost
    // A sender waits only with more than half its window outstanding, which credits of a quarter always release.
    if (this.uncredited >= this.window / 4 && this.state !== "closed") {
      this.push(Wire.credit(this.uncredited))
      this.uncredited = 0
    }
  }

  private endpointAddress(endpointId: string): string {
    return RpcAddress.format({ protocol: this.host.protocol, authority: this.host.authority, endpointId })
  }

  private onConnect(connect: Extract<Wire.Message, { _tag: "Connect" }>): void {
    const answer = (reason: ConnectionFailureReason | null, detail: string) =>
      this.push(Wire.connected(connect.id, reason, detail))
    const runtime = this.host.lookup(connect.endpointId)
    if (runtime === undefined) {
      return answer(
        "UnknownEndpoint",
        `no endpoint "${connect.endpointId}" runs on RpcService ${this.host.serviceName} at ${this.host.authority}`
      )
    }
    const served = runtime.served.get(connect.gateway)
    if (served === undefined) {
      return answer("GatewayNotServed", `the endpoint serves ${[...runtime.served.keys()].join(", ")}, not ${connect.gateway}`)
    }
    if (served.fingerprint !== connect.fingerprint) {
      return answer(
        "GatewayMismatch",
        `the endpoint's ${connect.gateway} has fingerprint ${served.fingerprint} but the caller's has ` +
          `${connect.fingerprint}: the two sides were built from different Schemas`
      )
    }
    answer(null, "")
  }

  /** The address and qualified method of an invocation: only errors need them, so only error paths build them. */
  private target(invoke: InvokeMessage): { readonly address: string; readonly method: string } {
    return { address: this.endpointAddress(invoke.endpointId), method: qualify(invoke.gateway, invoke.method) }
  }

  /** Answers an ask that cannot be delivered with `error`; a tell has nobody to answer. */
  private reject(invoke: InvokeMessage, error: RpcCallError): void {
    if (invoke._tag === "Ask") this.sendReply(invoke, undefined, Exit.fail(error))
  }

  private onInvoke(invoke: InvokeMessage): void {
    const isAsk = invoke._tag === "Ask"
    const runtime = this.host.lookup(invoke.endpointId)
    if (runtime === undefined) {
      return this.reject(
        invoke,
        new RecipientUnreachableError({
          ...this.target(invoke),
          reason: "no endpoint with this id runs on the service (it has terminated, or never existed)"
        })
      )
    }
    const methods = runtime.served.get(invoke.gateway)?.methods
    // Own properties only: a method named after an Object.prototype member (toString, __proto__) is no method.
    const spec = methods !== undefined && Object.hasOwn(methods, invoke.method)
      ? methods[invoke.method] as RpcGateway.Method
      : undefined
    if (spec === undefined || (spec.kind === "tell") !== !isAsk) {
      const target = this.target(invoke)
      return this.reject(
        invoke,
        new RemoteDefectError({
          ...target,
          defect: `the endpoint does not serve ${target.method} as an ${invoke._tag.toLowerCase()}`
        })
      )
    }
    if (isAsk && this.serving.size >= this.host.config.maxAsksPerConnection) {
      this.host.instruments.reject("mailbox_full")
      const capacity = this.host.config.maxAsksPerConnection
      return this.reject(
        invoke,
        new MailboxFullError({ ...this.target(invoke), capacity, limit: "maxAsksPerConnection" })
      )
    }
    const payload = Wire.decodeValue(spec.payload, invoke.payload)
    if (Result.isFailure(payload)) {
      return this.reject(
        invoke,
        new RpcSerializationError({
          ...this.target(invoke),
          direction: "request",
          operation: "decode",
          detail: payload.failure
        })
      )
    }
    const token = invoke.token === undefined ? NoToken : runtime.decodeToken(invoke.token.value)
    const timeout = invoke.timeout ?? Infinity
    // The peer's clock is not this one: the deadline is the time left when it was sent, counted from arrival.
    const deadline = timeout === Infinity ? Infinity : this.clock!.currentTimeMillisUnsafe() + timeout
    const span = invoke.trace === undefined || !this.host.tracing ? undefined : Tracer.externalSpan(invoke.trace)
    const invocation = new Invoke(
      invoke.gateway,
      invoke.method,
      payload.success,
      token,
      isAsk ? this.replyTo(invoke, spec) : undefined,
      timeout,
      deadline,
      span
    )
    if (isAsk) this.serving.set(invoke.id, invocation)
    // A tell refused by a full mailbox has nobody to tell; the rejection metric has counted it.
    runtime.invoke(invocation)
  }

  private replyTo(invoke: InvokeMessage, spec: RpcGateway.Method): Resume {
    return (exit) => this.sendReply(invoke, spec, exit)
  }

  /** Encodes and sends a reply; what cannot be encoded or is too large becomes a typed error reply. */
  private sendReply(invoke: InvokeMessage, spec: RpcGateway.Method | undefined, exit: Exit.Exit<unknown, unknown>): void {
    if (this.state === "closed") return
    const id = invoke.id
    const served = this.serving.get(id)
    if (served !== undefined) {
      this.serving.delete(id)
      // The caller cancelled it: nobody reads the answer.
      if (served.cancelled) return
    }
    let frame: Wire.OutFrame
    if (Exit.isSuccess(exit)) {
      // A `void` handler may still return something (TypeScript allows it); there is nothing to send.
      const value = Wire.encodeValue(spec!.success, spec!.success === Schema.Void ? undefined : exit.value)
      frame = Result.isSuccess(value)
        ? Wire.reply(id, Wire.Outcome.Success, value.success)
        : this.errorReply(invoke, this.cannotEncodeResponse(invoke, value.failure))
    } else {
      const error = Exit.findErrorOption(exit)
      const failure = error._tag === "Some" ? error.value : describe(exit.cause)
      const value = isRpcCallError(failure) || spec === undefined ? undefined : Wire.encodeValue(spec.failure, failure)
      frame = isRpcCallError(failure)
        ? this.errorReply(invoke, failure)
        : value !== undefined && Result.isSuccess(value)
        ? Wire.reply(id, Wire.Outcome.Failure, value.success)
        : this.errorReply(
          invoke,
          new RemoteDefectError({
            ...this.target(invoke),
            defect: `the handler failed with ${describe(failure)}, which its failure Schema does not describe`
          })
        )
    }
    const limit = this.limit
    if (frame.size > limit) {
      this.host.instruments.reject("oversized")
      frame = this.errorReply(
        invoke,
        new FrameTooLargeError({ ...this.target(invoke), direction: "response", size: frame.size, limit })
      )
    }
    this.push(frame)
  }

  private cannotEncodeResponse(invoke: InvokeMessage, detail: string): RpcSerializationError {
    return new RpcSerializationError({
      ...this.target(invoke),
      direction: "response",
      operation: "encode",
      detail
    })
  }

  /** A reply carrying one of the library's errors (and if even that cannot be encoded, the encoding error). */
  private errorReply(invoke: InvokeMessage, error: RpcCallError): Wire.OutFrame {
    const encoded = encodeRpcError(error)
    return Wire.reply(
      invoke.id,
      Wire.Outcome.Error,
      Result.isSuccess(encoded)
        ? encoded.success
        : Result.getOrThrow(encodeRpcError(this.cannotEncodeResponse(invoke, encoded.failure)))
    )
  }

  private heard(): void {
    this.lastHeard = this.clock!.currentTimeMillisUnsafe()
  }

  private onReply(reply: Extract<Wire.Message, { _tag: "Reply" }>): void {
    this.heard()
    const pending = this.pending.get(reply.id)
    if (pending?._tag !== "Ask") return
    this.pending.delete(reply.id)
    switch (reply.outcome) {
      case Wire.Outcome.Success: {
        const value = Wire.decodeValue(pending.spec.success, reply.value)
        return pending.resume(Result.isSuccess(value) ? Exit.succeed(value.success) : cannotDecodeReply(pending, value.failure))
      }
      case Wire.Outcome.Failure: {
        const value = Wire.decodeValue(pending.spec.failure, reply.value)
        return pending.resume(Result.isSuccess(value) ? Exit.fail(value.success) : cannotDecodeReply(pending, value.failure))
      }
      default: {
        const value = decodeRpcError(reply.value)
        return pending.resume(Result.isSuccess(value) ? Exit.fail(value.success) : cannotDecodeReply(pending, value.failure))
      }
    }
  }

  private protocolError(detail: string): void {
    // Logged by the connection's fiber: the operator of this side learns why a peer was cut off.
    this.warning ??= detail
    const failure: OpenFailure = { reason: "Unreachable", detail: `protocol error: ${detail}` }
    this.close(failure, true)
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Closing
  // ---------------------------------------------------------------------------------------------------------------

  /**
   * Closes the connection: every call in flight fails at once, a pending open fails with `because`; with
   * `notify` the peer is told why in a last frame.
   */
  close(because: OpenFailure, notify: boolean): void {
    if (this.state === "closed") return
    const wasOpen = this.state === "open"
    this.state = "closed"
    this.closedBecause = because
    if (notify && (wasOpen || this.direction === "inbound" || this.peer === undefined)) {
      this.push(Wire.close(because.reason, because.detail))
    }
    Deferred.doneUnsafe(this.opened, Exit.fail(because))
    const reason = this.lostReason()
    const pending = [...this.pending.values()]
    this.pending.clear()
    this.held = []
    this.deferred = undefined
    this.deferredHead = 0
    this.deferredCost = 0
    // Their handlers may still run (they are queued on endpoints), but there is nobody to answer any more.
    for (const invocation of this.serving.values()) invocation.cancel(true)
    this.serving.clear()
    for (const entry of pending) {
      if (entry._tag === "Ask") {
        entry.resume(unreachable(entry.call.address, qualify(entry.call.gateway.name, entry.call.method), reason))
      } else entry.resume(because)
    }
    this.host.unregister(this)
    this.flush()
    Deferred.doneUnsafe(this.closed, Exit.void)
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Running over a socket
  // ---------------------------------------------------------------------------------------------------------------

  /**
   * Runs the connection over `stream` (an open TCP or TLS socket) until it closes. `classify` turns the peer
   * hanging up or failing before its hello into the reason a connect fails with.
   */
  run(stream: Duplex, classify: (error: unknown) => OpenFailure): Effect.Effect<void> {
    const self = this
    return Clock.clockWith((clock) => {
      // `error` is absent when the peer simply hung up.
      const lost = (error?: unknown) => {
        if (self.state === "closed") return
        const detail = error === undefined ? "the peer hung up" : `the peer hung up (${describe(error)})`
        self.close(self.peer === undefined ? classify(error ?? new Error(detail)) : { reason: "Unreachable", detail }, false)
      }
      const onData = (chunk: Uint8Array | string): void => {
        if (self.state === "closed") return
        const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk
        let error: Frame.FrameError | undefined
        try {
          error = self.decoder.push(bytes, self.onFrame)
        } catch (defect) {
          // A throw here would be uncaught and end the process: whatever a frame triggers, it costs only the
          // connection it came on (the fuzzer found two such throws; this keeps the next one contained).
          error = new Frame.FrameError(`handling a frame failed unexpectedly (${describe(defect)})`)
        }
        if (error !== undefined) {
          if (error.oversized) self.host.instruments.reject("oversized")
          self.protocolError(error.detail)
        }
      }
      const onEnd = () => lost()
      const attach = Effect.sync(() => {
        self.clock = clock
        self.stream = stream
        self.lastHeard = clock.currentTimeMillisUnsafe()
        stream.on("data", onData)
        stream.on("end", onEnd)
        stream.on("error", lost)
        stream.on("close", onEnd)
        // The listener pauses what it accepts until a handler reads; frames queued before now (the hello) go out.
        stream.resume()
        self.flush()
      })
      const detach = Effect.sync(() => {
        stream.off("data", onData)
        stream.off("end", onEnd)
        stream.off("close", onEnd)
        stream.off("drain", self.drained)
        // Errors after this point have nobody to tell; without a listener Node would throw them.
        stream.off("error", lost)
        stream.on("error", ignore)
        stream.destroy()
      })
      return Effect.scoped(Effect.gen(function*() {
        yield* Effect.acquireRelease(attach, () => detach)
        yield* Effect.forkScoped(self.heartbeatLoop)
        yield* Deferred.await(self.closed)
        if (self.warning !== undefined) {
          yield* Effect.logWarning(`Closing the connection with ${self.peerLabel}: ${self.warning}`).pipe(
            Effect.annotateLogs({ service: self.host.serviceName })
          )
        }
        // Let what is queued (a reply, the close frame) reach the peer, but do not wait on a stuck peer.
        stream.end()
        yield* Effect.callback<void>((resume) => {
          if (stream.writableFinished || stream.destroyed) return resume(Effect.void)
          const done = () => resume(Effect.void)
          stream.once("finish", done)
          stream.once("close", done)
          return Effect.sync(() => {
            stream.off("finish", done)
            stream.off("close", done)
          })
        }).pipe(Effect.timeoutOption(Duration.seconds(1)))
      }))
    })
  }

  private get heartbeatLoop(): Effect.Effect<void> {
    const self = this
    const { heartbeatInterval, heartbeatPause } = this.host.config
    const pause = Duration.toMillis(heartbeatPause)
    const connectTimeout = Duration.toMillis(this.host.config.connectTimeout)
    return Clock.clockWith((clock) =>
      Effect.gen(function*() {
        const started = clock.currentTimeMillisUnsafe()
        while (self.state !== "closed") {
          yield* Effect.sleep(heartbeatInterval)
          const now = clock.currentTimeMillisUnsafe()
          if (self.state === "opening") {
            if (now - started >= connectTimeout) {
              if (self.direction === "inbound") self.host.instruments.refuse("handshake_timeout")
              self.close({ reason: "Unreachable", detail: `no hello from the peer within ${connectTimeout} ms` }, true)
            }
            continue
          }
          if ((self.state as State) !== "open") return
          const silent = now - self.lastHeard
          if (silent >= pause) {
            yield* Effect.logWarning(
              `No message or heartbeat from ${self.peerLabel} for ${silent} ms; declaring the peer dead`
            ).pipe(Effect.annotateLogs({ service: self.host.serviceName }))
            self.host.instruments.heartbeatMiss()
            self.close({ reason: "Unreachable", detail: `no heartbeat from the peer for ${silent} ms` }, true)
            return
          }
          self.heartbeatsUnanswered++
          self.push(Wire.heartbeat)
        }
      })
    )
  }
}

/**
 * The largest frame accepted before the peer's hello. A hello is a few hundred bytes; an unknown peer must not
 * make this side buffer megabytes before it has even said who it is.
 */
const HELLO_LIMIT = 64 * 1024

/**
 * Bytes queued to the peer (in the connection and the socket) from which the peer's requests wait instead of
 * being handed to endpoints: replies to a peer that does not read stop growing near here.
 */
const BACKLOG_BYTES = 4 * 1024 * 1024

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

const ignore = () => {}

const isReason = Schema.is(ConnectionFailureReason)

const toReason = (reason: string): ConnectionFailureReason => isReason(reason) ? reason : "Unreachable"
