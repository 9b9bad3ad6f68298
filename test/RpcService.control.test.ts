/**
 * The service's control plane: a unique name (a typed error otherwise), a shutdown that runs to the end whoever
 * interrupts its caller, Flink's connect timeout and scheduleRunnable, and values that print small and fast in
 * every state (a service, a server handle, a client).
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Layer, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import { RpcEndpoint, RpcError, RpcGateway, RpcService } from "effect-actor-rpc"
import * as Net from "node:net"
import { startOn } from "./behaviour.js"
import { settle } from "./fixtures/common.js"
import { collectLogs, makeLogLines } from "./fixtures/raw.js"
import { local, tcp } from "./fixtures/transports.js"

const Echo = RpcGateway.make("Echo", { echo: RpcGateway.ask({ payload: Schema.String, success: Schema.String }) })

const echo = RpcEndpoint.make({
  id: "echo",
  gateways: [Echo],
  init: () => Effect.succeed({ handlers: { echo: (text: string) => Effect.succeed(text) } })
})

/** A TCP listener on 127.0.0.1 that accepts and then says nothing: a connect to it never completes its hello. */
const silentListener = Effect.acquireRelease(
  Effect.callback<Net.Server>((resume) => {
    const sockets = new Set<Net.Socket>()
    const server = Net.createServer((socket) => {
      sockets.add(socket)
      socket.on("error", () => {})
    })
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(Object.assign(server, { sockets }))))
  }),
  (server) =>
    Effect.callback<void>((resume) => {
      for (const socket of (server as Net.Server & { sockets: Set<Net.Socket> }).sockets) socket.destroy()
      server.close(() => resume(Effect.void))
    })
)

describe("RpcService control", () => {
  it.effect("a second in-process service with a live service's name fails ServiceNameInUseError", () =>
    Effect.gen(function*() {
      yield* RpcService.makeLocal({ name: "unique-name" })
      const error = yield* Effect.flip(RpcService.makeLocal({ name: "unique-name" }))
      assert.instanceOf(error, RpcError.ServiceNameInUseError)
      assert.include(error.message, "unique-name")
      // The Layer says so in its type and at build.
      const exit = yield* Effect.exit(Layer.build(RpcService.layerLocal({ name: "unique-name" })))
      assert.isTrue(Exit.isFailure(exit))
    }).pipe(Effect.scoped))

  it.effect("the name is free again once the service has shut down", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* RpcService.makeLocal({ name: "reused-name" }).pipe(Scope.provide(scope))
      yield* Scope.close(scope, Exit.void)
      const again = yield* RpcService.makeLocal({ name: "reused-name" })
      assert.strictEqual(again.name, "reused-name")
    }).pipe(Effect.scoped))

  it.effect("a shutdown whose caller is interrupted still runs to the end; every later call awaits it", () =>
    Effect.gen(function*() {
      const service = yield* RpcService.makeLocal()
      const release = yield* Deferred.make<void>()
      yield* startOn(
        service,
        RpcEndpoint.make({
          gateways: [Echo],
          init: () =>
            Effect.succeed({
              handlers: { echo: (text: string) => Effect.succeed(text) },
              onStop: Deferred.await(release)
            })
        })
      )
      const caller = yield* Effect.forkChild(service.shutdown, { startImmediately: true })
      yield* settle
      yield* Fiber.interrupt(caller)
      assert.isFalse(yield* service.isStopped, "onStop still waits")
      yield* Deferred.succeed(release, undefined)
      yield* service.awaitTermination
      assert.isTrue(yield* service.isStopped)
      yield* service.shutdown
    }).pipe(Effect.scoped))

  describe("scheduleRunnable", () => {
    it.effect("runs once after its delay, on a fiber of the service", () =>
      Effect.gen(function*() {
        const service = yield* RpcService.makeLocal()
        let runs = 0
        yield* service.scheduleRunnable(Effect.sync(() => void runs++), "1 second")
        yield* TestClock.adjust("999 millis")
        assert.strictEqual(runs, 0, "not before its delay")
        yield* TestClock.adjust("1 millis")
        assert.strictEqual(runs, 1)
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(runs, 1, "once")
      }).pipe(Effect.scoped))

    it.effect("with a period, runs at a fixed rate until cancelled", () =>
      Effect.gen(function*() {
        const service = yield* RpcService.makeLocal()
        const at: Array<number> = []
        const task = yield* service.scheduleRunnable(
          Effect.map(Effect.clockWith((clock) => Effect.succeed(clock.currentTimeMillisUnsafe())), (now) => void at.push(now)),
          "100 millis",
          "1 second"
        )
        yield* TestClock.adjust("3100 millis")
        assert.deepStrictEqual(at, [100, 1100, 2100, 3100])
        yield* task.cancel
        yield* TestClock.adjust("5 seconds")
        assert.strictEqual(at.length, 4, "nothing after cancel")
      }).pipe(Effect.scoped))

    it.effect("a failure is logged and ends the schedule", () =>
      Effect.gen(function*() {
        const logs = makeLogLines()
        const service = yield* RpcService.makeLocal()
        let runs = 0
        yield* service.scheduleRunnable(
          Effect.suspend(() => ++runs === 2 ? Effect.fail("disk full") : Effect.void),
          "0 millis",
          "1 second"
        ).pipe(collectLogs(logs))
        yield* TestClock.adjust("10 seconds")
        assert.strictEqual(runs, 2, "no run after the failure")
        assert.strictEqual(logs.count("scheduled on the RpcService failed"), 1)
      }).pipe(Effect.scoped))

    it.effect("the shutdown cancels what is scheduled; a stopped service schedules nothing", () =>
      Effect.gen(function*() {
        const service = yield* RpcService.makeLocal()
        let runs = 0
        let interrupted = false
        yield* service.scheduleRunnable(
          Effect.sync(() => void runs++).pipe(Effect.onInterrupt(() => Effect.sync(() => void (interrupted = true)))),
          "1 second",
          "1 second"
        )
        yield* TestClock.adjust("1 second")
        yield* service.shutdown
        yield* TestClock.adjust("10 seconds")
        assert.strictEqual(runs, 1)
        const error = yield* Effect.flip(service.scheduleRunnable(Effect.void, "1 second"))
        assert.instanceOf(error, RpcError.RpcServiceStoppedError)
        assert.isFalse(interrupted, "it was between runs")
      }).pipe(Effect.scoped))
  })

  describe("connect timeout", () => {
    it.live("a connect that cannot complete within its own timeout fails RpcConnectionError (Timeout), naming the address and the limit", () =>
      Effect.gen(function*() {
        const listener = yield* silentListener
        const port = (listener.address() as Net.AddressInfo).port
        const client = yield* RpcService.makeTcp()
        const address = `rpc://127.0.0.1:${port}/echo`
        const error = yield* Effect.flip(client.connect(address, Echo, { timeout: "200 millis" }))
        assert.instanceOf(error, RpcError.RpcConnectionError)
        assert.strictEqual((error as RpcError.RpcConnectionError).reason, "Timeout")
        assert.include(error.message, address)
        assert.include(error.message, "200")
      }).pipe(Effect.scoped))

    it.live("without an option, the limit is RpcConfig.connectTimeout, which the message names", () =>
      Effect.gen(function*() {
        const listener = yield* silentListener
        const port = (listener.address() as Net.AddressInfo).port
        const { client } = yield* tcp.pair({ connectTimeout: Duration.millis(200) })
        const error = yield* Effect.flip(client.connect(`rpc://127.0.0.1:${port}/echo`, Echo))
        assert.strictEqual((error as RpcError.RpcConnectionError).reason, "Timeout")
        assert.include(error.message, "RpcConfig.connectTimeout")
      }).pipe(Effect.scoped))
  })

  describe("printing", () => {
    const check = (label: string, value: unknown, expected: string) => {
      for (const text of [String(value), String(Exit.succeed(value)), JSON.stringify(value), Cause.pretty(Cause.fail(value))]) {
        assert.isBelow(text.length, 400, `${label} prints small: ${text.slice(0, 200)}`)
      }
      assert.include(String(value), expected, label)
    }

    for (const transport of [local, tcp]) {
      it.live(`a ${transport.name} service, its server handle and a client print as one short line, running and stopped`, () =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const { client, server } = yield* transport.pair().pipe(Scope.provide(scope))
          const handle = yield* startOn(server, echo).pipe(Scope.provide(scope))
          const echoClient = yield* client.connect(handle.address, Echo)
          assert.strictEqual(yield* echoClient.echo("x"), "x")
          check("service", server, "RpcService(")
          check("server handle", handle, "RpcServer(")
          check("client", echoClient, "RpcGateway.Client(Echo at ")
          yield* Scope.close(scope, Exit.void)
          check("stopped service", server, "stopped")
          check("terminated server handle", handle, "terminated")
          check("client of a stopped service", echoClient, "Echo")
        }))
    }
  })
})
