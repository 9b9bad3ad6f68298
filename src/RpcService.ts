/**
 * The RpcService: starts and stops endpoints, connects to addresses, owns every endpoint it started and shuts
 * them all down (Flink's `RpcService`). Provide it with a Layer: `RpcService.layerLocal()` in-process,
 * `RpcService.layerTcp()` over TCP or `RpcService.layerTls()` over mutual TLS.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Result from "effect/Result"
import * as Reflection from "./internal/reflection.js"
import * as Service from "./internal/service.js"
import * as Tls from "./internal/tls.js"
import * as Transport from "./internal/transport.js"
import { RpcConfig } from "./RpcConfig.js"
import { RpcService, type RpcServiceShape } from "./internal/serviceTag.js"
import { RpcBindError, type ServiceNameInUseError } from "./RpcError.js"

export {
  /**
   * The RpcService in scope.
   *
   * @since 0.1.0
   */
  RpcService
} from "./internal/serviceTag.js"

export type {
  /**
   * Options of a connect.
   *
   * @since 0.2.0
   */
  ConnectOptions,
  /**
   * One connection in a {@link Snapshot}.
   *
   * @since 0.1.0
   */
  ConnectionSnapshot,
  /**
   * One endpoint in a {@link Snapshot}.
   *
   * @since 0.1.0
   */
  EndpointSnapshot,
  /**
   * What an RpcService can do.
   *
   * @since 0.1.0
   */
  RpcServiceShape,
  /**
   * A run scheduled with `scheduleRunnable`.
   *
   * @since 0.2.0
   */
  ScheduledTask,
  /**
   * A point-in-time view of an RpcService, for dashboards, health checks and leak tests.
   *
   * @since 0.1.0
   */
  Snapshot
} from "./internal/serviceTag.js"

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
export const makeLocal = (
  options?: LocalOptions | undefined
): Effect.Effect<RpcServiceShape, ServiceNameInUseError, Scope.Scope> =>
  Effect.gen(function*() {
    const service = yield* makeService(options)
    if (service.config.reflection) yield* Reflection.serve(service)
    return RpcService.of(service)
  })

const makeService = (options: LocalOptions | undefined) =>
  Effect.gen(function*() {
    return yield* Service.make(options?.name, yield* RpcConfig)
  })

/**
 * Provides an in-process RpcService (reads `RpcConfig`); closing the Layer shuts it down.
 *
 * @since 0.1.0
 */
export const layerLocal = (options?: LocalOptions | undefined): Layer.Layer<RpcService, ServiceNameInUseError> =>
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
    let settings: Tls.TlsSettings | undefined
    if (tls) {
      const sources = {
        key: options?.key ?? config.tlsKey,
        cert: options?.cert ?? config.tlsCert,
        ca: options?.ca ?? config.tlsCa
      }
      const loaded = Tls.loadMaterial(sources)
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
    // In the service's scope: its connections close after its endpoints have stopped, not before.
    const transport = yield* Scope.provide(service.scope)(Transport.make(
      {
        serviceName: service.name,
        config,
        lookup: (endpointId) => service.endpoint(endpointId),
        instruments: service.instruments,
        tracing: service.tracing,
        now: service.now,
        context: yield* Effect.context<never>(),
        verdicts: service.verdicts
      },
      listen,
      settings
    ))
    service.attach(transport)
    // Once attached: the reflection endpoint's address is a rpc:// one.
    if (config.reflection) yield* Reflection.serve(service)
    return RpcService.of(service)
  })

/**
 * Makes an RpcService that listens on TCP (`rpc://host:port/endpointId` addresses) and shuts down with the scope.
 *
 * @since 0.1.0
 */
export const makeTcp = (
  options?: TcpOptions | undefined
): Effect.Effect<RpcServiceShape, RpcBindError | ServiceNameInUseError, Scope.Scope> =>
  makeRemote(options, false)

/**
 * Makes an RpcService that listens on mutual TLS (`rpcs://host:port/endpointId`) and shuts down with the scope.
 *
 * @since 0.1.0
 */
export const makeTls = (
  options?: TlsOptions | undefined
): Effect.Effect<RpcServiceShape, RpcBindError | ServiceNameInUseError, Scope.Scope> =>
  makeRemote(options, true)

/**
 * Provides an RpcService over TCP; it reaches `rpc://` addresses and still serves `local://` ones in-process.
 *
 * @since 0.1.0
 */
export const layerTcp = (options?: TcpOptions | undefined): Layer.Layer<RpcService, RpcBindError | ServiceNameInUseError> =>
  Layer.effect(RpcService)(makeTcp(options))

/**
 * Provides an RpcService over mutual TLS; peers must present certificates that chain to the configured CA.
 *
 * @since 0.1.0
 */
export const layerTls = (options?: TlsOptions | undefined): Layer.Layer<RpcService, RpcBindError | ServiceNameInUseError> =>
  Layer.effect(RpcService)(makeTls(options))
