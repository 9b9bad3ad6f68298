/**
 * One connection between two services: it multiplexes every endpoint and call in both directions over one
 * socket. This module keeps the connection's state machine (opening, open, closed), its hello, the table of asks
 * waiting for replies, the dispatch of frames that arrive, and its close. What it sends goes through the outbox
 * (./outbox.ts: batching, drains, the peer's receive window), what calls and replies look like on the wire is the
 * codec's (./codec.ts), when the peer counts as dead the heartbeat's (./heartbeat.ts), and the flow-control
 * invariants are written down in ./flow.ts.
 *
 * Each chunk the socket reads is decoded and dispatched synchronously in the socket's own callback, so calls from
 * one sender reach the endpoint's mailbox in the order they were sent. Closing a connection, for whatever reason,
 * fails each call in flight on it at once.
 *
 * The socket is used through Node's own stream interface rather than Effect's `Socket`: its pull and its writer
 * each cost a fiber resumption per read and per write, which was a quarter of the JavaScript time of a small
 * remote ask (docs/PERFORMANCE.md).
 *
 * A little over 500 lines, on purpose: what is left is the state machine and the pending table, which every
 * dispatch and every close reads and changes; split further, each half would need the other's internals.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { Duplex } from "node:stream"
import type { RpcConfig } from "../RpcConfig.js"
import {
  ConnectionFailureReason,
  type FrameTooLargeError,
  RecipientUnreachableError,
  RpcConnectionError,
  type RpcSerializationError
} from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import * as Codec from "./codec.js"
import * as Exchange from "./exchange.js"
import { describe } from "./format.js"
import * as Frame from "./frame.js"
import * as Heartbeat from "./heartbeat.js"
import { NoToken, type Pending, qualified, type Recipient, type Refusal, type Resume } from "./invocation.js"
import type { Instruments } from "./metrics.js"
import { Outbox } from "./outbox.js"
import { Serving, type ServingConnection } from "./serving.js"
import type { ConnectionSnapshot } from "./serviceTag.js"
import * as Wire from "./wire.js"

export type { OutboundCall } from "./codec.js"

/** What a connection needs from the transport that owns it. */
export interface ConnectionOwner {
  readonly serviceName: string
  readonly config: RpcConfig
  /** Fresh for every run of a service, so a peer can tell a restarted service from the one it knew. */
  readonly incarnation: string
  /** This service's advertised `host:port`. */
  readonly authority: string
  readonly protocol: "rpc" | "rpcs"
  readonly lookup: (endpointId: string) => Recipient | undefined
  /** An inbound connection's peer said who it is: calls to that peer may use this connection. */
  readonly register: (connection: Connection, peerAuthority: string) => void
  readonly unregister: (connection: Connection) => void
  readonly instruments: Instruments
  /** Give traced calls a server span (`RpcConfig.tracing`). */
  readonly tracing: boolean
  /** The service's deadline time: a remote ask's deadline is kept in it, as a local one is. */
  readonly now: () => number
  /** The service's verdicts on pairs of gateway versions, under its `RpcConfig.gatewayCompatibility`. */
  readonly verdicts: Exchange.Verdicts
}

/** Why a connection could not be opened, or why it closed. */
export type OpenFailure = Refusal

/** An ask sent on this connection, waiting for its reply; also its caller's handle to cancel it. */
class PendingAsk implements Pending {
  readonly _tag = "Ask"
  constructor(
    readonly connection: Connection,
    readonly id: number,
    readonly call: Codec.OutboundCall,
    readonly spec: RpcGateway.Method,
    readonly resume: Resume
  ) {}

  cancel(interrupted: boolean): void {
    this.connection.forget(this.id, interrupted)
  }
}

/** How a connect was answered: accepted (with the methods not served), refused, or asked for the caller's snapshot. */
type ConnectAnswer =
  | { readonly _tag: "Accepted"; readonly notServed: ReadonlyArray<string> }
  | { readonly _tag: "Refused"; readonly refusal: OpenFailure }
  | { readonly _tag: "Compare"; readonly snapshot: string }

interface PendingConnect {
  readonly _tag: "Connect"
  readonly resume: (answer: ConnectAnswer) => void
}

/** What a connect learned: the caller's methods the endpoint does not serve, and the differences this side accepted. */
export interface Handshake {
  readonly notServed: ReadonlyArray<string>
  /** This service's judgement of the differences, when the versions differ and it judged them ("" when none). */
  readonly differences: string | undefined
}

type State = "opening" | "open" | "closed"

const unreachable = (address: string, method: string, reason: string) =>
  Exit.fail(new RecipientUnreachableError({ address, method, reason }))

/** A connection, from the moment it is dialled or accepted until it closes. */
export class Connection implements Heartbeat.Watched, ServingConnection {
  state: State = "opening"
  /** What the peer told about itself in its hello. */
  peer: { readonly incarnation: string; readonly service: string; readonly maximumFrameSize: number } | undefined
  /** Why the connection closed, once it has. */
  closedBecause: OpenFailure | undefined
  private nextId = 1
  private readonly pending = new Map<number, PendingAsk | PendingConnect>()
  private clock: Clock.Clock | undefined
  readonly outbox: Outbox
  /** The calls this connection serves for its peer (./serving.ts). */
  private readonly serving: Serving
  /**
   * When the peer last answered something this side sent (a heartbeat, an ask, a connect). Bytes that merely
   * arrive do not count: in a one-way partition the peer's own traffic still arrives while nothing of this
   * side's reaches it, and only missing answers tell.
   */
  lastHeard = 0
  private heartbeatsUnanswered = 0
  /** A protocol error seen in a socket callback, logged by the connection's fiber. */
  private warning: string | undefined
  private readonly decoder: Frame.FrameDecoder
  /** Completes when both hellos are through; fails with why the connection could not be opened. */
  readonly opened = Deferred.makeUnsafe<void, OpenFailure>()
  /** Completes when the connection has closed. */
  readonly closed = Deferred.makeUnsafe<void>()

  constructor(
    readonly owner: ConnectionOwner,
    /** `host:port` of the peer as dialled, or its remote address for an accepted connection. */
    readonly peerLabel: string,
    readonly direction: "outbound" | "inbound"
  ) {
    // Until the peer's hello, nobody knows who it is: it may send no more than a hello needs.
    this.decoder = new Frame.FrameDecoder(Math.min(HELLO_LIMIT, owner.config.maximumFrameSize))
    this.serving = new Serving(this)
    this.outbox = new Outbox(owner.instruments, this.serving.caughtUp)
    if (direction === "outbound") this.sendHello()
  }

  /** What introspection shows of this connection. */
  snapshot(): ConnectionSnapshot {
    let callsOut = 0
    for (const entry of this.pending.values()) if (entry._tag === "Ask") callsOut++
    return {
      peer: this.peerLabel,
      peerService: this.peer?.service,
      peerIncarnation: this.peer?.incarnation,
      direction: this.direction,
      state: this.state,
      callsOut,
      callsIn: this.serving.size,
      bufferedBytes: this.outbox.backlog,
      silentMillis: this.clock === undefined ? 0 : this.clock.currentTimeMillisUnsafe() - this.lastHeard
    }
  }

  /** Drops interest in ask `id`; when its caller was interrupted, the peer is asked to skip it too. */
  forget(id: number, interrupted: boolean): void {
    if (!this.pending.delete(id)) return
    // An ask still waiting for the peer's window was never sent: dropping it is enough.
    if (this.outbox.window.forget(id)) return
    // While opening, the ask itself is still queued behind the hello, so the Cancel follows it.
    if (interrupted && this.state !== "closed") this.outbox.push(Wire.cancel(id))
  }

  readonly limit = (): number => {
    const own = this.owner.config.maximumFrameSize
    return this.peer === undefined ? own : Math.min(own, this.peer.maximumFrameSize)
  }

  private sendHello(): void {
    const { authority, config, incarnation, serviceName } = this.owner
    this.outbox.push(Wire.hello(incarnation, serviceName, authority, config.maximumFrameSize, this.serving.window.window))
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

  /**
   * The per-gateway handshake: does the peer's endpoint serve this gateway, built from the same Schemas, or from
   * Schemas both sides' policies accept? When the fingerprints differ, the endpoint answers with its snapshot; this
   * side judges the pair and, if it accepts, sends its own for the endpoint to judge (./exchange.ts).
   */
  handshake(
    address: string,
    endpointId: string,
    gateway: RpcGateway.Any,
    token: unknown
  ): Effect.Effect<Handshake, RpcConnectionError> {
    const fail = (failure: OpenFailure) => new RpcConnectionError({ address, gateway: gateway.name, ...failure })
    return Deferred.await(this.opened).pipe(
      Effect.mapError(fail),
      Effect.andThen(Effect.callback<Handshake, RpcConnectionError>((resume) => {
        if (this.state === "closed") {
          resume(Effect.fail(fail(this.closedBecause ?? { reason: "Unreachable", detail: "the connection closed" })))
          return
        }
        const id = this.takeId()
        const fenced = token === NoToken ? undefined : { value: token }
        let differences: string | undefined
        const onAnswer = (answer: ConnectAnswer): void => {
          if (answer._tag === "Accepted") return resume(Effect.succeed({ notServed: answer.notServed, differences }))
          if (answer._tag === "Refused") return resume(Effect.fail(fail(answer.refusal)))
          if (differences !== undefined) {
            // The endpoint has this side's snapshot already: asking again would go round for ever.
            this.protocolError(`the endpoint of ${gateway.name} asked for the caller's snapshot twice`)
            return resume(Effect.fail(fail(this.closedBecause!)))
          }
          const mismatch = (detail: string) => resume(Effect.fail(fail({ reason: "GatewayMismatch", detail })))
          const theirs = Exchange.readPeerSnapshot(answer.snapshot, gateway.name, undefined, "the endpoint's")
          if (Result.isFailure(theirs)) return mismatch(theirs.failure)
          const judgement = this.owner.verdicts.judge(
            this.peer!.incarnation,
            Exchange.snapshotOf(gateway),
            theirs.success,
            "this service"
          )
          if (!judgement.accept) return mismatch(judgement.message)
          differences = judgement.message
          const mine = Exchange.textOf(gateway)
          const frame = Wire.connect(id, endpointId, gateway.name, gateway.fingerprint, fenced, mine)
          if (frame.size > this.limit()) {
            return mismatch(
              `the versions differ, and this side's snapshot of ${gateway.name} (${frame.size} bytes) is over the ` +
                `frame limit of ${this.limit()} bytes, so the endpoint cannot judge it; raise ` +
                `RpcConfig.maximumFrameSize on both sides, or run the same version`
            )
          }
          this.pending.set(id, { _tag: "Connect", resume: onAnswer })
          this.outbox.request(frame, id)
        }
        this.pending.set(id, { _tag: "Connect", resume: onAnswer })
        this.outbox.request(Wire.connect(id, endpointId, gateway.name, gateway.fingerprint, fenced), id)
        return Effect.sync(() => this.forget(id, false))
      }))
    )
  }

  private encodeCall(call: Codec.OutboundCall, tell: boolean, id: number) {
    const frame = Codec.encodeCall(call, tell, id, this.limit())
    if (Result.isFailure(frame) && frame.failure._tag === "FrameTooLargeError") this.owner.instruments.reject("oversized")
    return frame
  }

  /**
   * Sends an ask; `resume` gets the decoded reply, or a failure at once if the connection closes. Returns how to
   * forget the call (a reply arriving after that is dropped).
   */
  ask(call: Codec.OutboundCall, resume: Resume): Pending | undefined {
    if (this.state === "closed") {
      resume(unreachable(call.address, qualified(call.gateway.name, call.method), this.lostReason()))
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
    this.outbox.request(frame.success, id)
    return pending
  }

  /** Sends a tell; returns the error to fail with when it cannot be sent. */
  tell(call: Codec.OutboundCall): RecipientUnreachableError | RpcSerializationError | FrameTooLargeError | undefined {
    if (this.state === "closed") {
      const method = qualified(call.gateway.name, call.method)
      return new RecipientUnreachableError({ address: call.address, method, reason: this.lostReason() })
    }
    const frame = this.encodeCall(call, true, 0)
    if (Result.isFailure(frame)) return frame.failure
    this.outbox.request(frame.success, 0)
    return undefined
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Frames in
  // ---------------------------------------------------------------------------------------------------------------

  private onFrame = (body: Uint8Array): void => {
    if (this.state === "closed") return
    if (this.owner.instruments.enabled) this.owner.instruments.frame("in", body.length)
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
        return this.serving.request(message, body)
      case "Connected":
      case "Compare": {
        this.heard()
        const pending = this.pending.get(message.id)
        if (pending?._tag !== "Connect") return
        this.pending.delete(message.id)
        pending.resume(
          message._tag === "Compare"
            ? { _tag: "Compare", snapshot: message.snapshot }
            : message.reason === null
            ? { _tag: "Accepted", notServed: message.notServed }
            : { _tag: "Refused", refusal: { reason: toReason(message.reason), detail: message.detail } }
        )
        return
      }
      case "Reply":
        return this.onReply(message)
      case "Heartbeat":
        if (!message.reply) this.serving.heartbeat()
        else if (this.heartbeatsUnanswered > 0) {
          // Replies nobody asked for are no sign of life: a peer that never reads could send them blind.
          this.heartbeatsUnanswered = 0
          this.heard()
        }
        return
      case "Cancel":
        this.serving.cancel(message.id)
        return
      case "Credit": {
        const wrong = this.outbox.credit(message.bytes)
        if (wrong !== undefined) this.protocolError(wrong)
        return
      }
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
    this.decoder.limit = this.owner.config.maximumFrameSize
    if (this.direction === "inbound") {
      this.sendHello()
      if (hello.authority !== null) this.owner.register(this, hello.authority)
    }
    this.state = "open"
    Deferred.doneUnsafe(this.opened, Exit.void)
    this.outbox.setPeerWindow(hello.receiveWindow)
  }

  private heard(): void {
    this.lastHeard = this.clock!.currentTimeMillisUnsafe()
  }

  private onReply(reply: Extract<Wire.Message, { _tag: "Reply" }>): void {
    this.heard()
    const pending = this.pending.get(reply.id)
    if (pending?._tag !== "Ask") return
    this.pending.delete(reply.id)
    pending.resume(Codec.decodeReply(pending.spec, pending.call, reply.outcome, reply.value))
  }

  readonly isClosed = (): boolean => this.state === "closed"

  readonly protocolError = (detail: string): void => {
    // Logged by the connection's fiber: the operator of this side learns why a peer was cut off.
    this.warning ??= detail
    this.close({ reason: "Unreachable", detail: `protocol error: ${detail}` }, true)
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The heartbeat's view (./heartbeat.ts)
  // ---------------------------------------------------------------------------------------------------------------

  readonly ping = (): void => {
    this.heartbeatsUnanswered++
    this.outbox.push(Wire.heartbeat)
  }

  readonly noHello = (): void => {
    if (this.direction === "inbound") this.owner.instruments.refuse("handshake_timeout")
    const limit = Duration.toMillis(this.owner.config.connectTimeout)
    this.close({ reason: "Unreachable", detail: `no hello from the peer within ${limit} ms` }, true)
  }

  readonly silent = (silentMillis: number): Effect.Effect<void> =>
    Effect.logWarning(`No message or heartbeat from ${this.peerLabel} for ${silentMillis} ms; declaring the peer dead`)
      .pipe(
        Effect.annotateLogs({ service: this.owner.serviceName }),
        Effect.andThen(Effect.sync(() => {
          this.owner.instruments.heartbeatMiss()
          this.close({ reason: "Unreachable", detail: `no heartbeat from the peer for ${silentMillis} ms` }, true)
        }))
      )

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
      this.outbox.push(Wire.close(because.reason, because.detail))
    }
    Deferred.doneUnsafe(this.opened, Exit.fail(because))
    const reason = this.lostReason()
    const pending = [...this.pending.values()]
    this.pending.clear()
    this.outbox.window.clear()
    this.serving.close()
    for (const entry of pending) {
      if (entry._tag === "Ask") {
        entry.resume(unreachable(entry.call.address, qualified(entry.call.gateway.name, entry.call.method), reason))
      } else entry.resume({ _tag: "Refused", refusal: because })
    }
    this.owner.unregister(this)
    this.outbox.flush()
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
          if (error.oversized) self.owner.instruments.reject("oversized")
          self.protocolError(error.detail)
        }
      }
      const onEnd = () => lost()
      const attach = Effect.sync(() => {
        self.clock = clock
        self.lastHeard = clock.currentTimeMillisUnsafe()
        stream.on("data", onData)
        stream.on("end", onEnd)
        stream.on("error", lost)
        stream.on("close", onEnd)
        // The listener pauses what it accepts until a handler reads; frames queued before now (the hello) go out.
        stream.resume()
        self.outbox.attach(stream)
      })
      const detach = Effect.sync(() => {
        stream.off("data", onData)
        stream.off("end", onEnd)
        stream.off("close", onEnd)
        self.outbox.detach(stream)
        // Errors after this point have nobody to tell; without a listener Node would throw them.
        stream.off("error", lost)
        stream.on("error", ignore)
        stream.destroy()
      })
      return Effect.scoped(Effect.gen(function*() {
        yield* Effect.acquireRelease(attach, () => detach)
        yield* Effect.forkScoped(Heartbeat.detect(self, self.owner.config))
        yield* Deferred.await(self.closed)
        if (self.warning !== undefined) {
          yield* Effect.logWarning(`Closing the connection with ${self.peerLabel}: ${self.warning}`).pipe(
            Effect.annotateLogs({ service: self.owner.serviceName })
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
}

/**
 * The largest frame accepted before the peer's hello. A hello is a few hundred bytes; an unknown peer must not
 * make this side buffer megabytes before it has even said who it is.
 */
const HELLO_LIMIT = 64 * 1024

const ignore = () => {}

const isReason = Schema.is(ConnectionFailureReason)

const toReason = (reason: string): ConnectionFailureReason => isReason(reason) ? reason : "Unreachable"
