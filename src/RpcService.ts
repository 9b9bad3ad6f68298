/**
 * The RpcService: starts and stops endpoints, connects to addresses, owns every endpoint it started and shuts
 * them all down (Flink's `RpcService`). Provide it with a Layer: `RpcService.layerLocal()` in-process,
 * `RpcService.layerTcp()` over TCP or `RpcService.layerTls()` over mutual TLS.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Result from "effect/Result"
import * as Service from "./internal/service.js"
import * as Transport from "./internal/transport.js"
import { RpcConfig } from "./RpcConfig.js"
import {
  type EndpointIdInUseError,
  RpcBindError,
  type RpcConnectionError,
  type RpcServiceStoppedError
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
  /** The address an endpoint with this id has on this service (`rpc://host:port/id` once it has a transport). */
  readonly address: (endpointId: string) => string
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
  /** What the service holds right now: its endpoints and their mailboxes, its connections, its calls in flight. */
  readonly introspect: Effect.Effect<Snapshot>
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
  Effect.map(makeService(options), (service) => RpcService.of(service))

const makeService = (options: LocalOptions | undefined) =>
  Effect.gen(function*() {
    const config = yield* RpcConfig
    const service = new Service.LocalService(
      options?.name ?? Service.freshName(),
      config,
      yield* Effect.context<never>()
    )
    yield* Effect.addFinalizer(() =>
      service.shutdown.pipe(
        Effect.catchCause((cause) =>
          Effect.logWarning("RpcService shut down with a failing endpoint", cause).pipe(
            Effect.annotateLogs({ service: service.name })
          )
        )
      )
    )
    return service
  })

/**
 * Provides an in-process RpcService (reads `RpcConfig`); closing the Layer shuts it down.
 *
 * @since 0.1.0
 */
export const layerLocal = (options?: LocalOptions | undefined): Layer.Layer<RpcService> =>
  Layer.effect(RpcService)(makeLocal(options))

/**
 * Options of a TCP service; each one overrides the matching `RpcConfig` field.
 *
 * @since 0.1.0
 */
export interface TcpOptions extends LocalOptions {
  /** The interface to listen on (`RpcConfig.bindHost`, "127.0.0.1" by default; "0.0.0.0" for every interface). */
  readonly host?: string | undefined
  /** The port or port range: "0" (any), 6123, "50100-50200" (`RpcConfig.bindPort`). */
  readonly port?: string | number | undefined
  /** The host to advertise in addresses when it differs from the bind host (`RpcConfig.externalHost`). */
  readonly externalHost?: string | undefined
  /** The port to advertise when it differs from the bound port (`RpcConfig.externalPort`). */
  readonly externalPort?: number | undefined
}

/**
 * Options of a mutual-TLS service: key, certificate and CA as PEM strings or file paths (default: the `RpcConfig`
 * `tls*` fields).
 *
 * @since 0.1.0
 */
export interface TlsOptions extends TcpOptions {
  readonly key?: string | undefined
  readonly cert?: string | undefined
  readonly ca?: string | undefined
  /** Require a client certificate that chains to `ca` (default true: mutual TLS). */
  readonly requireClientCert?: boolean | undefined
  /** Trust only peers whose certificate has one of these SHA-256 fingerprints ("AB:CD:..."). */
  readonly pinnedFingerprints?: ReadonlyArray<string> | undefined
}

const makeRemote = (options: TlsOptions | undefined, tls: boolean) =>
  Effect.gen(function*() {
    const config = yield* RpcConfig
    const listen: Transport.ListenSettings = {
      host: options?.host ?? config.bindHost,
      port: String(options?.port ?? config.bindPort),
      externalHost: options?.externalHost ?? config.externalHost,
      externalPort: options?.externalPort ?? config.externalPort
    }
    let settings: Transport.TlsSettings | undefined
    if (tls) {
      const sources = {
        key: options?.key ?? config.tlsKey,
        cert: options?.cert ?? config.tlsCert,
        ca: options?.ca ?? config.tlsCa
      }
      const loaded = Transport.loadMaterial(sources)
      if (Result.isFailure(loaded)) {
        return yield* Effect.fail(new RpcBindError({ host: listen.host, portRange: listen.port, detail: loaded.failure }))
      }
      settings = {
        ...loaded.success,
        sources: { key: sources.key!, cert: sources.cert!, ca: sources.ca! },
        requireClientCert: options?.requireClientCert ?? config.tlsRequireClientCert,
        pinnedFingerprints: options?.pinnedFingerprints ?? config.tlsPinnedFingerprints
      }
    }
    const service = yield* makeService(options)
    const transport = yield* Transport.make(
      {
        serviceName: service.name,
        config,
        lookup: (endpointId) => service.endpoint(endpointId),
        instruments: service.instruments,
        tracing: service.tracing,
        context: yield* Effect.context<never>()
      },
      listen,
      settings
    )
    service.attach(transport)
    return RpcService.of(service)
  })

/**
 * Makes an RpcService that listens on TCP (`rpc://host:port/endpointId` addresses) and shuts down with the scope.
 *
 * @since 0.1.0
 */
export const makeTcp = (options?: TcpOptions | undefined): Effect.Effect<RpcServiceShape, RpcBindError, Scope.Scope> =>
  makeRemote(options, false)

/**
 * Makes an RpcService that listens on mutual TLS (`rpcs://host:port/endpointId`) and shuts down with the scope.
 *
 * @since 0.1.0
 */
export const makeTls = (options?: TlsOptions | undefined): Effect.Effect<RpcServiceShape, RpcBindError, Scope.Scope> =>
  makeRemote(options, true)

/**
 * Provides an RpcService over TCP; it reaches `rpc://` addresses and still serves `local://` ones in-process.
 *
 * @since 0.1.0
 */
export const layerTcp = (options?: TcpOptions | undefined): Layer.Layer<RpcService, RpcBindError> =>
  Layer.effect(RpcService)(makeTcp(options))

/**
 * Provides an RpcService over mutual TLS; peers must present certificates that chain to the configured CA.
 *
 * @since 0.1.0
 */
export const layerTls = (options?: TlsOptions | undefined): Layer.Layer<RpcService, RpcBindError> =>
  Layer.effect(RpcService)(makeTls(options))
