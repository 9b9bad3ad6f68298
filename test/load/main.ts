/**
 * The load run: `npm run load [-- --endpoints 100 --asks 10000 --tells 1000000 --bulk-asks 256 --local]`.
 *
 * Prints the figures (test/load/load.ts says what is measured and checked) and exits 1 if anything was lost,
 * duplicated, reordered or failed, if the heap did not return to within the bound of its baseline, or if a service
 * still reports a call, timeout, queued message, endpoint or connection it should not.
 * `--json` prints the report as one JSON line after the text. `--no-capture` and `--no-metrics` turn off
 * `RpcConfig.captureAskCallSite` and `RpcConfig.metrics`, both on by default. `--rounds N` runs the load N times in
 * one process.
 */
import { Effect } from "effect"
import { parseArgs } from "node:util"
import * as Load from "./load.js"

const usage = `usage: npm run load -- [--endpoints N] [--asks N] [--tells N] [--local] [--senders N] [--batch N]
                       [--bulk-asks N] [--bulk-max-kib N]
                       [--heap-bound-mib N] [--no-warmup] [--no-capture] [--no-metrics]
                       [--rounds N] [--json]`

const parsed = (() => {
  try {
    return parseArgs({
      options: {
        endpoints: { type: "string" },
        asks: { type: "string" },
        tells: { type: "string" },
        local: { type: "boolean", default: false },
        senders: { type: "string" },
        batch: { type: "string" },
        "bulk-asks": { type: "string" },
        "bulk-max-kib": { type: "string" },
        "heap-bound-mib": { type: "string" },
        "no-warmup": { type: "boolean", default: false },
        rounds: { type: "string" },
        "no-capture": { type: "boolean", default: false },
        "no-metrics": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false }
      },
      strict: true
    }).values
  } catch (error) {
    console.error(String(error instanceof Error ? error.message : error))
    console.error(usage)
    process.exit(2)
  }
})()

if (parsed.help) {
  console.log(usage)
  process.exit(0)
}

const count = (name: string, text: string | undefined, fallback: number, minimum: number): number => {
  if (text === undefined) return fallback
  const value = Number(text.replaceAll("_", ""))
  if (!Number.isSafeInteger(value) || value < minimum) {
    console.error(`--${name} must be an integer of at least ${minimum}, got ${text}`)
    console.error(usage)
    process.exit(2)
  }
  return value
}

const options: Partial<Load.LoadOptions> = {
  endpoints: count("endpoints", parsed.endpoints, Load.defaults.endpoints, 1),
  asks: count("asks", parsed.asks, Load.defaults.asks, 0),
  tells: count("tells", parsed.tells, Load.defaults.tells, 0),
  senders: count("senders", parsed.senders, Load.defaults.senders, 1),
  batch: count("batch", parsed.batch, Load.defaults.batch, 1),
  bulkAsks: count("bulk-asks", parsed["bulk-asks"], Load.defaults.bulkAsks, 0),
  bulkMaxBytes: count("bulk-max-kib", parsed["bulk-max-kib"], Load.defaults.bulkMaxBytes / 1024, 64) * 1024,
  heapBoundBytes: count("heap-bound-mib", parsed["heap-bound-mib"], Load.defaults.heapBoundBytes / 1024 / 1024, 0) *
    1024 * 1024,
  transport: parsed.local ? "local" : "tcp",
  warmup: !parsed["no-warmup"],
  config: {
    ...(parsed["no-capture"] ? { captureAskCallSite: false } : {}),
    ...(parsed["no-metrics"] ? { metrics: false } : {})
  },
  log: (line) => console.log(`.. ${line}`)
}

if ((globalThis as { gc?: unknown }).gc === undefined) {
  console.log(".. node runs without --expose-gc; exposing gc at run time (npm run load passes the flag)")
}

const rounds = count("rounds", parsed.rounds, 1, 1)
const MiB = 1024 * 1024

/**
 * Runs the load `rounds` times in this process. Beyond each round's own checks, the heap after the last round's
 * scope closed may be at most the bound above the first round's: a leak too small to show in one round adds up.
 */
const program = Effect.gen(function*() {
  const reports: Array<Load.LoadReport> = []
  for (let round = 1; round <= rounds; round++) {
    if (rounds > 1) console.log(`.. round ${round} of ${rounds}`)
    const report = yield* Load.run(options)
    console.log(Load.format(report))
    if (parsed.json) console.log(JSON.stringify(report))
    reports.push(report)
  }
  let failed = reports.some((report) => report.problems.length > 0)
  if (rounds > 1) {
    const first = reports[0]!.heap.afterClose
    const last = reports[reports.length - 1]!.heap.afterClose
    const growth = last - first
    console.log(
      `over ${rounds} rounds: after close ${reports.map((report) => (report.heap.afterClose / MiB).toFixed(2)).join(", ")} MiB` +
        ` (${growth >= 0 ? "+" : ""}${(growth / MiB).toFixed(2)} MiB from the first round)`
    )
    if (growth > options.heapBoundBytes!) {
      console.log(`PROBLEM: the heap grew ${(growth / MiB).toFixed(2)} MiB over ${rounds} rounds`)
      failed = true
    }
  }
  return failed
})

Effect.runPromise(program).then(
  (failed) => process.exit(failed ? 1 : 0),
  (error) => {
    console.error("the load run failed:", error)
    process.exit(1)
  }
)
