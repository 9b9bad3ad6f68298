/**
 * The RpcService tag, its shape and its snapshot types: a leaf module (it imports no transport and no runtime),
 * so that definitions such as gateways (`RpcGateway.layerClient`) and endpoints (`RpcEndpoint.layer`) can name the
 * service without loading sockets, TLS or the file system. `RpcService.ts` re-exports all of it with the Layers.
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type {
  EndpointIdInUseError,
  RpcConnectionError,
  RpcServiceShutdownError,
  RpcServiceStoppedError
} from "../RpcError.js"
import type * as RpcEndpoint from "../RpcEndpoint.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { RpcServer } from "../RpcServer.js"

/**
 * What an RpcService can do.
 *
 * @since 0.1.0
 */
export interface RpcServiceShape {
  /** The service's name: the authority of its `local://` addresses. */
  readonly name: string
  /** The address an endpoint with this id has on this service (`rpc://host:port/id` once it has a transport). */
  readonly address: (endpointId: string) => string
  /**
   * Creates the endpoint's server in the *stopped* state: it has an address and answers connects, but asks fail
   * with `EndpointNotStartedError` until `server.start`.
   */
  readonly startServer: <Gs extends ReadonlyArray<RpcGateway.Any>, Token, EStop, EInit, R>(
    endpoint: RpcEndpoint.RpcEndpoint<Gs, Token, EStop, EInit, R>
  ) => Effect.Effect<RpcServer<Gs, Token, EStop>, EInit | EndpointIdInUseError | RpcServiceStoppedError, R>
  /**
   * Connects to the endpoint at `address`, checking that it serves `gateway` (works before the endpoint starts).
   * Fails `RpcConnectionError` with reason `Timeout` if the connect (dial, hello, handshake) takes longer than
   * `options.timeout` (default `RpcConfig.connectTimeout`).
   */
  readonly connect: <G extends RpcGateway.Any>(
    address: string,
    gateway: G,
    options?: ConnectOptions | undefined
  ) => Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError>
  /**
   * Connects to a fenced endpoint; every call carries `token`. The token is checked at connect: one the gateway's
   * declared token Schema (or else the endpoint's) rejects fails `InvalidToken`, and an endpoint that is not fenced
   * fails `NotFenced`.
   */
  readonly connectFenced: <G extends RpcGateway.Any>(
    address: string,
    token: RpcGateway.TokenOf<G>,
    gateway: G,
    options?: ConnectOptions | undefined
  ) => Effect.Effect<RpcGateway.Client<G>, RpcConnectionError | RpcServiceStoppedError>
  /** Asks the endpoint to stop; returns at once (await `server.awaitTermination` for the end). */
  readonly stopServer: (server: RpcServer<any, any, any>) => Effect.Effect<void>
  /**
   * Runs `effect` once after `initialDelay`, or with `period` every period after that (at a fixed rate), on a fiber
   * of the service (Flink's `RpcService.scheduleRunnable` / `getScheduledExecutor`). It is cancelled at shutdown or
   * with the returned handle. A failure is logged and ends the schedule (as a Java scheduled executor does).
   */
  readonly scheduleRunnable: <E>(
    effect: Effect.Effect<void, E>,
    initialDelay: Duration.Input,
    period?: Duration.Input | undefined
  ) => Effect.Effect<ScheduledTask, RpcServiceStoppedError>
  /**
   * Terminates every endpoint, waits for all of them (even when some fail), closes every connection and listener,
   * then completes; fails with `RpcServiceShutdownError` listing the endpoints whose termination failed. Idempotent:
   * later calls await the same outcome; it runs to the end even if its caller is interrupted.
   */
  readonly shutdown: Effect.Effect<void, RpcServiceShutdownError>
  /** Completes when a shutdown has completed, with its outcome. */
  readonly awaitTermination: Effect.Effect<void, RpcServiceShutdownError>
  /** Has the service completed its shutdown? */
  readonly isStopped: Effect.Effect<boolean>
  /** The ids of the endpoints that are live on this service. */
  readonly endpointIds: Effect.Effect<ReadonlyArray<string>>
  /** What the service holds right now: its endpoints and their mailboxes, its connections, its calls in flight. */
  readonly introspect: Effect.Effect<Snapshot>
}

/**
 * Options of a connect.
 *
 * @since 0.2.0
 */
export interface ConnectOptions {
  /** The most the connect may take, dial and handshake included (default `RpcConfig.connectTimeout`). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A run scheduled with `scheduleRunnable`: cancelling it stops the schedule (a run in progress is interrupted).
 *
 * @since 0.2.0
 */
export interface ScheduledTask {
  readonly cancel: Effect.Effect<void>
}

/**
 * A point-in-time view of an RpcService, for dashboards, health checks and leak tests.
 *
 * @since 0.1.0
 */
export interface Snapshot {
  readonly service: string
  /** The `host:port` it advertises; undefined for an in-process service. */
  readonly authority: string | undefined
  readonly lifecycle: "running" | "stopping" | "stopped"
  /** The live endpoints (terminated ones are gone). */
  readonly endpoints: ReadonlyArray<EndpointSnapshot>
  /** The transport's connections: opening, open, or closed and still finishing their socket (at most 1 s). */
  readonly connections: ReadonlyArray<ConnectionSnapshot>
  /** Asks made through this service's clients that have not settled yet, local and remote. */
  readonly inFlightCalls: number
  /** Ask timeouts still armed (one per ask in flight that has a timeout). */
  readonly pendingTimeouts: number
}

/**
 * One endpoint in a {@link Snapshot}.
 *
 * @since 0.1.0
 */
export interface EndpointSnapshot {
  readonly endpointId: string
  readonly address: string
  readonly state: "created" | "started" | "stopping" | "terminated"
  /** Messages queued and not yet taken by the main thread. */
  readonly mailboxDepth: number
  /** The mailbox's bound; undefined when unbounded. */
  readonly mailboxCapacity: number | undefined
  /** Is a main-thread fiber alive (the endpoint is processing or about to)? */
  readonly busy: boolean
  readonly fenced: boolean
}

/**
 * One connection in a {@link Snapshot}.
 *
 * @since 0.1.0
 */
export interface ConnectionSnapshot {
  /** The peer's `host:port` as dialled, or its remote address for an inbound connection. */
  readonly peer: string
  /** The peer service's name, once its hello has arrived. */
  readonly peerService: string | undefined
  /** The peer service's incarnation (new each time it starts), once its hello has arrived. */
  readonly peerIncarnation: string | undefined
  readonly direction: "outbound" | "inbound"
  readonly state: "opening" | "open" | "closed"
  /** Asks sent on it that wait for their reply. */
  readonly callsOut: number
  /** Asks received on it that have not been answered yet. */
  readonly callsIn: number
  /** Bytes queued to write, in this library and in the socket. */
  readonly bufferedBytes: number
  /** Milliseconds since anything was heard from the peer. */
  readonly silentMillis: number
}

/**
 * The RpcService in scope.
 *
 * @since 0.1.0
 */
export class RpcService extends Context.Service<RpcService, RpcServiceShape>()("effect-actor-rpc/RpcService") {}
