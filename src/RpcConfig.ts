/**
 * Configuration of an RpcService: every knob with its default and the reason for it.
 *
 * `RpcConfig` is a `Context.Reference`, so a service built without any configuration Layer uses `defaults`.
 * Override it with `RpcConfig.layer({ ... })`, or read it from the environment with `RpcConfig.layerFromEnv()`
 * (variables `RPC_ASK_TIMEOUT`, `RPC_MAXIMUM_FRAME_SIZE`, `RPC_CAPTURE_ASK_CALL_SITE`, `RPC_MAILBOX_THROUGHPUT`).
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

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
}

/**
 * The defaults: ask timeout 10 s, frame size 10 MiB, call-site capture on, mailbox throughput 64.
 *
 * @since 0.1.0
 */
export const defaults: RpcConfig = {
  askTimeout: Duration.seconds(10),
  maximumFrameSize: 10 * 1024 * 1024,
  captureAskCallSite: true,
  mailboxThroughput: 64
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

/**
 * The configuration as a `Config`, each key falling back to its default (keys are the record's field names).
 *
 * @since 0.1.0
 */
export const config: Config.Config<RpcConfig> = Config.all({
  askTimeout: Config.Duration("askTimeout").pipe(Config.withDefault(defaults.askTimeout)),
  maximumFrameSize: Config.Int("maximumFrameSize").pipe(Config.withDefault(defaults.maximumFrameSize)),
  captureAskCallSite: Config.Boolean("captureAskCallSite").pipe(Config.withDefault(defaults.captureAskCallSite)),
  mailboxThroughput: Config.Int("mailboxThroughput").pipe(Config.withDefault(defaults.mailboxThroughput))
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
