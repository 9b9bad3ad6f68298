/**
 * The RpcService: starts and stops endpoints, connects to addresses, owns every endpoint it started and shuts
 * them all down (Flink's `RpcService`). Provide it with a Layer: `RpcService.layerLocal()` in-process.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Service from "./internal/service.js"
import { RpcConfig } from "./RpcConfig.js"
import type {
  EndpointIdInUseError,
  RpcConnectionError,
  RpcServiceStoppedError
} from "./RpcError.js"
import type * as RpcEndpoint from "./RpcEndpoint.js"
import type * as RpcGateway from "./RpcGateway.js"
import type { RpcServer } from "./RpcServer.js"

/**
 * What an RpcService can do.
 *
 * @since 0.1.0
 */
export interface RpcServiceShape {
  /** The service's name: the authority of its `local://` addresses. */
  readonly name: string
  /**
   * Creates the endpoint's server in the *stopped* state: it has an address and answers connects, but asks fail
   * with `EndpointNotStartedError` until `server.start`.
   */
  readonly startServer: <Gs extends ReadonlyArray<RpcGateway.Any>, Token, EStop, EInit, R>(
    endpoint: RpcEndpoint.RpcEndpoint<Gs, Token, EStop, EInit, R>
  ) => Effect.Effect<RpcServer<Gs, Token, EStop>, EInit | EndpointIdInUseError | RpcServiceStoppedError, R>
  /** Connects to the endpoint at `address`, checking that it serves `gateway` (works before the endpoint starts). */
  readonly connect: <G extends RpcGateway.Any>(
    address: string,
    gateway: G
  ) => Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError>
  /** Connects to a fenced endpoint; every call carries `token`. */
  readonly connectFenced: <G extends RpcGateway.Any>(
    address: string,
    token: unknown,
    gateway: G
  ) => Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError>
  /** Asks the endpoint to stop; returns at once (await `server.awaitTermination` for the end). */
  readonly stopServer: (server: RpcServer<any, any, any>) => Effect.Effect<void>
  /**
   * Terminates every endpoint, waits for all of them (even when some fail), then completes; fails with the first
   * endpoint's termination failure. Idempotent: later calls await the same outcome.
   */
  readonly shutdown: Effect.Effect<void, unknown>
  /** Completes when a shutdown has completed. */
  readonly awaitTermination: Effect.Effect<void, unknown>
  /** Has the service completed its shutdown? */
  readonly isStopped: Effect.Effect<boolean>
  /** The ids of the endpoints that are live on this service. */
  readonly endpointIds: Effect.Effect<ReadonlyArray<string>>
}

/**
 * The RpcService in scope.
 *
 * @since 0.1.0
 */
export class RpcService extends Context.Service<RpcService, RpcServiceShape>()("effect-actor-rpc/RpcService") {}

/**
 * Options of an in-process service.
 *
 * @since 0.1.0
 */
export interface LocalOptions {
  /** The service's name (its `local://` authority); unique in the process. Generated when omitted. */
  readonly name?: string | undefined
}

/**
 * Makes an in-process RpcService that shuts down when the scope closes.
 *
 * @since 0.1.0
 */
export const makeLocal = (options?: LocalOptions | undefined): Effect.Effect<RpcServiceShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* RpcConfig
    const service = new Service.LocalService(options?.name ?? Service.freshName(), config)
    yield* Effect.addFinalizer(() =>
      service.shutdown.pipe(
        Effect.catchCause((cause) =>
          Effect.logWarning("RpcService shut down with a failing endpoint", cause).pipe(
            Effect.annotateLogs({ service: service.name })
          )
        )
      )
    )
    return RpcService.of(service)
  })

/**
 * Provides an in-process RpcService (reads `RpcConfig`); closing the Layer shuts it down.
 *
 * @since 0.1.0
 */
export const layerLocal = (options?: LocalOptions | undefined): Layer.Layer<RpcService> =>
  Layer.effect(RpcService)(makeLocal(options))
