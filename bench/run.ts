/**
 * `npm run bench`: every workload on every system, each in its own processes on 127.0.0.1, then a table on stdout,
 * `bench/results.json` and `docs/bench.svg`. `-- --quick` takes fewer and shorter runs (under 3 minutes).
 * `-- --only ask-32B,local` keeps the workloads whose id contains one of the words; `-- --systems us,raw` the
 * systems. Method and file format: bench/README.md.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { remoteWorkloads } from "./support/driver.js"
import { chart, type Row } from "./support/chart.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const argv = process.argv.slice(2)
const option = (name: string) => {
  const at = argv.indexOf(`--${name}`)
  return at >= 0 ? argv[at + 1] : undefined
}
const quick = argv.includes("--quick")
// The warm-up is long enough for the JIT to settle: with 0.3 s, each run came out faster than the one before.
const plan = quick ? { warmup: 1, seconds: 0.5, runs: 3 } : { warmup: 2, seconds: 2, runs: 5 }
const only = option("only")?.split(",")
/**
 * Where the two processes run. On this VM a wake-up across cores costs about 60 µs each way (the guest halts idle
 * cores and does not poll), so with one core each a sequential ping-pong measures that, not the software: raw
 * node:net does about 5k sequential round trips per second on two cores and about 35k on one. `auto` puts both
 * processes of a sequential workload on core 0 and gives each process its own core when calls are in flight;
 * `separate` always gives each its own core; `same` always shares core 0; `none` leaves it to the OS.
 */
const placement = option("placement") ?? "auto"
if (!["auto", "separate", "same", "none"].includes(placement)) {
  throw new Error(`--placement must be auto, separate, same or none, not ${placement}`)
}
const canPin = process.platform === "linux" && os.cpus().length >= 2 && existsSync("/usr/bin/taskset")
const cores = (workload: string, role: "server" | "client"): string | undefined => {
  if (!canPin || placement === "none") return undefined
  const sequential = workload.endsWith("-seq")
  const same = placement === "same" || (placement === "auto" && sequential)
  return same || role === "server" ? "0" : "1"
}
const systems = (option("systems") ?? "raw,effect-rpc,us").split(",")
const wanted = (workload: string) => only === undefined || only.some((word) => workload.includes(word))

const units: Record<string, string> = {
  calls_per_s: "calls/s",
  p50_us: "µs",
  p99_us: "µs",
  bytes_per_endpoint: "bytes",
  bytes_per_endpoint_10k: "bytes",
  ms: "ms"
}

const log = (line: string) => process.stderr.write(`${line}\n`)

/** Node's own flags for a process, and the cores it may run on (`taskset -c`). */
interface LaunchOptions {
  readonly nodeFlags?: ReadonlyArray<string>
  readonly cpus?: string | undefined
}

/** Starts `bench/systems/<system>.ts` with Node's own flags, its output read line by line. */
const launch = (
  system: string,
  args: ReadonlyArray<string>,
  options: LaunchOptions = {}
) => {
  const command = [process.execPath, ...(options.nodeFlags ?? []), "--import", "tsx", `bench/systems/${system}.ts`, ...args]
  // taskset execs node in place, so the pid is still node's and signals reach it.
  const [file, ...rest] = options.cpus === undefined ? command : ["/usr/bin/taskset", "-c", options.cpus, ...command]
  const child = spawn(file!, rest, { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
  let stderr = ""
  child.stderr!.on("data", (chunk) => (stderr = (stderr + chunk).slice(-4000)))
  const lines = createInterface({ input: child.stdout! })
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  /** The first line starting with `prefix`, or an error with the child's stderr if it exits or times out first. */
  const line = (prefix: string, withinMs: number) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL")
        reject(new Error(`${system} ${args.join(" ")}: no ${prefix} line within ${withinMs} ms\n${stderr}`))
      }, withinMs)
      lines.on("line", (text) => {
        if (text.startsWith(prefix)) {
          clearTimeout(timer)
          resolve(text.slice(prefix.length).trim())
        }
      })
      void exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`${system} ${args.join(" ")} exited (${code}) before its ${prefix} line\n${stderr}`))
      })
    })
  return { child, line, exited }
}

const stop = async (child: ChildProcess, exited: Promise<unknown>) => {
  if (child.exitCode !== null) return
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
  await exited
  clearTimeout(timer)
}

const planArgs = ["--runs", String(plan.runs), "--seconds", String(plan.seconds), "--warmup", String(plan.warmup)]
const budgetMs = (plan.warmup + plan.runs * plan.seconds) * 1000 + 60_000

/** Runs one client to completion and returns its runs. */
const client = async (
  system: string,
  args: ReadonlyArray<string>,
  options: LaunchOptions = {}
) => {
  const run = launch(system, [...args, ...planArgs], options)
  try {
    const result = JSON.parse(await run.line("RESULT", budgetMs)) as { runs: Array<Record<string, number>> }
    return result.runs
  } finally {
    await stop(run.child, run.exited)
  }
}

const rows: Array<Row> = []
const failures: Array<string> = []

const record = (workload: string, system: string, runs: ReadonlyArray<Record<string, number>>) => {
  for (const metric of Object.keys(runs[0] ?? {})) {
    const values = runs.map((run) => run[metric]!).sort((a, b) => a - b)
    const mid = values.length >> 1
    const median = values.length % 2 === 1 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2
    rows.push({ workload, system, metric, median, min: values[0]!, max: values.at(-1)!, unit: units[metric] ?? metric })
  }
}

const attempt = async (label: string, body: () => Promise<void>) => {
  try {
    await body()
  } catch (error) {
    failures.push(`${label}: ${error instanceof Error ? error.message : String(error)}`)
    log(`  FAILED ${label}: ${error instanceof Error ? error.message.split("\n")[0] : error}`)
  }
}

const remote = Object.keys(remoteWorkloads).filter(wanted)
const local = ["local-ask", "local-tell", "idle-endpoint-heap", "start-100k-endpoints"].filter(wanted)
const startedAt = performance.now()
const elapsed = () => `${((performance.now() - startedAt) / 1000).toFixed(0).padStart(4)} s`

log(`bench: ${quick ? "quick" : "full"} plan, ${plan.runs} runs of ${plan.seconds} s after ${plan.warmup} s of warm-up`)
// A server per workload: its core depends on the workload, and no workload inherits another's heap.
for (const system of systems) {
  for (const workload of remote) {
    log(`${elapsed()}  ${system.padEnd(10)} ${workload}`)
    await attempt(`${system} ${workload}`, async () => {
      const server = launch(system, ["server"], { cpus: cores(workload, "server") })
      try {
        const port = await server.line("READY", 30_000)
        const runs = await client(system, ["client", "--workload", workload, "--port", port], {
          cpus: cores(workload, "client")
        })
        record(workload, system, runs)
      } finally {
        await stop(server.child, server.exited)
      }
    })
  }
}
if (systems.includes("us")) {
  for (const workload of local) {
    log(`${elapsed()}  ${"us".padEnd(10)} ${workload}`)
    await attempt(`us ${workload}`, async () =>
      record(workload, "us", await client("local", ["--workload", workload], { nodeFlags: ["--expose-gc"] })))
  }
}
log(`${elapsed()}  done`)

// --- Report ---------------------------------------------------------------------------------------------------

const find = (workload: string, system: string, metric: string) =>
  rows.find((row) => row.workload === workload && row.system === system && row.metric === metric)

const figure = (row: Row | undefined) => {
  if (row === undefined) return "—"
  const value = row.median
  return value >= 100 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1)
}

/** us / other, oriented so that above 1 means we are better (lower is better for latencies). */
const ratio = (us: Row | undefined, other: Row | undefined) => {
  if (us === undefined || other === undefined || us.median === 0 || other.median === 0) return "—"
  const lowerIsBetter = us.metric.endsWith("_us")
  return `${(lowerIsBetter ? other.median / us.median : us.median / other.median).toFixed(2)}×`
}

const header = ["workload", "metric", "raw", "effect-rpc", "us", "spread (us)", "us/raw", "us/effect-rpc"]
const table: Array<Array<string>> = [header]
const keys = [...new Set(rows.map((row) => `${row.workload}\u0000${row.metric}`))]
for (const key of keys) {
  const [workload, metric] = key.split("\u0000") as [string, string]
  const us = find(workload, "us", metric)
  const raw = find(workload, "raw", metric)
  const rpc = find(workload, "effect-rpc", metric)
  const spread = us === undefined ? "—" : `${figure({ ...us, median: us.min })}–${figure({ ...us, median: us.max })}`
  table.push([workload, metric, figure(raw), figure(rpc), figure(us), spread, ratio(us, raw), ratio(us, rpc)])
}
const widths = header.map((_, column) => Math.max(...table.map((line) => line[column]!.length)))
for (const [index, line] of table.entries()) {
  console.log(line.map((cell, column) => column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)).join("  "))
  if (index === 0) console.log(widths.map((width) => "-".repeat(width)).join("  "))
}
console.log("ratios: above 1× means us is faster (for p50/p99: lower latency)")

const effectVersion = (JSON.parse(readFileSync(`${root}node_modules/effect/package.json`, "utf8")) as { version: string })
  .version
const cpus = os.cpus()
const results = {
  machine: `${cpus[0]?.model ?? "unknown CPU"}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`,
  node: process.version,
  effect: effectVersion,
  plan: { quick, placement: canPin ? placement : "none", ...plan },
  rows
}
// A partial run (--only, --systems) prints its table but leaves the recorded results of the last full run alone.
const out = option("out") ?? (only === undefined && option("systems") === undefined ? "bench/results.json" : undefined)
if (out !== undefined) {
  writeFileSync(resolve(root, out), `${JSON.stringify(results, null, 2)}\n`)
  const svg = out === "bench/results.json" ? "docs/bench.svg" : out.replace(/\.json$/, "") + ".svg"
  writeFileSync(resolve(root, svg), chart(rows, Object.keys(remoteWorkloads), results))
  log(`wrote ${out} and ${svg}`)
}
if (failures.length > 0) {
  log(`${failures.length} failure(s):\n${failures.join("\n")}`)
  process.exitCode = 1
}
