/**
 * Issue 3: failure detection across real processes. A peer runs in a child process (test/fixtures/peer.ts) and
 * this process calls it over TCP on 127.0.0.1: a killed peer fails the calls in flight to it with
 * RecipientUnreachableError at once, a frozen one (SIGSTOP, socket still open) within the heartbeat pause, and
 * the same client reconnects on the next call once a peer listens again. Also Flink's
 * PekkoRpcServiceTest.testGetAddress / testGetPort: the address a service advertises names its bind host and
 * the port it bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Option } from "effect"
import { RpcConfig, RpcError, type RpcGateway, RpcService } from "effect-actor-rpc"
import { settle } from "./fixtures/common.js"
import { PeerGateway } from "./fixtures/peerGateway.js"
import { type Ending, PeerError, spawnPeer } from "./fixtures/peerProcess.js"

const heartbeatInterval = Duration.millis(100)
const heartbeatPause = Duration.millis(500)
const pauseMillis = Duration.toMillis(heartbeatPause)
// Far above anything the assertions accept, so a call that fails by timing out cannot pass for a detection.
const askTimeout = Duration.seconds(30)

// The peer keeps the default heartbeat settings (1 s interval, 10 s pause): it answers this process's heartbeat
// requests, so this side detects a failure within its own pause whatever the peer's settings are.

/** The client side: a TCP service in this process with fast heartbeats and a long ask timeout. */
const makeClient = RpcService.makeTcp({ host: "127.0.0.1" }).pipe(
  Effect.provideService(RpcConfig.RpcConfig, { ...RpcConfig.defaults, heartbeatInterval, heartbeatPause, askTimeout })
)

/** Waits (at most 5 s) for an in-flight call to end; returns its exit and the real time since `since`. */
const outcome = <A, E>(fiber: Fiber.Fiber<A, E>, since: number) =>
  Fiber.await(fiber).pipe(
    Effect.timeoutOrElse({
      duration: "5 seconds",
      orElse: () => Effect.fail(new PeerError({ message: "the call in flight was still pending 5 s after the peer went away" }))
    }),
    Effect.map((exit) => ({ exit, elapsed: Date.now() - since }))
  )

/** The typed failure of an exit, asserting that there is one and that it is a RecipientUnreachableError. */
const unreachable = <A, E>(exit: Exit.Exit<A, E>): RpcError.RecipientUnreachableError => {
  assert.isTrue(Exit.isFailure(exit), `expected a failure, got ${String(exit)}`)
  const error = Option.getOrUndefined(Exit.findErrorOption(exit))
  assert.instanceOf(error, RpcError.RecipientUnreachableError)
  return error as RpcError.RecipientUnreachableError
}

/**
 * Forks `slow` and returns once the peer has certainly received it: the peer serves one sender's calls in order,
 * so a ping answered after the fork proves the ask is pending there, not queued here.
 */
const startSlow = (gateway: RpcGateway.Client<typeof PeerGateway>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(gateway.slow())
    yield* settle
    yield* gateway.ping()
    assert.isUndefined(fiber.pollUnsafe())
    return fiber
  })

// The tests share nothing but the machine; side by side, their peers (about 1.2 s each to start under tsx) start
// together.
describe.concurrent("multi-process", () => {
  it.live("a killed peer fails calls in flight at once, new calls fast, and the client reconnects to its successor", () =>
    Effect.gen(function*() {
      const first = yield* spawnPeer("0")
      // testGetAddress / testGetPort: the advertised address is the bind host and the port actually bound.
      assert.strictEqual(first.host, "127.0.0.1")
      assert.isTrue(first.port > 0 && first.port < 65536, `port ${first.port}`)

      const client = yield* makeClient
      const gateway = yield* client.connect(first.address, PeerGateway)
      assert.strictEqual(yield* gateway.ping(), `pong:${first.pid}`)
      yield* gateway.add(1)
      yield* gateway.add(2)
      yield* gateway.add(39)
      assert.strictEqual(yield* gateway.total(), 42)

      const slow = yield* startSlow(gateway)
      const killedAt = Date.now()
      process.kill(first.pid, "SIGKILL")
      const inFlight = yield* outcome(slow, killedAt)
      unreachable(inFlight.exit)
      assert.isBelow(inFlight.elapsed, pauseMillis + 1500, "in-flight call failed within the heartbeat pause + margin")
      yield* Effect.logInfo(`kill detected after ${inFlight.elapsed} ms`)
      assert.deepStrictEqual(
        yield* Effect.timeoutOption(Deferred.await(first.exited), "5 seconds"),
        Option.some<Ending>({ code: null, signal: "SIGKILL" })
      )

      // Nothing listens on the port now: the redial is refused, which must surface at once, not as a timeout.
      const refusedAt = Date.now()
      const refused = yield* Effect.exit(gateway.ping())
      unreachable(refused)
      assert.isBelow(Date.now() - refusedAt, 1000)

      const second = yield* spawnPeer(String(first.port))
      // testGetPort with a fixed port: the successor binds and advertises exactly the port it was given.
      assert.strictEqual(second.address, first.address)
      assert.notStrictEqual(second.pid, first.pid)
      assert.strictEqual(yield* gateway.ping(), `pong:${second.pid}`)
      assert.strictEqual(yield* gateway.total(), 0)
    }))

  it.live("a frozen peer (SIGSTOP, socket open) is declared dead by the heartbeat; resumed it serves again; SIGTERM shuts it down cleanly", () =>
    Effect.gen(function*() {
      const peer = yield* spawnPeer("0")
      const client = yield* makeClient
      const gateway = yield* client.connect(peer.address, PeerGateway)
      assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)

      const slow = yield* startSlow(gateway)
      const stoppedAt = Date.now()
      process.kill(peer.pid, "SIGSTOP")
      const frozen = yield* outcome(slow, stoppedAt).pipe(
        // Resume the peer even if the assertions below fail, so that the finalizers do not wait on it.
        Effect.ensuring(Effect.ignore(Effect.try(() => process.kill(peer.pid, "SIGCONT"))))
      )
      const error = unreachable(frozen.exit)
      yield* Effect.logInfo(`stop detected after ${frozen.elapsed} ms`)
      // Only the heartbeat can notice: the kernel keeps the socket open and acknowledges what is sent.
      assert.include(error.reason, "no heartbeat")
      // The last sign of life came at most one peer interval before the stop.
      assert.isAtLeast(frozen.elapsed, pauseMillis - Duration.toMillis(heartbeatInterval) - 50)
      assert.isBelow(frozen.elapsed, pauseMillis + 1500)

      assert.strictEqual(yield* gateway.ping(), `pong:${peer.pid}`)

      const pending = yield* startSlow(gateway)
      const terminatedAt = Date.now()
      process.kill(peer.pid, "SIGTERM")
      const goodbye = yield* outcome(pending, terminatedAt)
      yield* Effect.logInfo(`SIGTERM: call in flight failed after ${goodbye.elapsed} ms (${unreachable(goodbye.exit).reason})`)
      assert.isBelow(goodbye.elapsed, 2000)
      const ended = yield* Effect.timeoutOption(Deferred.await(peer.exited), "5 seconds")
      // Ended on its own (runMain's exit code for an interrupted program), not by the signal's default action.
      assert.deepStrictEqual(ended, Option.some<Ending>({ code: 130, signal: null }))
    }))
})
