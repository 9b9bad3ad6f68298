/**
 * Gateways and their clients: method declarations, timeouts (service default, method default, per call) on the
 * TestClock, and TimeoutCallStackTest's call-site capture.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import { RpcEndpoint, RpcError, RpcGateway } from "effect-actor-rpc"
import { service, TestGateway, testEndpoint, withService, settle } from "./fixtures/common.js"

const SlowGateway = RpcGateway.make("SlowGateway", {
  callThatTimesOut: RpcGateway.ask({ success: Schema.Number }),
  withDefault: RpcGateway.ask({ success: Schema.Number, timeout: "3 seconds" })
})

const slowEndpoint = RpcEndpoint.make({
  id: "test_name",
  gateways: [SlowGateway],
  init: () =>
    Effect.succeed({
      handlers: {
        callThatTimesOut: () => Effect.succeed(RpcEndpoint.later(Effect.never)),
        withDefault: () => Effect.succeed(RpcEndpoint.later(Effect.never))
      }
    })
})

/** Forks the call, moves the TestClock by `by` and says whether the call has failed with a timeout by then. */
const timedOutAfter = <A, E>(call: Effect.Effect<A, E>, by: Duration.Input) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(Effect.flip(call))
    yield* settle
    yield* TestClock.adjust(by)
    yield* settle
    const done = fiber.pollUnsafe()
    if (done === undefined) {
      yield* Fiber.interrupt(fiber)
      return undefined
    }
    return yield* Fiber.join(fiber)
  })

describe("RpcGateway", () => {
  describe("declarations", () => {
    it("ask and tell default their Schemas; a timeout is decoded to a Duration", () => {
      const method = RpcGateway.ask({ timeout: "5 seconds" })
      assert.strictEqual(method.kind, "ask")
      assert.strictEqual(method.payload, Schema.Void)
      assert.strictEqual(method.success, Schema.Void)
      assert.strictEqual(method.failure, Schema.Never)
      assert.isTrue(Duration.equals(method.timeout!, Duration.seconds(5)))
      const notify = RpcGateway.tell({ payload: Schema.String })
      assert.strictEqual(notify.kind, "tell")
      assert.isUndefined(notify.timeout)
    })

    it("a gateway's fingerprint changes with its Schemas, method names and kinds", () => {
      const base = RpcGateway.make("G", { a: RpcGateway.ask({ payload: Schema.String }) })
      const same = RpcGateway.make("G", { a: RpcGateway.ask({ payload: Schema.String }) })
      const otherPayload = RpcGateway.make("G", { a: RpcGateway.ask({ payload: Schema.Number }) })
      const otherName = RpcGateway.make("G", { b: RpcGateway.ask({ payload: Schema.String }) })
      const otherKind = RpcGateway.make("G", { a: RpcGateway.tell({ payload: Schema.String }) })
      const otherGateway = RpcGateway.make("H", { a: RpcGateway.ask({ payload: Schema.String }) })
      assert.strictEqual(base.fingerprint, same.fingerprint)
      const others = [otherPayload, otherName, otherKind, otherGateway].map((g) => g.fingerprint)
      assert.strictEqual(new Set([base.fingerprint, ...others]).size, 5)
      assert.match(base.fingerprint, /^[0-9a-f]{16}$/)
      assert.isTrue(RpcGateway.isRpcGateway(base))
      assert.isFalse(RpcGateway.isRpcGateway({ name: "G" }))
    })

    it.effect("a client exposes one function per method, its address and its gateway", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint())
        const client = server.self(TestGateway)
        assert.strictEqual(client.address, server.address)
        assert.strictEqual(client.gateway, TestGateway)
        for (const name of Object.keys(TestGateway.methods)) assert.isFunction((client as any)[name])
      }).pipe(withService()))

    it.effect("a local client and a connected client have the same type and behave alike", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(testEndpoint({ value: 8 }))
        const clients: Array<RpcGateway.Client<typeof TestGateway>> = [
          server.self(TestGateway),
          yield* svc.connect(server.address, TestGateway)
        ]
        for (const client of clients) assert.strictEqual(yield* client.foobar(), 8)
      }).pipe(withService()))
  })

  describe("timeouts", () => {
    it.effect("the service default applies when neither method nor call sets one", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(slowEndpoint)
        const client = server.self(SlowGateway)
        assert.isUndefined(yield* timedOutAfter(client.callThatTimesOut(), "4999 millis"))
        const error = yield* timedOutAfter(client.callThatTimesOut(), "5 seconds")
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        assert.strictEqual((error as RpcError.RpcTimeoutError).timeoutMillis, 5000)
      }).pipe(withService({ askTimeout: Duration.seconds(5) })))

    it.effect("the default service timeout is 10 seconds", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(slowEndpoint)
        const client = server.self(SlowGateway)
        assert.isUndefined(yield* timedOutAfter(client.callThatTimesOut(), "9999 millis"))
        const error = yield* timedOutAfter(client.callThatTimesOut(), "10 seconds")
        assert.strictEqual((error as RpcError.RpcTimeoutError).timeoutMillis, 10_000)
      }).pipe(withService()))

    it.effect("a method's default timeout overrides the service's", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(slowEndpoint)
        const client = server.self(SlowGateway)
        assert.isUndefined(yield* timedOutAfter(client.withDefault(), "2999 millis"))
        const error = yield* timedOutAfter(client.withDefault(), "3 seconds")
        assert.strictEqual((error as RpcError.RpcTimeoutError).timeoutMillis, 3000)
      }).pipe(withService({ askTimeout: Duration.seconds(60) })))

    it.effect("a per-call timeout overrides the method's and the service's", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(slowEndpoint)
        const client = server.self(SlowGateway)
        const error = yield* timedOutAfter(client.withDefault(undefined, { timeout: "50 millis" }), "50 millis")
        assert.strictEqual((error as RpcError.RpcTimeoutError).timeoutMillis, 50)
        const longer = yield* timedOutAfter(client.withDefault(undefined, { timeout: "1 minute" }), "3 seconds")
        assert.isUndefined(longer)
      }).pipe(withService()))

    it.effect("the timeout error names method, address and timeout", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(slowEndpoint)
        const error = yield* timedOutAfter(server.self(SlowGateway).callThatTimesOut(undefined, { timeout: 10 }), 10)
        const timeout = error as RpcError.RpcTimeoutError
        assert.strictEqual(timeout.method, "SlowGateway.callThatTimesOut")
        assert.strictEqual(timeout.address, server.address)
        assert.include(timeout.message, "SlowGateway.callThatTimesOut")
        assert.include(timeout.message, server.address)
        assert.include(timeout.message, "10 ms")
      }).pipe(withService()))

    it.effect("a timed-out ask leaves the endpoint serving", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint({ value: 3 }))
        const client = server.self(TestGateway)
        const error = yield* timedOutAfter(client.never(), "2 seconds")
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        assert.strictEqual(yield* client.foobar(), 3)
      }).pipe(withService()))
  })

  describe("TimeoutCallStackTest", () => {
    it.effect("testTimeoutException: the timeout points at the caller's code", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(slowEndpoint)
        const error = yield* timedOutAfter(
          callerOfTheSlowMethod(server.self(SlowGateway)),
          "1 millis"
        ) as Effect.Effect<RpcError.RpcTimeoutError>
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        assert.include(error.message, "callThatTimesOut")
        assert.isDefined(error.callSite)
        assert.include(error.callSite!, "callerOfTheSlowMethod")
        assert.include(error.callSite!, "RpcGateway.test.ts")
        assert.notInclude(error.callSite!, "/src/internal/")
        assert.include(error.message, "callerOfTheSlowMethod")
      }).pipe(withService()))

    it.effect("testTimeoutExceptionWithCaptureOff: no call site is recorded when capture is off", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(slowEndpoint)
        const error = yield* timedOutAfter(callerOfTheSlowMethod(server.self(SlowGateway)), "1 millis")
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        assert.isUndefined((error as RpcError.RpcTimeoutError).callSite)
      }).pipe(withService({ captureAskCallSite: false })))
  })
})

function callerOfTheSlowMethod(client: RpcGateway.Client<typeof SlowGateway>) {
  return client.callThatTimesOut(undefined, { timeout: Duration.millis(1) })
}
