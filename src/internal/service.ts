/**
 * The in-process RpcService: owns its endpoints (by id), resolves addresses, builds clients and shuts down.
 * Services register in a process-wide table by name so that `local://name/id` reaches any live service of this
 * process (as a Pekko actor system's local actors are), and so that a service that is gone is told apart from an
 * endpoint that never existed.
 *
 * Every fiber the service and its endpoints start lives in the service's scope: mailbox turns, the ask-timeout
 * timer, endpoint terminations, scheduled runs. The scope closes after the shutdown, so nothing outlives it.
 *
 * A little over 500 lines, on purpose: the endpoint table, the address resolution and the shutdown order are one
 * piece of state that nearly every method here reads; the clients, the transport and the endpoints' runtime live
 * in their own modules.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import { NodeInspectSymbol } from "effect/Inspectable"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as RpcAddress from "../RpcAddress.js"
import type { RpcConfig } from "../RpcConfig.js"
import {
  EndpointIdInUseError,
  RecipientUnreachableError,
  RpcConnectionError,
  RpcServiceShutdownError,
  RpcServiceStoppedError,
  ServiceNameInUseError
} from "../RpcError.js"
import type * as RpcEndpoint from "../RpcEndpoint.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { RpcServer } from "../RpcServer.js"
import * as Client from "./client.js"
import type { Connection } from "./connection.js"
import { crossing, withNotServed } from "./crossing.js"
import { Deadlines } from "./deadlines.js"
import { type EndpointOwner, EndpointRuntime } from "./endpoint.js"
import * as Exchange from "./exchange.js"
import { describe } from "./format.js"
import { randomUuid } from "./ids.js"
import { Invocation, isRefusal, NoToken, type Refusal, servedGateway } from "./invocation.js"
import { Instruments } from "./metrics.js"
import { endpointContext, ServerHandle } from "./serverHandle.js"
import type { ConnectOptions, RpcServiceShape, ScheduledTask, Snapshot } from "./serviceTag.js"
import type { Transport } from "./transport.js"

const services = new Map<string, LocalService>()
let nextServiceNumber = 0

/** A fresh service name that no live service of this process uses. */
const freshName = (): string => {
  let name: string
  do name = `rpc-${++nextServiceNumber}`
  while (services.has(name))
  return name
}

/** The live service of this process with that name, if any. */
const lookup = (name: string): LocalService | undefined => services.get(name)

type Lifecycle = "running" | "stopping" | "stopped"

type Resolved =
  | {
    readonly _tag: "Local"
    readonly runtime: EndpointRuntime
    /** The endpoint's version of the gateway, when it differs from the caller's and the policy accepted it. */
    readonly crossing: { readonly served: RpcGateway.Any; readonly judgement: Exchange.Judgement } | undefined
  }
  | { readonly _tag: "Remote"; readonly authority: string; readonly endpointId: string }

/**
 * Makes an in-process service named `name` (a fresh name when undefined) that shuts down when the scope closes.
 * Its own scope is a child of that scope, closed after the shutdown: whatever it still holds then is interrupted.
 */
export const make = (
  name: string | undefined,
  config: RpcConfig
): Effect.Effect<LocalService, ServiceNameInUseError, Scope.Scope> =>
  Effect.gen(function*() {
    const chosen = name ?? freshName()
    if (services.has(chosen)) return yield* Effect.fail(new ServiceNameInUseError({ service: chosen }))
    const scope = yield* Scope.fork(yield* Effect.scope, "parallel")
    const service = new LocalService(chosen, config, yield* Effect.context<never>(), scope)
    services.set(chosen, service)
    // Added after the scope's own finalizer, so it runs before it: endpoints stop while their fibers can still run.
    yield* Effect.addFinalizer(() =>
      service.shutdown.pipe(
        Effect.catchTag("RpcServiceShutdownError", (error) =>
          Effect.logWarning(error.message).pipe(Effect.annotateLogs({ service: chosen }))
        )
      )
    )
    return service
  })

/** An in-process RpcService. */
export class LocalService implements RpcServiceShape, EndpointOwner {
  private lifecycle: Lifecycle = "running"
  private readonly endpoints = new Map<string, EndpointRuntime>()
  private shutdownStarted = false
  private readonly shutdownResult = Deferred.makeUnsafe<void, RpcServiceShutdownError>()
  private readonly origin: Client.Origin
  private readonly selfClients = new WeakMap<EndpointRuntime, Map<string, RpcGateway.Client<any>>>()
  private transport: Transport | undefined
  /** The runs of `scheduleRunnable`, interrupted when the shutdown begins. */
  private scheduled: FiberSet.FiberSet<void, never> | undefined
  readonly throughput: number
  readonly instruments: Instruments
  readonly tracing: boolean
  /** Verdicts on pairs of gateway versions, under `RpcConfig.gatewayCompatibility` (./exchange.ts). */
  readonly verdicts: Exchange.Verdicts

  private readonly deadlines: Deadlines

  /** `context` is the creator's: the timer of ask timeouts runs with its Clock. */
  constructor(
    readonly name: string,
    readonly config: RpcConfig,
    context: Context.Context<never>,
    /** The service's scope: every fiber of the service and of its endpoints is forked into it. */
    readonly scope: Scope.Closeable
  ) {
    this.throughput = config.mailboxThroughput
    this.deadlines = new Deadlines(context, scope)
    this.instruments = new Instruments(context, config.metrics)
    this.tracing = config.tracing
    this.verdicts = new Exchange.Verdicts(config.gatewayCompatibility)
    this.origin = {
      name,
      config,
      isStopped: () => this.lifecycle === "stopped",
      deadlines: this.deadlines,
      instruments: this.instruments,
      inFlight: 0
    }
  }

  readonly now = (): number => this.deadlines.now()

  readonly metricNow = (): number => this.deadlines.metricNow()

  readonly clockNow = (): number => this.deadlines.clockNow()

  get liveClock(): boolean {
    return this.deadlines.live
  }

  /** Gives the service a socket transport: its endpoints get `rpc://` (or `rpcs://`) addresses from then on. */
  attach(transport: Transport): void {
    this.transport = transport
  }

  /** The live endpoint with that id, for transports. */
  endpoint(endpointId: string): EndpointRuntime | undefined {
    return this.endpoints.get(endpointId)
  }

  /** The `host:port` this service advertises; undefined in-process. */
  get authority(): string | undefined {
    return this.transport?.authority
  }

  /** How many connections the service's transport has open (0 without one). */
  get connectionCount(): number {
    return this.transport?.connectionCount ?? 0
  }

  // EndpointOwner ----------------------------------------------------------------------------------------------------

  address(endpointId: string): string {
    const transport = this.transport
    return transport === undefined
      ? RpcAddress.local(this.name, endpointId)
      : RpcAddress.format({ protocol: transport.protocol, authority: transport.authority, endpointId })
  }

  unregister(runtime: EndpointRuntime): void {
    if (this.endpoints.get(runtime.endpointId) === runtime) this.endpoints.delete(runtime.endpointId)
  }

  /**
   * A client of one of the endpoint's own gateways. The types admit only gateways the endpoint serves; one that
   * bypassed them (a cast, another version of the gateway) is a defect.
   */
  selfClient<G extends RpcGateway.Any>(runtime: EndpointRuntime, gateway: G): RpcGateway.Client<G> {
    let clients = this.selfClients.get(runtime)
    if (clients === undefined) this.selfClients.set(runtime, clients = new Map())
    const cached = clients.get(gateway.name)
    if (cached !== undefined && cached.gateway === gateway) return cached as RpcGateway.Client<G>
    const served = runtime.served.get(gateway.name)
    if (served === undefined || served.fingerprint !== gateway.fingerprint) {
      throw new Error(
        `The endpoint at ${runtime.address} does not serve gateway ${gateway.name}; ` +
          `it serves ${[...runtime.served.keys()].join(", ")}.`
      )
    }
    const client = Client.make(
      gateway,
      this.port(runtime),
      this.origin,
      runtime.fenced ? () => runtime.currentToken() : () => NoToken
    )
    clients.set(gateway.name, client)
    return client
  }

  // RpcService -------------------------------------------------------------------------------------------------------

  private stoppedError(operation: string) {
    return new RpcServiceStoppedError({ service: this.name, operation })
  }

  readonly startServer = <Gs extends ReadonlyArray<RpcGateway.Any>, Token, EStop, EInit, R>(
    endpoint: RpcEndpoint.RpcEndpoint<Gs, Token, EStop, EInit, R>
  ): Effect.Effect<RpcServer<Gs, Token, EStop>, EInit | EndpointIdInUseError | RpcServiceStoppedError, R> =>
    Effect.withFiber<RpcServer<Gs, Token, EStop>, EInit | EndpointIdInUseError | RpcServiceStoppedError, R>((fiber) => {
      if (this.lifecycle !== "running") return Effect.fail(this.stoppedError("start an endpoint"))
      const endpointId = endpoint.id ?? randomUuid()
      if (this.endpoints.has(endpointId)) {
        return Effect.fail(new EndpointIdInUseError({ service: this.name, endpointId }))
      }
      const runtime = new EndpointRuntime(endpointId, endpoint as RpcEndpoint.Any, this, endpointContext(fiber.context))
      this.endpoints.set(endpointId, runtime)
      return endpoint.init(runtime.main as RpcEndpoint.MainThread<Gs, Token>).pipe(
        Effect.onExit((exit) => {
          if (Exit.isSuccess(exit)) {
            runtime.install(exit.value)
            return Effect.void
          }
          this.unregister(runtime)
          return runtime.closeScope()
        }),
        Effect.map(() => new ServerHandle(this, runtime) as RpcServer<any, any, any>)
      )
    })

  private port(runtime: EndpointRuntime): Client.Port {
    return {
      address: runtime.address,
      ask: (gateway, method, payload, token, timeoutMillis, now, span, resume) => {
        const deadline = timeoutMillis === Infinity ? Infinity : now + timeoutMillis
        const invocation = new Invocation(gateway.name, method, payload, token, resume, timeoutMillis, deadline, span)
        // With Node's clock the ask's time is also its metric time: the mailbox-wait metric needs no other reading.
        if (this.deadlines.live) invocation.enqueuedAt = now
        runtime.deliver(invocation)
        return invocation
      },
      tell: (gateway, method, payload, token, span) =>
        runtime.deliver(new Invocation(gateway.name, method, payload, token, undefined, Infinity, Infinity, span))
    }
  }

  private remotePort(address: string, authority: string, endpointId: string): Client.Port {
    const transport = this.transport!
    const connection = (gateway: RpcGateway.Any, method: string): Connection | RecipientUnreachableError =>
      transport.connectionTo(authority) ?? new RecipientUnreachableError({
        address,
        method: `${gateway.name}.${method}`,
        reason: `RpcService ${this.name} is closing its connections`
      })
    return {
      address,
      ask: (gateway, method, payload, token, timeoutMillis, _now, span, resume) => {
        const target = connection(gateway, method)
        if (target instanceof RecipientUnreachableError) {
          resume(Exit.fail(target))
          return undefined
        }
        return target.ask({ address, endpointId, gateway, method, payload, token, timeoutMillis, span }, resume)
      },
      tell: (gateway, method, payload, token, span) => {
        const target = connection(gateway, method)
        if (target instanceof RecipientUnreachableError) return target
        return target.tell({ address, endpointId, gateway, method, payload, token, timeoutMillis: Infinity, span })
      }
    }
  }

  /** Where an address leads: an endpoint of this process, or a remote service to handshake with. */
  private resolve(address: string, gateway: RpcGateway.Any, token: unknown): Result.Result<Resolved, Refusal> {
    const parsed = RpcAddress.parse(address)
    if (Result.isFailure(parsed)) return Result.fail({ reason: "InvalidAddress", detail: parsed.failure })
    const { authority, endpointId, protocol } = parsed.success
    let service: LocalService | undefined
    if (protocol === "local") {
      service = lookup(authority)
      if (service === undefined) {
        return Result.fail({ reason: "UnknownService", detail: `no RpcService named "${authority}" runs in this process` })
      }
    } else {
      const transport = this.transport
      if (transport === undefined) {
        return Result.fail({
          reason: "Unreachable",
          detail: `RpcService ${this.name} runs in-process only; provide it with RpcService.layerTcp or layerTls ` +
            `to reach ${protocol}:// addresses`
        })
      }
      if (protocol !== transport.protocol) {
        return Result.fail({
          reason: "InvalidAddress",
          detail: `RpcService ${this.name} speaks ${transport.protocol}:// ` +
            `(${transport.protocol === "rpcs" ? "TLS" : "plain TCP"}); it cannot reach a ${protocol}:// address`
        })
      }
      if (authority !== transport.authority) return Result.succeed({ _tag: "Remote", authority, endpointId })
      // An address of this very service takes the local path: no encoding, no socket.
      service = this
    }
    const runtime = service.endpoints.get(endpointId)
    if (runtime === undefined) {
      return Result.fail({ reason: "UnknownEndpoint", detail: `no endpoint "${endpointId}" runs on RpcService ${service.name}` })
    }
    const served = servedGateway(runtime, gateway.name)
    if (isRefusal(served)) return Result.fail(served)
    const checkToken = () => {
      const refusal = runtime.checkConnectToken(token)
      return refusal === undefined ? undefined : Result.fail(refusal)
    }
    // The same gateway object needs no fingerprint (computing one costs a Schema walk).
    if (served === gateway || served.fingerprint === gateway.fingerprint) {
      return checkToken() ?? Result.succeed({ _tag: "Local", runtime, crossing: undefined })
    }
    // Another version of the gateway in the same process: judged as a remote connect would be, by both services'
    // policies (the caller's and the endpoint's may be two services), before the token, as over the wire.
    const refusal = this.judgeLocal(service, gateway, served)
    if (refusal !== undefined) return Result.fail({ reason: "GatewayMismatch", detail: refusal })
    const judgement = this.verdicts.judge("", Exchange.snapshotOf(gateway), Exchange.snapshotOf(served), "this service")
    if (!judgement.accept) return Result.fail({ reason: "GatewayMismatch", detail: judgement.message })
    return checkToken() ?? Result.succeed({ _tag: "Local", runtime, crossing: { served, judgement } })
  }

  /** Why the endpoint's service refuses a local caller's version of a gateway, if it does. */
  private judgeLocal(service: LocalService, gateway: RpcGateway.Any, served: RpcGateway.Any): string | undefined {
    const judgement = service.verdicts.judge(
      "",
      Exchange.snapshotOf(gateway),
      Exchange.snapshotOf(served),
      service === this ? "this service" : `the endpoint's service (${service.name})`
    )
    return judgement.accept ? undefined : judgement.message
  }

  private connectWith<G extends RpcGateway.Any>(
    address: string,
    gateway: G,
    token: unknown,
    options: ConnectOptions | undefined
  ): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> {
    const refused = (refusal: Refusal) =>
      Effect.fail(new RpcConnectionError({ address, gateway: gateway.name, ...refusal }))
    return Effect.suspend((): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> => {
      if (this.lifecycle !== "running") return Effect.fail(this.stoppedError(`connect to ${address}`))
      const invalid = token === NoToken ? undefined : invalidToken(gateway, token)
      if (invalid !== undefined) return refused(invalid)
      const resolved = this.resolve(address, gateway, token)
      if (Result.isFailure(resolved)) return refused(resolved.failure)
      const target = resolved.success
      const tokenOf = () => token
      if (target._tag === "Local") {
        if (target.crossing === undefined) {
          return Effect.succeed(Client.make(gateway, this.port(target.runtime), this.origin, tokenOf))
        }
        const { judgement, served } = target.crossing
        const port = crossing(this.port(target.runtime), gateway, served, judgement.notServed)
        return Effect.as(
          this.logDifferences(address, gateway, judgement.message),
          Client.make(gateway, port, this.origin, tokenOf)
        )
      }
      const connection = this.transport!.connectionTo(target.authority)
      if (connection === undefined) return Effect.fail(this.stoppedError(`connect to ${address}`))
      // Over the wire a declared token travels in its Schema's encoded form, which the endpoint decodes.
      const wireToken = token === NoToken || gateway.token === undefined
        ? token
        : Schema.encodeUnknownSync(gateway.token)(token)
      const timeout = Duration.fromInputUnsafe(options?.timeout ?? this.config.connectTimeout)
      const port = this.remotePort(address, target.authority, target.endpointId)
      return connection.handshake(address, target.endpointId, gateway, wireToken).pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            refused({
              reason: "Timeout",
              detail: `no connection and handshake with ${address} within ${Duration.format(timeout)}` +
                (options?.timeout === undefined ? " (RpcConfig.connectTimeout)" : "")
            })
        }),
        Effect.tap((handshake) => this.logDifferences(address, gateway, handshake.differences)),
        Effect.map((handshake) =>
          Client.make(gateway, withNotServed(port, handshake.notServed), this.origin, () => wireToken)
        )
      )
    })
  }

  /** Logs, once per connect that went through the exchange, what differs between the two versions. */
  private logDifferences(
    address: string,
    gateway: RpcGateway.Any,
    differences: string | undefined
  ): Effect.Effect<void> {
    if (differences === undefined || differences === "") return Effect.void
    return Effect.logWarning(`Connected ${gateway.name} to ${address}, another version of it: ${differences}`).pipe(
      Effect.annotateLogs({ service: this.name })
    )
  }

  readonly connect = <G extends RpcGateway.Any>(
    address: string,
    gateway: G,
    options?: ConnectOptions | undefined
  ): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> =>
    this.connectWith(address, gateway, NoToken, options)

  readonly connectFenced = <G extends RpcGateway.Any>(
    address: string,
    token: RpcGateway.TokenOf<G>,
    gateway: G,
    options?: ConnectOptions | undefined
  ): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> =>
    this.connectWith(address, gateway, token, options)

  readonly stopServer = (server: RpcServer<any, any, any>): Effect.Effect<void> => server.stop

  readonly scheduleRunnable = <E>(
    effect: Effect.Effect<void, E>,
    initialDelay: Duration.Input,
    period?: Duration.Input | undefined
  ): Effect.Effect<ScheduledTask, RpcServiceStoppedError> =>
    Effect.gen({ self: this }, function*() {
      if (this.lifecycle !== "running") return yield* Effect.fail(this.stoppedError("schedule a runnable"))
      const scheduled = this.scheduled ??= yield* FiberSet.make<void, never>().pipe(Scope.provide(this.scope))
      const logged = Effect.tapCause(effect, (cause) =>
        Effect.logError("A runnable scheduled on the RpcService failed; its schedule ends", cause).pipe(
          Effect.annotateLogs({ service: this.name })
        ))
      const runs = period === undefined
        ? logged
        : Effect.asVoid(Effect.repeat(logged, Schedule.fixed(period)))
      const fiber = yield* FiberSet.run(scheduled, Effect.ignore(Effect.andThen(Effect.sleep(initialDelay), runs)))
      return { cancel: Fiber.interrupt(fiber) }
    })

  readonly shutdown: Effect.Effect<void, RpcServiceShutdownError> = Effect.suspend(() => {
    if (this.shutdownStarted) return Deferred.await(this.shutdownResult)
    this.shutdownStarted = true
    // On a fiber of the service's own scope, which closes only after the shutdown: a caller that gives up must not
    // leave the service half stopped, nor wait for the end to give up. Every caller awaits the same outcome.
    return Effect.forkIn(
      Effect.flatMap(Effect.exit(this.stopEverything), (exit) => Deferred.done(this.shutdownResult, exit)),
      this.scope
    ).pipe(Effect.andThen(Deferred.await(this.shutdownResult)))
  })

  /** Stops scheduled runs, then every endpoint (awaiting all), then the transport; fails listing failed endpoints. */
  private get stopEverything(): Effect.Effect<void, RpcServiceShutdownError> {
    return Effect.gen({ self: this }, function*() {
      this.lifecycle = "stopping"
      if (this.scheduled !== undefined) yield* FiberSet.clear(this.scheduled)
      const runtimes = [...this.endpoints.values()]
      for (const runtime of runtimes) runtime.requestStop()
      const exits = yield* Effect.forEach(runtimes, (runtime) => Effect.exit(runtime.awaitTermination), {
        concurrency: "unbounded"
      })
      if (this.transport !== undefined) yield* this.transport.close
      this.lifecycle = "stopped"
      // Only now: an onStop may still ask other services, and its asks must still time out.
      this.deadlines.close()
      if (services.get(this.name) === this) services.delete(this.name)
      const failures = runtimes.flatMap((runtime, index) => {
        const exit = exits[index]!
        if (Exit.isSuccess(exit)) return []
        const cause = Option.getOrElse(Exit.findErrorOption(exit), () => describe(exit.cause))
        return [{ endpointId: runtime.endpointId, address: runtime.address, cause }]
      })
      if (failures.length > 0) return yield* Effect.fail(new RpcServiceShutdownError({ service: this.name, failures }))
    })
  }

  readonly awaitTermination: Effect.Effect<void, RpcServiceShutdownError> = Deferred.await(this.shutdownResult)

  readonly isStopped: Effect.Effect<boolean> = Effect.sync(() => this.lifecycle === "stopped")

  readonly introspect: Effect.Effect<Snapshot> = Effect.sync((): Snapshot => ({
    service: this.name,
    authority: this.transport?.authority,
    lifecycle: this.lifecycle,
    endpoints: [...this.endpoints.values()].map((runtime) => runtime.snapshot()),
    connections: this.transport?.snapshot() ?? [],
    inFlightCalls: this.origin.inFlight,
    pendingTimeouts: this.deadlines.size
  }))

  /** The ids of the live endpoints. */
  readonly endpointIds: Effect.Effect<ReadonlyArray<string>> = Effect.sync(() => [...this.endpoints.keys()])

  // A service holds sockets, fibers and every endpoint: printed as it is, it was megabytes (and, once closed, a
  // walk that never ended). Printed, logged or inspected, it is this summary.
  toJSON(): unknown {
    return {
      _id: "RpcService",
      name: this.name,
      authority: this.transport?.authority,
      lifecycle: this.lifecycle,
      endpoints: this.endpoints.size,
      connections: this.transport?.connectionCount ?? 0
    }
  }

  toString(): string {
    const at = this.transport === undefined ? "in-process" : `at ${this.transport.protocol}://${this.transport.authority}`
    return `RpcService(${this.name}, ${at}, ${this.lifecycle}, ${this.endpoints.size} endpoints)`
  }

  [NodeInspectSymbol](): unknown {
    return this.toJSON()
  }
}

/** Why `token` cannot be a token of `gateway` (its declared Schema rejects it), if it cannot. */
const invalidToken = (gateway: RpcGateway.Any, token: unknown): Refusal | undefined => {
  const schema = gateway.token
  if (schema === undefined || Schema.is(schema)(token)) return undefined
  return {
    reason: "InvalidToken",
    detail: `the token ${describe(token)} is not a valid token of ${gateway.name}, whose token Schema rejects it`
  }
}
