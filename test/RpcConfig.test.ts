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
