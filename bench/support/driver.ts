/**
 * The client side of every benchmark: the workload table, the measuring loops (one for Effect clients, one for
 * Promise clients, identical in shape) and the lines a client prints for the orchestrator (bench/run.ts).
 *
 * A run keeps `inFlight` calls outstanding for `seconds` (a closed loop: each caller issues its next call when the
 * previous one returns). Sequential runs also time every call, for the latency percentiles. Tell runs send bursts
 * of one-way messages, each followed by an ask for the server's count (`measureTells*`).
 *
 * Importing this module also checks where `effect-actor-rpc` resolves (see `BENCH_FROM` below).
 */
import * as Effect from "effect/Effect"
import { relative, sep } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

/** A remote workload: what is sent, how many calls each client keeps in flight, and how many clients and targets. */
export interface RemoteWorkload {
  /** Payload size in bytes. */
  readonly bytes: number
  /** Calls each client keeps in flight (1 for tells: one sender). */
  readonly inFlight: number
  /** `ask`: echo calls. `tell`: one-way messages in bursts, each burst followed by an ask for the server's count. */
  readonly kind: "ask" | "tell"
  /** Client processes started together against the one server; the row sums their rates (fan-in). */
  readonly clients: number
  /** Endpoints in the server process; a client spreads its calls over them round-robin (fan-out). */
  readonly targets: number
}

/** A workload of `bytes`-byte asks, `inFlight` per client, one client and one target unless `more` says otherwise. */
const shape = (bytes: number, inFlight: number, more: Partial<RemoteWorkload> = {}): RemoteWorkload => ({
  bytes,
  inFlight,
  kind: "ask",
  clients: 1,
  targets: 1,
  ...more
})

/** The remote workloads; their ids are fixed (the check reads them). */
export const remoteWorkloads: Readonly<Record<string, RemoteWorkload>> = {
  "ask-32B-seq": shape(32, 1),
  "ask-1KiB-seq": shape(1024, 1),
  "ask-64KiB-seq": shape(65536, 1),
  "ask-32B-16": shape(32, 16),
  "ask-32B-256": shape(32, 256),
  "ask-1KiB-256": shape(1024, 256),
  "ask-64KiB-256": shape(65536, 256),
  "tell-32B-remote": shape(32, 1, { kind: "tell" }),
  "ask-32B-fanin-8": shape(32, 32, { clients: 8 }),
  "ask-32B-fanout-100": shape(32, 256, { targets: 100 })
}

/** A sequential workload: one ask at a time from one client, the rows measured with both placements. */
export const isSequential = (id: string): boolean => id.endsWith("-seq")

/** Tells sent between two asks for the server's count. */
export const TELL_BURST = 1000

/** How long to measure: a warm-up, then `runs` runs of `seconds` each. */
export interface Plan {
  readonly warmupSeconds: number
  readonly seconds: number
  readonly runs: number
  /**
   * Print `ARMED`, wait for a `GO <epoch ms>` line on stdin, and measure in fixed slots of time from that moment
   * (fan-in: the runs of all clients cover the same stretches of time; `Slots` below). Ask workloads only.
   */
  readonly barrier?: boolean | undefined
}

/** The figures of one run. Latencies only for sequential runs. */
export interface RunFigures {
  readonly calls_per_s: number
  readonly p50_us?: number
  readonly p99_us?: number
}

/** What a client was asked to do, from its command line. */
export interface ClientArgs extends Plan {
  readonly workload: string
  readonly port: number
}

const flag = (argv: ReadonlyArray<string>, name: string): string | undefined => {
  const at = argv.indexOf(`--${name}`)
  return at >= 0 ? argv[at + 1] : undefined
}

/** Reads `--workload --port --runs --seconds --warmup [--barrier]` (the orchestrator passes all of them). */
export const clientArgs = (argv: ReadonlyArray<string> = process.argv): ClientArgs => {
  const number = (name: string, fallback: number) => {
    const raw = flag(argv, name)
    const value = raw === undefined ? fallback : Number(raw)
    if (!Number.isFinite(value) || value < 0) throw new Error(`bench client: --${name} must be a number, got ${raw}`)
    return value
  }
  const workload = flag(argv, "workload")
  if (workload === undefined) throw new Error("bench client: --workload is required")
  return {
    workload,
    port: number("port", 0),
    runs: Math.max(1, Math.floor(number("runs", 3))),
    seconds: number("seconds", 1),
    warmupSeconds: number("warmup", 0.5),
    barrier: argv.includes("--barrier")
  }
}

/** The workload a server serves (`--workload`; the orchestrator starts a server per workload), checked. */
export const serverWorkload = (argv: ReadonlyArray<string> = process.argv): RemoteWorkload => {
  const id = flag(argv, "workload")
  if (id === undefined) throw new Error("bench server: --workload is required")
  return remoteWorkload(id)
}

/** The remote workload named by the arguments, or an error naming the known ones. */
export const remoteWorkload = (id: string): RemoteWorkload => {
  const workload = remoteWorkloads[id]
  if (workload === undefined) {
    throw new Error(`bench: unknown workload ${id}; known: ${Object.keys(remoteWorkloads).join(", ")}`)
  }
  return workload
}

/** A payload of `bytes` bytes; the same bytes for every system. */
export const payload = (bytes: number): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + 7) & 0xff
  return out
}

/**
 * Each call of the result returns the next of `items`, cycling: how every fan-out client spreads its calls over
 * the targets, each call built once, so that the pick is the only extra work per call.
 */
export const roundRobin = <A>(items: ReadonlyArray<A>): () => A => {
  let next = 0
  return () => {
    const picked = items[next]!
    next = next + 1 === items.length ? 0 : next + 1
    return picked
  }
}

/** Wall-clock start and end (ms since the epoch) of each measured run, for aligning the runs of several clients. */
const spans: Array<readonly [number, number]> = []

/** Prints the line the orchestrator reads: `RESULT <json>`, with the measured runs' start and end times. */
export const report = (runs: ReadonlyArray<object>): void => {
  process.stdout.write(`RESULT ${JSON.stringify({ runs, spans })}\n`)
}

/**
 * `performance.now()` as ms since the epoch on the wall clock that all processes share. Anchored on `Date.now()`
 * rather than `performance.timeOrigin`, which can be off by tens of ms between processes.
 */
const clockOffset = Date.now() - performance.now()
const epochMs = (now: number) => now + clockOffset

/**
 * Prints `ARMED`, then waits for the orchestrator's `GO <epoch ms>` line on stdin; returns that moment on this
 * process's `performance.now()` clock.
 */
const awaitGo = () =>
  new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: process.stdin })
    let go = false
    lines.on("line", (line) => {
      const match = /^GO (\d+(?:\.\d+)?)$/.exec(line.trim())
      if (match === null) return
      go = true
      lines.close()
      // Lets the process exit on its own once the client is done.
      process.stdin.destroy()
      resolve(Number(match[1]) - clockOffset)
    })
    lines.on("close", () => {
      if (!go) reject(new Error("bench client: stdin closed before the orchestrator's GO line"))
    })
    process.stdout.write("ARMED\n")
  })

/**
 * The fan-in way of measuring (`--barrier`): fixed slots of time counted from the `GO` moment that every client was
 * given, the warm-up and then `runs` runs, with the callers kept busy across all of them (no drain between runs). A
 * call is counted in the slot in which it completes. Every client's run i therefore covers the same stretch of time,
 * however slowly the calls of a loaded server drain.
 */
class Slots {
  readonly ends: Array<number>
  readonly counts: Array<number>
  private current = 0
  constructor(readonly start: number, readonly plan: Plan) {
    const warmedUp = start + plan.warmupSeconds * 1000
    this.ends = [warmedUp, ...Array.from({ length: plan.runs }, (_, i) => warmedUp + (i + 1) * plan.seconds * 1000)]
    this.counts = this.ends.map(() => 0)
  }
  /** Counts a call completed at `now`; false once the last slot has ended (the caller stops). */
  count(now: number): boolean {
    if (now >= this.ends[this.ends.length - 1]!) return false
    while (now >= this.ends[this.current]!) this.current++
    this.counts[this.current]!++
    return true
  }
  runs(): Array<RunFigures> {
    const runs: Array<RunFigures> = []
    for (let i = 1; i < this.ends.length; i++) {
      spans.push([epochMs(this.ends[i - 1]!), epochMs(this.ends[i]!)])
      runs.push({ calls_per_s: this.counts[i]! / this.plan.seconds })
    }
    return runs
  }
}

/** Sequential runs record at most this many latencies; later calls are counted but not timed. */
const MAX_SAMPLES = 4_000_000

class Recorder {
  // Grown on demand: a 32 MB array held from the start drove the client into a full GC every 60-90 ms.
  samples: Float64Array
  count = 0
  calls = 0
  constructor(readonly timed: boolean) {
    this.samples = new Float64Array(timed ? 1 << 16 : 0)
  }
  record(micros: number): void {
    if (this.count === this.samples.length && this.count < MAX_SAMPLES) {
      const grown = new Float64Array(Math.min(MAX_SAMPLES, this.count * 2))
      grown.set(this.samples)
      this.samples = grown
    }
    if (this.count < this.samples.length) this.samples[this.count++] = micros
  }
  figures(seconds: number): RunFigures {
    const calls_per_s = this.calls / seconds
    if (this.count === 0) return { calls_per_s }
    const sorted = this.samples.subarray(0, this.count).sort()
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
    return { calls_per_s, p50_us: at(0.5), p99_us: at(0.99) }
  }
}

/** Measures an Effect call: a warm-up, then `plan.runs` runs with `inFlight` callers. */
export const measureEffect = <E>(
  call: Effect.Effect<unknown, E>,
  inFlight: number,
  plan: Plan
): Effect.Effect<Array<RunFigures>, E> =>
  Effect.gen(function*() {
    if (plan.barrier) {
      const slots = new Slots(yield* Effect.promise(awaitGo), plan)
      yield* Effect.sleep(Math.max(0, slots.start - performance.now()))
      const caller = Effect.gen(function*() {
        do yield* call
        while (slots.count(performance.now()))
      })
      yield* Effect.all(Array.from({ length: inFlight }, () => caller), { concurrency: "unbounded", discard: true })
      return slots.runs()
    }
    const once = (seconds: number, measured: boolean) =>
      Effect.gen(function*() {
        const recorder = new Recorder(inFlight === 1)
        const started = performance.now()
        const deadline = started + seconds * 1000
        const caller = Effect.gen(function*() {
          let now = started
          while (now < deadline) {
            yield* call
            const after = performance.now()
            if (inFlight === 1) recorder.record((after - now) * 1000)
            recorder.calls++
            now = after
          }
        })
        yield* Effect.all(Array.from({ length: inFlight }, () => caller), { concurrency: "unbounded", discard: true })
        const ended = performance.now()
        if (measured) spans.push([epochMs(started), epochMs(ended)])
        return recorder.figures((ended - started) / 1000)
      })
    yield* once(plan.warmupSeconds, false)
    const runs: Array<RunFigures> = []
    for (let i = 0; i < plan.runs; i++) runs.push(yield* once(plan.seconds, true))
    return runs
  })

/** Measures a Promise call, in the same shape as `measureEffect`. */
export const measurePromise = async (
  call: () => Promise<unknown>,
  inFlight: number,
  plan: Plan
): Promise<Array<RunFigures>> => {
  if (plan.barrier) {
    const slots = new Slots(await awaitGo(), plan)
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, slots.start - performance.now())))
    const caller = async () => {
      do await call()
      while (slots.count(performance.now()))
    }
    await Promise.all(Array.from({ length: inFlight }, caller))
    return slots.runs()
  }
  const once = async (seconds: number, measured: boolean) => {
    const recorder = new Recorder(inFlight === 1)
    const started = performance.now()
    const deadline = started + seconds * 1000
    const caller = async () => {
      let now = started
      while (now < deadline) {
        await call()
        const after = performance.now()
        if (inFlight === 1) recorder.record((after - now) * 1000)
        recorder.calls++
        now = after
      }
    }
    await Promise.all(Array.from({ length: inFlight }, caller))
    const ended = performance.now()
    if (measured) spans.push([epochMs(started), epochMs(ended)])
    return recorder.figures((ended - started) / 1000)
  }
  await once(plan.warmupSeconds, false)
  const runs: Array<RunFigures> = []
  for (let i = 0; i < plan.runs; i++) runs.push(await once(plan.seconds, true))
  return runs
}

/** The server counted another number of tells than the client had sent by then: the run fails. */
const countMismatch = (counted: number, sent: number) =>
  new Error(`bench client: the server counted ${counted} tells after the client had sent ${sent}; a tell was lost`)

/**
 * Measures tells: for `seconds`, bursts of `TELL_BURST` one-way messages, each followed by an ask for the number of
 * tells the server has handled. `burst(n)` sends `n` tells and then that ask, and returns the count. The count must
 * equal the number sent so far (warm-up included), or the run fails; the last burst's ask ends each run, so every
 * run proves that all of its tells arrived. Waiting for the count also keeps a sender from measuring a growing
 * backlog instead of tells.
 */
export const measureTellsEffect = <E>(
  burst: (tells: number) => Effect.Effect<number, E>,
  plan: Plan
): Effect.Effect<Array<RunFigures>, E | Error> =>
  Effect.gen(function*() {
    let sent = 0
    const once = (seconds: number, measured: boolean) =>
      Effect.gen(function*() {
        const started = performance.now()
        const deadline = started + seconds * 1000
        let tells = 0
        while (performance.now() < deadline) {
          const counted = yield* burst(TELL_BURST)
          sent += TELL_BURST
          tells += TELL_BURST
          if (counted !== sent) return yield* Effect.fail(countMismatch(counted, sent))
        }
        const ended = performance.now()
        if (measured) spans.push([epochMs(started), epochMs(ended)])
        return { calls_per_s: tells / ((ended - started) / 1000) }
      })
    yield* once(plan.warmupSeconds, false)
    const runs: Array<RunFigures> = []
    for (let i = 0; i < plan.runs; i++) runs.push(yield* once(plan.seconds, true))
    return runs
  })

/** Measures tells with a Promise client, in the same shape as `measureTellsEffect`. */
export const measureTellsPromise = async (
  burst: (tells: number) => Promise<number>,
  plan: Plan
): Promise<Array<RunFigures>> => {
  let sent = 0
  const once = async (seconds: number, measured: boolean) => {
    const started = performance.now()
    const deadline = started + seconds * 1000
    let tells = 0
    while (performance.now() < deadline) {
      const counted = await burst(TELL_BURST)
      sent += TELL_BURST
      tells += TELL_BURST
      if (counted !== sent) throw countMismatch(counted, sent)
    }
    const ended = performance.now()
    if (measured) spans.push([epochMs(started), epochMs(ended)])
    return { calls_per_s: tells / ((ended - started) / 1000) }
  }
  await once(plan.warmupSeconds, false)
  const runs: Array<RunFigures> = []
  for (let i = 0; i < plan.runs; i++) runs.push(await once(plan.seconds, true))
  return runs
}

/** Announces a server's port to the orchestrator. */
export const ready = (port: number): void => {
  process.stdout.write(`READY ${port}\n`)
}

/**
 * `BENCH_FROM=src|dist`, set by the orchestrator: which build of the library this process must load. Checked here,
 * since every system process imports this module, so that a run labelled "dist" cannot silently measure the
 * TypeScript sources (or the other way round) when the package's export conditions change.
 */
const checkFrom = () => {
  const from = process.env.BENCH_FROM
  if (from === undefined) return
  const root = fileURLToPath(new URL("../..", import.meta.url))
  const resolved = fileURLToPath(import.meta.resolve("effect-actor-rpc"))
  const where = relative(root, resolved)
  if (!where.startsWith(`${from}${sep}`)) {
    throw new Error(
      `bench: asked to run the library from ${from}/ (--from ${from}), but effect-actor-rpc resolves to ${where}; ` +
        (from === "dist" ? "run npm run build, or pass --from src" : "check the export condition bench/run.ts passes")
    )
  }
}
checkFrom()
