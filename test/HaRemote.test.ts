/**
 * An election served over RPC (`HaRemote`): Flink's `LeaderElectionTest` suite through it, the lease that withdraws a
 * campaign whose process stopped polling (TestClock), and over TCP with a partition: the cut-off leader steps down by
 * its own deadline before the server can grant anyone else, and a follower's `connectLeader` reaches the successor.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, References, Schema, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import {
  HaError,
  HaRemote,
  HaServices,
  LeaderToken,
  RpcConfig,
  RpcEndpoint,
  RpcGateway,
  RpcService
} from "effect-actor-rpc"
import { record } from "./fixtures/contender.js"
import { settle } from "./fixtures/common.js"
import { leaderElectionSuite } from "./fixtures/leaderElectionSuite.js"
import * as Proxy from "./fixtures/proxy.js"

const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

/** The server's side: an embedded driver served on the RpcService in scope; its address. */
const served = (lease: string) =>
  Effect.gen(function*() {
    const driver = yield* HaServices.makeEmbeddedDriver
    const server = yield* HaRemote.serve(driver, { lease: lease as "1 second" })
    return server.address
  })

class Address extends Context.Service<Address, string>()("test/HaRemote/Address") {}

leaderElectionSuite("an embedded driver served over RPC", {
  test: it.effect,
  layer: Layer.unwrap(Effect.map(Address, (address) => HaRemote.layer(address))).pipe(
    Layer.provideMerge(Layer.effect(Address)(served("5 seconds"))),
    Layer.provideMerge(RpcService.layerLocal()),
    Layer.provideMerge(Layer.succeed(References.MinimumLogLevel)("Error"))
  ),
  grant: () => Effect.void
})

/** Moves the TestClock forward in small steps, letting every fiber run in between. */
const advance = (millis: number) =>
  Effect.gen(function*() {
    for (let at = 0; at < millis; at += 50) {
      yield* TestClock.adjust(Math.min(50, millis - at))
      yield* settle
    }
  })

describe("HaRemote", () => {
  it.effect("a campaign whose process stops polling is withdrawn after the lease, and the next one is granted", () =>
    quiet(Effect.gen(function*() {
      const service = yield* RpcService.RpcService
      const address = yield* served("1 second")
      const raw = yield* service.connect(address, HaRemote.HaRemoteGateway)
      const first = yield* raw.campaign({ component: "rm" })
      assert.strictEqual(first.leaseMillis, 1000)
      const granted = yield* raw.poll({ campaign: first.campaign, acknowledged: 0 })
      assert.deepStrictEqual(granted.map((e) => e.event._tag), ["Granted"])
      const second = yield* raw.campaign({ component: "rm" })
      const secondEvents: Array<string> = []
      let acknowledged = 0
      yield* Effect.suspend(() => raw.poll({ campaign: second.campaign, acknowledged })).pipe(
        Effect.tap((events) =>
          Effect.sync(() => {
            for (const { event, seq } of events) {
              secondEvents.push(event._tag)
              acknowledged = seq
            }
          })
        ),
        Effect.forever,
        Effect.forkChild
      )
      // The first campaign polls for 1.6 s (each poll is held lease / 5 = 200 ms): nothing for the second.
      const polling = yield* raw.poll({ campaign: first.campaign, acknowledged: granted[0]!.seq }).pipe(
        Effect.repeat({ times: 7 }),
        Effect.forkChild
      )
      yield* advance(1700)
      assert.isDefined(polling.pollUnsafe(), "the first campaign's polls have ended")
      assert.deepStrictEqual(secondEvents, [], "granted while the leader kept polling")
      // Then it stops (its last poll arrived at 1400): after the lease (and the next check), the second is granted.
      yield* advance(600)
      assert.deepStrictEqual(secondEvents, [], "withdrawn before its lease ran out")
      yield* advance(600)
      assert.deepStrictEqual(secondEvents, ["Granted"])
      const gone = yield* Effect.flip(raw.poll({ campaign: first.campaign, acknowledged: 0 }))
      assert.instanceOf(gone, HaError.LeaderElectionError)
      assert.strictEqual(gone.reason, "Closed")
      assert.include(gone.message, "without a poll")
    }).pipe(Effect.provide(RpcService.layerLocal()))))

  it.effect("refuses a lease under 100 ms", () =>
    quiet(Effect.gen(function*() {
      const driver = yield* HaServices.makeEmbeddedDriver
      const error = yield* Effect.flip(HaRemote.serve(driver, { lease: "50 millis" }))
      assert.strictEqual((error as HaError.LeaderElectionError).reason, "InvalidConfiguration")
    }).pipe(Effect.provide(RpcService.layerLocal()))))

  it.effect("a granted session's deadline is the send time of its last answered poll + lease − margin", () =>
    quiet(Effect.gen(function*() {
      const address = yield* served("2 seconds")
      const ha = yield* HaServices.make(yield* HaRemote.makeDriver(address, { margin: "500 millis" }))
      const recorder = yield* record()
      yield* ha.campaign("rm", recorder.contender)
      const leadership = yield* recorder.nextGrant
      // Granted in the answer to a poll sent at 0.
      assert.strictEqual(leadership.leaseDeadline(), 1500)
      // The next poll, sent at 0 too, is held by the server for lease / 5 = 400 ms: answered, it says nothing new.
      yield* advance(400)
      assert.strictEqual(leadership.leaseDeadline(), 1500)
      // The one sent at 400 is answered at 800: the deadline moves to 400 + 2000 − 500.
      yield* advance(400)
      assert.strictEqual(leadership.leaseDeadline(), 1900)
    }).pipe(Effect.provide(RpcService.layerLocal()))))
})

const Work = RpcGateway.make("Work", { whoami: RpcGateway.ask({ success: Schema.String }) }, {
  token: LeaderToken.LeaderToken
})

const worker = (name: string) =>
  RpcEndpoint.makeFenced({
    id: name,
    gateways: [Work],
    init: () => Effect.succeed({ handlers: { whoami: () => Effect.succeed(name) } })
  })

/** A TCP RpcService of its own (a process, as far as the wire can tell), closed with `scope`. */
const tcpService = (scope: Scope.Scope) =>
  RpcService.makeTcp({ host: "127.0.0.1", port: "0" }).pipe(
    Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, connectTimeout: RpcConfig.defaults.connectTimeout }),
    Scope.provide(scope)
  )

describe("HaRemote over TCP", () => {
  it.live("a leader cut off from the server steps down by its own deadline before the successor is granted; the follower moves on", () =>
    quiet(Effect.gen(function*() {
      const scope = yield* Effect.scope
      const serverSide = yield* tcpService(scope)
      const address = yield* served("1 second").pipe(Effect.provideService(RpcService.RpcService, serverSide))
      const authority = address.replace(/^rpc:\/\/([^/]+)\/.*$/, "$1")
      const [host, port] = authority.split(":")
      const proxy = yield* Proxy.make({ host: host!, port: Number(port) })

      /** A "process": its own TCP service and HaServices, reaching the server directly or through the proxy. */
      const node = (via: string) =>
        Effect.gen(function*() {
          const service = yield* tcpService(scope)
          const ha = yield* HaServices.make(
            yield* HaRemote.makeDriver(address.replace(authority, via), { requestTimeout: "300 millis" }).pipe(
              Effect.provideService(RpcService.RpcService, service)
            )
          )
          return Context.make(RpcService.RpcService, service).pipe(Context.add(HaServices.HaServices, ha))
        })
      const a = yield* node(proxy.authority)
      const b = yield* node(authority)
      const follower = yield* node(authority)

      const leaderA = yield* HaServices.leaderEndpoint("worker", worker("a")).pipe(Effect.provideContext(a))
      const first = yield* awaitSome(leaderA.changes)
      const leaderB = yield* HaServices.leaderEndpoint("worker", worker("b")).pipe(Effect.provideContext(b))
      const client = yield* HaServices.connectLeader("worker", Work, { whileNoLeader: "wait" }).pipe(
        Effect.provideContext(follower)
      )
      assert.strictEqual(yield* client.whoami(), "a")
      // A records when it stepped down; B when it was granted.
      const steppedDown = leaderA.changes.pipe(
        Stream.filter(Option.isNone),
        Stream.runHead,
        Effect.map(() => Date.now()),
        Effect.forkChild
      )
      const aDown = yield* steppedDown

      yield* proxy.partition
      const second = yield* awaitSome(leaderB.changes)
      const grantedAt = Date.now()
      const aDownAt = yield* Fiber.join(aDown)
      assert.isTrue(second.term > first.term)
      assert.isAtMost(aDownAt, grantedAt, "the cut-off leader stepped down before its successor was granted")
      assert.isTrue(Option.isNone(yield* leaderA.server.fencingToken), "its endpoint no longer has a token")
      assert.strictEqual(yield* client.whoami(undefined, { timeout: "5 seconds" }), "b")
      yield* proxy.heal
    })), 20_000)
})

/** The first `Some` of `changes` (within 10 s). */
const awaitSome = <A>(changes: Stream.Stream<Option.Option<A>>) =>
  changes.pipe(
    Stream.filter(Option.isSome),
    Stream.runHead,
    Effect.flatMap((first) => Option.isSome(first) ? Effect.succeed(first.value.value) : Effect.never),
    Effect.timeout("10 seconds"),
    Effect.orDie
  )
