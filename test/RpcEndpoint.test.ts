/**
 * Endpoint lifecycle, main thread and calls. Tests named after a Flink test are ports of it
 * (RpcEndpointTest, PekkoRpcActorTest, AsyncCallsTest, MainThreadValidationTest).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Schema } from "effect"
import { TestClock } from "effect/testing"
import { RpcEndpoint, RpcError, RpcGateway } from "effect-actor-rpc"
import {
  BaseGateway,
  DifferentGateway,
  ExtendedGateway,
  service,
  TestFailure,
  TestGateway,
  testEndpoint,
  withService,
  probe,
  ProbeGateway,
  type ProbeMain,
  settle
} from "./fixtures/common.js"
import { collectLogs, makeLogLines } from "./fixtures/raw.js"

const flip = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.flip(effect)


describe("RpcEndpoint", () => {
  describe("RpcEndpointTest", () => {
    it.effect("testSelfGateway: the self gateway calls the endpoint", () =>
      Effect.gen(function*() {
        const endpoint = RpcEndpoint.make({
          gateways: [BaseGateway],
          init: () => Effect.succeed({ handlers: { foobar: () => Effect.succeed(1337) } })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        assert.strictEqual(yield* server.self(BaseGateway).foobar(), 1337)
      }).pipe(withService()))

    it.effect("testWrongSelfGateway: a self gateway of an unserved gateway is refused", () =>
      Effect.gen(function*() {
        const endpoint = RpcEndpoint.make({
          gateways: [BaseGateway],
          init: () => Effect.succeed({ handlers: { foobar: () => Effect.succeed(1) } })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        assert.throws(() => server.self(DifferentGateway as any), /does not serve gateway DifferentGateway/)
      }).pipe(withService()))

    it.effect("testEndpointInheritance: one endpoint serves several gateways, sharing a method", () =>
      Effect.gen(function*() {
        const endpoint = RpcEndpoint.make({
          gateways: [BaseGateway, ExtendedGateway, DifferentGateway],
          init: () =>
            Effect.succeed({
              handlers: {
                foobar: () => Effect.succeed(1),
                barfoo: () => Effect.succeed(2),
                foo: () => Effect.succeed("foobar")
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        assert.strictEqual(yield* server.self(BaseGateway).foobar(), 1)
        assert.strictEqual(yield* server.self(ExtendedGateway).foobar(), 1)
        assert.strictEqual(yield* server.self(ExtendedGateway).barfoo(), 2)
        assert.strictEqual(yield* server.self(DifferentGateway).foo(), "foobar")
      }).pipe(withService()))

    it.effect("testRunningState: isRunning is true on the main thread of a started endpoint", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint())
        assert.isTrue(yield* server.self(TestGateway).isRunning())
      }).pipe(withService()))

    it.effect("testNotRunningState: while onStop is pending calls are served, and isRunning is false", () =>
      Effect.gen(function*() {
        const release = yield* Deferred.make<void>()
        const onStopCalled = yield* Deferred.make<void>()
        const endpoint = RpcEndpoint.make({
          gateways: [TestGateway],
          init: (main) =>
            Effect.succeed({
              handlers: {
                ...baseHandlers,
                isRunning: () => main.isRunning
              },
              onStop: Deferred.succeed(onStopCalled, undefined).pipe(
                Effect.as(RpcEndpoint.later(Deferred.await(release)))
              )
            })
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* server.stop
        yield* Deferred.await(onStopCalled)
        assert.isFalse(yield* server.self(TestGateway).isRunning())
        assert.isFalse(yield* server.isTerminated)
        yield* Deferred.succeed(release, undefined)
        yield* server.awaitTermination
        assert.isTrue(yield* server.isTerminated)
      }).pipe(withService()))

    it.effect("testExecute: runAsync runs on the main thread", () =>
      Effect.gen(function*() {
        const ran = yield* Deferred.make<boolean>()
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: (main) =>
            Effect.succeed({
              handlers: {
                ping: () =>
                  main.runAsync(
                    main.validateRunsInMainThread.pipe(
                      Effect.andThen(main.isMainThread),
                      Effect.flatMap((onMain) => Deferred.succeed(ran, onMain))
                    )
                  ).pipe(Effect.as("scheduled")),
                record: () => Effect.void
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        yield* server.self(ProbeGateway).ping()
        assert.isTrue(yield* Deferred.await(ran))
      }).pipe(withService()))

    for (const [name, delay] of [["Milliseconds", "1000 millis"], ["Seconds", "1 second"]] as const) {
      it.effect(`testScheduleRunnableWithDelayIn${name}: the run happens once the delay has passed`, () =>
        Effect.gen(function*() {
          const runs: Array<string> = []
          const endpoint = RpcEndpoint.make({
            gateways: [ProbeGateway],
            init: (main) =>
              Effect.succeed({
                handlers: {
                  ping: () =>
                    main.scheduleRunAsync(Effect.sync(() => void runs.push("ran")), delay).pipe(Effect.as("ok")),
                  record: () => Effect.void
                }
              })
          })
          const server = yield* RpcEndpoint.scoped(endpoint)
          yield* server.self(ProbeGateway).ping()
          yield* TestClock.adjust("999 millis")
          yield* settle
          assert.deepStrictEqual(runs, [])
          yield* TestClock.adjust("1 millis")
          yield* settle
          assert.deepStrictEqual(runs, ["ran"])
        }).pipe(withService()))
    }

    it.effect("testScheduleRunnableAfterClose: after termination a scheduled run never happens", () =>
      Effect.gen(function*() {
        let main!: ProbeMain
        let runs = 0
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: (m) =>
            Effect.sync(() => {
              main = m
              return { handlers: { ping: () => Effect.succeed("pong"), record: () => Effect.void } }
            })
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* server.terminate
        yield* main.scheduleRunAsync(Effect.sync(() => void runs++), 0)
        yield* main.runAsync(Effect.sync(() => void runs++))
        yield* TestClock.adjust("1 second")
        yield* settle
        assert.strictEqual(runs, 0)
      }).pipe(withService()))

    it.effect("testCancelScheduledRunnable: a cancelled scheduled run never happens", () =>
      Effect.gen(function*() {
        let runs = 0
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: (main) =>
            Effect.succeed({
              handlers: {
                ping: () =>
                  main.scheduleRunAsync(Effect.sync(() => void runs++), "2 millis").pipe(
                    Effect.flatMap((scheduled) => scheduled.cancel),
                    Effect.as("cancelled")
                  ),
                record: () => Effect.void
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        assert.strictEqual(yield* server.self(ProbeGateway).ping(), "cancelled")
        yield* TestClock.adjust("1 second")
        yield* settle
        assert.strictEqual(runs, 0)
      }).pipe(withService()))

    it.effect("testCallAsync: callAsync runs on the main thread and returns its result", () =>
      Effect.gen(function*() {
        let main!: ProbeMain
        const endpoint = probe({ capture: (m) => (main = m) })
        yield* RpcEndpoint.scoped(endpoint)
        const result = yield* main.callAsync(main.validateRunsInMainThread.pipe(Effect.as(12345)), "10 seconds")
        assert.strictEqual(result, 12345)
      }).pipe(withService()))

    it.effect("testCallAsyncTimeout: callAsync times out with a typed error while the work still runs", () =>
      Effect.gen(function*() {
        let main!: ProbeMain
        yield* RpcEndpoint.scoped(probe({ capture: (m) => (main = m) }))
        const finished = yield* Deferred.make<void>()
        const fiber = yield* main.callAsync(
          Effect.sleep("1 second").pipe(Effect.andThen(Deferred.succeed(finished, undefined))),
          "100 millis"
        ).pipe(Effect.flip, Effect.forkChild)
        yield* settle
        yield* TestClock.adjust("100 millis")
        const error = yield* Fiber.join(fiber)
        assert.instanceOf(error, RpcError.RpcTimeoutError)
        assert.strictEqual(error.method, "callAsync")
        assert.strictEqual(error.timeoutMillis, 100)
        assert.isFalse(yield* Deferred.isDone(finished))
        yield* TestClock.adjust("900 millis")
        yield* Deferred.await(finished)
      }).pipe(withService()))
  })

  describe("PekkoRpcActorTest", () => {
    it.effect("testAddressResolution: connecting works before the endpoint is started", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        const client = yield* svc.connect(server.address, TestGateway)
        assert.strictEqual(client.address, server.address)
      }).pipe(withService()))

    it.effect("testFailingAddressResolution: a malformed address fails with RpcConnectionError", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const error = yield* flip(svc.connect("foobar", TestGateway))
        assert.instanceOf(error, RpcError.RpcConnectionError)
        assert.strictEqual((error as RpcError.RpcConnectionError).reason, "InvalidAddress")
      }).pipe(withService()))

    it.effect("testMessageDiscarding: before start asks fail EndpointNotStartedError; nothing is replayed", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint({ value: 7 }))
        const client = server.self(TestGateway)
        const error = yield* flip(client.foobar())
        assert.instanceOf(error, RpcError.EndpointNotStartedError)
        assert.include(error.message, "TestGateway.foobar")
        assert.include(error.message, server.address)
        // A tell before start is dropped, not buffered until start.
        yield* client.setFoobar(1337)
        yield* settle
        yield* server.start
        assert.strictEqual(yield* client.foobar(), 7)
        yield* client.setFoobar(1337)
        assert.strictEqual(yield* client.foobar(), 1337)
        yield* server.terminate
      }).pipe(withService()))

    it.effect("testRpcEndpointTerminationFuture: termination completes only after stop", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        yield* server.start
        yield* settle
        assert.isFalse(yield* server.isTerminated)
        yield* svc.stopServer(server)
        yield* server.awaitTermination
        assert.isTrue(yield* server.isTerminated)
      }).pipe(withService()))

    it.effect("testExceptionPropagation: a handler's typed failure reaches the caller with type and content", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint())
        const error = yield* flip(server.self(TestGateway).fail("my super specific test exception"))
        assert.instanceOf(error, TestFailure)
        assert.deepStrictEqual({ reason: (error as TestFailure).reason, code: (error as TestFailure).code }, {
          reason: "my super specific test exception",
          code: 42
        })
      }).pipe(withService()))

    it.effect("testExceptionPropagationFuturePiping: a later reply's failure reaches the caller", () =>
      Effect.gen(function*() {
        const Gateway = RpcGateway.make("Piping", {
          run: RpcGateway.ask({ failure: TestFailure })
        })
        const endpoint = RpcEndpoint.make({
          gateways: [Gateway],
          init: () =>
            Effect.succeed({
              handlers: {
                run: () =>
                  Effect.succeed(RpcEndpoint.later(
                    Effect.sleep("10 millis").pipe(
                      Effect.andThen(Effect.fail(new TestFailure({ reason: "some test", code: 1 })))
                    )
                  ))
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        const fiber = yield* Effect.forkChild(Effect.flip(server.self(Gateway).run()))
        yield* settle
        yield* TestClock.adjust("10 millis")
        const error = yield* Fiber.join(fiber)
        assert.instanceOf(error, TestFailure)
        assert.strictEqual((error as TestFailure).reason, "some test")
      }).pipe(withService()))

    it.effect("testOnStopExceptionPropagation: an onStop failure fails the termination with that error", () =>
      Effect.gen(function*() {
        const endpoint = probe({
          onStop: () =>
            Effect.fail(new TestFailure({ reason: "Test exception.", code: 0 }))
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        const error = yield* flip(server.terminate)
        assert.instanceOf(error, TestFailure)
      }).pipe(withService()))

    it.effect("testOnStopExecutedByMainThread: onStop runs on the main thread", () =>
      Effect.gen(function*() {
        const onMain = yield* Deferred.make<boolean>()
        const endpoint = probe({
          onStop: (main) =>
            main.validateRunsInMainThread.pipe(
              Effect.andThen(main.isMainThread),
              Effect.flatMap((value) => Deferred.succeed(onMain, value)),
              Effect.asVoid
            )
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* server.terminate
        assert.isTrue(yield* Deferred.await(onMain))
      }).pipe(withService()))

    it.effect("testActorTerminationWhenServiceShutdown: shutting the service down terminates its endpoints", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        yield* server.start
        yield* svc.shutdown
        yield* server.awaitTermination
        assert.isTrue(yield* server.isTerminated)
        assert.isTrue(yield* svc.isStopped)
      }).pipe(withService()))

    it.effect("testActorTerminationWithAsynchronousOnStopAction: termination waits for onStop's later part", () =>
      Effect.gen(function*() {
        const release = yield* Deferred.make<void>()
        const endpoint = probe({
          onStop: () =>
            Effect.succeed(RpcEndpoint.later(Deferred.await(release)))
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* server.stop
        yield* settle
        assert.isFalse(yield* server.isTerminated)
        yield* Deferred.succeed(release, undefined)
        yield* server.awaitTermination
      }).pipe(withService()))

    it.effect("testMainThreadExecutionOnStop: onStop's later part can still use the main thread", () =>
      Effect.gen(function*() {
        let ranOnMain = false
        const endpoint = probe({
          onStop: (main) =>
            Effect.succeed(RpcEndpoint.later(
              main.callAsync(
                main.isMainThread.pipe(Effect.map((onMain) => {
                  ranOnMain = onMain
                })),
                "1 second"
              ).pipe(Effect.orDie)
            ))
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* server.terminate
        assert.isTrue(ranOnMain)
      }).pipe(withService()))

    it.effect(
      "testOnStopFutureCompletionDirectlyTerminatesRpcActor: once onStop completes, queued asks fail RecipientUnreachableError",
      () =>
        Effect.gen(function*() {
          const releaseStop = yield* Deferred.make<void>()
          const releaseOp = yield* Deferred.make<void>()
          const opEntered = yield* Deferred.make<void>()
          let calls = 0
          const Gateway = RpcGateway.make("AsyncOp", { op: RpcGateway.ask({ success: Schema.Number }) })
          const endpoint = RpcEndpoint.make({
            gateways: [Gateway],
            init: () =>
              Effect.succeed({
                handlers: {
                  op: () =>
                    Effect.gen(function*() {
                      calls++
                      yield* Deferred.succeed(opEntered, undefined)
                      yield* Deferred.await(releaseOp)
                      return 42
                    })
                },
                onStop: Effect.succeed(RpcEndpoint.later(Deferred.await(releaseStop)))
              })
          })
          const svc = yield* service
          const server = yield* svc.startServer(endpoint)
          yield* server.start
          yield* server.stop
          yield* settle
          assert.isFalse(yield* server.isTerminated)
          const client = server.self(Gateway)
          const first = yield* Effect.forkChild(client.op())
          yield* Deferred.await(opEntered)
          const second = yield* Effect.forkChild(Effect.flip(client.op()))
          yield* settle
          yield* Deferred.succeed(releaseStop, undefined)
          yield* settle
          // The message in progress holds the termination back.
          assert.isFalse(yield* server.isTerminated)
          const secondError = yield* Fiber.join(second)
          assert.instanceOf(secondError, RpcError.RecipientUnreachableError)
          yield* Deferred.succeed(releaseOp, undefined)
          assert.strictEqual(yield* Fiber.join(first), 42)
          yield* server.awaitTermination
          assert.strictEqual(calls, 1)
        }).pipe(withService())
    )

    it.effect("testOnStartIsCalledWhenRpcEndpointStarts: start runs onStart", () =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<boolean>()
        const endpoint = probe({
          onStart: (main) =>
            main.isMainThread.pipe(Effect.flatMap((onMain) => Deferred.succeed(started, onMain)))
        })
        yield* RpcEndpoint.scoped(endpoint)
        assert.isTrue(yield* Deferred.await(started))
      }).pipe(withService()))

    it.effect("testOnStartFails: a failing onStart terminates the endpoint with an error carrying the cause", () =>
      Effect.gen(function*() {
        let stopped = false
        const endpoint = probe({
          onStart: () => Effect.fail(new TestFailure({ reason: "Test exception", code: 1 })),
          onStop: () =>
            Effect.sync(() => {
              stopped = true
            })
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        const error = yield* flip(server.awaitTermination)
        assert.instanceOf(error, RpcError.EndpointStartError)
        const startError = error as RpcError.EndpointStartError
        assert.instanceOf(startError.cause, TestFailure)
        assert.include(startError.message, "Test exception")
        assert.isFalse(stopped)
        const unreachable = yield* flip(server.self(ProbeGateway).ping())
        assert.instanceOf(unreachable, RpcError.RecipientUnreachableError)
      }).pipe(withService()))

    it.effect("callsOnStopOnlyOnce: onStop runs once however often stop is requested", () =>
      Effect.gen(function*() {
        const release = yield* Deferred.make<void>()
        let onStopCalls = 0
        const endpoint = probe({
          onStop: () =>
            Effect.sync(() => {
              onStopCalls++
              return RpcEndpoint.later(Deferred.await(release))
            })
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* server.stop
        yield* svc.stopServer(server)
        yield* server.stop
        yield* settle
        yield* Deferred.succeed(release, undefined)
        yield* server.awaitTermination
        yield* server.stop
        assert.strictEqual(onStopCalls, 1)
      }).pipe(withService()))

    it.effect("canReuseEndpointNameAfterTermination: an id is free again once its endpoint terminated", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const first = yield* svc.startServer(testEndpoint({ id: "not_unique" }))
        yield* first.start
        const inUse = yield* flip(svc.startServer(testEndpoint({ id: "not_unique" })))
        assert.instanceOf(inUse, RpcError.EndpointIdInUseError)
        assert.include(inUse.message, "not_unique")
        yield* first.terminate
        const second = yield* svc.startServer(testEndpoint({ id: "not_unique", value: 2 }))
        yield* second.start
        assert.strictEqual(second.address, first.address)
        assert.strictEqual(yield* second.self(TestGateway).foobar(), 2)
        // A client of the old incarnation does not reach the new one.
        const stale = yield* flip(first.self(TestGateway).foobar())
        assert.instanceOf(stale, RpcError.RecipientUnreachableError)
      }).pipe(withService()))

    it.effect("terminationFutureDoesNotBlockRpcEndpointCreation: an endpoint can be started on termination", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const first = yield* svc.startServer(testEndpoint())
        yield* first.start
        const second = yield* first.terminate.pipe(Effect.andThen(svc.startServer(testEndpoint({ value: 3 }))))
        yield* second.start
        assert.strictEqual(yield* second.self(TestGateway).foobar(), 3)
      }).pipe(withService()))

    it.effect("canRespondWithNullValueLocally: null and undefined come back as they are", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint())
        assert.isNull(yield* server.self(TestGateway).echo(null))
        assert.isUndefined(yield* server.self(TestGateway).echo(undefined))
      }).pipe(withService()))

    it.effect("canRespondWithSynchronousNullValueLocally: a later reply of null comes back as null", () =>
      Effect.gen(function*() {
        const Gateway = RpcGateway.make("Nullable", {
          get: RpcGateway.ask({ success: Schema.Null })
        })
        const endpoint = RpcEndpoint.make({
          gateways: [Gateway],
          init: () => Effect.succeed({ handlers: { get: () => Effect.succeed(RpcEndpoint.later(Effect.succeed(null))) } })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        assert.isNull(yield* server.self(Gateway).get())
      }).pipe(withService()))

    it.effect("canRespondWithSerializedValueLocally: local calls pass values by reference, unencoded", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint())
        const value = { nested: new Uint8Array([1, 2, 3]), fn: () => 1 }
        const echoed = yield* server.self(TestGateway).echo(value)
        assert.strictEqual(echoed, value)
      }).pipe(withService()))

    it.effect("testScheduling: scheduled runs happen no earlier than their delay, runAsync at once", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: (main) =>
            Effect.succeed({
              handlers: {
                ping: () =>
                  Effect.gen(function*() {
                    yield* main.scheduleRunAsync(Effect.sync(() => void events.push("scheduled-1")), "20 millis")
                    yield* main.scheduleRunAsync(Effect.sync(() => void events.push("scheduled-2")), "20 millis")
                    yield* main.runAsync(Effect.sync(() => void events.push("execute")))
                    return "ok"
                  }),
                record: () => Effect.void
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        yield* server.self(ProbeGateway).ping()
        yield* settle
        assert.deepStrictEqual(events, ["execute"])
        yield* TestClock.adjust("19 millis")
        yield* settle
        assert.deepStrictEqual(events, ["execute"])
        yield* TestClock.adjust("1 millis")
        yield* settle
        assert.deepStrictEqual(events, ["execute", "scheduled-1", "scheduled-2"])
      }).pipe(withService()))
  })

  describe("AsyncCallsTest", () => {
    it.effect("testScheduleWithNoDelay: tells, 10,000 runAsync and a callAsync never overlap", () =>
      Effect.gen(function*() {
        let active = 0
        let overlaps = 0
        let runs = 0
        const guarded = <A>(effect: Effect.Effect<A>) =>
          Effect.gen(function*() {
            if (active++ > 0) overlaps++
            yield* Effect.yieldNow
            const result = yield* effect
            active--
            return result
          })
        let main!: ProbeMain
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: (m) =>
            Effect.sync(() => {
              main = m
              return {
                handlers: {
                  ping: () => guarded(Effect.succeed("pong")),
                  record: () => guarded(Effect.void)
                }
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        const client = server.self(ProbeGateway)
        yield* client.record("a")
        yield* client.record("b")
        yield* client.record("c")
        for (let i = 0; i < 10_000; i++) yield* main.runAsync(guarded(Effect.sync(() => void runs++)))
        const result = yield* main.callAsync(guarded(Effect.succeed("test")), "30 seconds")
        assert.strictEqual(result, "test")
        assert.strictEqual(runs, 10_000)
        assert.strictEqual(overlaps, 0)
      }).pipe(withService()))

    it.effect("testScheduleWithDelay: a delayed run waits at least its delay and never overlaps", () =>
      Effect.gen(function*() {
        let main!: ProbeMain
        yield* RpcEndpoint.scoped(probe({ capture: (m) => (main = m) }))
        const done = yield* Deferred.make<number>()
        const start = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        yield* main.runAsync(Effect.void)
        yield* main.scheduleRunAsync(
          Effect.clockWith((clock) => clock.currentTimeMillis).pipe(
            Effect.flatMap((now) => Deferred.succeed(done, now - start))
          ),
          "10 millis"
        )
        yield* settle
        assert.isFalse(yield* Deferred.isDone(done))
        yield* TestClock.adjust("10 millis")
        assert.isAtLeast(yield* Deferred.await(done), 10)
      }).pipe(withService()))
  })

  describe("MainThreadValidationTest", () => {
    it.effect("failIfNotInMainThread: validateRunsInMainThread passes on the main thread and dies elsewhere", () =>
      Effect.gen(function*() {
        let main!: ProbeMain
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: (m) =>
            Effect.sync(() => {
              main = m
              return {
                handlers: {
                  ping: () => m.validateRunsInMainThread.pipe(Effect.as("ok")),
                  record: () => Effect.void
                }
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        assert.strictEqual(yield* server.self(ProbeGateway).ping(), "ok")
        const exit = yield* Effect.exit(main.validateRunsInMainThread)
        assert.isTrue(Exit.isFailure(exit))
        const defect = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
        assert.isTrue(defect !== undefined && defect._tag === "Die")
        assert.instanceOf((defect as any).defect, RpcError.MainThreadViolationError)
      }).pipe(withService()))

    it.effect("a later reply runs off the main thread", () =>
      Effect.gen(function*() {
        const Gateway = RpcGateway.make("Where", { where: RpcGateway.ask({ success: Schema.Boolean }) })
        const endpoint = RpcEndpoint.make({
          gateways: [Gateway],
          init: (main) => Effect.succeed({ handlers: { where: () => Effect.succeed(RpcEndpoint.later(main.isMainThread)) } })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        assert.isFalse(yield* server.self(Gateway).where())
      }).pipe(withService()))
  })

  describe("lifecycle", () => {
    it.effect("start is idempotent: onStart runs once", () =>
      Effect.gen(function*() {
        let starts = 0
        const endpoint = probe({
          onStart: () =>
            Effect.sync(() => void starts++)
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.start
        yield* server.start
        assert.strictEqual(yield* server.self(ProbeGateway).ping(), "pong")
        yield* server.start
        yield* settle
        assert.strictEqual(starts, 1)
      }).pipe(withService()))

    it.effect("runAsync before start is dropped and not replayed after start", () =>
      Effect.gen(function*() {
        let runs = 0
        let main!: ProbeMain
        const svc = yield* service
        const server = yield* svc.startServer(probe({ capture: (m) => (main = m) }))
        yield* main.runAsync(Effect.sync(() => void runs++))
        yield* settle
        yield* server.start
        yield* main.callAsync(Effect.void, "1 second")
        assert.strictEqual(runs, 0)
        yield* main.runAsync(Effect.sync(() => void runs++))
        yield* main.callAsync(Effect.void, "1 second")
        assert.strictEqual(runs, 1)
      }).pipe(withService()))

    it.effect("callAsync before start fails EndpointNotStartedError", () =>
      Effect.gen(function*() {
        let main!: ProbeMain
        const svc = yield* service
        yield* svc.startServer(probe({ capture: (m) => (main = m) }))
        const error = yield* flip(main.callAsync(Effect.succeed(1), "1 second"))
        assert.instanceOf(error, RpcError.EndpointNotStartedError)
      }).pipe(withService()))

    it.effect("a never-started endpoint terminates without onStop", () =>
      Effect.gen(function*() {
        let stops = 0
        const endpoint = probe({
          onStop: () =>
            Effect.sync(() => void stops++)
        })
        const svc = yield* service
        const server = yield* svc.startServer(endpoint)
        yield* server.terminate
        assert.strictEqual(stops, 0)
        assert.isTrue(yield* server.isTerminated)
      }).pipe(withService()))

    it.effect("a failing init frees the id and fails startServer with init's error", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const failing = RpcEndpoint.make({
          id: "fragile",
          gateways: [ProbeGateway],
          init: () => Effect.fail(new TestFailure({ reason: "no config", code: 3 }))
        })
        const error = yield* flip(svc.startServer(failing))
        assert.instanceOf(error, TestFailure)
        assert.deepStrictEqual(yield* svc.endpointIds, [])
        const server = yield* svc.startServer(probe({ id: "fragile" }))
        assert.strictEqual(server.endpointId, "fragile")
      }).pipe(withService()))

    it.effect("a generated id is a fresh UUID per start", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const a = yield* svc.startServer(testEndpoint())
        const b = yield* svc.startServer(testEndpoint())
        assert.notStrictEqual(a.endpointId, b.endpointId)
        assert.match(a.endpointId, /^[0-9a-f-]{36}$/)
      }).pipe(withService()))

    it.effect("a scheduled run pending at termination is interrupted, not run", () =>
      Effect.gen(function*() {
        let runs = 0
        let main!: ProbeMain
        const svc = yield* service
        const server = yield* svc.startServer(probe({ capture: (m) => (main = m) }))
        yield* server.start
        yield* main.callAsync(main.scheduleRunAsync(Effect.sync(() => void runs++), "1 second"), "1 second")
        yield* server.terminate
        yield* TestClock.adjust("2 seconds")
        yield* settle
        assert.strictEqual(runs, 0)
      }).pipe(withService()))

    it.effect("a later reply in flight at termination fails RecipientUnreachableError", () =>
      Effect.gen(function*() {
        const server = yield* service.pipe(Effect.flatMap((svc) => svc.startServer(testEndpoint())))
        yield* server.start
        const fiber = yield* Effect.forkChild(Effect.flip(server.self(TestGateway).never()))
        yield* settle
        yield* server.terminate
        const error = yield* Fiber.join(fiber)
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
      }).pipe(withService()))
  })

  describe("handler results", () => {
    const Work = RpcGateway.make("Work", {
      direct: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number }),
      broken: RpcGateway.ask({ success: Schema.Number, timeout: "30 seconds" })
    })

    it.effect("a handler may return RpcEndpoint.later(effect) itself: it runs off the main thread and is the reply", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const release = yield* Deferred.make<void>()
        const server = yield* RpcEndpoint.scoped(RpcEndpoint.make({
          gateways: [Work],
          init: () =>
            Effect.succeed({
              handlers: {
                direct: (n: number) => RpcEndpoint.later(Effect.as(Deferred.await(release), n * 2)),
                broken: () => Effect.succeed(0)
              }
            })
        }))
        const client = yield* svc.connect(server.address, Work)
        const first = yield* Effect.forkChild(client.direct(21))
        // The main thread is free while the first reply waits: a second call is served meanwhile.
        const second = yield* Effect.forkChild(client.direct(1))
        yield* settle
        assert.isUndefined(second.pollUnsafe(), "both wait on the same release")
        yield* Deferred.succeed(release, undefined)
        assert.strictEqual(yield* Fiber.join(first), 42)
        assert.strictEqual(yield* Fiber.join(second), 2)
      }).pipe(withService()))

    it.effect("a handler that returns something other than an Effect fails the call with RemoteDefectError at once, and is logged", () =>
      Effect.gen(function*() {
        const logs = makeLogLines()
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(RpcEndpoint.make({
          gateways: [Work],
          init: () =>
            Effect.succeed({
              handlers: {
                direct: (n: number) => Effect.succeed(n),
                // What the types forbid, as a JavaScript caller or a cast would do it.
                broken: (() => 42) as unknown as () => Effect.Effect<number>
              }
            })
        })).pipe(collectLogs(logs))
        const client = yield* svc.connect(server.address, Work)
        const error = yield* Effect.flip(client.broken())
        assert.instanceOf(error, RpcError.RemoteDefectError)
        assert.include(error.message, "not an Effect")
        assert.include(error.message, "Work.broken")
        // The reply reaches the caller before the main thread logs the defect.
        yield* settle
        assert.strictEqual(logs.count("Handler of Work.broken died"), 1)
        assert.strictEqual(yield* client.direct(5), 5, "the endpoint keeps serving")
      }).pipe(withService()))
  })

  describe("calls", () => {
    it.effect("a defect becomes RemoteDefectError and the endpoint keeps serving", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint({ value: 5 }))
        const client = server.self(TestGateway)
        const error = yield* flip(client.die("boom"))
        assert.instanceOf(error, RpcError.RemoteDefectError)
        assert.include(error.message, "boom")
        assert.include(error.message, "TestGateway.die")
        assert.strictEqual(yield* client.foobar(), 5)
      }).pipe(withService()))

    it.effect("a handler that throws synchronously is a defect too", () =>
      Effect.gen(function*() {
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: () =>
            Effect.succeed({
              handlers: {
                ping: () => {
                  throw new Error("thrown outside any Effect")
                },
                record: () => Effect.void
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        const error = yield* flip(server.self(ProbeGateway).ping())
        assert.instanceOf(error, RpcError.RemoteDefectError)
        assert.include(error.message, "thrown outside any Effect")
      }).pipe(withService()))

    it.effect("a tell's failure reaches nobody and does not stop the endpoint", () =>
      Effect.gen(function*() {
        const endpoint = RpcEndpoint.make({
          gateways: [ProbeGateway],
          init: () =>
            Effect.succeed({
              handlers: {
                ping: () => Effect.succeed("still here"),
                record: (what) => Effect.die(new Error(what))
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        yield* server.self(ProbeGateway).record("ignored failure")
        assert.strictEqual(yield* server.self(ProbeGateway).ping(), "still here")
      }).pipe(withService()))

    it.effect("an ask to a terminated endpoint fails RecipientUnreachableError at once (failsRpcResultImmediatelyIfEndpointIsStopped)", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* svc.startServer(testEndpoint())
        yield* server.start
        const client = yield* svc.connect(server.address, TestGateway)
        yield* server.terminate
        const error = yield* flip(client.foobar())
        assert.instanceOf(error, RpcError.RecipientUnreachableError)
        assert.include(error.message, server.address)
      }).pipe(withService()))

    it.effect("a scheduled run is enqueued when its delay expires, behind what is queued then", () =>
      Effect.gen(function*() {
        const order: Array<string> = []
        let main!: ProbeMain
        yield* RpcEndpoint.scoped(probe({ capture: (m) => (main = m) }))
        const release = yield* Deferred.make<void>()
        yield* main.scheduleRunAsync(Effect.sync(() => void order.push("scheduled")), "10 millis")
        // The main thread is busy when the delay expires; "before" was queued earlier, "after" later.
        yield* main.runAsync(Deferred.await(release).pipe(Effect.andThen(Effect.sync(() => void order.push("busy")))))
        yield* main.runAsync(Effect.sync(() => void order.push("before")))
        yield* settle
        yield* TestClock.adjust("10 millis")
        yield* settle
        yield* main.runAsync(Effect.sync(() => void order.push("after")))
        yield* Deferred.succeed(release, undefined)
        yield* main.callAsync(Effect.void, "1 second")
        assert.deepStrictEqual(order, ["busy", "before", "scheduled", "after"])
      }).pipe(withService()))

    it.effect("interrupting an ask's caller leaves the endpoint serving", () =>
      Effect.gen(function*() {
        const release = yield* Deferred.make<void>()
        let interrupted = 0
        const Gateway = RpcGateway.make("Interruptible", {
          slow: RpcGateway.ask({ success: Schema.String }),
          fast: RpcGateway.ask({ success: Schema.String })
        })
        const endpoint = RpcEndpoint.make({
          gateways: [Gateway],
          init: () =>
            Effect.succeed({
              handlers: {
                slow: () => Deferred.await(release).pipe(Effect.as("slow")),
                fast: () => Effect.succeed("fast")
              }
            })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        const client = server.self(Gateway)
        const caller = yield* Effect.forkChild(client.slow().pipe(Effect.onInterrupt(() => Effect.sync(() => void interrupted++))))
        yield* settle
        yield* Fiber.interrupt(caller)
        assert.strictEqual(interrupted, 1)
        yield* Deferred.succeed(release, undefined)
        assert.strictEqual(yield* client.fast(), "fast")
      }).pipe(withService()))

    it.effect("the fencing token of an unfenced endpoint is None", () =>
      Effect.gen(function*() {
        const server = yield* RpcEndpoint.scoped(testEndpoint())
        assert.isTrue(Option.isNone(yield* server.fencingToken))
      }).pipe(withService()))

    it.effect("two endpoints asking each other in a cycle complete with later replies", () =>
      Effect.gen(function*() {
        const PingGateway = RpcGateway.make("Ping", {
          ping: RpcGateway.ask({ payload: Schema.Number, success: Schema.Number })
        })
        const cyclic = (id: string, peer: string) =>
          RpcEndpoint.make({
            id,
            gateways: [PingGateway],
            init: (main) =>
              Effect.gen(function*() {
                const svc = yield* service
                let hops = 0
                return {
                  handlers: {
                    ping: (n: number) =>
                      Effect.sync(() => {
                        hops++
                        if (n === 0) return 0
                        return RpcEndpoint.later(
                          svc.connect(`local://${svc.name}/${peer}`, PingGateway).pipe(
                            Effect.orDie,
                            Effect.flatMap((other) => other.ping(n - 1)),
                            Effect.flatMap((result) => main.callAsync(Effect.sync(() => result + hops), "1 second"))
                          )
                        )
                      })
                  }
                }
              })
          })
        const a = yield* RpcEndpoint.scoped(cyclic("a", "b"))
        yield* RpcEndpoint.scoped(cyclic("b", "a"))
        // a(4) -> b(3) -> a(2) -> b(1) -> a(0): each endpoint is re-entered while its earlier call is pending.
        const result = yield* a.self(PingGateway).ping(4)
        assert.isAbove(result, 0)
      }).pipe(withService()))
  })
})

const baseHandlers = {
  foobar: () => Effect.succeed(0),
  setFoobar: () => Effect.void,
  fail: (reason: string) => Effect.fail(new TestFailure({ reason, code: 0 })),
  die: (message: string) => Effect.die(message),
  echo: (payload: unknown) => Effect.succeed(payload),
  never: () => Effect.never
}

