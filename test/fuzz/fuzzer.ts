/**
 * The fuzzer's engine, shared by `npm run fuzz` (test/fuzz/main.ts) and the test suite (test/fuzz.test.ts).
 *
 * It starts a server RpcService over TCP on 127.0.0.1 with two endpoints (one fenced), and a well-behaved client
 * RpcService that keeps calling them: asks whose results are checked against what was sent, tells whose effect is
 * checked by a later ask, fenced asks and tells. Meanwhile attackers open raw sockets and each send one attack from
 * the catalogue (test/fuzz/catalogue.ts). A run fails (a violation) on any of:
 * - an attacker connection that gets neither a typed answer nor a close: still open well after the server's
 *   connect timeout or heartbeat pause, or after the attacker hung up;
 * - an answer docs/PROTOCOL.md promises that does not come (an expectation), or a frame from the server that does not
 *   decode;
 * - a well-behaved call that fails or returns a wrong value, during the attacks or after them;
 * - an uncaught exception or unhandled rejection in the process, or an error logged by the server;
 * - the server's heap (measured after a forced GC, in this process) growing past a bound, or not coming back;
 * - the server's connection count not returning to what it was before the attacks, or the service stopping.
 */
import { Duration, Effect, Fiber, Logger, References, Result, Schema } from "effect"
import { RpcConfig, RpcEndpoint, RpcError, type RpcGateway, RpcService } from "effect-actor-rpc"
import * as Net from "node:net"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import * as Frame from "../../src/internal/frame.js"
import { LocalService } from "../../src/internal/service.js"
import * as Wire from "../../src/internal/wire.js"
import {
  type Attack,
  attackKinds,
  type AttackKind,
  buildAttack,
  FENCED_ID,
  FencedGateway,
  FUZZ_ID,
  FuzzGateway,
  randomSample,
  Sample,
  type Target,
  Token,
  TOKEN
} from "./catalogue.js"
import { Rng } from "./generators.js"

// ---------------------------------------------------------------------------------------------------------------
// Options and report
// ---------------------------------------------------------------------------------------------------------------

export interface FuzzOptions {
  /** How many attacks. */
  readonly iterations: number
  readonly seed: number
  /** Attacks in flight at once. */
  readonly concurrency: number
  /** Run only these attack numbers (to replay a violation). */
  readonly only?: ReadonlyArray<number> | undefined
  /** Draw attacks from these kinds only. */
  readonly kinds?: ReadonlyArray<AttackKind> | undefined
  /** Leave out the inputs of the known, unfixed library bugs (catalogue.ts `knownBugs`). */
  readonly avoidKnownBugs?: boolean | undefined
  /** The server's (and client's) heartbeat interval, heartbeat pause and connect timeout, in ms. */
  readonly heartbeatIntervalMs?: number | undefined
  readonly heartbeatPauseMs?: number | undefined
  readonly connectTimeoutMs?: number | undefined
  /** The server's frame limit. */
  readonly maximumFrameSize?: number | undefined
  /** The largest growth of heapUsed + external over the baseline allowed at any sample, and at the end. */
  readonly peakGrowthBound?: number | undefined
  readonly finalGrowthBound?: number | undefined
  /** Well-behaved callers running at once, and the calls each makes after the attacks. */
  readonly clients?: number | undefined
  readonly callsAfter?: number | undefined
  /** Called after every completed attack. */
  readonly onProgress?: ((done: number, total: number, violations: number) => void) | undefined
}

export const outcomes = ["typed-error", "close-frame", "closed", "open"] as const
/**
 * How an attack ended: an error reply or a refusing Connected ("typed-error"); a Close frame with a reason
 * ("close-frame"); the socket closed without either ("closed"); or still open at the deadline ("open", a violation).
 */
export type Outcome = typeof outcomes[number]

export interface Violation {
  readonly what: string
  readonly detail: string
  /** The attack it belongs to, or the attacks in flight when it happened. */
  readonly attacks: ReadonlyArray<string>
  /** An attack carrying a known library bug (catalogue.ts `knownBugs`) was involved (or in flight). */
  readonly knownBug: boolean
}

/** How many violations of one kind, and how many of them involved an attack carrying a known bug. */
export interface ViolationCount {
  readonly all: number
  readonly knownBug: number
}

export interface Memory {
  readonly heapUsed: number
  readonly external: number
}

export interface FuzzReport {
  readonly seed: number
  readonly attacks: number
  readonly concurrency: number
  readonly avoidKnownBugs: boolean
  readonly timing: { readonly heartbeatIntervalMs: number; readonly heartbeatPauseMs: number; readonly connectTimeoutMs: number }
  /** Attacks by kind and outcome. */
  readonly byKind: Record<string, Record<Outcome, number>>
  /** Attacks that got at least one successful answer (a mutated frame can still be a valid call). */
  readonly answered: number
  readonly expectations: { readonly checked: number; readonly met: number }
  /** The longest wait, from an attacker's last byte, for the server to close a silent connection. */
  readonly slowestCloseMs: number
  readonly calls: {
    readonly during: { readonly ok: number; readonly failed: number }
    readonly after: { readonly ok: number; readonly failed: number }
  }
  readonly memory: { readonly baseline: Memory; readonly peak: Memory; readonly final: Memory; readonly gc: boolean }
  readonly connections: { readonly baseline: number; readonly peak: number; readonly final: number }
  readonly logs: Record<string, number>
  readonly durationMs: number
  /** Up to 20 examples of each kind of violation. */
  readonly violations: ReadonlyArray<Violation>
  readonly violationCount: number
  readonly violationsByWhat: Record<string, ViolationCount>
}

const MiB = 1024 * 1024

// ---------------------------------------------------------------------------------------------------------------
// The service under attack
// ---------------------------------------------------------------------------------------------------------------

/** Keys of the well-behaved clients' tells; attackers use others, which the endpoint ignores. */
const clientKey = (seed: number, client: number) => `client-${seed}-${client}`

export const fuzzEndpoint = RpcEndpoint.make({
  id: FUZZ_ID,
  gateways: [FuzzGateway],
  init: () =>
    Effect.sync(() => {
      const totals = new Map<string, number>()
      return {
        handlers: {
          echo: (sample: Sample) => Effect.succeed(sample),
          bytes: (bytes: Uint8Array) => Effect.succeed(bytes),
          add: ({ key, n }: { key: string; n: number }) =>
            Effect.sync(() => {
              // Only the well-behaved clients' keys: an attacker's tells must not grow the map.
              if (key.startsWith("client-")) totals.set(key, (totals.get(key) ?? 0) + n)
            }),
          total: (key: string) => Effect.sync(() => totals.get(key) ?? 0),
          double: (n: number) => Effect.succeed(n * 2)
        }
      }
    })
})

export const fencedEndpoint = RpcEndpoint.makeFenced({
  id: FENCED_ID,
  gateways: [FencedGateway],
  token: Token,
  initialToken: TOKEN,
  init: () =>
    Effect.succeed({
      handlers: {
        ping: (n: number) => Effect.succeed(n + 1),
        note: () => Effect.void
      }
    })
})

const portOf = (address: string) => Number(/:(\d+)\//.exec(address)![1])
const authorityOf = (address: string) => /^\w+:\/\/([^/]+)\//.exec(address)![1]!

/** The server's open connections as the service counts them (internal: RpcService does not export it). */
const connectionCount = (service: RpcService.RpcServiceShape): number =>
  service instanceof LocalService ? service.connectionCount : -1

// ---------------------------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------------------------

/** `global.gc`, exposed at run time when node was not started with --expose-gc. */
const forcedGc = (): (() => void) | undefined => {
  const existing = (globalThis as { gc?: () => void }).gc
  if (typeof existing === "function") return existing
  try {
    V8.setFlagsFromString("--expose-gc")
    const gc = Vm.runInNewContext("gc") as unknown
    return typeof gc === "function" ? (gc as () => void) : undefined
  } catch {
    return undefined
  }
}

/** heapUsed and external after `collections` forced GCs (none when GC cannot be forced). */
const measure = (gc: (() => void) | undefined, collections = 2): Memory => {
  for (let i = 0; gc !== undefined && i < collections; i++) gc()
  const usage = process.memoryUsage()
  return { heapUsed: usage.heapUsed, external: usage.external }
}

const total = (m: Memory) => m.heapUsed + m.external

// ---------------------------------------------------------------------------------------------------------------
// One attack
// ---------------------------------------------------------------------------------------------------------------

interface Deadlines {
  /** After the attacker's last byte, how long a silent connection may stay open. */
  readonly silentMs: number
  /** After the attacker hangs up, how long the server may take to close its side. */
  readonly hangUpMs: number
  /** How long a slow reader leaves its replies unread. */
  readonly unreadMs: number
}

export interface AttackResult {
  readonly outcome: Outcome
  readonly answered: boolean
  /** Error replies' tags, `Connected:<reason>` for a refused connect. */
  readonly errors: ReadonlyArray<string>
  readonly closeReason: string | undefined
  readonly problems: ReadonlyArray<string>
  /** From the attacker's last byte to the server's close, when the attacker waited for it. */
  readonly closeMs: number | undefined
}

/** Runs one attack over a raw socket and reports how the server dealt with it. */
export const runAttack = (port: number, attack: Attack, deadlines: Deadlines): Effect.Effect<AttackResult> =>
  Effect.callback<AttackResult>((resume) => {
    // No Nagle: a slow writer's bytes go out one by one.
    const socket = Net.connect({ host: "127.0.0.1", port, noDelay: true })
    const decoder = new Frame.FrameDecoder(64 * MiB)
    const errors: Array<string> = []
    const problems: Array<string> = []
    let closeReason: string | undefined
    let answered = false
    let stepsDone = false
    let hungUp = false
    let closed = false
    let lastByteAt = Date.now()
    let waitingForServer = false
    let timer: ReturnType<typeof setTimeout> | undefined

    const arm = (ms: number, onExpiry: () => void) => {
      if (timer !== undefined) clearTimeout(timer)
      timer = setTimeout(onExpiry, ms)
    }

    const onFrame = (body: Uint8Array) => {
      const message = Wire.decode(body)
      if (message instanceof Wire.WireError) {
        problems.push(`the server sent a frame that does not decode: ${message.detail}`)
        return
      }
      switch (message._tag) {
        case "Reply":
          if (message.outcome === Wire.Outcome.Error) {
            const error = Wire.decodeValue(RpcError.RpcCallError, message.value)
            if (Result.isSuccess(error)) errors.push((error.success as { _tag: string })._tag)
            else problems.push(`an error reply that is not an RpcCallError: ${error.failure}`)
          } else answered = true
          break
        case "Connected":
          if (message.reason === null) answered = true
          else errors.push(`Connected:${message.reason}`)
          break
        case "Heartbeat":
          if (message.reply) answered = true
          break
        case "Compare":
          answered = true
          break
        case "Close":
          closeReason = message.reason
          break
        default:
          break
      }
      if ((answered || errors.length > 0) && attack.hangUpOnAnswer && stepsDone) hangUp()
    }

    const hangUp = () => {
      if (hungUp || closed) return
      hungUp = true
      socket.end()
      arm(deadlines.hangUpMs, () => {
        problems.push(`the server kept the connection open ${deadlines.hangUpMs} ms after the attacker hung up`)
        finish("open")
      })
    }

    const finish = (outcome?: Outcome) => {
      if (closed) return
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed({
        outcome: outcome ?? (errors.length > 0 ? "typed-error" : closeReason !== undefined ? "close-frame" : "closed"),
        answered,
        errors,
        closeReason,
        problems,
        closeMs: waitingForServer ? Date.now() - lastByteAt : undefined
      }))
    }

    const afterSteps = () => {
      stepsDone = true
      if (closed) return
      if (attack.slowReader) {
        // Leave the replies unread while the server decides what to do about a peer that reads nothing.
        arm(deadlines.unreadMs, () => {
          socket.resume()
          waitingForServer = true
          arm(deadlines.silentMs, () => {
            problems.push(`a slow reader's connection was still open ${deadlines.unreadMs + deadlines.silentMs} ms after its last byte`)
            finish("open")
          })
        })
        return
      }
      if (hungUp) {
        // The attack itself ended with a hang-up.
        arm(deadlines.hangUpMs, () => {
          problems.push(`the server kept the connection open ${deadlines.hangUpMs} ms after the attacker hung up`)
          finish("open")
        })
        return
      }
      if ((answered || errors.length > 0) && attack.hangUpOnAnswer) return hangUp()
      waitingForServer = true
      arm(deadlines.silentMs, () => {
        problems.push(`no answer and still open ${deadlines.silentMs} ms after the attacker's last byte`)
        finish("open")
      })
    }

    let step = 0
    const next = (): void => {
      if (closed) return
      if (step >= attack.steps.length) return afterSteps()
      const current = attack.steps[step++]!
      switch (current._tag) {
        case "write":
          lastByteAt = Date.now()
          // Wait until the bytes are handed to the kernel: a slow reader's asks must not pile up in this process.
          socket.write(current.bytes, () => next())
          return
        case "drip": {
          let offset = 0
          const drip = () => {
            if (closed) return
            if (offset >= current.bytes.length) return next()
            lastByteAt = Date.now()
            socket.write(current.bytes.subarray(offset, ++offset))
            setTimeout(drip, current.delayMs)
          }
          return drip()
        }
        case "pause":
          setTimeout(next, current.ms)
          return
        case "end":
          hungUp = true
          lastByteAt = Date.now()
          socket.end()
          return next()
      }
    }

    socket.on("connect", () => {
      if (attack.slowReader) socket.pause()
      next()
    })
    socket.on("data", (chunk: Buffer) => {
      const error = decoder.push(chunk, onFrame)
      if (error !== undefined) problems.push(`the server's byte stream cannot be framed: ${error.detail}`)
    })
    // A reset is the server closing too; the attack is over either way.
    socket.on("error", () => {})
    socket.on("close", () => finish())
    return Effect.sync(() => finish())
  })

const meets = (attack: Attack, result: AttackResult): boolean => {
  const expect = attack.expect!
  switch (expect._tag) {
    case "error":
      return result.errors.includes(expect.error)
    case "close":
      return result.closeReason === expect.reason
    case "answer":
      return result.answered
  }
}

const describeResult = (result: AttackResult) =>
  `got ${result.outcome}` +
  (result.errors.length > 0 ? `, errors [${[...new Set(result.errors)].join(", ")}]` : "") +
  (result.closeReason !== undefined ? `, Close(${result.closeReason})` : "") +
  (result.answered ? ", answered" : "")

// ---------------------------------------------------------------------------------------------------------------
// The well-behaved client
// ---------------------------------------------------------------------------------------------------------------

const sampleEquals = Schema.toEquivalence(Sample)
const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i])

interface CallStats {
  ok: number
  failed: number
}

/**
 * One well-behaved caller: random asks checked against the values sent, tells checked by a later `total`, fenced
 * asks and tells. Runs `count` calls, or until `stop()`.
 */
const wellBehaved = (
  connect: {
    readonly gateway: RpcGateway.Client<typeof FuzzGateway>
    readonly fenced: RpcGateway.Client<typeof FencedGateway>
  },
  rng: Rng,
  key: string,
  state: { sum: number },
  stats: CallStats,
  fail: (detail: string) => void,
  until: { readonly count: number } | { readonly stop: () => boolean }
) =>
  Effect.gen(function*() {
    const { fenced, gateway } = connect
    let calls = 0
    while ("count" in until ? calls < until.count : !until.stop()) {
      calls++
      const op = rng.weighted([["echo", 4], ["bytes", 2], ["add", 3], ["total", 1], ["double", 2], ["ping", 2], ["note", 1]] as const)
      const check = (ok: boolean, what: string) => {
        if (ok) stats.ok++
        else {
          stats.failed++
          fail(`${op} returned a wrong value: ${what}`)
        }
      }
      const call: Effect.Effect<void, unknown> = (() => {
        switch (op) {
          case "echo": {
            const value = randomSample(rng)
            return Effect.map(gateway.echo(value), (back) => check(sampleEquals(value, back), "not the sample sent"))
          }
          case "bytes": {
            const value = rng.bytes(rng.bool(0.2) ? rng.between(8 * 1024, 40 * 1024) : rng.size(2000))
            return Effect.map(gateway.bytes(value), (back) => check(bytesEqual(value, back), "not the bytes sent"))
          }
          case "add": {
            const n = rng.between(-100, 100)
            state.sum += n
            return Effect.map(gateway.add({ key, n }), () => check(true, ""))
          }
          case "total": {
            const expected = state.sum
            return Effect.map(gateway.total(key), (n) => check(n === expected, `${n}, expected ${expected}`))
          }
          case "double": {
            const n = rng.between(0, 1000)
            return Effect.map(gateway.double(n), (back) => check(back === n * 2, `${back} for ${n}`))
          }
          case "ping": {
            const n = rng.between(0, 1e6)
            return Effect.map(fenced.ping(n), (back) => check(back === n + 1, `${back} for ${n}`))
          }
          case "note":
            return Effect.map(fenced.note(rng.text(20)), () => check(true, ""))
        }
      })()
      const exit = yield* Effect.exit(call)
      if (exit._tag === "Failure") {
        stats.failed++
        fail(`${op} failed: ${String(exit.cause).slice(0, 300)}`)
      }
      // Leave the event loop to the attackers and the server between calls.
      yield* Effect.sleep(Duration.millis(2))
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// A run
// ---------------------------------------------------------------------------------------------------------------

const emptyOutcomes = (): Record<Outcome, number> => ({ "typed-error": 0, "close-frame": 0, closed: 0, open: 0 })

/** Runs the fuzzer; everything it starts (services, sockets, fibers, process listeners) is gone when it returns. */
export const runFuzz = (options: FuzzOptions): Effect.Effect<FuzzReport> => {
  const timing = {
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 250,
    heartbeatPauseMs: options.heartbeatPauseMs ?? 1500,
    connectTimeoutMs: options.connectTimeoutMs ?? 1000
  }
  const frameLimit = options.maximumFrameSize ?? 256 * 1024
  const config: RpcConfig.RpcConfig = {
    ...RpcConfig.defaults,
    heartbeatInterval: Duration.millis(timing.heartbeatIntervalMs),
    heartbeatPause: Duration.millis(timing.heartbeatPauseMs),
    connectTimeout: Duration.millis(timing.connectTimeoutMs),
    maximumFrameSize: frameLimit,
    askTimeout: Duration.seconds(10),
    captureAskCallSite: false
  }
  const deadlines: Deadlines = {
    // The heartbeat fiber looks once an interval, then the server waits up to 1 s for its goodbye to drain.
    silentMs: Math.max(timing.heartbeatPauseMs, timing.connectTimeoutMs) + timing.heartbeatIntervalMs + 1000 + 2000,
    hangUpMs: 3000,
    unreadMs: timing.heartbeatPauseMs + timing.heartbeatIntervalMs + 1500
  }
  const avoidKnownBugs = options.avoidKnownBugs ?? false
  const indices = options.only ?? Array.from({ length: options.iterations }, (_, i) => i)

  const violations: Array<Violation> = []
  let violationCount = 0
  const violationsByWhat: Record<string, { all: number; knownBug: number }> = {}
  const violate = (what: string, detail: string, attacks: ReadonlyArray<string>) => {
    violationCount++
    const knownBug = attacks.some((a) => a.includes("(known bug: "))
    const counts = violationsByWhat[what] ??= { all: 0, knownBug: 0 }
    counts.all++
    if (knownBug) counts.knownBug++
    if (counts.all <= 20) violations.push({ what, detail, attacks, knownBug })
  }
  const inFlight = new Map<number, string>()
  // Attacks known to trigger a library bug first: an uncaught exception cannot say which connection it came from.
  const inFlightNow = () =>
    [...inFlight].map(([i, label]) => `#${i} ${label}`).sort((a, b) => Number(b.includes("known bug")) - Number(a.includes("known bug")))

  const logs: Record<string, number> = {}
  const logger = Logger.make((entry) => {
    logs[entry.logLevel] = (logs[entry.logLevel] ?? 0) + 1
    if (entry.logLevel === "Error" || entry.logLevel === "Fatal") {
      violate("the server logged an error", `${String(entry.message)} ${String(entry.cause)}`.slice(0, 500), inFlightNow())
    }
  })

  const onUncaught = (error: unknown) =>
    violate("uncaught exception", error instanceof Error ? (error.stack ?? error.message) : String(error), inFlightNow())
  const onRejection = (reason: unknown) =>
    violate("unhandled rejection", reason instanceof Error ? (reason.stack ?? reason.message) : String(reason), inFlightNow())

  const listeners = Effect.acquireRelease(
    Effect.sync(() => {
      process.on("uncaughtException", onUncaught)
      process.on("unhandledRejection", onRejection)
    }),
    () =>
      Effect.sync(() => {
        process.off("uncaughtException", onUncaught)
        process.off("unhandledRejection", onRejection)
      })
  )

  const program = Effect.gen(function*() {
    const started = Date.now()
    yield* listeners
    const gc = forcedGc()
    const server = yield* RpcService.makeTcp()
    yield* RpcEndpoint.scoped(fuzzEndpoint).pipe(Effect.provideService(RpcService.RpcService, server))
    yield* RpcEndpoint.scoped(fencedEndpoint).pipe(Effect.provideService(RpcService.RpcService, server))
    const client = yield* RpcService.makeTcp()
    const port = portOf(server.address(FUZZ_ID))
    const target: Target = {
      clientAuthority: authorityOf(client.address("x")),
      frameLimit,
      connectTimeoutMs: timing.connectTimeoutMs,
      avoidKnownBugs
    }
    const clients = options.clients ?? 2
    const connections = yield* Effect.forEach(Array.from({ length: clients }, (_, i) => i), () =>
      Effect.all({
        gateway: client.connect(server.address(FUZZ_ID), FuzzGateway),
        fenced: client.connectFenced(server.address(FENCED_ID), TOKEN, FencedGateway)
      }))
    const states = connections.map(() => ({ sum: 0 }))
    const rngs = connections.map((_, i) => new Rng(options.seed ^ 0x5eed, 1_000_000_000 + i))
    const during: CallStats = { ok: 0, failed: 0 }
    const after: CallStats = { ok: 0, failed: 0 }
    const callFailed = (phase: string) => (detail: string) => violate(`a well-behaved call failed ${phase} the attacks`, detail, phase === "during" ? inFlightNow() : [])

    // Warm up (codecs, connections, JIT) before the baseline.
    yield* Effect.forEach(connections, (c, i) =>
      wellBehaved(c, rngs[i]!, clientKey(options.seed, i), states[i]!, during, callFailed("before"), { count: 50 }), { discard: true })
    const baselineConnections = connectionCount(server)
    const baseline = measure(gc)
    let peak = baseline
    let peakAttacks: ReadonlyArray<string> = []
    let peakConnections = baselineConnections

    let stopped = false
    const callers = yield* Effect.forEach(connections, (c, i) =>
      Effect.forkChild(
        wellBehaved(c, rngs[i]!, clientKey(options.seed, i), states[i]!, during, callFailed("during"), { stop: () => stopped })
      ))
    const sample = Effect.sync(() => {
      const now = measure(gc, 1)
      if (total(now) > total(peak)) {
        peak = now
        peakAttacks = inFlightNow()
      }
      peakConnections = Math.max(peakConnections, connectionCount(server))
    })
    const sampler = yield* Effect.forkChild(Effect.forever(Effect.andThen(Effect.sleep(Duration.millis(500)), sample)))

    // The attacks.
    const byKind: Record<string, Record<Outcome, number>> = {}
    let answered = 0
    let checked = 0
    let met = 0
    let slowestCloseMs = 0
    let done = 0
    yield* Effect.forEach(indices, (index) =>
      Effect.suspend(() => {
        const attack = buildAttack(options.seed, index, target, options.kinds ?? attackKinds)
        const label = `${attack.kind}/${attack.variant}`
        inFlight.set(index, attack.knownBug === undefined ? label : `${label} (known bug: ${attack.knownBug})`)
        return Effect.map(runAttack(port, attack, deadlines), (result) => {
          inFlight.delete(index)
          const counts = byKind[attack.kind] ??= emptyOutcomes()
          counts[result.outcome]++
          if (result.answered) answered++
          if (result.closeMs !== undefined && result.outcome !== "open" && !attack.slowReader) slowestCloseMs = Math.max(slowestCloseMs, result.closeMs)
          const name = [`#${index} ${label}${attack.knownBug === undefined ? "" : ` (known bug: ${attack.knownBug})`}`]
          for (const problem of result.problems) violate("attack not dealt with", problem, name)
          if (attack.expect !== undefined) {
            checked++
            if (meets(attack, result)) met++
            else violate("expected answer missing", `expected ${JSON.stringify(attack.expect)}, ${describeResult(result)}`, name)
          }
          done++
          options.onProgress?.(done, indices.length, violationCount)
        })
      }), { concurrency: options.concurrency, discard: true })

    // Every attacker connection must be gone from the server too.
    let finalConnections = connectionCount(server)
    for (let i = 0; i < 100 && finalConnections > baselineConnections; i++) {
      yield* Effect.sleep(Duration.millis(100))
      finalConnections = connectionCount(server)
    }
    if (finalConnections !== baselineConnections) {
      violate("connections left open", `the server has ${finalConnections} connections, ${baselineConnections} before the attacks`, [])
    }

    stopped = true
    yield* Effect.forEach(callers, Fiber.join, { discard: true })
    yield* Fiber.interrupt(sampler)
    // Calls after the attacks, then the final figures.
    yield* Effect.forEach(connections, (c, i) =>
      wellBehaved(c, rngs[i]!, clientKey(options.seed, i), states[i]!, after, callFailed("after"), {
        count: options.callsAfter ?? 100
      }), { discard: true, concurrency: "unbounded" })
    yield* sample
    const final = measure(gc)
    const peakGrowthBound = options.peakGrowthBound ?? 64 * MiB
    const finalGrowthBound = options.finalGrowthBound ?? 16 * MiB
    if (total(peak) - total(baseline) > peakGrowthBound) {
      violate("memory", `heapUsed + external grew by ${mib(total(peak) - total(baseline))} at its peak (bound ${mib(peakGrowthBound)})`, peakAttacks)
    }
    if (total(final) - total(baseline) > finalGrowthBound) {
      violate("memory", `heapUsed + external is ${mib(total(final) - total(baseline))} over the baseline after the attacks (bound ${mib(finalGrowthBound)})`, [])
    }
    if (yield* server.isStopped) violate("server stopped", "the server RpcService stopped during the attacks", [])
    const ids = yield* server.endpointIds
    for (const id of [FUZZ_ID, FENCED_ID]) {
      if (!ids.includes(id)) violate("endpoint gone", `the endpoint ${id} is no longer live on the server`, [])
    }
    return {
      seed: options.seed,
      attacks: indices.length,
      concurrency: options.concurrency,
      avoidKnownBugs,
      timing,
      byKind,
      answered,
      expectations: { checked, met },
      slowestCloseMs,
      calls: { during: { ...during }, after: { ...after } },
      memory: { baseline, peak, final, gc: gc !== undefined },
      connections: { baseline: baselineConnections, peak: peakConnections, final: finalConnections },
      logs,
      durationMs: Date.now() - started,
      violations,
      violationCount,
      violationsByWhat
    } satisfies Omit<FuzzReport, never>
  })

  return program.pipe(
    Effect.scoped,
    Effect.provideService(RpcConfig.RpcConfig, config),
    Effect.provideService(References.CurrentLoggers, new Set([logger])),
    Effect.catchCause((cause) =>
      Effect.sync(() => {
        violate("the fuzzer itself failed", String(cause).slice(0, 2000), [])
        return failedReport(options, violations, violationCount, violationsByWhat)
      })
    )
  )
}

const failedReport = (
  options: FuzzOptions,
  violations: ReadonlyArray<Violation>,
  violationCount: number,
  violationsByWhat: Record<string, ViolationCount>
): FuzzReport => {
  const none: Memory = { heapUsed: 0, external: 0 }
  return {
    seed: options.seed,
    attacks: 0,
    concurrency: options.concurrency,
    avoidKnownBugs: options.avoidKnownBugs ?? false,
    timing: { heartbeatIntervalMs: 0, heartbeatPauseMs: 0, connectTimeoutMs: 0 },
    byKind: {},
    answered: 0,
    expectations: { checked: 0, met: 0 },
    slowestCloseMs: 0,
    calls: { during: { ok: 0, failed: 0 }, after: { ok: 0, failed: 0 } },
    memory: { baseline: none, peak: none, final: none, gc: false },
    connections: { baseline: 0, peak: 0, final: 0 },
    logs: {},
    durationMs: 0,
    violations,
    violationCount,
    violationsByWhat
  }
}

export const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`

// ---------------------------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------------------------

const pad = (text: string, width: number) => text.length >= width ? text : text + " ".repeat(width - text.length)
const padLeft = (text: string, width: number) => text.length >= width ? text : " ".repeat(width - text.length) + text

/** The report as the table `npm run fuzz` prints. */
export const formatReport = (report: FuzzReport): string => {
  const lines: Array<string> = []
  const kinds = Object.keys(report.byKind).sort()
  const header = [pad("attack kind", 20), ...outcomes.map((o) => padLeft(o, 12)), padLeft("total", 8)].join("")
  lines.push(header, "-".repeat(header.length))
  const sums = emptyOutcomes()
  for (const kind of kinds) {
    const counts = report.byKind[kind]!
    let sum = 0
    for (const o of outcomes) {
      sums[o] += counts[o]
      sum += counts[o]
    }
    lines.push([pad(kind, 20), ...outcomes.map((o) => padLeft(String(counts[o]), 12)), padLeft(String(sum), 8)].join(""))
  }
  lines.push("-".repeat(header.length))
  lines.push([pad("all", 20), ...outcomes.map((o) => padLeft(String(sums[o]), 12)), padLeft(String(report.attacks), 8)].join(""))
  lines.push("")
  const { after, during } = report.calls
  const memory = report.memory
  const row = (label: string, m: Memory) => `${pad(label, 10)} heapUsed ${padLeft(mib(m.heapUsed), 10)}   external ${padLeft(mib(m.external), 10)}`
  lines.push(
    `seed ${report.seed}, ${report.attacks} attacks, concurrency ${report.concurrency}${report.avoidKnownBugs ? ", known bugs avoided" : ""}`,
    `server: heartbeat every ${report.timing.heartbeatIntervalMs} ms, pause ${report.timing.heartbeatPauseMs} ms, connect timeout ${report.timing.connectTimeoutMs} ms`,
    `answered (a valid call inside the attack): ${report.answered}`,
    `expected answers met: ${report.expectations.met} of ${report.expectations.checked}`,
    `slowest close of a silent connection: ${report.slowestCloseMs} ms after its last byte`,
    `well-behaved calls: during ${during.ok} ok / ${during.failed} failed, after ${after.ok} ok / ${after.failed} failed`,
    `server connections: baseline ${report.connections.baseline}, peak ${report.connections.peak}, final ${report.connections.final}`,
    `memory (after forced GC${memory.gc ? "" : " - unavailable, figures are noisy"}):`,
    row("  baseline", memory.baseline),
    row("  peak", memory.peak),
    row("  final", memory.final),
    `server log entries: ${Object.entries(report.logs).map(([level, n]) => `${level} ${n}`).join(", ") || "none"}`,
    `duration: ${(report.durationMs / 1000).toFixed(1)} s`
  )
  if (report.violationCount > 0) {
    const byWhat = Object.entries(report.violationsByWhat)
    const known = byWhat.reduce((sum, [, n]) => sum + n.knownBug, 0)
    lines.push(
      "",
      `VIOLATIONS: ${report.violationCount}, ${known} of them with an attack carrying a known bug involved or in flight`,
      ...byWhat.map(([what, n]) => `  ${padLeft(String(n.all), 6)} ${what} (${n.knownBug} with a known bug)`),
      "examples (up to 5 of each):"
    )
    const shown = new Map<string, number>()
    for (const v of report.violations) {
      const n = (shown.get(v.what) ?? 0) + 1
      shown.set(v.what, n)
      if (n > 5) continue
      lines.push(`- ${v.what}: ${v.detail.split("\n").slice(0, 6).join("\n    ")}`)
      if (v.attacks.length > 0) lines.push(`    attacks: ${v.attacks.slice(0, 8).join("; ")}${v.attacks.length > 8 ? "; ..." : ""}`)
    }
  }
  return lines.join("\n")
}
