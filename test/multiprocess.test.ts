/**
 * Issue 3: failure detection across real processes. A peer runs in a child process (test/fixtures/peer.ts) and
 * this process calls it over TCP on 127.0.0.1: a killed peer fails the calls in flight to it with
 * RecipientUnreachableError at once, a frozen one (SIGSTOP, socket still open) within the heartbeat pause, and
 * the same client reconnects on the next call once a peer listens again. Also Flink's
 * PekkoRpcServiceTest.testGetAddress / testGetPort: the address a service advertises names its bind host and
 * the port it bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Option, Result, Schema, type Scope } from "effect"
import { RpcAddress, RpcConfig, RpcError, type RpcGateway, RpcService } from "effect-actor-rpc"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { settle } from "./fixtures/common.js"
import { PEER_ENDPOINT_ID, PeerGateway } from "./fixtures/peerGateway.js"

const peerPath = fileURLToPath(new URL("./fixtures/peer.ts", import.meta.url))

const heartbeatInterval = Duration.millis(100)
const heartbeatPause = Duration.millis(500)
const pauseMillis = Duration.toMillis(heartbeatPause)
// Far above anything the assertions accept, so a call that fails by timing out cannot pass for a detection.
const askTimeout = Duration.seconds(30)

/**
 * The peer keeps the default heartbeat settings (1 s interval, 10 s pause): it answers this process's heartbeat
 * requests, so this side detects a failure within its own pause whatever the peer's settings are.
 */
const peerEnv = { ...process.env }

class PeerError extends Schema.TaggedError<PeerError>()("PeerError", {
  message: Schema.String
}) {}

interface Ending {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Peer {
  readonly pid: number
  readonly address: string
  readonly host: string
  readonly port: number
  /** How the process ended: its exit code, or the signal that ended it. */
  readonly exited: Deferred.Deferred<Ending>
}

const isRunning = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

/** SIGKILLs the child by its pid unless it has already ended (a stopped process dies of SIGKILL too). */
const reap = (child: ChildProcess, exited: Peer["exited"]) =>
  Effect.gen(function*() {
    if (child.pid !== undefined && isRunning(child)) {
      try {
        process.kill(child.pid, "SIGKILL")
      } catch {
        // ESRCH: it ended between the check and the kill.
      }
    }
    if (child.pid !== undefined) yield* Effect.timeoutOption(Deferred.await(exited), "5 seconds")
  })

/**
 * Spawns a peer on `port` and waits (at most 20 s) for its READY line. The process is killed when the scope
 * closes, whatever the test did to it.
 */
const spawnPeer = (port: string): Effect.Effect<Peer, PeerError, Scope.Scope> =>
  Effect.gen(function*() {
    const exited = yield* Deferred.make<Ending>()
    const ready = yield* Deferred.make<string>()
    // Effect's logger writes to stdout, so a failure report needs both streams.
    let output = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(process.execPath, ["--import", "tsx", peerPath, port], {
          stdio: ["ignore", "pipe", "pipe"],
          env: peerEnv
        })
        const keep = (chunk: string) => {
          output = (output + chunk).slice(-8000)
        }
        let stdout = ""
        child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
          keep(chunk)
          stdout += chunk
          const line = /^READY (\S+)$/m.exec(stdout)
          if (line !== null) Deferred.doneUnsafe(ready, Effect.succeed(line[1]!))
        })
        child.stderr!.setEncoding("utf8").on("data", keep)
        // "close" rather than "exit": it comes once the pipes are drained and closed too.
        child.once("close", (code, signal) => Deferred.doneUnsafe(exited, Effect.succeed({ code, signal })))
        child.once("error", (error) => {
          keep(`\nspawn failed: ${error.message}`)
          Deferred.doneUnsafe(exited, Effect.succeed({ code: null, signal: null }))
        })
        return child
      }),
      (child) => reap(child, exited)
    )
    const failed = (what: string) => new PeerError({ message: `The peer (${peerPath} ${port}) ${what}. Its output:\n${output}` })
    const address = yield* Deferred.await(ready).pipe(
      Effect.raceFirst(
        Effect.flatMap(Deferred.await(exited), ({ code, signal }) =>
          Effect.fail(failed(`ended (code ${code}, signal ${signal}) before printing READY`)))
      ),
      Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.fail(failed("printed no READY line within 20 s")) })
    )
    const parsed = RpcAddress.parse(address)
    if (Result.isFailure(parsed)) return yield* Effect.fail(failed(`printed an invalid address: ${parsed.failure}`))
    const hostPort = RpcAddress.parseHostPort(parsed.success.authority)
    if (Result.isFailure(hostPort)) return yield* Effect.fail(failed(`printed an invalid authority: ${hostPort.failure}`))
    assert.strictEqual(parsed.success.protocol, "rpc")
    assert.strictEqual(parsed.success.endpointId, PEER_ENDPOINT_ID)
    return { pid: child.pid!, address, host: hostPort.success.host, port: hostPort.success.port, exited }
  })

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
