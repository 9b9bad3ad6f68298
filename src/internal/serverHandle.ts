/**
 * The server handle of a started endpoint (Flink's `RpcServer`): a view over the endpoint's runtime whose Effects
 * are made when used, so that every endpoint can have one for a few bytes.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { NodeInspectSymbol } from "effect/Inspectable"
import type * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type { EndpointStartError, RecipientUnreachableError } from "../RpcError.js"
import type * as RpcEndpoint from "../RpcEndpoint.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { RpcServer } from "../RpcServer.js"
import type { EndpointRuntime } from "./endpoint.js"
import type { LocalService } from "./service.js"

const endpointContexts = new WeakMap<Context.Context<never>, Context.Context<never>>()

/**
 * Endpoint code runs with the services of whoever started it, minus that caller's own Scope. Endpoints started
 * from one fiber share that context instead of copying it each.
 */
export const endpointContext = (starter: Context.Context<never>): Context.Context<never> => {
  let context = endpointContexts.get(starter)
  if (context === undefined) {
    context = Context.omit(Scope.Scope)(starter) as Context.Context<never>
    endpointContexts.set(starter, context)
  }
  return context
}

/** The server handle: a view over the runtime whose Effects are made when used (every endpoint has one). */
export class ServerHandle implements RpcServer<ReadonlyArray<RpcGateway.Any>, unknown, unknown> {
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
    return this.runtime.awaitStartup
  }

  get stop(): Effect.Effect<void> {
    return Effect.sync(() => this.runtime.requestStop())
  }

  get terminate(): Effect.Effect<void, unknown> {
    return Effect.andThen(this.stop, this.awaitTermination)
  }

  get awaitTermination(): Effect.Effect<void, unknown> {
    return this.runtime.awaitTermination
  }

  get isTerminated(): Effect.Effect<boolean> {
    return Effect.sync(() => this.runtime.isTerminated)
  }

  get fencingToken(): Effect.Effect<Option.Option<unknown>> {
    return this.runtime.main.fencingToken
  }

  setFencingToken(
    token: unknown,
    options?: RpcEndpoint.TokenOptions | undefined
  ): Effect.Effect<void, RecipientUnreachableError> {
    return Effect.callback<void, RecipientUnreachableError>((resume) => {
      this.runtime.enqueueSetToken(token, options?.validUntil, (exit) => resume(exit))
    })
  }

  get clearFencingToken(): Effect.Effect<void> {
    return Effect.sync(() => this.runtime.clearToken())
  }

  toJSON(): unknown {
    return { _id: "RpcServer", endpointId: this.endpointId, address: this.address, state: this.runtime.state }
  }

  toString(): string {
    return `RpcServer(${this.address}, ${this.runtime.state})`
  }

  [NodeInspectSymbol](): unknown {
    return this.toJSON()
  }
}
