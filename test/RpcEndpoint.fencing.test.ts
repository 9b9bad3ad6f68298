/**
 * Fenced endpoints: ports of FencedRpcEndpointTest (current and historical cases) and of AsyncCallsTest's fenced
 * cases, plus the fencing points of DESIGN.md.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Schema } from "effect"
import { TestClock } from "effect/testing"
import { RpcEndpoint, RpcError, RpcGateway } from "effect-actor-rpc"
import { service, withService, settle } from "./fixtures/common.js"

const LeaderId = Schema.Struct({ epoch: Schema.Number, id: Schema.String })

const FencedGateway = RpcGateway.make("FencedGateway", {
  foobar: RpcGateway.ask({ success: Schema.String }),
  notify: RpcGateway.tell({ payload: Schema.String }),
  setToken: RpcGateway.ask({ payload: Schema.String })
})

type Main = RpcEndpoint.MainThread<readonly [typeof FencedGateway], string>

const fencedEndpoint = (options: {
  readonly initialToken?: string
  readonly capture?: (main: Main) => void
  readonly notified?: Array<string>
}) =>
  RpcEndpoint.makeFenced({
    gateways: [FencedGateway],
    token: Schema.String,
    initialToken: options.initialToken,
    init: (main) =>
      Effect.sync(() => {
        options.capture?.(main)
        return {
          handlers: {
            foobar: () => Effect.succeed("barfoo"),
            notify: (what: string) => Effect.sync(() => void options.notified?.push(what)),
            setToken: (token: string) => main.setFencingToken(token)
          }
        }
      })
  })

describe("RpcEndpoint (fenced)", () => {
  describe("FencedRpcEndpointTest", () => {
    it.effect("testFencing: the right token is served; a wrong one fails FencingTokenError naming both", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "token-1" }))
        const good = yield* svc.connectFenced(server.address, "token-1", FencedGateway)
        assert.strictEqual(yield* good.foobar(), "barfoo")
        const wrong = yield* svc.connectFenced(server.address, "token-0", FencedGateway)
        const error = yield* Effect.flip(wrong.foobar())
        assert.instanceOf(error, RpcError.FencingTokenError)
        const fencing = error as RpcError.FencingTokenError
        assert.strictEqual(fencing.reason, "Mismatch")
        assert.include(fencing.message, "Fencing token mismatch")
        assert.include(fencing.message, "token-0")
        assert.include(fencing.message, "token-1")
        assert.include(fencing.message, "FencedGateway.foobar")
      }).pipe(withService()))

    it.effect("testUnfencedRemoteGateway: an unfenced client of a fenced endpoint is rejected", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "token-1" }))
        const unfenced = yield* svc.connect(server.address, FencedGateway)
        const error = yield* Effect.flip(unfenced.foobar())
        assert.instanceOf(error, RpcError.FencingTokenError)
        assert.strictEqual((error as RpcError.FencingTokenError).reason, "Missing")
        assert.include(error.message, "connectFenced")
      }).pipe(withService()))

    it.effect("testFencingTokenSetting: a token not set yet rejects with NotSet; setting it off the main thread dies", () =>
      Effect.gen(function*() {
        let main!: Main
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ capture: (m) => (main = m) }))
        assert.isTrue(Option.isNone(yield* server.fencingToken))
        const client = yield* svc.connectFenced(server.address, "token-1", FencedGateway)
        const error = yield* Effect.flip(client.foobar())
        assert.strictEqual((error as RpcError.FencingTokenError).reason, "NotSet")
        assert.include(error.message, "Fencing token not set")
        assert.include(error.message, "token-1")
        const offMain = yield* Effect.exit(main.setFencingToken("token-1"))
        assert.isTrue(offMain._tag === "Failure")
        assert.isTrue(Option.isNone(yield* server.fencingToken))
        // Calls, the self gateway's included, are rejected until a token is set; self-work is not fenced then.
        const selfError = yield* Effect.flip(server.self(FencedGateway).setToken("token-1"))
        assert.strictEqual((selfError as RpcError.FencingTokenError).reason, "NotSet")
        yield* main.callAsync(main.setFencingToken("token-1"), "1 second")
        assert.deepStrictEqual(yield* server.fencingToken, Option.some("token-1"))
        assert.strictEqual(yield* client.foobar(), "barfoo")
      }).pipe(withService()))

    it.effect("testFencing (historical): after a leader change the former leader's client is rejected", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "leader-1" }))
        const oldLeader = yield* svc.connectFenced(server.address, "leader-1", FencedGateway)
        yield* oldLeader.setToken("leader-2")
        const error = yield* Effect.flip(oldLeader.foobar())
        assert.strictEqual((error as RpcError.FencingTokenError).reason, "Mismatch")
        assert.strictEqual((error as RpcError.FencingTokenError).expected, "leader-2")
        assert.strictEqual((error as RpcError.FencingTokenError).received, "leader-1")
        const newLeader = yield* svc.connectFenced(server.address, "leader-2", FencedGateway)
        assert.strictEqual(yield* newLeader.foobar(), "barfoo")
      }).pipe(withService()))

    it.effect("testRemoteAndSelfGateways: the self gateway follows the current token, a client keeps its own", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "a" }))
        const self = server.self(FencedGateway)
        const connected = yield* svc.connectFenced(server.address, "a", FencedGateway)
        assert.strictEqual(yield* self.foobar(), "barfoo")
        yield* self.setToken("b")
        assert.strictEqual(yield* self.foobar(), "barfoo")
        assert.instanceOf(yield* Effect.flip(connected.foobar()), RpcError.FencingTokenError)
      }).pipe(withService()))

    it.effect("testMainThreadExecutorUnderChangingFencingToken: work enqueued under the old token is dropped", () =>
      Effect.gen(function*() {
        let main!: Main
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "old", capture: (m) => (main = m) }))
        let ran = 0
        // Enqueue, under the old token, a runAsync behind the token change.
        yield* main.callAsync(
          Effect.gen(function*() {
            yield* main.runAsync(Effect.sync(() => void ran++))
            yield* main.setFencingToken("new")
          }),
          "1 second"
        )
        yield* server.self(FencedGateway).foobar()
        assert.strictEqual(ran, 0)
        yield* main.runAsync(Effect.sync(() => void ran++))
        yield* server.self(FencedGateway).foobar()
        assert.strictEqual(ran, 1)
      }).pipe(withService()))
  })

  describe("AsyncCallsTest (fenced)", () => {
    it.effect("testFencedScheduleWithNoDelay: runAsync and callAsync pass under the current token", () =>
      Effect.gen(function*() {
        let main!: Main
        yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "t", capture: (m) => (main = m) }))
        let runs = 0
        for (let i = 0; i < 1000; i++) yield* main.runAsync(Effect.sync(() => void runs++))
        assert.strictEqual(yield* main.callAsync(Effect.succeed("test"), "30 seconds"), "test")
        assert.strictEqual(runs, 1000)
      }).pipe(withService()))

    it.effect("testFencedScheduleWithDelay: a delayed run under an unchanged token runs after its delay", () =>
      Effect.gen(function*() {
        let main!: Main
        yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "t", capture: (m) => (main = m) }))
        const done = yield* Deferred.make<void>()
        yield* main.scheduleRunAsync(Deferred.succeed(done, undefined).pipe(Effect.asVoid), "10 millis")
        yield* settle
        assert.isFalse(yield* Deferred.isDone(done))
        yield* TestClock.adjust("10 millis")
        yield* Deferred.await(done)
      }).pipe(withService()))

    it.effect("testRunAsyncWithFencing: a scheduled run stamped with the old token is dropped after a change", () =>
      Effect.gen(function*() {
        let main!: Main
        yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "old", capture: (m) => (main = m) }))
        let ran = 0
        yield* main.scheduleRunAsync(Effect.sync(() => void ran++), "10 millis")
        yield* main.callAsync(main.setFencingToken("new"), "1 second")
        yield* TestClock.adjust("10 millis")
        yield* settle
        yield* main.callAsync(Effect.void, "1 second")
        assert.strictEqual(ran, 0)
      }).pipe(withService()))

    it.effect("testCallAsyncWithFencing: a callAsync stamped with the old token fails FencingTokenError", () =>
      Effect.gen(function*() {
        let main!: Main
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "old", capture: (m) => (main = m) }))
        const release = yield* Deferred.make<void>()
        // Hold the main thread so the callAsync below is enqueued while "old" is still current.
        const blocker = yield* Effect.forkChild(
          main.callAsync(Deferred.await(release).pipe(Effect.andThen(main.setFencingToken("new"))), "1 second")
        )
        yield* settle
        const stale = yield* Effect.forkChild(Effect.flip(main.callAsync(Effect.succeed(1), "1 second")))
        yield* settle
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(blocker)
        const error = yield* Fiber.join(stale)
        assert.instanceOf(error, RpcError.FencingTokenError)
        assert.deepStrictEqual(yield* server.fencingToken, Option.some("new"))
      }).pipe(withService()))
  })

  describe("fencing", () => {
    it.effect("tells with a wrong token are dropped, not run", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const notified: Array<string> = []
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "t", notified }))
        const wrong = yield* svc.connectFenced(server.address, "x", FencedGateway)
        const right = yield* svc.connectFenced(server.address, "t", FencedGateway)
        yield* wrong.notify("from the wrong leader")
        yield* right.notify("from the leader")
        yield* right.foobar()
        assert.deepStrictEqual(notified, ["from the leader"])
      }).pipe(withService()))

    it.effect("structured tokens compare by value through their Schema", () =>
      Effect.gen(function*() {
        const svc = yield* service
        const Gateway = RpcGateway.make("Structured", { get: RpcGateway.ask({ success: Schema.Number }) })
        const endpoint = RpcEndpoint.makeFenced({
          gateways: [Gateway],
          token: LeaderId,
          initialToken: { epoch: 3, id: "jm-1" },
          init: () => Effect.succeed({ handlers: { get: () => Effect.succeed(3) } })
        })
        const server = yield* RpcEndpoint.scoped(endpoint)
        const same = yield* svc.connectFenced(server.address, { epoch: 3, id: "jm-1" }, Gateway)
        assert.strictEqual(yield* same.get(), 3)
        const stale = yield* svc.connectFenced(server.address, { epoch: 2, id: "jm-1" }, Gateway)
        const error = yield* Effect.flip(stale.get())
        assert.include(error.message, `{"epoch":2,"id":"jm-1"}`)
        assert.include(error.message, `{"epoch":3,"id":"jm-1"}`)
      }).pipe(withService()))

    it.effect("a token change applies to messages in mailbox order", () =>
      Effect.gen(function*() {
        let main!: Main
        const svc = yield* service
        const server = yield* RpcEndpoint.scoped(fencedEndpoint({ initialToken: "a", capture: (m) => (main = m) }))
        const a = yield* svc.connectFenced(server.address, "a", FencedGateway)
        const release = yield* Deferred.make<void>()
        yield* main.runAsync(Deferred.await(release))
        // Both are queued behind the blocker: the first (token a) runs before the change, the second after it.
        const before = yield* Effect.forkChild(a.foobar())
        const change = yield* Effect.forkChild(a.setToken("b"))
        const after = yield* Effect.forkChild(Effect.flip(a.foobar()))
        yield* settle
        yield* Deferred.succeed(release, undefined)
        assert.strictEqual(yield* Fiber.join(before), "barfoo")
        yield* Fiber.join(change)
        assert.instanceOf(yield* Fiber.join(after), RpcError.FencingTokenError)
      }).pipe(withService()))
  })

  it.effect("fenced and unfenced definitions fit in one Array<RpcEndpoint.Any> and start from it", () =>
    Effect.gen(function*() {
      const Plain = RpcGateway.make("Plain", { ping: RpcGateway.ask({ success: Schema.String }) })
      const plain = RpcEndpoint.make({
        gateways: [Plain],
        init: () => Effect.succeed({ handlers: { ping: () => Effect.succeed("pong") } })
      })
      // An unfenced endpoint's token type is never; this line did not compile while Any's fencing was Order<any>.
      const definitions: Array<RpcEndpoint.Any> = [plain, fencedEndpoint({ initialToken: "t" })]
      const svc = yield* service
      const servers = []
      for (const definition of definitions) {
        const server = yield* svc.startServer(definition)
        yield* server.start
        servers.push(server)
      }
      assert.strictEqual(yield* (yield* svc.connect(servers[0]!.address, Plain)).ping(), "pong")
      assert.strictEqual(yield* (yield* svc.connectFenced(servers[1]!.address, "t", FencedGateway)).foobar(), "barfoo")
    }).pipe(withService()))
})
