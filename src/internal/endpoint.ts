/**
 * The runtime of one started endpoint: its lifecycle state machine, the envelopes its mailbox carries, fencing,
 * and how handler outcomes become replies. Clients and connections hand it invocations through `deliver`; the mailbox
 * (./mailbox.ts) guarantees that everything here that touches endpoint state runs one message at a time.
 *
 * About 600 lines, on purpose: this is one state machine (created, started, stopping, terminated) whose steps read
 * and write the same fields; what is not a step of it lives beside it (fencing.ts, mainThread.ts, replies.ts,
 * logContext.ts, mailbox.ts).
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Order from "effect/Order"
import * as Scope from "effect/Scope"
import {
  EndpointNotStartedError,
  EndpointStartError,
  FencingTokenError,
  MailboxFullError,
  RecipientUnreachableError,
  RemoteDefectError,
  RpcTimeoutError
} from "../RpcError.js"
import type * as RpcEndpoint from "../RpcEndpoint.js"
import { isLater } from "../RpcEndpoint.js"
import type * as RpcGateway from "../RpcGateway.js"
import * as Fencing from "./fencing.js"
import { describe } from "./format.js"
import {
  type Invocation,
  NoToken,
  qualified as qualify,
  type Recipient,
  type Refusal,
  type Resume,
  UndecodableToken
} from "./invocation.js"
import * as Mailbox from "./mailbox.js"
import * as Outcome from "./outcome.js"
import { annotateMainThread, LogContexts } from "./logContext.js"
import { MainThreadImpl } from "./mainThread.js"
import type { Instruments, MethodMetrics } from "./metrics.js"
import * as Replies from "./replies.js"
import type { EndpointSnapshot } from "./serviceTag.js"

/** Work re-entering the main thread: runAsync, scheduled runs (no `resume`) and callAsync (with `resume`). */
interface Run {
  readonly _tag: "Run"
  readonly effect: Effect.Effect<unknown, unknown>
  readonly token: unknown
  readonly resume: Resume | undefined
}

interface Control {
  readonly _tag: "Start" | "Stop"
}

/** A fencing token set from outside the main thread (`server.setFencingToken`), in mailbox order. */
interface SetToken {
  readonly _tag: "SetToken"
  readonly token: unknown
  readonly validUntil: (() => number) | undefined
  readonly done: (exit: Exit.Exit<void, RecipientUnreachableError>) => void
}

type Envelope = Invocation | Run | Control | SetToken

const START: Control = { _tag: "Start" }
const STOP: Control = { _tag: "Stop" }

type State = "created" | "started" | "stopping" | "terminated"

/** What the runtime needs from the service that owns it. */
export interface EndpointOwner {
  /** The service's scope: the endpoint's fibers (mailbox turns, its termination) are forked into it. */
  readonly scope: Scope.Scope
  readonly address: (endpointId: string) => string
  readonly throughput: number
  /** Called once the endpoint has terminated, before its termination completes: frees the id. */
  readonly unregister: (runtime: EndpointRuntime) => void
  /** Makes a self client of one of this endpoint's gateways. */
  readonly selfClient: <G extends RpcGateway.Any>(runtime: EndpointRuntime, gateway: G) => RpcGateway.Client<G>
  /** The time by the service's clock, in milliseconds: what deadlines are measured in. */
  readonly now: () => number
  /** The time metrics measure durations in (the same reading as `now` when `liveClock`). */
  readonly metricNow: () => number
  /** The time by the service's `Clock`, as Effect code reads it: what `validUntil` of a token is in. */
  readonly clockNow: () => number
  /** Is the service's clock Node's own, so that `now` and `metricNow` are one reading? */
  readonly liveClock: boolean
  readonly instruments: Instruments
  /** Give traced calls a server span (`RpcConfig.tracing`). */
  readonly tracing: boolean
}

const unreachable = (address: string, method: string, reason: string) =>
  Exit.fail(new RecipientUnreachableError({ address, method, reason }))

/** The token state of every unfenced endpoint: never changed (setToken and clearToken ignore unfenced endpoints). */
const UNFENCED: Fencing.TokenState = Object.freeze({ token: Option.none(), validUntil: undefined }) as Fencing.TokenState

/** What every endpoint started from one definition shares: computed once, not per endpoint. */
interface Shared {
  /** Kept here rather than on each runtime: one field less per endpoint. */
  readonly definition: RpcEndpoint.Any
  readonly served: ReadonlyMap<string, RpcGateway.Any>
  readonly tokens: Fencing.TokenCodec
}

const sharedByDefinition = new WeakMap<RpcEndpoint.Any, Shared>()

const sharedOf = (definition: RpcEndpoint.Any): Shared => {
  let shared = sharedByDefinition.get(definition)
  if (shared === undefined) {
    shared = {
      definition,
      served: new Map(definition.gateways.map((gateway) => [gateway.name, gateway])),
      tokens: Fencing.codecOf(definition.fencing)
    }
    sharedByDefinition.set(definition, shared)
  }
  return shared
}

/**
 * The runtime of a started endpoint. An idle endpoint is this object and its mailbox: everything else (its scope,
 * its address string, the Deferreds of its startup and termination, its MainThread view) is made on first use, and
 * what depends only on the definition is shared.
 */
export class EndpointRuntime implements Recipient {
  state: State = "created"
  private stopRequested = false
  private handlers: Record<string, (payload: unknown) => Effect.Effect<unknown, unknown>> = {}
  private onStart: Effect.Effect<void, unknown> | undefined
  private onStop: Effect.Effect<unknown, unknown> | undefined
  /**
   * The fencing token (None for unfenced endpoints, or while unset) and its deadline. Set on the main thread only;
   * cleared at once from anywhere (clearing only ever rejects more).
   */
  readonly tokenState: Fencing.TokenState
  private readonly shared: Shared
  /** The contexts the main thread's logs are annotated with (./logContext.ts), made on its first message. */
  private logContextsOrUndefined: LogContexts | undefined = undefined
  private scopeOrUndefined: Scope.Closeable | undefined = undefined
  private addressOrUndefined: string | undefined = undefined
  readonly mailbox: Mailbox.Mailbox<Envelope>
  /** How the endpoint terminated, once it has (./outcome.ts: the Deferred is made only for someone waiting). */
  private terminationOutcome: Outcome.Outcome<unknown> = undefined
  /** Succeeds once onStart has succeeded; fails if it failed or the endpoint terminated unstarted. */
  private startupOutcome: Outcome.Outcome<EndpointStartError> = undefined

  constructor(
    readonly endpointId: string,
    definition: RpcEndpoint.Any,
    readonly owner: EndpointOwner,
    readonly context: Context.Context<never>
  ) {
    this.shared = sharedOf(definition)
    // Unfenced endpoints share one state that nothing changes: an idle endpoint is counted in bytes.
    this.tokenState = definition.fencing === undefined
      ? UNFENCED
      : { token: definition.fencing.initial, validUntil: undefined }
    this.mailbox = Mailbox.make<Envelope, never>(this)
  }

  /**
   * The MainThread view for endpoint code, made for each use rather than kept: only `init` and a server handle's
   * `fencingToken` ask for it, and an idle endpoint is counted in bytes.
   */
  get main(): RpcEndpoint.MainThread<any, any> {
    return new MainThreadImpl(this)
  }

  /** Completes once onStart has succeeded; fails if it failed or the endpoint terminated unstarted. */
  get awaitStartup(): Effect.Effect<void, EndpointStartError> {
    return Effect.suspend(() => Outcome.wait(this.startupOutcome, (deferred) => this.startupOutcome = deferred))
  }

  /** Completes when the endpoint has terminated, with how it did. */
  get awaitTermination(): Effect.Effect<void, unknown> {
    return Effect.suspend(() => Outcome.wait(this.terminationOutcome, (deferred) => this.terminationOutcome = deferred))
  }

  get isTerminated(): boolean {
    return Outcome.isKnown(this.terminationOutcome)
  }

  private settleStartup(exit: Exit.Exit<void, EndpointStartError>): void {
    Outcome.settle(this.startupOutcome, exit, (known) => this.startupOutcome = known)
  }

  get definition(): RpcEndpoint.Any {
    return this.shared.definition
  }

  get address(): string {
    return this.addressOrUndefined ??= this.owner.address(this.endpointId)
  }

  get served(): ReadonlyMap<string, RpcGateway.Any> {
    return this.shared.served
  }

  /** The endpoint's scope (timers, `later` replies), made on first use: most endpoints never need one. */
  get scope(): Scope.Closeable {
    return this.scopeOrUndefined ??= Scope.makeUnsafe("parallel")
  }

  /** Closes the scope if it was ever made. */
  closeScope(): Effect.Effect<void> {
    const scope = this.scopeOrUndefined
    return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
  }

  get fenced(): boolean {
    return this.definition.fencing !== undefined
  }

  /** Installs what `init` returned. */
  install(behaviour: RpcEndpoint.Behaviour<any, any>): void {
    this.handlers = behaviour.handlers as any
    this.onStart = behaviour.onStart
    this.onStop = behaviour.onStop
  }

  snapshot(): EndpointSnapshot {
    return {
      endpointId: this.endpointId,
      address: this.address,
      state: this.state,
      mailboxDepth: this.mailbox.size(),
      mailboxCapacity: this.definition.mailboxCapacity,
      busy: this.mailbox.isActive(),
      fenced: this.fenced
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Entry points (any fiber)
  // ---------------------------------------------------------------------------------------------------------------

  /**
   * Delivers an invocation; an ask that cannot be queued (the endpoint has terminated, or its bounded mailbox is
   * full) is answered at once. Returns the error a tell's sender should see, if any.
   */
  deliver(invocation: Invocation): MailboxFullError | undefined {
    const capacity = this.definition.mailboxCapacity
    const depth = this.mailbox.size()
    const instruments = this.owner.instruments
    if (capacity !== undefined && depth >= capacity && !this.mailbox.isClosed()) {
      instruments.reject("mailbox_full")
      const error = new MailboxFullError({ address: this.address, method: qualified(invocation), capacity })
      if (invocation.resume === undefined) return error
      invocation.resume(Exit.fail(error))
      return undefined
    }
    if (instruments.enabled) {
      if (invocation.enqueuedAt === 0) invocation.enqueuedAt = this.owner.metricNow()
      instruments.mailboxDepth(depth)
    }
    if (!this.mailbox.offer(invocation) && invocation.resume !== undefined) {
      invocation.resume(unreachable(this.address, qualified(invocation), "the endpoint has terminated"))
    }
    return undefined
  }

  start(): void {
    // Nothing of the endpoint's code runs for a start without onStart, so it needs no turn of the main thread.
    if (this.state === "created" && this.onStart === undefined && !this.mailbox.isActive() && !this.mailbox.isClosed()) {
      this.state = "started"
      this.settleStartup(Exit.void)
      return
    }
    this.mailbox.offer(START)
  }

  requestStop(): void {
    if (this.stopRequested) return
    this.stopRequested = true
    this.mailbox.offer(STOP)
  }

  /** The token a remote message carried, as this endpoint's token Schema reads it. */
  decodeToken(raw: unknown): unknown {
    return this.shared.tokens.decodeWire(raw)
  }

  checkConnectToken(token: unknown): Refusal | undefined {
    if (token === NoToken) return undefined
    if (!this.fenced) {
      return {
        reason: "NotFenced",
        detail: `the endpoint at ${this.address} is not fenced, so it takes no token; connect with ` +
          `RpcService.connect instead of connectFenced`
      }
    }
    if (!(this.shared.tokens.decodeWire(token) instanceof UndecodableToken)) return undefined
    return {
      reason: "InvalidToken",
      detail: `the token ${describe(token)} is not a token of the endpoint at ${this.address}: its token Schema ` +
        `rejects it`
    }
  }

  currentToken(): unknown {
    const token = this.tokenState.token
    return Option.isSome(token) ? token.value : NoToken
  }

  /** Sets the fencing token, with the deadline it admits messages until; call on the main thread. */
  setToken(token: unknown, validUntil: (() => number) | undefined): void {
    if (!this.fenced) return
    this.tokenState.token = Option.some(token)
    this.tokenState.validUntil = validUntil
  }

  /** Clears the fencing token at once: every message checked from now on is rejected until a new one is set. */
  clearToken(): void {
    if (!this.fenced) return
    this.tokenState.token = Option.none()
    this.tokenState.validUntil = undefined
  }

  /** Sets the token on the main thread, in mailbox order; `done` hears when it is in force, or that it never will. */
  enqueueSetToken(token: unknown, validUntil: (() => number) | undefined, done: SetToken["done"]): void {
    if (!this.mailbox.offer({ _tag: "SetToken", token, validUntil, done })) {
      done(unreachable(this.address, "setFencingToken", "the endpoint has terminated"))
    }
  }

  /** The token self-work is stamped with: the current one for fenced endpoints, none otherwise. */
  private selfToken(): unknown {
    return this.fenced ? this.currentToken() : NoToken
  }

  private enqueueRun(effect: Effect.Effect<unknown, unknown>, token: unknown, resume: Resume | undefined): void {
    const run: Run = { _tag: "Run", effect, token, resume }
    if (!this.mailbox.offer(run) && resume !== undefined) {
      resume(unreachable(this.address, "callAsync", "the endpoint has terminated"))
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The main thread
  // ---------------------------------------------------------------------------------------------------------------

  /** The mailbox's throughput: messages per turn before the main thread yields. */
  get throughput(): number {
    return this.owner.throughput
  }

  /** Where the mailbox forks its turns: the service's scope. */
  get fiberScope(): Scope.Scope {
    return this.owner.scope
  }

  /** Processes one message on the main thread (called by the mailbox). */
  process(envelope: Envelope): Effect.Effect<void> {
    if (envelope._tag !== "Invocation") this.annotate(this.logContexts.forEndpoint())
    switch (envelope._tag) {
      case "Invocation":
        return this.processInvocation(envelope)
      case "Run":
        return this.processRun(envelope)
      case "Start":
        return this.processStart()
      case "Stop":
        return this.processStop()
      case "SetToken":
        this.setToken(envelope.token, envelope.validUntil)
        envelope.done(Exit.void)
        return Effect.void
    }
  }

  private processInvocation(invocation: Invocation): Effect.Effect<void> {
    // Before anything can log: a discarded call's warning must name its own method, not the previous one's.
    this.annotate(this.logContexts.forMethod(invocation.gateway, invocation.method))
    if (invocation.cancelled) return this.skip(invocation, "cancelled")
    // One reading of the clock, for the deadline and, with Node's clock, for the mailbox-wait metric too.
    let startedAt = 0
    if (invocation.deadline !== Infinity) {
      const now = this.owner.now()
      if (now >= invocation.deadline) return this.skip(invocation, "expired")
      if (this.owner.liveClock) startedAt = now
    }
    const handler = Object.hasOwn(this.handlers, invocation.method) ? this.handlers[invocation.method] : undefined
    if (this.state === "created") {
      const method = qualified(invocation)
      if (invocation.resume !== undefined) {
        invocation.resume(Exit.fail(new EndpointNotStartedError({ address: this.address, method })))
        return Effect.void
      }
      return Effect.logWarning(`Discarding ${method}: the endpoint has not been started yet`).pipe(
        Effect.annotateLogs({ endpoint: this.endpointId, address: this.address })
      )
    }
    const rejection = this.checkToken(invocation.token, invocation)
    if (rejection !== undefined) {
      this.owner.instruments.reject("fencing")
      if (invocation.resume !== undefined) {
        invocation.resume(Exit.fail(rejection))
        return Effect.void
      }
      return Effect.logWarning(`Discarding ${qualified(invocation)}: ${rejection.message}`).pipe(
        Effect.annotateLogs({ endpoint: this.endpointId, address: this.address })
      )
    }
    if (handler === undefined) {
      // Unreachable through a typed client; a transport guards against it with the handshake.
      const method = qualified(invocation)
      const exit = Exit.fail(
        new RemoteDefectError({ address: this.address, method, defect: `no handler for method ${method}` })
      )
      if (invocation.resume !== undefined) invocation.resume(exit)
      return Effect.void
    }
    // Called directly rather than through Effect.suspend, and continued by the endpoint's one continuation rather
    // than a closure per message: a tell then costs a few allocations instead of a dozen.
    const instruments = this.owner.instruments
    if (instruments.enabled) {
      const metrics = instruments.method(invocation.gateway, invocation.method)
      this.handlerStartedAt = startedAt === 0 ? this.owner.metricNow() : startedAt
      metrics.wait.update(this.handlerStartedAt - invocation.enqueuedAt)
      this.handlerMetrics = metrics
    }
    let effect: Effect.Effect<unknown, unknown>
    try {
      effect = handler(invocation.payload)
    } catch (defect) {
      effect = Effect.die(defect)
    }
    // A handler may return `later(...)` itself; anything else that is not an Effect is a bug in the endpoint, which
    // must reach the caller at once as a RemoteDefectError (and the log), not as a timeout.
    if (!Effect.isEffect(effect)) effect = isLater(effect) ? Effect.succeed(effect) : Effect.die(notAnEffect(invocation, effect))
    if (invocation.span !== undefined && this.owner.tracing) {
      const name = qualified(invocation)
      effect = Effect.withSpan(effect, `${name} (handler)`, {
        parent: invocation.span,
        kind: "server",
        attributes: { "rpc.system": "effect-actor-rpc", "rpc.method": name, "rpc.endpoint": this.endpointId }
      })
    }
    return this.runHandler(invocation, effect)
  }

  /** Drops a call whose caller has given up (`cancelled`) or whose deadline has passed (`expired`). */
  private skip(invocation: Invocation, reason: "cancelled" | "expired"): Effect.Effect<void> {
    this.owner.instruments.reject(reason)
    const resume = invocation.resume
    if (resume !== undefined) {
      const method = qualified(invocation)
      // Nobody waits any more, but a transport learns from the answer that the call is over.
      resume(Exit.fail(
        reason === "expired"
          ? new RpcTimeoutError({ address: this.address, method, timeoutMillis: invocation.timeoutMillis })
          : new RecipientUnreachableError({ address: this.address, method, reason: "the caller cancelled the call" })
      ))
    }
    return Effect.void
  }

  /** When the running handler started, and its method's metrics, for the handler-time metric. */
  private handlerStartedAt = 0
  private handlerMetrics: MethodMetrics | undefined = undefined
  private get logContexts(): LogContexts {
    return this.logContextsOrUndefined ??= new LogContexts(this.context, this.endpointId)
  }

  /** Switches the main thread to the context whose log annotations name this endpoint (and method). */
  private annotate(context: Context.Context<never>): void {
    annotateMainThread(this.mailbox.current(), context)
  }
  /** The message whose handler code is running: the main thread runs one at a time. */
  private current: Invocation | Run | undefined = undefined
  /** Made on the first handler run, so an endpoint that never handles a message does not hold them. */
  private afterHandler: Continuations | undefined = undefined

  /** Runs handler code on the main thread and turns its outcome (or its `later` reply) into a reply. */
  private runHandler(message: Invocation | Run, effect: Effect.Effect<unknown, unknown>): Effect.Effect<void> {
    this.current = message
    return Effect.matchCauseEffect(effect, this.afterHandler ??= this.continuations())
  }

  private continuations(): Continuations {
    return {
      onSuccess: (value) => {
        const message = this.current!
        this.current = undefined
        const at = this.recordHandlerTime(message)
        if (isLater(value)) return Replies.forkLater(this, callName(message), value.effect, message.resume, this.scope)
        // A tell's success needs nothing, not even an Exit. An in-process caller's latency ends when the handler did.
        if (message.resume !== undefined) message.resume(Exit.succeed(value), at)
        return Effect.void
      },
      onFailure: (cause) => {
        const message = this.current!
        this.current = undefined
        this.recordHandlerTime(message)
        return Replies.reply(this, callName(message), Exit.failCause(cause), message.resume)
      }
    }
  }

  /** Records the handler time of an invocation (metrics on); returns when the handler ended, if it read it. */
  private recordHandlerTime(message: Invocation | Run): number | undefined {
    const metrics = this.handlerMetrics
    if (metrics === undefined || message._tag !== "Invocation") return undefined
    this.handlerMetrics = undefined
    const endedAt = this.owner.metricNow()
    metrics.handler.update(endedAt - this.handlerStartedAt)
    return endedAt
  }

  private processRun(run: Run): Effect.Effect<void> {
    if (this.state === "created") {
      if (run.resume !== undefined) {
        run.resume(Exit.fail(new EndpointNotStartedError({ address: this.address, method: "callAsync" })))
      }
      return Effect.void
    }
    if (this.fenced && run.token !== NoToken) {
      const rejection = this.checkToken(run.token, run.resume === undefined ? "runAsync" : "callAsync")
      if (rejection !== undefined) {
        if (run.resume !== undefined) run.resume(Exit.fail(rejection))
        return Effect.void
      }
    }
    if (run.resume === undefined) {
      return Effect.flatMap(Effect.exit(run.effect), (exit) =>
        Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause) ? Replies.logDropped(this, "runAsync", exit.cause) : Effect.void)
    }
    return this.runHandler(run, run.effect)
  }

  /** `undefined` when the message may run; the rejection otherwise (see Fencing.check). */
  private checkToken(received: unknown, what: Invocation | string): FencingTokenError | undefined {
    const fencing = this.definition.fencing
    if (fencing === undefined) return undefined
    const order = fencing.monotonic as Order.Order<unknown> | undefined
    const rejection = Fencing.check(this.shared.tokens, this.tokenState, received, order, this.owner.clockNow, this.address, what)
    if (rejection === undefined && order !== undefined) Fencing.admit(this.tokenState, received, order)
    return rejection
  }

  private processStart(): Effect.Effect<void> {
    if (this.state !== "created") return Effect.void
    this.state = "started"
    if (this.onStart === undefined) return Effect.sync(() => this.settleStartup(Exit.void))
    return Effect.flatMap(Effect.exit(this.onStart), (exit) => {
      if (Exit.isSuccess(exit)) return Effect.sync(() => this.settleStartup(Exit.void))
      const error = new EndpointStartError({ address: this.address, cause: Cause.squash(exit.cause) })
      return Effect.logError("onStart failed; terminating the endpoint", exit.cause).pipe(
        Effect.annotateLogs({ endpoint: this.endpointId, address: this.address }),
        Effect.andThen(Effect.sync(() => this.settleStartup(Exit.fail(error)))),
        Effect.andThen(this.finalize(Exit.fail(error)))
      )
    })
  }

  private processStop(): Effect.Effect<void> {
    switch (this.state) {
      case "created":
        return this.finalize(Exit.void)
      case "started": {
        this.state = "stopping"
        if (this.onStop === undefined) return this.finalize(Exit.void)
        return Effect.flatMap(Effect.exit(this.onStop), (exit) => {
          if (Exit.isSuccess(exit) && isLater(exit.value)) {
            // Calls keep being served while the later part runs; its completion terminates the endpoint.
            return Effect.asVoid(
              Effect.forkIn(
                Effect.flatMap(Effect.exit(exit.value.effect), (laterExit) => this.finalize(laterExit)),
                this.owner.scope
              )
            )
          }
          return this.finalize(exit)
        })
      }
      default:
        return Effect.void
    }
  }

  /**
   * Terminates: closes the mailbox (queued asks fail at once), waits for the message in progress, interrupts
   * timers and `later` replies, frees the id and completes the termination with `exit`.
   */
  private finalize(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    if (this.state === "terminated") return Effect.void
    this.state = "terminated"
    const pending = this.mailbox.close()
    for (const envelope of pending) {
      if (envelope._tag === "Invocation" || envelope._tag === "Run") {
        envelope.resume?.(unreachable(
          this.address,
          envelope._tag === "Invocation" ? qualified(envelope) : "callAsync",
          "the endpoint terminated before processing the call"
        ))
      } else if (envelope._tag === "SetToken") {
        envelope.done(unreachable(this.address, "setFencingToken", "the endpoint terminated before setting it"))
      }
    }
    const result: Exit.Exit<void, unknown> = Exit.isSuccess(exit) ? Exit.void : exit as Exit.Exit<never, unknown>
    // Runs on a fiber of its own: when finalize is called from the main thread, that fiber must finish first.
    return Effect.asVoid(Effect.forkIn(
      this.mailbox.awaitIdle.pipe(
        Effect.andThen(this.closeScope()),
        Effect.andThen(Effect.sync(() => this.owner.unregister(this))),
        Effect.andThen(Effect.sync(() => {
          if (!Outcome.isKnown(this.startupOutcome)) {
            this.settleStartup(
              Exit.fail(new EndpointStartError({ address: this.address, cause: "the endpoint terminated before it started" }))
            )
          }
          Outcome.settle(this.terminationOutcome, result, (known) => this.terminationOutcome = known)
        }))
      ),
      this.owner.scope
    ))
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The MainThread handed to endpoint code
  // ---------------------------------------------------------------------------------------------------------------

  /** Work sent to the main thread by the endpoint itself (runAsync, callAsync, scheduleRunAsync). */
  selfRun(effect: Effect.Effect<unknown, unknown>, resume: Resume | undefined): void {
    this.enqueueRun(effect, this.selfToken(), resume)
  }

  scheduleRun(effect: Effect.Effect<unknown, unknown>, delay: Duration.Input): Effect.Effect<RpcEndpoint.ScheduledRun> {
    return Effect.suspend(() => {
      if (this.state === "terminated") return Effect.succeed(cancelled)
      const token = this.selfToken()
      return Effect.map(
        Effect.forkIn(
          Effect.andThen(Effect.sleep(delay), Effect.sync(() => this.enqueueRun(effect, token, undefined))),
          this.scope
        ),
        (fiber): RpcEndpoint.ScheduledRun => ({ cancel: Fiber.interrupt(fiber) })
      )
    })
  }
}

const cancelled: RpcEndpoint.ScheduledRun = { cancel: Effect.void }

/** The name a message's errors and logs give it. */
const callName = (message: Invocation | Run): string => message._tag === "Invocation" ? qualified(message) : "callAsync"

interface Continuations {
  readonly onSuccess: (value: unknown) => Effect.Effect<void>
  readonly onFailure: (cause: Cause.Cause<unknown>) => Effect.Effect<void>
}

const qualified = (invocation: Invocation): string => qualify(invocation.gateway, invocation.method)

const notAnEffect = (invocation: Invocation, result: unknown) =>
  new Error(
    `the handler of ${qualified(invocation)} returned ${describe(result)}, which is not an Effect: return an Effect ` +
      `(Effect.succeed(value)) or RpcEndpoint.later(effect)`
  )
