/**
 * Chaos across real processes on 127.0.0.1: a peer runs in a child process (test/fixtures/peer.ts) with 1,000 asks
 * from this process held in flight (PeerGateway.hold), and then it is killed (SIGKILL), frozen (SIGSTOP), cut off
 * by a partition (a TCP proxy of the tests' own, test/fixtures/proxy.ts, stops forwarding) or its connection is
 * reset. Every held ask must fail with RecipientUnreachableError within the heartbeat pause + 1 s of the fault,
 * nothing may hang, the client must serve the next call once the peer is back (SIGCONT, a restart on the same port,
 * the partition healing), and nothing may be left behind on the client side: every forked fiber done, and no
 * connection, call in flight or pending timeout once the calls have settled and the client's scope has closed.
 *
 * Detection times are logged ("chaos <scenario>: ... min/median/max") and recorded in docs/RELIABILITY.md.
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Deferred, Duration, Effect, Exit, Fiber, Option } from "effect"
import { RpcConfig, RpcError, type RpcGateway, RpcService } from "effect-actor-rpc"
import { PEER_ENDPOINT_ID, PeerGateway } from "./fixtures/peerGateway.js"
import { type Ending, type Peer, signal, spawnPeer } from "./fixtures/peerProcess.js"
import * as Proxy from "./fixtures/proxy.js"

/** Asks held in flight when the fault strikes. */
const CALLS = 1000

const heartbeatInterval = Duration.millis(100)
const heartbeatPause = Duration.millis(500)
const pauseMillis = Duration.toMillis(heartbeatPause)
/** The bound: every call in flight has failed within the heartbeat pause + 1 s of the fault. */
const boundMillis = pauseMillis + 1000
// Far above anything the assertions accept, so a call that fails by timing out cannot pass for a detection.
const askTimeout = Duration.seconds(30)

class ChaosError extends Data.TaggedError("ChaosError")<{ readonly message: string }> {}

type Gateway = RpcGateway.Client<typeof PeerGateway>

/** The client side: a TCP service in this process with fast heartbeats and a long ask timeout. */
const makeClient = RpcService.makeTcp({ host: "127.0.0.1" }).pipe(
  Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, heartbeatInterval, heartbeatPause, askTimeout })
)

/** A client service and a gateway to `address`, both closed with the Scope. */
const connectClient = (address: string) =>
  Effect.gen(function*() {
    const client = yield* makeClient
    const gateway = yield* client.connect(address, PeerGateway)
    return { client, gateway }
  })

/** Polls `check` every 20 ms until it holds; fails after `millis`. */
const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, millis = 5000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.fail(new ChaosError({ message: `${what}: not within ${millis} ms` }))
      yield* Effect.sleep("20 millis")
    }
  })

/** A call's outcome and the real time at which its caller saw it. */
interface Settled<A> {
  readonly exit: Exit.Exit<A, unknown>
  readonly at: number
}

/**
 * Forks `CALLS` held asks and returns their fibers once the peer holds every one of them (it counts them on its
 * main thread in arrival order, so they are in flight there, not queued here).
 */
const holdMany = (gateway: Gateway) =>
  Effect.gen(function*() {
    const fibers: Array<Fiber.Fiber<Settled<number>>> = []
    for (let i = 0; i < CALLS; i++) {
      fibers.push(
        yield* Effect.forkChild(
          Effect.map(Effect.exit(gateway.hold()), (exit): Settled<number> => ({ exit, at: Date.now() }))
        )
      )
    }
    yield* eventually(`the peer holds all ${CALLS} asks`, Effect.map(gateway.held(), (held) => held === CALLS), 10_000)
    assert.isTrue(fibers.every((fiber) => fiber.pollUnsafe() === undefined), "no held ask has settled yet")
    return fibers
  })

interface Detection {
  readonly min: number
  readonly median: number
  readonly max: number
  readonly reasons: ReadonlyArray<string>
}

/**
 * Waits (at most the bound + 5 s, so that nothing hangs) for every fiber, asserts that each failed with
 * RecipientUnreachableError within the bound of `since`, and returns the detection times and distinct reasons.
 */
const allUnreachable = (scenario: string, fibers: ReadonlyArray<Fiber.Fiber<Settled<number>>>, since: number) =>
  Effect.gen(function*() {
    const settled = yield* Effect.forEach(fibers, (fiber) => Fiber.await(fiber)).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(boundMillis + 5000),
        orElse: () => {
          const pending = fibers.filter((fiber) => fiber.pollUnsafe() === undefined).length
          return Effect.fail(new ChaosError({ message: `${scenario}: ${pending} calls still pending ${boundMillis + 5000} ms after the fault` }))
        }
      })
    )
    const elapsed: Array<number> = []
    const reasons = new Set<string>()
    for (const fiberExit of settled) {
      assert.isTrue(Exit.isSuccess(fiberExit), "the forked fiber itself does not fail")
      const { at, exit } = (fiberExit as Exit.Success<Settled<number>>).value
      assert.isTrue(Exit.isFailure(exit), `${scenario}: expected a failure, got ${String(exit)}`)
      const error = Option.getOrUndefined(Exit.findErrorOption(exit))
      assert.instanceOf(error, RpcError.RecipientUnreachableError, `${scenario}: ${String(exit)}`)
      reasons.add((error as RpcError.RecipientUnreachableError).reason.replace(/\d+ ms/, "N ms"))
      elapsed.push(at - since)
    }
    elapsed.sort((a, b) => a - b)
    const detection: Detection = {
      min: elapsed[0]!,
      median: elapsed[Math.floor(elapsed.length / 2)]!,
      max: elapsed[elapsed.length - 1]!,
      reasons: [...reasons]
    }
    yield* Effect.logInfo(
      `chaos ${scenario}: ${fibers.length} calls failed RecipientUnreachableError after ` +
        `min ${detection.min} / median ${detection.median} / max ${detection.max} ms (${detection.reasons.join("; ")})`
    )
    assert.isBelow(detection.max, boundMillis, `${scenario}: every call fails within the heartbeat pause + 1 s`)
    assert.isTrue(fibers.every((fiber) => fiber.pollUnsafe() !== undefined), "every forked fiber is done")
    return detection
  })

/** The last sign of life came at most one interval before the fault, so a heartbeat detection is no earlier. */
const assertHeartbeatDetection = (detection: Detection) => {
  for (const reason of detection.reasons) assert.include(reason, "no heartbeat")
  assert.isAtLeast(detection.min, pauseMillis - Duration.toMillis(heartbeatInterval) - 50)
}

const assertExited = (peer: Peer, signal: NodeJS.Signals) =>
  Effect.gen(function*() {
    assert.deepStrictEqual(
      yield* Effect.timeoutOption(Deferred.await(peer.exited), "5 seconds"),
      Option.some<Ending>({ code: null, signal })
    )
  })

/** Runs `body` with a client of its own and returns what it returned, once the client's scope has closed. */
const withClient = <A, E, R>(
  address: string,
  body: (client: RpcService.RpcServiceShape, gateway: Gateway) => Effect.Effect<A, E, R>
) =>
  Effect.scoped(Effect.gen(function*() {
    const { client, gateway } = yield* connectClient(address)
    return yield* body(client, gateway)
  }))

describe.concurrent("chaos", () => {
  it.live(`SIGKILL with ${CALLS} asks in flight: all fail RecipientUnreachableError within the pause + 1 s`, () =>
    Effect.gen(function*() {
      const peer = yield* spawnPeer("0")
      yield* withClient(peer.address, (_client, gateway) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          const fibers = yield* holdMany(gateway)
          const killedAt = Date.now()
          yield* signal(peer, "SIGKILL")
          yield* allUnreachable("SIGKILL", fibers, killedAt)
          yield* assertExited(peer, "SIGKILL")
        }))
    }))

  it.live(`SIGSTOP with ${CALLS} asks in flight: the heartbeat fails them all within the pause + 1 s; SIGCONT: the next call succeeds`, () =>
    Effect.gen(function*() {
      const peer = yield* spawnPeer("0")
      yield* withClient(peer.address, (_client, gateway) =>
        Effect.gen(function*() {
          const fibers = yield* holdMany(gateway)
          const stoppedAt = Date.now()
          yield* signal(peer, "SIGSTOP")
          const detection = yield* allUnreachable("SIGSTOP", fibers, stoppedAt).pipe(
            // Resume the peer even if the assertions fail, so that the finalizers do not wait on it.
            Effect.ensuring(signal(peer, "SIGCONT"))
          )
          assertHeartbeatDetection(detection)
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          // The peer was never told: the calls the client gave up on are still held there.
          assert.strictEqual(yield* gateway.release(), CALLS)
        }))
    }))

  it.live("SIGKILL, then a restart on the same port: calls in between fail fast, the next call reconnects", () =>
    Effect.gen(function*() {
      const first = yield* spawnPeer("0")
      yield* withClient(first.address, (_client, gateway) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* gateway.ping(), `pong:${first.pid}`)
          const held = yield* Effect.forkChild(Effect.exit(gateway.hold()))
          yield* eventually("the peer holds the ask", Effect.map(gateway.held(), (n) => n === 1))
          yield* signal(first, "SIGKILL")
          yield* assertExited(first, "SIGKILL")
          const exit = yield* Fiber.await(held).pipe(Effect.timeoutOption(Duration.millis(boundMillis)))
          assert.isTrue(Option.isSome(exit) && Exit.isSuccess(exit.value) && Exit.isFailure(exit.value.value))

          // Nothing listens on the port: each call is refused at once, not after the ask timeout.
          for (let i = 0; i < 3; i++) {
            const calledAt = Date.now()
            const refused = yield* Effect.exit(gateway.ping())
            const error = Option.getOrUndefined(Exit.findErrorOption(refused))
            assert.instanceOf(error, RpcError.RecipientUnreachableError, String(refused))
            assert.include((error as RpcError.RecipientUnreachableError).reason, "refused")
            assert.isBelow(Date.now() - calledAt, 1000)
          }

          const second = yield* spawnPeer(String(first.port))
          assert.strictEqual(second.address, first.address)
          assert.strictEqual(yield* gateway.ping(), `pong:${second.pid}`)
          assert.strictEqual(yield* gateway.held(), 0)
        }))
    }))

  it.live(`a partition (proxy black hole) with ${CALLS} asks in flight: fails them all like SIGSTOP; heal: the next call reconnects`, () =>
    Effect.gen(function*() {
      const peer = yield* spawnPeer("0")
      const proxy = yield* Proxy.make({ host: peer.host, port: peer.port })
      const viaProxy = `rpc://${proxy.authority}/${PEER_ENDPOINT_ID}`
      yield* withClient(viaProxy, (_client, gateway) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          const fibers = yield* holdMany(gateway)
          const partitionedAt = Date.now()
          yield* proxy.partition
          const detection = yield* allUnreachable("partition", fibers, partitionedAt)
          assertHeartbeatDetection(detection)
          // Both sockets of the partitioned connection are still open at the proxy: no FIN, no RST got through.
          assert.deepInclude(yield* proxy.stats, { accepted: 1, open: 1, partitioned: true })

          yield* proxy.heal
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          assert.strictEqual((yield* proxy.stats).accepted, 2, "the next call opened a new connection")
          // Once what was held reaches the peer (the client's goodbye), the old connection closes for good.
          yield* eventually("the partitioned connection closes", Effect.map(proxy.stats, (stats) => stats.open === 1))
          assert.strictEqual(yield* gateway.release(), CALLS)
        }))
      // The client closed its socket when its scope closed: the proxy sees every connection end.
      yield* eventually("the client's connections are closed", Effect.map(proxy.stats, (stats) => stats.open === 0))
    }))

  it.live(`a connection reset (proxy) with ${CALLS} asks in flight: all fail at once; the next call reconnects`, () =>
    Effect.gen(function*() {
      const peer = yield* spawnPeer("0")
      const proxy = yield* Proxy.make({ host: peer.host, port: peer.port })
      yield* withClient(`rpc://${proxy.authority}/${PEER_ENDPOINT_ID}`, (_client, gateway) =>
        Effect.gen(function*() {
          const fibers = yield* holdMany(gateway)
          const resetAt = Date.now()
          yield* proxy.reset
          yield* allUnreachable("reset", fibers, resetAt)
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          assert.strictEqual((yield* proxy.stats).accepted, 2)
        }))
      yield* eventually("the client's connections are closed", Effect.map(proxy.stats, (stats) => stats.open === 0))
    }))
})
