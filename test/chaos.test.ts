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
import { assert, layer } from "@effect/vitest"
import { Context, Data, Deferred, Duration, Effect, Exit, Fiber, Layer, Option } from "effect"
import { RpcConfig, RpcError, type RpcGateway, RpcService } from "effect-actor-rpc"
import { PEER_ENDPOINT_ID, PeerGateway } from "./fixtures/peerGateway.js"
import { type Ending, type Peer, signal, spawnPeer, spawnStandby, type Standby } from "./fixtures/peerProcess.js"
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
/** Bounds a call that dials into a partition (the proxy accepts, the hello never comes back). */
const connectTimeout = Duration.seconds(2)

class ChaosError extends Data.TaggedError("ChaosError")<{ readonly message: string }> {}

type Gateway = RpcGateway.Client<typeof PeerGateway>

/** The client side: a TCP service in this process with fast heartbeats and a long ask timeout. */
const makeClient = RpcService.makeTcp({ host: "127.0.0.1" }).pipe(
  Effect.provideService(RpcConfig.RpcConfig, {
    ...RpcConfig.defaults,
    heartbeatInterval,
    heartbeatPause,
    askTimeout,
    connectTimeout
  })
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
    // A peer that an earlier scenario used may still hold calls it was never told were given up.
    const before = yield* gateway.held()
    const fibers: Array<Fiber.Fiber<Settled<number>>> = []
    for (let i = 0; i < CALLS; i++) {
      fibers.push(
        yield* Effect.forkChild(
          Effect.map(Effect.exit(gateway.hold()), (exit): Settled<number> => ({ exit, at: Date.now() }))
        )
      )
    }
    yield* eventually(`the peer holds all ${CALLS} asks`, Effect.map(gateway.held(), (held) => held === before + CALLS), 10_000)
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

/**
 * A call after the detection, while the peer is still frozen or partitioned away, dials again: the kernel (or the
 * proxy) accepts the connection but no hello comes back, so the call fails with the connection after the connect
 * timeout, not after the ask timeout.
 */
const callIntoTheVoid = (scenario: string, gateway: Gateway) =>
  Effect.gen(function*() {
    const calledAt = Date.now()
    const exit = yield* Effect.exit(gateway.ping())
    const failedAfter = Date.now() - calledAt
    const error = Option.getOrUndefined(Exit.findErrorOption(exit))
    assert.instanceOf(error, RpcError.RecipientUnreachableError, String(exit))
    assert.include((error as RpcError.RecipientUnreachableError).reason, "no hello")
    yield* Effect.logInfo(`chaos ${scenario}: a call after the detection failed after ${failedAfter} ms`)
    const connectMillis = Duration.toMillis(connectTimeout)
    assert.isAtLeast(failedAfter, connectMillis - 50)
    assert.isBelow(failedAfter, connectMillis + Duration.toMillis(heartbeatInterval) + 1000)
  })

const assertExited = (peer: Peer, signal: NodeJS.Signals) =>
  Effect.gen(function*() {
    assert.deepStrictEqual(
      yield* Effect.timeoutOption(Deferred.await(peer.exited), "5 seconds"),
      Option.some<Ending>({ code: null, signal })
    )
  })

/** The peers of the scenarios, started side by side before the first one runs and killed after the last. */
class Peers extends Context.Service<Peers, {
  /** SIGKILLed. */
  readonly killed: Peer
  /** SIGKILLed in the middle of a burst of asks. */
  readonly racing: Peer
  /** SIGKILLed, then replaced on its port by `successor`. */
  readonly restarted: Peer
  readonly successor: Standby
  /**
   * SIGSTOPped, then resumed; then behind a proxy of each scenario's own: partitioned, partitioned one way, reset.
   * It sends heartbeat requests of its own every 100 ms and gives up on a silent client after 2 s.
   */
  readonly shared: Peer
}>()("test/chaos/Peers") {
  static readonly layer = Layer.effect(Peers)(
    Effect.all({
      killed: spawnPeer("0"),
      racing: spawnPeer("0"),
      restarted: spawnPeer("0"),
      successor: spawnStandby(),
      shared: spawnPeer("0", { RPC_HEARTBEAT_INTERVAL: "100 millis", RPC_HEARTBEAT_PAUSE: "2 seconds" })
    }, { concurrency: "unbounded" })
  )
}

/** What the leak checks compare of a client's introspection snapshot. */
const leakView = (snapshot: RpcService.Snapshot) => ({
  lifecycle: snapshot.lifecycle,
  inFlightCalls: snapshot.inFlightCalls,
  pendingTimeouts: snapshot.pendingTimeouts,
  connections: snapshot.connections.map((connection) =>
    `${connection.direction} ${connection.peer} ${connection.state} callsOut=${connection.callsOut} ` +
    `callsIn=${connection.callsIn} bufferedBytes=${connection.bufferedBytes}`
  )
})

/**
 * Waits (at most 3 s: a connection that has closed leaves the table once its socket is shut) until the client's
 * introspection shows nothing left over: no call in flight, no pending timeout, and no connection but an idle open
 * one to each authority of `open`.
 */
const assertNothingLeft = (client: RpcService.RpcServiceShape, lifecycle: string, open: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const expected = {
      lifecycle,
      inFlightCalls: 0,
      pendingTimeouts: 0,
      connections: open.map((peer) => `outbound ${peer} open callsOut=0 callsIn=0 bufferedBytes=0`)
    }
    const matches = Effect.map(client.introspect, (snapshot) => {
      try {
        assert.deepStrictEqual(leakView(snapshot), expected)
        return true
      } catch {
        return false
      }
    })
    yield* eventually("the client's introspection is clean", matches, 3000).pipe(Effect.ignore)
    assert.deepStrictEqual(leakView(yield* client.introspect), expected)
  })

const authorityOf = (address: string) => address.replace(/^rpc:\/\//, "").replace(/\/.*$/, "")

/**
 * Runs `body` with a client of its own. Once `body` is done, the client must have nothing left but an idle
 * connection to the peer if `connected` says so; once its scope has closed, nothing at all.
 */
const withClient = <A, E, R>(
  address: string,
  connected: "connected" | "disconnected",
  body: (gateway: Gateway) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const [result, client] = yield* Effect.scoped(Effect.gen(function*() {
      const { client, gateway } = yield* connectClient(address)
      const result = yield* body(gateway)
      yield* assertNothingLeft(client, "running", connected === "connected" ? [authorityOf(address)] : [])
      return [result, client] as const
    }))
    yield* assertNothingLeft(client, "stopped", [])
    return result
  })

// The peers start side by side (their start-up under tsx is what loads these two cores most); the scenarios then run
// one after another, so that no start-up and no other scenario's 1,000-call burst competes with a 500 ms heartbeat
// pause, and each detection time measures the library, not the neighbours.
layer(Peers.layer, { excludeTestServices: true, timeout: "90 seconds" })("chaos", (it) => {
  it.effect(`SIGKILL with ${CALLS} asks in flight: all fail RecipientUnreachableError within the pause + 1 s`, () =>
    Effect.gen(function*() {
      const { killed: peer } = yield* Peers
      yield* withClient(peer.address, "disconnected", (gateway) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          const fibers = yield* holdMany(gateway)
          const killedAt = Date.now()
          yield* signal(peer, "SIGKILL")
          yield* allUnreachable("SIGKILL", fibers, killedAt)
          yield* assertExited(peer, "SIGKILL")
        }))
    }))

  it.effect(`SIGKILL in the middle of a burst of ${CALLS} asks: every one fails RecipientUnreachableError, none hangs`, () =>
    Effect.gen(function*() {
      const { racing: peer } = yield* Peers
      yield* withClient(peer.address, "disconnected", (gateway) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          // The asks go out over 400 ms, and the peer is killed 200 ms in: some are held there, some are on their way
          // as the connection dies, and those made after it has closed dial again and are refused.
          const fibers: Array<Fiber.Fiber<Settled<number>>> = []
          for (let i = 0; i < CALLS; i++) {
            fibers.push(
              yield* Effect.forkChild(
                Effect.sleep(Duration.millis(Math.floor((i * 400) / CALLS))).pipe(
                  Effect.andThen(Effect.exit(gateway.hold())),
                  Effect.map((exit): Settled<number> => ({ exit, at: Date.now() }))
                )
              )
            )
          }
          yield* Effect.sleep("200 millis")
          const killedAt = Date.now()
          yield* signal(peer, "SIGKILL")
          const detection = yield* allUnreachable("SIGKILL mid-burst", fibers, killedAt)
          assert.isAbove(detection.reasons.length, 1, "some calls were in flight, some were made after the death")
          yield* assertExited(peer, "SIGKILL")
        }))
    }))

  it.effect(`SIGSTOP with ${CALLS} asks in flight: the heartbeat fails them all within the pause + 1 s; calls while frozen fail after connectTimeout; SIGCONT: the next call succeeds`, () =>
    Effect.gen(function*() {
      const { shared: peer } = yield* Peers
      // Resume the peer even if the assertions fail, so that the finalizers do not wait on it.
      yield* Effect.addFinalizer(() => signal(peer, "SIGCONT"))
      yield* withClient(peer.address, "connected", (gateway) =>
        Effect.gen(function*() {
          const fibers = yield* holdMany(gateway)
          const stoppedAt = Date.now()
          yield* signal(peer, "SIGSTOP")
          const detection = yield* allUnreachable("SIGSTOP", fibers, stoppedAt)
          assertHeartbeatDetection(detection)
          yield* callIntoTheVoid("SIGSTOP", gateway)
          yield* signal(peer, "SIGCONT")
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          // The peer was never told: the calls the client gave up on are still held there (with any an earlier
          // scenario left).
          assert.isAtLeast(yield* gateway.release(), CALLS)
        }))
    }))

  it.effect("SIGKILL, then a restart on the same port: calls in between fail fast, the next call reconnects", () =>
    Effect.gen(function*() {
      const { restarted: first, successor } = yield* Peers
      yield* withClient(first.address, "connected", (gateway) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* gateway.ping(), `pong:${first.pid}`)
          const fibers = yield* holdMany(gateway)
          const killedAt = Date.now()
          yield* signal(first, "SIGKILL")
          yield* allUnreachable("SIGKILL before a restart", fibers, killedAt)
          yield* assertExited(first, "SIGKILL")

          // Nothing listens on the port: each call is refused at once, not after the ask timeout.
          for (let i = 0; i < 3; i++) {
            const calledAt = Date.now()
            const refused = yield* Effect.exit(gateway.ping())
            const error = Option.getOrUndefined(Exit.findErrorOption(refused))
            assert.instanceOf(error, RpcError.RecipientUnreachableError, String(refused))
            assert.include((error as RpcError.RecipientUnreachableError).reason, "refused")
            assert.isBelow(Date.now() - calledAt, 1000)
          }

          // The successor has loaded already; it binds the port now.
          const second = yield* successor.start(first.port)
          assert.strictEqual(second.address, first.address)
          assert.strictEqual(yield* gateway.ping(), `pong:${second.pid}`)
          assert.strictEqual(yield* gateway.held(), 0)
        }))
    }))

  it.effect(`a partition (proxy black hole) with ${CALLS} asks in flight: fails them all like SIGSTOP, calls during it after connectTimeout; heal: the next call reconnects`, () =>
    Effect.gen(function*() {
      const { shared: peer } = yield* Peers
      const proxy = yield* Proxy.make({ host: peer.host, port: peer.port })
      yield* withClient(`rpc://${proxy.authority}/${PEER_ENDPOINT_ID}`, "connected", (gateway) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          const fibers = yield* holdMany(gateway)
          const partitionedAt = Date.now()
          yield* proxy.partition
          const detection = yield* allUnreachable("partition", fibers, partitionedAt)
          assertHeartbeatDetection(detection)
          // Both sockets of the partitioned connection are still open at the proxy: no FIN, no RST got through.
          assert.deepInclude(yield* proxy.stats, { accepted: 1, open: 1, partitioned: true })

          yield* callIntoTheVoid("partition", gateway)
          assert.strictEqual((yield* proxy.stats).accepted, 2)

          yield* proxy.heal
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          assert.strictEqual((yield* proxy.stats).accepted, 3, "the next call opened a new connection")
          // Once what was held reaches the peer (the client's goodbyes), the old connections close for good.
          yield* eventually("the partitioned connections close", Effect.map(proxy.stats, (stats) => stats.open === 1))
          assert.isAtLeast(yield* gateway.release(), CALLS)
        }))
      // The client closed its socket when its scope closed: the proxy sees every connection end.
      yield* eventually("the client's connections are closed", Effect.map(proxy.stats, (stats) => stats.open === 0))
    }))

  it.effect(`a partition shorter than the heartbeat pause, with ${CALLS} asks in flight, loses nothing`, () =>
    Effect.gen(function*() {
      const { shared: peer } = yield* Peers
      const proxy = yield* Proxy.make({ host: peer.host, port: peer.port })
      yield* withClient(`rpc://${proxy.authority}/${PEER_ENDPOINT_ID}`, "connected", (gateway) =>
        Effect.gen(function*() {
          const fibers = yield* holdMany(gateway)
          yield* proxy.partition
          // The last sign of life came at most one interval before; well short of the pause even when late.
          yield* Effect.sleep("150 millis")
          yield* proxy.heal
          assert.isAtLeast(yield* gateway.release(), CALLS)
          const settled = yield* Effect.forEach(fibers, (fiber) => Fiber.join(fiber)).pipe(
            Effect.timeoutOrElse({
              duration: "10 seconds",
              orElse: () => Effect.fail(new ChaosError({ message: "the released asks were not answered within 10 s" }))
            })
          )
          const ordinals = settled.map(({ exit }) => {
            assert.isTrue(Exit.isSuccess(exit), String(exit))
            return (exit as Exit.Success<number>).value
          })
          // Each was held, and answered, once (a peer that an earlier scenario used may have counted others first).
          assert.strictEqual(new Set(ordinals).size, CALLS)
          assert.deepStrictEqual(yield* proxy.stats, { accepted: 1, open: 1, heldBytes: 0, partitioned: false })
        }))
    }))

  // Only answers to what this side sent count as signs of life: the peer's own heartbeats, which still arrive in a
  // one-way partition, do not keep it alive here.
  it.effect(`a one-way partition (this side's bytes lost) with ${CALLS} asks in flight: all fail within the pause + 1 s`, () =>
    Effect.gen(function*() {
      const { shared: peer } = yield* Peers
      const proxy = yield* Proxy.make({ host: peer.host, port: peer.port })
      yield* withClient(`rpc://${proxy.authority}/${PEER_ENDPOINT_ID}`, "disconnected", (gateway) =>
        Effect.gen(function*() {
          const fibers = yield* holdMany(gateway)
          const partitionedAt = Date.now()
          yield* proxy.partitionOneWay("toTarget")
          // Wait for the peer's own detection (2 s) to end the calls, so that the measurement (logged) shows when they
          // do fail; the bound is asserted in allUnreachable.
          const settled = yield* Effect.forEach(fibers, (fiber) => Fiber.await(fiber)).pipe(
            Effect.timeoutOption("8 seconds")
          )
          assert.isTrue(Option.isSome(settled), "the calls failed within 8 s (by the peer's detection)")
          yield* allUnreachable("one-way partition", fibers, partitionedAt)
        }))
    }))

  it.effect(`a connection reset (proxy) with ${CALLS} asks in flight: all fail at once; the next call reconnects`, () =>
    Effect.gen(function*() {
      const { shared: peer } = yield* Peers
      const proxy = yield* Proxy.make({ host: peer.host, port: peer.port })
      yield* withClient(`rpc://${proxy.authority}/${PEER_ENDPOINT_ID}`, "connected", (gateway) =>
        Effect.gen(function*() {
          const fibers = yield* holdMany(gateway)
          const resetAt = Date.now()
          yield* proxy.reset
          yield* allUnreachable("reset", fibers, resetAt)
          assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)
          assert.strictEqual((yield* proxy.stats).accepted, 2)
          assert.isAtLeast(yield* gateway.release(), CALLS)
        }))
      yield* eventually("the client's connections are closed", Effect.map(proxy.stats, (stats) => stats.open === 0))
    }))
})
