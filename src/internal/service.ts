/**
 * The in-process RpcService: owns its endpoints (by id), resolves addresses, builds clients and shuts down.
 * Services register in a process-wide table by name so that `local://name/id` reaches any live service of this
 * process, and so that a service that is gone is told apart from an endpoint that never existed.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as RpcAddress from "../RpcAddress.js"
import type { RpcConfig } from "../RpcConfig.js"
import {
  EndpointIdInUseError,
  type EndpointStartError,
  RecipientUnreachableError,
  RpcConnectionError,
  RpcServiceStoppedError
} from "../RpcError.js"
import type * as RpcEndpoint from "../RpcEndpoint.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { RpcServer } from "../RpcServer.js"
import type { RpcServiceShape, Snapshot } from "./serviceTag.js"
import * as Client from "./client.js"
import { Deadlines } from "./deadlines.js"
import { randomUuid } from "./ids.js"
import { type EndpointOwner, EndpointRuntime } from "./endpoint.js"
import { checkServes, Invocation, NoToken } from "./invocation.js"
import { Instruments } from "./metrics.js"
import type { Connection } from "./connection.js"
import type { Transport } from "./transport.js"

const services = new Map<string, LocalService>()
let nextServiceNumber = 0

const endpointContexts = new WeakMap<Context.Context<never>, Context.Context<never>>()

/**
 * Endpoint code runs with the services of whoever started it, minus that caller's own Scope. Endpoints started
 * from one fiber share that context instead of copying it each.
 */
const endpointContext = (starter: Context.Context<never>): Context.Context<never> => {
  let context = endpointContexts.get(starter)
  if (context === undefined) {
    context = Context.omit(Scope.Scope)(starter) as Context.Context<never>
    endpointContexts.set(starter, context)
  }
  return context
}

/** The server handle: a view over the runtime whose Effects are made when used (every endpoint has one). */
class ServerHandle implements RpcServer<ReadonlyArray<RpcGateway.Any>, unknown, unknown> {
  constructor(private readonly service: LocalService, private readonly runtime: EndpointRuntime) {}

  get endpointId(): string {
    return this.runtime.endpointId
  }

  get address(): string {
    return this.runtime.address
  }

  self<G extends RpcGateway.Any>(gateway: G): RpcGateway.Client<G> {
    return this.service.selfClient(this.runtime, gateway)
  }

  get start(): Effect.Effect<void> {
    return Effect.sync(() => this.runtime.start())
  }

  get awaitStarted(): Effect.Effect<void, EndpointStartError> {
    return Deferred.await(this.runtime.startup)
  }

  get stop(): Effect.Effect<void> {
    return Effect.sync(() => this.runtime.requestStop())
  }

  get terminate(): Effect.Effect<void, unknown> {
    return Effect.andThen(this.stop, this.awaitTermination)
  }

  get awaitTermination(): Effect.Effect<void, unknown> {
    return Deferred.await(this.runtime.termination)
  }

  get isTerminated(): Effect.Effect<boolean> {
    return Deferred.isDone(this.runtime.termination)
  }

  get fencingToken(): Effect.Effect<Option.Option<unknown>> {
    return this.runtime.main.fencingToken
  }
}

/** A fresh service name that no live service of this process uses. */
export const freshName = (): string => {
  let name: string
  do name = `rpc-${++nextServiceNumber}`
  while (services.has(name))
  return name
}

/** The live service of this process with that name, if any. */
export const lookup = (name: string): LocalService | undefined => services.get(name)

type Lifecycle = "running" | "stopping" | "stopped"

/** An in-process RpcService. */
export class LocalService implements RpcServiceShape, EndpointOwner {
  private lifecycle: Lifecycle = "running"
  private readonly endpoints = new Map<string, EndpointRuntime>()
  private shutdownStarted = false
  private readonly shutdownResult = Deferred.makeUnsafe<void, unknown>()
  private readonly origin: Client.Origin
  private readonly selfClients = new WeakMap<EndpointRuntime, Map<string, RpcGateway.Client<any>>>()
  private transport: Transport | undefined
  readonly throughput: number
  readonly instruments: Instruments
  readonly tracing: boolean

  private readonly deadlines: Deadlines

  /** `context` is the creator's: the timer of ask timeouts runs with its Clock. */
  constructor(readonly name: string, readonly config: RpcConfig, context: Context.Context<never>) {
    if (services.has(name)) {
      throw new Error(`An RpcService named "${name}" is already running in this process; choose another name.`)
    }
    services.set(name, this)
    this.throughput = config.mailboxThroughput
    this.deadlines = new Deadlines(context)
    this.instruments = new Instruments(context, config.metrics)
    this.tracing = config.tracing
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

  /** Gives the service a socket transport: its endpoints get `rpc://` (or `rpcs://`) addresses from then on. */
  attach(transport: Transport): void {
    this.transport = transport
  }

  /** The live endpoint with that id, for transports. */
  endpoint(endpointId: string): EndpointRuntime | undefined {
    return this.endpoints.get(endpointId)
  }

  /** How many connections the service's transport has open (0 without one). */
  get connectionCount(): number {
    return this.transport?.connectionCount ?? 0
  }

  // EndpointOwner ------------------------------------------------------------------------------------------------------------

  address(endpointId: string): string {
    const transport = this.transport
    return transport === undefined
      ? RpcAddress.local(this.name, endpointId)
      : RpcAddress.format({ protocol: transport.protocol, authority: transport.authority, endpointId })
  }

  unregister(runtime: EndpointRuntime): void {
    if (this.endpoints.get(runtime.endpointId) === runtime) this.endpoints.delete(runtime.endpointId)
  }

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

  // RpcService --------------------------------------------------------------------------------------------------------

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
        Effect.map(() => this.server<Gs, Token, EStop>(runtime))
      )
    })

  private server<Gs extends ReadonlyArray<RpcGateway.Any>, Token, EStop>(
    runtime: EndpointRuntime
  ): RpcServer<Gs, Token, EStop> {
    return new ServerHandle(this, runtime) as RpcServer<any, any, any>
  }

  private port(runtime: EndpointRuntime): Client.Port {
    return {
      address: runtime.address,
      ask: (gateway, method, payload, token, timeoutMillis, span, resume) => {
        const deadline = timeoutMillis === Infinity ? Infinity : this.deadlines.now() + timeoutMillis
        const invocation = new Invocation(gateway.name, method, payload, token, resume, timeoutMillis, deadline, span)
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
      ask: (gateway, method, payload, token, timeoutMillis, span, resume) => {
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
  private resolve(
    address: string,
    gateway: RpcGateway.Any
  ): Result.Result<
    { readonly _tag: "Local"; readonly runtime: EndpointRuntime } | {
      readonly _tag: "Remote"
      readonly authority: string
      readonly endpointId: string
    },
    RpcConnectionError
  > {
    const fail = (reason: RpcConnectionError["reason"], detail: string) =>
      Result.fail(new RpcConnectionError({ address, gateway: gateway.name, reason, detail }))
    const parsed = RpcAddress.parse(address)
    if (Result.isFailure(parsed)) return fail("InvalidAddress", parsed.failure)
    const { authority, endpointId, protocol } = parsed.success
    let service: LocalService | undefined
    if (protocol === "local") {
      service = lookup(authority)
      if (service === undefined) {
        return fail("UnknownService", `no RpcService named "${authority}" runs in this process`)
      }
    } else {
      const transport = this.transport
      if (transport === undefined) {
        return fail(
          "Unreachable",
          `RpcService ${this.name} runs in-process only; provide it with RpcService.layerTcp or layerTls to reach ` +
            `${protocol}:// addresses`
        )
      }
      if (protocol !== transport.protocol) {
        return fail(
          "InvalidAddress",
          `RpcService ${this.name} speaks ${transport.protocol}:// ` +
            `(${transport.protocol === "rpcs" ? "TLS" : "plain TCP"}); it cannot reach a ${protocol}:// address`
        )
      }
      if (authority !== transport.authority) return Result.succeed({ _tag: "Remote", authority, endpointId })
      // An address of this very service takes the local path: no encoding, no socket.
      service = this
    }
    const runtime = service.endpoints.get(endpointId)
    if (runtime === undefined) {
      return fail("UnknownEndpoint", `no endpoint "${endpointId}" runs on RpcService ${service.name}`)
    }
    // The same gateway object needs no fingerprint (computing one costs a Schema walk).
    const refusal = runtime.served.get(gateway.name) === gateway
      ? undefined
      : checkServes(runtime, gateway.name, gateway.fingerprint)
    if (refusal !== undefined) return fail(refusal.reason, refusal.detail)
    return Result.succeed({ _tag: "Local", runtime })
  }

  private connectWith<G extends RpcGateway.Any>(
    address: string,
    gateway: G,
    token: () => unknown
  ): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> {
    return Effect.suspend((): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> => {
      if (this.lifecycle !== "running") return Effect.fail(this.stoppedError(`connect to ${address}`))
      const resolved = this.resolve(address, gateway)
      if (Result.isFailure(resolved)) return Effect.fail(resolved.failure)
      const target = resolved.success
      if (target._tag === "Local") {
        return Effect.succeed(Client.make(gateway, this.port(target.runtime), this.origin, token))
      }
      const connection = this.transport!.connectionTo(target.authority)
      if (connection === undefined) return Effect.fail(this.stoppedError(`connect to ${address}`))
      const timeout = this.config.connectTimeout
      const port = this.remotePort(address, target.authority, target.endpointId)
      return connection.handshake(address, target.endpointId, gateway).pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(
              new RpcConnectionError({
                address,
                gateway: gateway.name,
                reason: "Unreachable",
                detail: `no handshake answer within ${Duration.format(timeout)} (RpcConfig.connectTimeout)`
              })
            )
        }),
        Effect.as(Client.make(gateway, port, this.origin, token))
      )
    })
  }

  readonly connect = <G extends RpcGateway.Any>(
    address: string,
    gateway: G
  ): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> =>
    this.connectWith(address, gateway, () => NoToken)

  readonly connectFenced = <G extends RpcGateway.Any>(
    address: string,
    token: unknown,
    gateway: G
  ): Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError> =>
    this.connectWith(address, gateway, () => token)

  readonly stopServer = (server: RpcServer<any, any, any>): Effect.Effect<void> => server.stop

  readonly shutdown: Effect.Effect<void, unknown> = Effect.suspend(() => {
    if (!this.shutdownStarted) {
      this.shutdownStarted = true
      const result = this.shutdownResult
      this.lifecycle = "stopping"
      const runtimes = [...this.endpoints.values()]
      for (const runtime of runtimes) runtime.requestStop()
      return Effect.forEach(runtimes, (runtime) => Effect.exit(Deferred.await(runtime.termination)), {
        concurrency: "unbounded"
      }).pipe(
        Effect.flatMap((exits) => Effect.as(this.transport?.close ?? Effect.void, exits)),
        Effect.flatMap((exits) =>
          Effect.sync(() => {
            this.lifecycle = "stopped"
            // Only now: an onStop may still ask other services, and its asks must still time out.
            this.deadlines.close()
            if (services.get(this.name) === this) services.delete(this.name)
            const failed = exits.find(Exit.isFailure)
            return failed === undefined ? Exit.void : failed
          })
        ),
        Effect.flatMap((exit) => Deferred.done(result, exit)),
        Effect.forkDetach,
        Effect.andThen(Deferred.await(result))
      )
    }
    return Deferred.await(this.shutdownResult)
  })

  readonly awaitTermination: Effect.Effect<void, unknown> = Deferred.await(this.shutdownResult)

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
}
