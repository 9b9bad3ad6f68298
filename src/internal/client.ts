/**
 * Builds gateway clients over a transport-neutral port: the same client code serves local and remote calls,
 * applying timeouts, call-site capture and the stopped-service check in one place.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { NodeInspectSymbol } from "effect/Inspectable"
import type * as Fiber from "effect/Fiber"
import * as Tracer from "effect/Tracer"
import type { RpcConfig } from "../RpcConfig.js"
import { RpcServiceStoppedError, RpcTimeoutError } from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import { type CallSite, capture as captureCallSite, format as formatCallSite } from "./callSite.js"
import type { Deadlines, Entry } from "./deadlines.js"
import type { Pending, Resume } from "./invocation.js"
import type { FastHistogram, Instruments } from "./metrics.js"

/**
 * How a client reaches its endpoint: one ask and one tell primitive, without timeouts. `ask` hands the outcome to
 * `resume` exactly once, possibly before it returns, and returns how to cancel a reply still to come.
 * `timeoutMillis` (Infinity for none) travels with the ask so the endpoint can drop it once nobody waits; `span`
 * is the caller's span when the call is traced.
 */
export interface Port {
  readonly address: string
  readonly ask: (
    gateway: RpcGateway.Any,
    method: string,
    payload: unknown,
    token: unknown,
    timeoutMillis: number,
    /** When the ask was made, by the service's deadline time (`Deadlines.now`). */
    now: number,
    span: Tracer.AnySpan | undefined,
    resume: Resume
  ) => Pending | undefined
  /** Sends a tell at once; returns the error to fail with when it cannot be sent. */
  readonly tell: (
    gateway: RpcGateway.Any,
    method: string,
    payload: unknown,
    token: unknown,
    span: Tracer.AnySpan | undefined
  ) => unknown
}

/** The service a client belongs to, as far as the client needs it. */
export interface Origin {
  readonly name: string
  readonly config: RpcConfig
  readonly isStopped: () => boolean
  /** Where the asks' timeouts are kept. */
  readonly deadlines: Deadlines
  readonly instruments: Instruments
  /** Asks made through the service's clients that have not settled yet. */
  inFlight: number
}

const timedOut = (address: string, method: string, timeoutMillis: number, callSite: CallSite | undefined) => {
  const site = callSite === undefined ? undefined : formatCallSite(callSite)
  return Effect.fail(
    new RpcTimeoutError({ address, method, timeoutMillis, ...(site === undefined ? {} : { callSite: site }) })
  )
}

/** Is this the endpoint's answer to an ask it dropped because its deadline had passed (it carries no call site)? */
const isEndpointTimeout = (exit: Exit.Failure<unknown, unknown>): boolean => {
  const error = exit.cause.reasons[0]
  return error?._tag === "Fail" && error.error instanceof RpcTimeoutError && error.error.callSite === undefined
}

const spanAttributes = (qualified: string, address: string) => ({
  "rpc.system": "effect-actor-rpc",
  "rpc.method": qualified,
  "rpc.address": address
})

/** The caller's span, when the call is to be traced. */
const callerSpan = (fiber: Fiber.Fiber<unknown, unknown>): Tracer.AnySpan | undefined =>
  Context.getOrUndefined(fiber.context, Tracer.ParentSpan)

/** What the asks of one method share. */
interface AskMethod {
  readonly gateway: RpcGateway.Any
  readonly name: string
  readonly qualified: string
  readonly port: Port
  readonly origin: Origin
  readonly latency: FastHistogram | undefined
  readonly token: () => unknown
  readonly stopped: () => Effect.Effect<never, RpcServiceStoppedError>
}

/**
 * One ask in flight: its state, its place in the deadline list and its ways to end, in one object rather than a
 * closure each (memory per ask in flight, docs/PERFORMANCE.md). Whichever comes first settles it: the reply, the
 * deadline, the service's stop, or the caller's interruption; the rest is ignored.
 */
class AskCall implements Entry {
  deadline = 0
  list: Entry["list"] = undefined
  prev: Entry | undefined = undefined
  next: Entry | undefined = undefined
  private settled = false
  private pending: Pending | undefined = undefined
  private startedAt = 0

  constructor(
    private readonly method: AskMethod,
    private readonly timeoutMillis: number,
    private readonly callSite: CallSite | undefined,
    private readonly resume: (effect: Effect.Effect<unknown, unknown>) => void
  ) {}

  /** Sends the ask; returns what interrupting the caller runs, unless the ask has already ended. */
  start(payload: unknown, span: Tracer.AnySpan | undefined): Effect.Effect<void> | undefined {
    const { gateway, name, origin, port, latency } = this.method
    if (origin.isStopped()) {
      this.resume(this.method.stopped())
      return undefined
    }
    const deadlines = origin.deadlines
    // One reading of the clock: the deadline's base and, with Node's clock, the start of the latency too.
    const now = deadlines.now()
    this.startedAt = latency === undefined ? 0 : deadlines.live ? now : deadlines.metricNow()
    origin.inFlight++
    const timeoutMillis = this.timeoutMillis
    this.pending = port.ask(
      gateway,
      name,
      payload,
      this.method.token(),
      timeoutMillis,
      now,
      span,
      (exit, at) => this.replied(exit, at)
    )
    if (this.settled) return undefined
    if (Number.isFinite(timeoutMillis)) deadlines.insert(this, timeoutMillis, now)
    return Effect.sync(() => this.interrupted())
  }

  private settle(at?: number): void {
    this.settled = true
    const { origin, latency } = this.method
    origin.inFlight--
    if (latency !== undefined) latency.update((at ?? origin.deadlines.metricNow()) - this.startedAt)
  }

  private replied(exit: Exit.Exit<unknown, unknown>, at: number | undefined): void {
    if (this.settled) return
    this.settle(at)
    this.method.origin.deadlines.remove(this)
    // The endpoint may find the deadline passed before this side's timer fires: the timeout is then this call's
    // own, and names where it was made.
    this.resume(Exit.isFailure(exit) && isEndpointTimeout(exit) ? this.timedOut() : exit)
  }

  /** The deadline passed. */
  fire(): void {
    if (this.settled) return
    this.settle()
    this.pending?.cancel(false)
    this.resume(this.timedOut())
  }

  /** The service stopped before the deadline. */
  stop(): void {
    if (this.settled) return
    this.settle()
    this.pending?.cancel(true)
    this.resume(this.method.stopped())
  }

  private interrupted(): void {
    if (this.settled) return
    this.settle()
    this.method.origin.deadlines.remove(this)
    this.pending?.cancel(true)
  }

  private timedOut(): Effect.Effect<never, RpcTimeoutError> {
    return timedOut(this.method.port.address, this.method.qualified, this.timeoutMillis, this.callSite)
  }
}

/**
 * What every client prints as: its gateway and address, not the gateway's Schemas and the service behind it. A
 * gateway method of the same name (say `toString`) is an own property and comes first.
 */
const ClientProto = {
  toJSON(this: RpcGateway.Client<RpcGateway.Any>): unknown {
    return { _id: "RpcGateway.Client", gateway: this.gateway.name, address: this.address }
  },
  toString(this: RpcGateway.Client<RpcGateway.Any>): string {
    return `RpcGateway.Client(${this.gateway.name} at ${this.address})`
  },
  [NodeInspectSymbol](this: { toJSON(): unknown }): unknown {
    return this.toJSON()
  }
}

/** Makes a client of `gateway` over `port`; `token` yields the fencing token each call carries. */
export const make = <G extends RpcGateway.Any>(
  gateway: G,
  port: Port,
  origin: Origin,
  token: () => unknown
): RpcGateway.Client<G> => {
  const client: Record<string, unknown> = Object.create(ClientProto)
  client.address = port.address
  client.gateway = gateway
  const { config, instruments } = origin
  const stopped = (method: string) =>
    Effect.fail(new RpcServiceStoppedError({ service: origin.name, operation: `call ${gateway.name}.${method}` }))
  for (const [name, method] of Object.entries(gateway.methods as RpcGateway.Methods)) {
    const qualified = `${gateway.name}.${name}`
    // Used only with RpcConfig.tracing on. Only calls made inside a span are traced: the check costs a lookup, a span
    // about 5 µs.
    const traced = <A, E>(call: (span: Tracer.AnySpan | undefined) => Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.withFiber((fiber) =>
        callerSpan(fiber) === undefined
          ? call(undefined)
          : Effect.useSpan(
            `${qualified} (${method.kind})`,
            { kind: "client", attributes: spanAttributes(qualified, port.address) },
            call
          )
      )
    if (method.kind === "tell") {
      const send = (payload: unknown, span: Tracer.AnySpan | undefined) =>
        Effect.suspend(() => {
          if (origin.isStopped()) return stopped(name)
          const error = port.tell(gateway, name, payload, token(), span)
          return error === undefined ? Effect.void : Effect.fail(error)
        })
      client[name] = config.tracing
        ? (payload: unknown) => traced((span) => send(payload, span))
        : (payload: unknown) => send(payload, undefined)
      continue
    }
    const methodTimeout = method.timeout
    const askMethod: AskMethod = {
      gateway,
      name,
      qualified,
      port,
      origin,
      latency: instruments.enabled ? instruments.method(gateway.name, name).latency : undefined,
      token,
      stopped: () => stopped(name)
    }
    const ask = (payload: unknown, timeoutMillis: number, callSite: CallSite | undefined, span: Tracer.AnySpan | undefined) =>
      Effect.callback<unknown, unknown>((resume) =>
        new AskCall(askMethod, timeoutMillis, callSite, resume).start(payload, span)
      )
    const call = (payload: unknown, options?: RpcGateway.CallOptions) => {
      const callSite = config.captureAskCallSite ? captureCallSite(call) : undefined
      const timeout = options?.timeout !== undefined
        ? Duration.fromInputUnsafe(options.timeout)
        : methodTimeout ?? config.askTimeout
      const timeoutMillis = Duration.toMillis(timeout)
      return config.tracing
        ? traced((span) => ask(payload, timeoutMillis, callSite, span))
        : ask(payload, timeoutMillis, callSite, undefined)
    }
    client[name] = call
  }
  return client as RpcGateway.Client<G>
}
