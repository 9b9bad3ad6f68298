/**
 * The client side of every benchmark: the workload table, the measuring loops (one for Effect clients, one for
 * Promise clients, identical in shape) and the line a client prints for the orchestrator (bench/run.ts).
 *
 * A run keeps `inFlight` calls outstanding for `seconds` (a closed loop: each caller issues its next call when the
 * previous one returns). Sequential runs also time every call, for the latency percentiles.
 */
import * as Effect from "effect/Effect"

/** A remote workload: payload size in bytes and how many calls are kept in flight. */
export interface RemoteWorkload {
  readonly bytes: number
  readonly inFlight: number
}

/** The remote workloads; their ids are fixed (the check reads them). */
export const remoteWorkloads: Readonly<Record<string, RemoteWorkload>> = {
  "ask-32B-seq": { bytes: 32, inFlight: 1 },
  "ask-1KiB-seq": { bytes: 1024, inFlight: 1 },
  "ask-64KiB-seq": { bytes: 65536, inFlight: 1 },
  "ask-32B-16": { bytes: 32, inFlight: 16 },
  "ask-32B-256": { bytes: 32, inFlight: 256 },
  "ask-1KiB-256": { bytes: 1024, inFlight: 256 },
  "ask-64KiB-256": { bytes: 65536, inFlight: 256 }
}

/** How long to measure: a warm-up, then `runs` runs of `seconds` each. */
export interface Plan {
  readonly warmupSeconds: number
  readonly seconds: number
  readonly runs: number
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

/** Reads `--workload --port --runs --seconds --warmup` (the orchestrator always passes all of them). */
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
    warmupSeconds: number("warmup", 0.5)
  }
}

/** The remote workload named by the arguments, or an error naming the known ones. */
export const remoteWorkload = (id: string): RemoteWorkload => {
  const workload = remoteWorkloads[id]
  if (workload === undefined) {
    throw new Error(`bench client: unknown workload ${id}; known: ${Object.keys(remoteWorkloads).join(", ")}`)
  }
  return workload
}

/** A payload of `bytes` bytes; the same bytes for every system. */
export const payload = (bytes: number): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + 7) & 0xff
  return out
}

/** Prints the line the orchestrator reads: `RESULT <json>`. */
export const report = (runs: ReadonlyArray<object>): void => {
  process.stdout.write(`RESULT ${JSON.stringify({ runs })}\n`)
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
    const once = (seconds: number) =>
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
        return recorder.figures((performance.now() - started) / 1000)
      })
    yield* once(plan.warmupSeconds)
    const runs: Array<RunFigures> = []
    for (let i = 0; i < plan.runs; i++) runs.push(yield* once(plan.seconds))
    return runs
  })

/** Measures a Promise call, in the same shape as `measureEffect`. */
export const measurePromise = async (
  call: () => Promise<unknown>,
  inFlight: number,
  plan: Plan
): Promise<Array<RunFigures>> => {
  const once = async (seconds: number) => {
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
    return recorder.figures((performance.now() - started) / 1000)
  }
  await once(plan.warmupSeconds)
  const runs: Array<RunFigures> = []
  for (let i = 0; i < plan.runs; i++) runs.push(await once(plan.seconds))
  return runs
}

/** Announces a server's port to the orchestrator. */
export const ready = (port: number): void => {
  process.stdout.write(`READY ${port}\n`)
}
