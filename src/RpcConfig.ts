/**
 * Configuration of an RpcService: every knob with its default and the reason for it.
 *
 * `RpcConfig` is a `Context.Reference`, so a service built without any configuration Layer uses `defaults`.
 * Override it with `RpcConfig.layer({ ... })`, or read it from the environment with `RpcConfig.layerFromEnv()`
 * (variables `RPC_ASK_TIMEOUT`, `RPC_MAXIMUM_FRAME_SIZE`, `RPC_BIND_PORT`, `RPC_TLS_CERT`, ...: each field's name in
 * constant case after `RPC_`).
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"

/**
 * The configuration record of an RpcService.
 *
 * @since 0.1.0
 */
export interface RpcConfig {
  /**
   * Timeout of an ask whose method declares none and whose caller passes none. Flink's `pekko.ask.timeout`
   * defaults to 10 s: long enough for a loaded JVM-like peer, short enough that a lost peer is noticed.
   */
  readonly askTimeout: Duration.Duration
  /**
   * The largest encoded message a transport sends or accepts, in bytes (10 MiB, Flink's
   * `pekko.framesize`). Local calls pass values by reference and are never limited.
   */
  readonly maximumFrameSize: number
  /**
   * Capture the caller's stack when an ask is made so that an `RpcTimeoutError` points at the calling code.
   * On by default (as in Flink); costs about a microsecond per call, so turn it off on hot paths once stable.
   */
  readonly captureAskCallSite: boolean
  /**
   * How many messages an endpoint's main thread processes before it yields to other fibers. Higher favours
   * one busy endpoint's throughput, lower favours fairness between endpoints (Pekko's dispatcher throughput).
   */
  readonly mailboxThroughput: number
  /** How often a connection sends a heartbeat to its peer (1 s). */
  readonly heartbeatInterval: Duration.Duration
  /**
   * How long a connection may hear nothing from its peer before it declares the peer dead and fails every call
   * in flight to it with `RecipientUnreachableError` (10 s, Pekko's watch failure detector). Keep it several
   * heartbeat intervals long so a busy event loop or a garbage collection pause is not taken for a death.
   */
  readonly heartbeatPause: Duration.Duration
  /**
   * How long opening a connection (TCP connect, TLS handshake and hello) may take before it fails (5 s). It is
   * also the handshake timeout of inbound connections: a peer that has not completed its TLS handshake and sent
   * its hello by then is disconnected, so slow or silent clients cannot hold connections open.
   */
  readonly connectTimeout: Duration.Duration
  /** The interface a TCP or TLS transport listens on ("127.0.0.1": only this machine; "0.0.0.0" for all). */
  readonly bindHost: string
  /** The port or port range to listen on: "0" (any free port), "6123", "50100-50200" or "50100-50200,50300". */
  readonly bindPort: string
  /** The host put into this service's addresses, when it differs from `bindHost` (NAT, containers). */
  readonly externalHost: string | undefined
  /** The port put into this service's addresses, when it differs from the bound port (port forwarding). */
  readonly externalPort: number | undefined
  /** TLS private key: a PEM string or the path of a PEM file. */
  readonly tlsKey: string | undefined
  /** TLS certificate (chain): a PEM string or the path of a PEM file. */
  readonly tlsCert: string | undefined
  /** The CA certificates that peers' certificates must chain to: a PEM string or the path of a PEM file. */
  readonly tlsCa: string | undefined
  /** Require and verify a client certificate on inbound TLS connections (mutual TLS; on by default). */
  readonly tlsRequireClientCert: boolean
  /**
   * If not empty, a TLS peer is trusted only if its certificate's SHA-256 fingerprint (as Node prints it,
   * "AB:CD:...") is one of these, in addition to chaining to `tlsCa`.
   */
  readonly tlsPinnedFingerprints: ReadonlyArray<string>
  /**
   * How often the TLS key, certificate and CA files are checked for changes (5 s). A change takes effect for new
   * connections without a restart; open connections keep the material they were opened with.
   */
  readonly tlsReloadInterval: Duration.Duration
  /**
   * The most connections (inbound and outbound) a transport keeps open (1024). An inbound connection beyond it
   * is told why and closed at once, so a flood of connections cannot exhaust memory or file descriptors.
   */
  readonly maxConnections: number
  /**
   * The most asks one connection's peer may have waiting on this service (16384). An ask beyond it is answered
   * at once with `MailboxFullError` instead of being queued, so a peer that sends asks without reading the
   * replies cannot make this service hold an unbounded number of them and their replies.
   */
  readonly maxAsksPerConnection: number
  /**
   * Record the per-call metrics of RpcMetrics (latency, mailbox wait, handler time, mailbox depth, frame sizes).
   * On by default; they cost about 0.3 µs per call, which matters only for in-process calls on a hot path.
   */
  readonly metrics: boolean
  /**
   * Trace calls: an ask or tell made inside a span gets a client span, and its handler a server span that is its
   * child, across the wire too. On by default; calls made outside any span are never traced.
   */
  readonly tracing: boolean
  /**
   * Which differences a connect accepts between the caller's version of a gateway and the endpoint's, when their
   * fingerprints differ (docs/PROTOCOL.md, "Gateway evolution"). Both sides judge, each by its own setting, and
   * either can refuse:
   * - `exact`: none; any difference refuses with `GatewayMismatch` (Flink's one version across the cluster).
   * - `backward` (the default): the calls this caller makes to this endpoint must work: every payload it writes
   *   decodes at the endpoint, every success and failure the endpoint writes decodes at the caller. A method only
   *   the caller has fails alone, with `MethodNotServedError`.
   * - `both`: the calls must also work with the roles swapped (the endpoint's version calling the caller's), so any
   *   two processes of the cluster can call each other whatever their versions.
   *
   * `backward` is the default because it refuses exactly the connections whose calls would fail to decode or be
   * misread, and accepts the rest: a rolling upgrade then proceeds in any order. `both` refuses connections that
   * work, because of calls that would break on another connection.
   */
  readonly gatewayCompatibility: "exact" | "backward" | "both"
  /**
   * Answer reflection (`RpcReflection`): the service serves, at the reserved endpoint id
   * `effect-actor-rpc.reflection`, the list of its endpoints, the gateways each serves and their Schemas. Off by
   * default: it tells anyone who can connect every endpoint id, which are otherwise unguessable (docs/SECURITY.md).
   * Turn it on behind mutual TLS or on a network you control, or to use the command-line client's `list`,
   * `describe` and `call`.
   */
  readonly reflection: boolean
}

/**
 * The defaults: ask timeout 10 s, frame size 10 MiB, call-site capture on, mailbox throughput 64, heartbeats every
 * 1 s with a 10 s pause, listening on 127.0.0.1 on any free port, mutual TLS reloaded every 5 s, at most 1024
 * connections, metrics and tracing on, the `backward` gateway compatibility policy, reflection off.
 *
 * @since 0.1.0
 */
export const defaults: RpcConfig = {
  askTimeout: Duration.seconds(10),
  maximumFrameSize: 10 * 1024 * 1024,
  captureAskCallSite: true,
  mailboxThroughput: 64,
  heartbeatInterval: Duration.seconds(1),
  heartbeatPause: Duration.seconds(10),
  connectTimeout: Duration.seconds(5),
  bindHost: "127.0.0.1",
  bindPort: "0",
  externalHost: undefined,
  externalPort: undefined,
  tlsKey: undefined,
  tlsCert: undefined,
  tlsCa: undefined,
  tlsRequireClientCert: true,
  tlsPinnedFingerprints: [],
  tlsReloadInterval: Duration.seconds(5),
  maxConnections: 1024,
  maxAsksPerConnection: 16384,
  metrics: true,
  tracing: true,
  gatewayCompatibility: "backward",
  reflection: false
}

/**
 * The configuration in force; `defaults` unless a Layer provides another.
 *
 * @since 0.1.0
 */
export const RpcConfig: Context.Reference<RpcConfig> = Context.Reference<RpcConfig>("effect-actor-rpc/RpcConfig", {
  defaultValue: () => defaults
})

/**
 * Provides the defaults overridden by `options`.
 *
 * @since 0.1.0
 */
export const layer = (options?: Partial<RpcConfig> | undefined): Layer.Layer<never> =>
  Layer.succeed(RpcConfig)({ ...defaults, ...options })

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.option(config).pipe(Config.map(Option.getOrUndefined))

/**
 * The configuration as a `Config`, each key falling back to its default (keys are the record's field names).
 *
 * @since 0.1.0
 */
export const config: Config.Config<RpcConfig> = Config.all({
  askTimeout: Config.Duration("askTimeout").pipe(Config.withDefault(defaults.askTimeout)),
  maximumFrameSize: Config.Int("maximumFrameSize").pipe(Config.withDefault(defaults.maximumFrameSize)),
  captureAskCallSite: Config.Boolean("captureAskCallSite").pipe(Config.withDefault(defaults.captureAskCallSite)),
  mailboxThroughput: Config.Int("mailboxThroughput").pipe(Config.withDefault(defaults.mailboxThroughput)),
  heartbeatInterval: Config.Duration("heartbeatInterval").pipe(Config.withDefault(defaults.heartbeatInterval)),
  heartbeatPause: Config.Duration("heartbeatPause").pipe(Config.withDefault(defaults.heartbeatPause)),
  connectTimeout: Config.Duration("connectTimeout").pipe(Config.withDefault(defaults.connectTimeout)),
  bindHost: Config.String("bindHost").pipe(Config.withDefault(defaults.bindHost)),
  bindPort: Config.String("bindPort").pipe(Config.withDefault(defaults.bindPort)),
  externalHost: optional(Config.String("externalHost")),
  externalPort: optional(Config.Port("externalPort")),
  tlsKey: optional(Config.String("tlsKey")),
  tlsCert: optional(Config.String("tlsCert")),
  tlsCa: optional(Config.String("tlsCa")),
  tlsRequireClientCert: Config.Boolean("tlsRequireClientCert").pipe(
    Config.withDefault(defaults.tlsRequireClientCert)
  ),
  tlsPinnedFingerprints: Config.String("tlsPinnedFingerprints").pipe(
    Config.map((list) => list.split(",").map((item) => item.trim()).filter((item) => item !== "")),
    Config.withDefault(defaults.tlsPinnedFingerprints)
  ),
  tlsReloadInterval: Config.Duration("tlsReloadInterval").pipe(Config.withDefault(defaults.tlsReloadInterval)),
  maxConnections: Config.Int("maxConnections").pipe(Config.withDefault(defaults.maxConnections)),
  maxAsksPerConnection: Config.Int("maxAsksPerConnection").pipe(Config.withDefault(defaults.maxAsksPerConnection)),
  metrics: Config.Boolean("metrics").pipe(Config.withDefault(defaults.metrics)),
  tracing: Config.Boolean("tracing").pipe(Config.withDefault(defaults.tracing)),
  gatewayCompatibility: Config.Literals(["exact", "backward", "both"], "gatewayCompatibility").pipe(
    Config.withDefault(defaults.gatewayCompatibility)
  ),
  reflection: Config.Boolean("reflection").pipe(Config.withDefault(defaults.reflection))
}).pipe(Config.nested("rpc"))

/**
 * Reads the configuration from environment variables (`RPC_ASK_TIMEOUT="5 seconds"`, ...), with defaults.
 *
 * @since 0.1.0
 */
export const layerFromEnv = (options?: Partial<RpcConfig> | undefined): Layer.Layer<never, Config.ConfigError> =>
  Layer.effect(RpcConfig)(
    Effect.gen(function*() {
      const loaded = yield* config
      return { ...loaded, ...options }
    }).pipe(
      Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv().pipe(ConfigProvider.constantCase))
    )
  )
