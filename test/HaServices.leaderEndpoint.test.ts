/**
 * Leadership-driven endpoints (`HaServices.leaderEndpoint`), on the TestClock with the testing and embedded drivers:
 * the token is set before the leadership is confirmed, cleared at once on every kind of revocation, rejected by the
 * endpoint's own clock from the lease deadline on, and an endpoint that terminates resigns.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, References, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  HaError,
  HaServices,
  HaTesting,
  LeaderToken,
  RpcEndpoint,
  RpcError,
  RpcGateway,
  RpcService
} from "effect-actor-rpc"
import { settle } from "./fixtures/common.js"

const C = "jobmaster"

const Leader = RpcGateway.make("Leader", {
  status: RpcGateway.ask({ success: Schema.String }),
  /** Holds the main thread until the gate opens. */
  hold: RpcGateway.ask({})
}, { token: LeaderToken.LeaderToken })

const leaderOf = (
  options: {
    readonly id?: string
    readonly gate?: Deferred.Deferred<void>
    readonly capture?: (main: RpcEndpoint.MainThread<readonly [typeof Leader], LeaderToken.LeaderToken>) => void
  } = {}
) =>
  RpcEndpoint.makeFenced({
    id: options.id ?? "leader",
    gateways: [Leader],
    init: (main) =>
      Effect.sync(() => {
        options.capture?.(main)
      }).pipe(Effect.as({
        handlers: {
          status: () => Effect.map(main.fencingToken, (token) => `serving as ${Option.getOrThrow(token).term}`),
          hold: () => options.gate === undefined ? Effect.void : Deferred.await(options.gate)
        }
      }))
  })

const reasonOf = (error: unknown) => (error as RpcError.FencingTokenError).reason

const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

const withTesting = <A, E>(
  self: Effect.Effect<A, E, HaServices.HaServices | HaTesting.HaTesting | RpcService.RpcService | Scope.Scope>
) => self.pipe(Effect.provide(Layer.merge(HaTesting.layer, RpcService.layerLocal())), quiet)

/** A leader endpoint in a scope of its own (`close` resigns and terminates it). */
const closeable = <Gs extends ReadonlyArray<RpcGateway.Any>>(
  endpoint: RpcEndpoint.RpcEndpoint<Gs, LeaderToken.LeaderToken, never, never, never>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const leader = yield* HaServices.leaderEndpoint(C, endpoint).pipe(Scope.provide(scope))
    return { leader, close: Scope.close(scope, Exit.void) }
  })

describe("HaServices.leaderEndpoint", () => {
  it.effect("grant: the token is in force before the leadership is confirmed; revoke: cleared at once, even for a queued call", () =>
    withTesting(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const testing = yield* HaTesting.HaTesting
      const service = yield* RpcService.RpcService
      const gate = yield* Deferred.make<void>()
      const leader = yield* HaServices.leaderEndpoint(C, leaderOf({ gate }))
      assert.strictEqual(yield* testing.candidates(C), 1)
      assert.isTrue(Option.isNone(yield* leader.server.fencingToken), "no token before a grant")

      // When the confirmation reaches the engine, the endpoint already serves under the token.
      const retrieval = yield* ha.retrieve(C)
      const token = yield* testing.grant(C, { leaseDeadline: 60_000 })
      const confirmed = yield* retrieval.await
      assert.isTrue(LeaderToken.Equivalence(confirmed.token, token))
      assert.strictEqual(confirmed.address, leader.server.address)
      assert.deepStrictEqual(yield* leader.server.fencingToken, Option.some(token))
      yield* settle
      assert.deepStrictEqual(yield* leader.leading, Option.some(token))
      const client = yield* service.connectFenced(confirmed.address, confirmed.token, Leader)
      assert.strictEqual(yield* client.status(), `serving as ${token.term}`)

      // A call waits behind a held main thread when the leadership is revoked: it is rejected all the same.
      const held = yield* Effect.forkChild(client.hold())
      yield* settle
      const queued = yield* Effect.forkChild(client.status())
      yield* settle
      yield* testing.revoke(C)
      yield* settle
      assert.isTrue(Option.isNone(yield* leader.server.fencingToken), "cleared on revocation")
      assert.isTrue(Option.isNone(yield* leader.leading))
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(held)
      assert.strictEqual(reasonOf(yield* Effect.flip(Fiber.join(queued))), "NotSet")
      assert.isTrue(Option.isNone(yield* retrieval.get), "what it published is gone")
    })))

  it.effect("suspension and resignation clear the token too; the next grant sets a new one; the hooks hear each", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const service = yield* RpcService.RpcService
      const heard: Array<string> = []
      // Whether the session's token is in force when onConfirmed runs (read through the server, set just below).
      let inForce: (token: LeaderToken.LeaderToken) => Effect.Effect<boolean> = () => Effect.succeed(false)
      const scope = yield* Scope.make()
      const leader = yield* HaServices.leaderEndpoint(C, leaderOf(), {
        onConfirmed: (leadership) =>
          Effect.map(inForce(leadership.token), (set) => void heard.push(`confirmed ${leadership.token.term} ${set}`)),
        onRevoked: (revocation) => Effect.sync(() => void heard.push(`revoked ${revocation.token.term} ${revocation.reason}`))
      }).pipe(Scope.provide(scope))
      inForce = (token) =>
        Effect.map(leader.server.fencingToken, (now) => Option.isSome(now) && LeaderToken.Equivalence(now.value, token))
      const close = Scope.close(scope, Exit.void)
      const first = yield* testing.grant(C)
      yield* settle
      const asFirst = yield* service.connectFenced(leader.server.address, first, Leader)
      assert.strictEqual(yield* asFirst.status(), `serving as ${first.term}`)

      yield* testing.suspend(C)
      yield* settle
      assert.strictEqual(reasonOf(yield* Effect.flip(asFirst.status())), "NotSet")
      yield* testing.reconnect(C)

      const second = yield* testing.grant(C)
      yield* settle
      const asSecond = yield* service.connectFenced(leader.server.address, second, Leader)
      assert.strictEqual(yield* asSecond.status(), `serving as ${second.term}`)
      assert.strictEqual(reasonOf(yield* Effect.flip(asFirst.status())), "Mismatch")

      // Closing resigns (the token goes), then terminates the endpoint.
      yield* close
      assert.strictEqual(yield* testing.candidates(C), 0)
      assert.isTrue(yield* leader.server.isTerminated)
      assert.deepStrictEqual(heard, [
        `confirmed ${first.term} true`,
        `revoked ${first.term} Suspended`,
        `confirmed ${second.term} true`,
        `revoked ${second.term} Resigned`
      ])
    })))

  it.effect("from the lease deadline on, the endpoint rejects by its own clock (Expired), before the election has noticed", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const service = yield* RpcService.RpcService
      const leader = yield* HaServices.leaderEndpoint(C, leaderOf())
      const token = yield* testing.grant(C, { leaseDeadline: 10_000 })
      yield* settle
      const client = yield* service.connectFenced(leader.server.address, token, Leader)
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* client.status(), `serving as ${token.term}`)
      // The deadline moves into the past (a clock jump, a renewal that never came): the watchdog sleeps until the
      // old deadline, so nobody has revoked anything yet; the endpoint rejects all the same.
      yield* testing.renew(C, 4_000)
      const expired = yield* Effect.flip(client.status())
      assert.strictEqual(reasonOf(expired), "Expired")
      assert.isTrue(Option.isSome(yield* leader.election.leadership), "the election has not revoked it yet")
      // When the watchdog wakes up, the session is revoked as Expired and the token cleared.
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.isTrue(Option.isNone(yield* leader.server.fencingToken))
    })))

  it.effect("a deadline that passes while the main thread is busy: the token set late is never confirmed", () =>
    withTesting(Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const testing = yield* HaTesting.HaTesting
      const gate = yield* Deferred.make<void>()
      let main!: RpcEndpoint.MainThread<readonly [typeof Leader], LeaderToken.LeaderToken>
      const leader = yield* HaServices.leaderEndpoint(C, leaderOf({ capture: (m) => main = m }))
      const published: Array<boolean> = []
      yield* Effect.forkChild(ha.leader(C).pipe(Stream.runForEach((seen) => Effect.sync(() => published.push(Option.isSome(seen))))))
      // The main thread is busy (work of its own, which carries no token) when the grant comes.
      yield* main.runAsync(Deferred.await(gate))
      yield* settle
      yield* testing.grant(C, { leaseDeadline: 1_000 })
      yield* settle
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(Option.isNone(yield* leader.server.fencingToken), "set only in mailbox order")
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      assert.isFalse(published.includes(true), "confirmed after its deadline")
      assert.isTrue(Option.isNone(yield* leader.leading))
      assert.isTrue(Option.isNone(yield* leader.server.fencingToken), "the Expired revocation cleared it")
    })))

  it.effect("an endpoint that terminates on its own resigns", () =>
    withTesting(Effect.gen(function*() {
      const testing = yield* HaTesting.HaTesting
      const leader = yield* HaServices.leaderEndpoint(C, leaderOf())
      yield* testing.grant(C)
      yield* settle
      yield* leader.server.terminate
      yield* settle
      assert.strictEqual(yield* testing.candidates(C), 0)
      assert.isTrue(Option.isNone(yield* testing.published(C)))
    })))

  it.effect("refuses an endpoint that is not fenced, has an initial token, or fences monotonically", () =>
    withTesting(Effect.gen(function*() {
      const Plain = RpcGateway.make("Plain", { status: RpcGateway.ask({ success: Schema.String }) })
      const unfenced = RpcEndpoint.make({
        gateways: [Plain],
        init: () => Effect.succeed({ handlers: { status: () => Effect.succeed("x") } })
      })
      const withToken = RpcEndpoint.makeFenced({
        gateways: [Leader],
        initialToken: LeaderToken.make(1, "s"),
        init: () => Effect.succeed({ handlers: { status: () => Effect.succeed("x"), hold: () => Effect.void } })
      })
      const monotonic = RpcEndpoint.makeFenced({
        gateways: [Leader],
        monotonic: LeaderToken.Order,
        init: () => Effect.succeed({ handlers: { status: () => Effect.succeed("x"), hold: () => Effect.void } })
      })
      const expectations: Array<[unknown, string]> = [
        [unfenced, "must be fenced"],
        [withToken, "without a token"],
        [monotonic, "monotonic"]
      ]
      for (const [endpoint, text] of expectations) {
        const error = yield* Effect.flip(
          HaServices.leaderEndpoint(C, endpoint as RpcEndpoint.RpcEndpoint<[], LeaderToken.LeaderToken>)
        ) as Effect.Effect<HaError.LeaderElectionError>
        assert.strictEqual(error.reason, "InvalidConfiguration")
        assert.include(error.message, text)
        assert.include(error.message, C)
      }
      const service = yield* RpcService.RpcService
      assert.deepStrictEqual(yield* service.endpointIds, [], "nothing was started")
    })))
})

describe("HaServices.leaderEndpoint over the embedded driver", () => {
  it.effect("two endpoints: the first leads; when it goes, the second is granted a higher term and the first token is refused", () =>
    Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      const ha = yield* HaServices.HaServices
      const retrieval = yield* ha.retrieve(C)
      const a = yield* closeable(leaderOf({ id: "a" }))
      const first = yield* retrieval.await
      assert.strictEqual(first.address, a.leader.server.address)
      const b = yield* closeable(leaderOf({ id: "b" }))
      yield* settle
      assert.isTrue(Option.isNone(yield* b.leader.leading), "the second one waits")

      yield* a.close
      yield* settle
      const second = Option.getOrThrow(yield* retrieval.get)
      assert.strictEqual(second.address, b.leader.server.address)
      assert.isTrue(second.token.term > first.token.term)
      const stale = yield* service.connectFenced(second.address, first.token, Leader)
      assert.strictEqual(reasonOf(yield* Effect.flip(stale.status())), "Mismatch")
      const current = yield* service.connectFenced(second.address, second.token, Leader)
      assert.strictEqual(yield* current.status(), `serving as ${second.token.term}`)
      yield* b.close
    }).pipe(Effect.provide(Layer.merge(HaServices.layerEmbedded, RpcService.layerLocal())), quiet))

  it.effect("layerLeaderEndpoint runs the endpoint for as long as the Layer is in scope", () =>
    Effect.gen(function*() {
      const ha = yield* HaServices.HaServices
      const information = yield* (yield* ha.retrieve(C)).await
      const service = yield* RpcService.RpcService
      const client = yield* service.connectFenced(information.address, information.token, Leader)
      assert.strictEqual(yield* client.status(), `serving as ${information.token.term}`)
    }).pipe(
      Effect.provide(
        HaServices.layerLeaderEndpoint(C, leaderOf()).pipe(
          Layer.provideMerge(Layer.merge(HaServices.layerEmbedded, RpcService.layerLocal()))
        )
      ),
      quiet
    ))
})
