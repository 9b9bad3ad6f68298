import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer } from "effect"
import { RpcConfig } from "effect-actor-rpc"

describe("RpcConfig", () => {
  it.effect("the defaults are the documented ones and apply without any Layer", () =>
    Effect.gen(function*() {
      const config = yield* RpcConfig.RpcConfig
      assert.isTrue(Duration.equals(config.askTimeout, Duration.seconds(10)))
      assert.strictEqual(config.maximumFrameSize, 10 * 1024 * 1024)
      assert.isTrue(config.captureAskCallSite)
      assert.strictEqual(config.mailboxThroughput, 64)
      assert.deepStrictEqual(config, RpcConfig.defaults)
    }))

  it.effect("layer overrides some fields and keeps the other defaults", () =>
    Effect.gen(function*() {
      const config = yield* RpcConfig.RpcConfig
      assert.isFalse(config.captureAskCallSite)
      assert.strictEqual(config.mailboxThroughput, RpcConfig.defaults.mailboxThroughput)
    }).pipe(Effect.provide(RpcConfig.layer({ captureAskCallSite: false }))))

  it.effect("config reads RPC_* keys and falls back to the defaults", () =>
    Effect.gen(function*() {
      const config = yield* RpcConfig.config
      assert.isTrue(Duration.equals(config.askTimeout, Duration.seconds(3)))
      assert.strictEqual(config.mailboxThroughput, 8)
      assert.strictEqual(config.maximumFrameSize, RpcConfig.defaults.maximumFrameSize)
    }).pipe(
      Effect.provideService(
        ConfigProvider.ConfigProvider,
        ConfigProvider.fromEnv({ env: { RPC_ASK_TIMEOUT: "3 seconds", RPC_MAILBOX_THROUGHPUT: "8" } }).pipe(
          ConfigProvider.constantCase
        )
      )
    ))

  it.effect("config reads the transport keys: heartbeats, bind and external address, TLS", () =>
    Effect.gen(function*() {
      const config = yield* RpcConfig.config
      assert.isTrue(Duration.equals(config.heartbeatInterval, Duration.millis(250)))
      assert.isTrue(Duration.equals(config.heartbeatPause, Duration.seconds(2)))
      assert.strictEqual(config.bindHost, "0.0.0.0")
      assert.strictEqual(config.bindPort, "50100-50200")
      assert.strictEqual(config.externalHost, "rpc.example.org")
      assert.strictEqual(config.externalPort, 443)
      assert.strictEqual(config.tlsCert, "/etc/rpc/node.crt")
      assert.isUndefined(config.tlsKey)
      assert.isFalse(config.tlsRequireClientCert)
      assert.deepStrictEqual(config.tlsPinnedFingerprints, ["AA:BB", "CC:DD"])
    }).pipe(
      Effect.provideService(
        ConfigProvider.ConfigProvider,
        ConfigProvider.fromEnv({
          env: {
            RPC_HEARTBEAT_INTERVAL: "250 millis",
            RPC_HEARTBEAT_PAUSE: "2 seconds",
            RPC_BIND_HOST: "0.0.0.0",
            RPC_BIND_PORT: "50100-50200",
            RPC_EXTERNAL_HOST: "rpc.example.org",
            RPC_EXTERNAL_PORT: "443",
            RPC_TLS_CERT: "/etc/rpc/node.crt",
            RPC_TLS_REQUIRE_CLIENT_CERT: "false",
            RPC_TLS_PINNED_FINGERPRINTS: "AA:BB, CC:DD"
          }
        }).pipe(ConfigProvider.constantCase)
      )
    ))

  it.effect("config reads the reliability keys: TLS reload, connection limit, metrics, tracing", () =>
    Effect.gen(function*() {
      const config = yield* RpcConfig.config
      assert.isTrue(Duration.equals(config.tlsReloadInterval, Duration.seconds(30)))
      assert.strictEqual(config.maxConnections, 64)
      assert.strictEqual(config.maxAsksPerConnection, 100)
      assert.isFalse(config.metrics)
      assert.isFalse(config.tracing)
      const defaults = yield* RpcConfig.config.pipe(
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: {} }))
      )
      assert.isTrue(Duration.equals(defaults.tlsReloadInterval, Duration.seconds(5)))
      assert.strictEqual(defaults.maxConnections, 1024)
      assert.strictEqual(defaults.maxAsksPerConnection, 16384)
      assert.isTrue(defaults.metrics)
      assert.isTrue(defaults.tracing)
    }).pipe(
      Effect.provideService(
        ConfigProvider.ConfigProvider,
        ConfigProvider.fromEnv({
          env: {
            RPC_TLS_RELOAD_INTERVAL: "30 seconds",
            RPC_MAX_CONNECTIONS: "64",
            RPC_MAX_ASKS_PER_CONNECTION: "100",
            RPC_METRICS: "false",
            RPC_TRACING: "false"
          }
        }).pipe(ConfigProvider.constantCase)
      )
    ))

  it.effect("layerFromEnv reads the process environment; explicit options win", () =>
    Effect.gen(function*() {
      process.env.RPC_CAPTURE_ASK_CALL_SITE = "false"
      process.env.RPC_MAXIMUM_FRAME_SIZE = "1024"
      try {
        const config = yield* Effect.provide(
          Effect.service(RpcConfig.RpcConfig),
          RpcConfig.layerFromEnv({ maximumFrameSize: 2048 })
        )
        assert.isFalse(config.captureAskCallSite)
        assert.strictEqual(config.maximumFrameSize, 2048)
      } finally {
        delete process.env.RPC_CAPTURE_ASK_CALL_SITE
        delete process.env.RPC_MAXIMUM_FRAME_SIZE
      }
    }))

  it.effect("layerFromEnv fails with a ConfigError on a malformed value", () =>
    Effect.gen(function*() {
      process.env.RPC_MAILBOX_THROUGHPUT = "lots"
      try {
        const error = yield* Effect.flip(Effect.provide(Effect.void, RpcConfig.layerFromEnv()))
        assert.include(String(error), "mailboxThroughput")
      } finally {
        delete process.env.RPC_MAILBOX_THROUGHPUT
      }
    }))

  it("layer builds a Layer value", () => {
    assert.isTrue(Layer.isLayer(RpcConfig.layer()))
  })
})
