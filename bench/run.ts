/**
 * `npm run bench`: every workload on every system, each in its own processes on 127.0.0.1, then a table on stdout,
 * `bench/results.json` and `docs/bench.svg`. `-- --quick` takes fewer and shorter runs.
 * `-- --only ask-32B,local` keeps the workloads whose id contains one of the words; `-- --systems us,raw` the
 * systems. `-- --compare old.json` compares the run with an earlier results file; `-- --compare old.json --against
 * new.json` compares two files without running anything. Method and file format: bench/README.md.
 */
import { execFileSync, spawn } from "node:child_process"
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { join, relative, resolve, sep } from "node:path"
import { parseArgs } from "node:util"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { chart } from "./support/chart.js"
import { isSequential, remoteWorkloads } from "./support/driver.js"
import { compare, systemIds, table } from "./support/report.js"
import { type Placement, readResults, type Results, type Row } from "./support/results.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const log = (line: string) => process.stderr.write(`${line}\n`)
const usage = (message: string): never => {
  log(`bench: ${message}`)
  log("usage: npm run bench -- [--quick] [--only WORDS] [--systems IDS] [--placement auto|same|separate|none]")
  log("                        [--from src|dist] [--out FILE] [--compare OLD.json [--against NEW.json]]")
  process.exit(2)
}
const options = (() => {
  try {
    return parseArgs({
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string" },
        systems: { type: "string" },
        placement: { type: "string" },
        from: { type: "string" },
        out: { type: "string" },
        compare: { type: "string" },
        against: { type: "string" }
      },
      strict: true
    }).values
  } catch (error) {
    return usage(error instanceof Error ? error.message : String(error))
  }
})()
const load = (path: string): Results => {
  try {
    return readResults(path)
  } catch (error) {
    return usage(error instanceof Error ? error.message.replace(/^bench: /, "") : String(error))
  }
}

// --- Comparing two saved files: no run -------------------------------------------------------------------------

const compareWith = options.compare
if (options.against !== undefined) {
  if (compareWith === undefined) usage("--against needs --compare OLD.json")
  const comparison = compare(load(compareWith!), load(options.against), { before: compareWith!, now: options.against })
  console.log(comparison.text)
  process.exit(comparison.regressions.length > 0 ? 1 : 0)
}
// Read before the run, so that a wrong path fails in a second rather than after the run.
const baseline = compareWith === undefined ? undefined : load(compareWith)

// --- The plan ---------------------------------------------------------------------------------------------------

const quick = options.quick
// The warm-up is long enough for the JIT to settle: with 0.3 s, each run came out faster than the one before.
const plan = quick ? { warmup: 1, seconds: 0.5, runs: 3 } : { warmup: 2, seconds: 2, runs: 5 }
const only = options.only?.split(",")
const systems = (options.systems ?? systemIds.join(",")).split(",")
for (const system of systems) {
  if (!(systemIds as ReadonlyArray<string>).includes(system)) {
    usage(`unknown system ${system}; known: ${systemIds.join(", ")}`)
  }
}
/** The file of each system's server and client. */
const systemFiles: Readonly<Record<string, string>> = {
  raw: "raw",
  "effect-rpc": "effect-rpc",
  "grpc-js": "grpc",
  us: "us"
}
const wanted = (workload: string) => only === undefined || only.some((word) => workload.includes(word))

/**
 * Where the processes run. On this VM a wake-up across cores costs about 60 µs each way (the guest halts idle cores
 * and does not poll), so with one core each a sequential ping-pong measures that more than the software: raw
 * node:net does about 5k sequential round trips per second on two cores and about 35k on one. Which placement is
 * right depends on the machine, so `auto` measures the sequential workloads twice, with both processes on core 0
 * (`same`) and with one core each (`separate`), and every other remote workload with one core each (each side can
 * use a whole core). `--placement same|separate|none` forces one placement for every remote workload (`none`
 * leaves it to the OS). Each row records its placement.
 */
const placementOption = options.placement ?? "auto"
if (!["auto", "same", "separate", "none"].includes(placementOption)) {
  usage(`--placement must be auto, same, separate or none, not ${placementOption}`)
}
const canPin = process.platform === "linux" && os.cpus().length >= 2 && existsSync("/usr/bin/taskset")
const placementsOf = (workload: string): ReadonlyArray<Placement> => {
  if (!canPin || placementOption === "none") return ["none"]
  if (placementOption === "same" || placementOption === "separate") return [placementOption]
  return isSequential(workload) ? ["same", "separate"] : ["separate"]
}
const cores = (placement: Placement, role: "server" | "client"): string | undefined =>
  placement === "none" ? undefined : placement === "same" || role === "server" ? "0" : "1"

// --- How a system process is started ---------------------------------------------------------------------------

/**
 * The export condition under which `effect-actor-rpc` resolves to the TypeScript sources (src/) instead of the
 * compiled package (dist/); CONTRIBUTING.md. The repository's .npmrc puts it in NODE_OPTIONS for every npm script,
 * so the orchestrator runs with it; the system processes get it only with `--from src`.
 */
const SOURCE_CONDITION = "effect-actor-rpc-source"

const hasDist = existsSync(join(root, "dist", "index.js"))
/** Which build of the library the system processes load: dist (what users run) once it exists, else src. */
const from = options.from ?? (hasDist ? "dist" : "src")
if (from !== "src" && from !== "dist") usage(`--from must be src or dist, not ${from}`)
if (from === "dist" && !hasDist) usage("--from dist: there is no dist/index.js; run npm run build first")
if (options.from === undefined && !hasDist) {
  log("bench: no build in dist/, so the library runs from src/; npm run build first to measure what users run")
}

const newest = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((latest, entry) => {
    const path = join(dir, entry.name)
    return Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }, 0)
if (from === "dist" && newest(join(root, "src")) > statSync(join(root, "dist", "index.js")).mtimeMs) {
  log("bench: warning: src/ has changed since dist/ was built; run npm run build to measure the current code")
}

/** The Node flags that choose which build of the library `effect-actor-rpc` resolves to. */
const libraryFlags = from === "src" ? [`--conditions=${SOURCE_CONDITION}`] : []

/**
 * The environment of every process the bench starts: the orchestrator's, with the source condition taken out of
 * NODE_OPTIONS (where .npmrc puts it), so that only `libraryFlags` decide, and `BENCH_FROM` for the processes' own
 * check.
 */
const childEnv = (() => {
  const words = (process.env.NODE_OPTIONS ?? "").split(/\s+/).filter((word) => word !== "")
  const kept: Array<string> = []
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!
    if (word === `--conditions=${SOURCE_CONDITION}` || word === `-C=${SOURCE_CONDITION}`) continue
    if ((word === "--conditions" || word === "-C") && words[i + 1] === SOURCE_CONDITION) {
      i++
      continue
    }
    kept.push(word)
  }
  const env: Record<string, string | undefined> = { ...process.env, BENCH_FROM: from }
  if (kept.length > 0) env.NODE_OPTIONS = kept.join(" ")
  else delete env.NODE_OPTIONS
  return env
})()

/**
 * Where `effect-actor-rpc` resolves for a process started with `libraryFlags`, relative to the repository. Checked
 * once here, so that a wrong `--from` fails at once rather than in every system process (each checks again on start,
 * bench/support/driver.ts).
 */
const library = (() => {
  const script = `process.stdout.write(import.meta.resolve("effect-actor-rpc"))`
  const url = execFileSync(process.execPath, [...libraryFlags, "--input-type=module", "--eval", script], {
    cwd: root,
    env: childEnv,
    encoding: "utf8"
  })
  return relative(root, fileURLToPath(url))
})()
if (!library.startsWith(`${from}${sep}`)) {
  usage(
    `--from ${from}: effect-actor-rpc resolves to ${library}` +
      (from === "dist"
        ? "; is NODE_OPTIONS setting another condition?"
        : "; check SOURCE_CONDITION in bench/run.ts against package.json's exports")
  )
}

/** Node's own flags for a process, its cores (`taskset -c`), and whether the orchestrator writes to its stdin. */
interface LaunchOptions {
  readonly nodeFlags?: ReadonlyArray<string>
  readonly cpus?: string | undefined
  readonly stdin?: boolean
}

/**
 * The one place that decides how a process of the bench starts: Node itself (the project's Node 22, the one running
 * this orchestrator), the library from `from` (`libraryFlags`), the bench's own TypeScript through tsx, pinned with
 * taskset when asked.
 */
const command = (file: string, args: ReadonlyArray<string>, options: LaunchOptions) => {
  const node = [
    process.execPath,
    ...(options.nodeFlags ?? []),
    ...libraryFlags,
    "--import",
    "tsx",
    `bench/systems/${file}.ts`,
    ...args
  ]
  // taskset execs node in place, so the pid is still node's and signals reach it.
  return options.cpus === undefined ? node : ["/usr/bin/taskset", "-c", options.cpus, ...node]
}

/** Starts `bench/systems/<file>.ts`; its output is read line by line and every line kept, so none is missed. */
const launch = (file: string, args: ReadonlyArray<string>, options: LaunchOptions = {}) => {
  const [program, ...rest] = command(file, args, options)
  const child = spawn(program!, rest, {
    cwd: root,
    env: childEnv,
    stdio: [options.stdin === true ? "pipe" : "ignore", "pipe", "pipe"]
  })
  let stderr = ""
  child.stderr!.on("data", (chunk) => (stderr = (stderr + chunk).slice(-4000)))
  const seen: Array<string> = []
  const lines = createInterface({ input: child.stdout! })
  lines.on("line", (text) => seen.push(text))
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const label = `${file} ${args.join(" ")}`
  /** The first line starting with `prefix`, or an error with the child's stderr if it exits or times out first. */
  const line = (prefix: string, withinMs: number) =>
    new Promise<string>((resolve, reject) => {
      const found = () => {
        const text = seen.find((each) => each.startsWith(prefix))
        if (text === undefined) return false
        clearTimeout(timer)
        lines.off("line", check)
        resolve(text.slice(prefix.length).trim())
        return true
      }
      const check = () => void found()
      const timer = setTimeout(() => {
        lines.off("line", check)
        child.kill("SIGKILL")
        reject(new Error(`${label}: no ${prefix} line within ${withinMs} ms\n${stderr}`))
      }, withinMs)
      if (found()) return
      lines.on("line", check)
      void exited.then((code) => {
        // The last lines may be read after the exit.
        setImmediate(() => {
          if (found()) return
          clearTimeout(timer)
          reject(new Error(`${label} exited (${code}) before its ${prefix} line\n${stderr}`))
        })
      })
    })
  return { child, line, exited }
}

type Launched = ReturnType<typeof launch>

const stop = async ({ child, exited }: Launched) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
  await exited
  clearTimeout(timer)
}

const planArgs = ["--runs", String(plan.runs), "--seconds", String(plan.seconds), "--warmup", String(plan.warmup)]
const budgetMs = (plan.warmup + plan.runs * plan.seconds) * 1000 + 60_000

/** What a client prints: its runs' figures, and when each run started and ended (ms since the epoch). */
interface ClientResult {
  readonly runs: ReadonlyArray<Record<string, number>>
  readonly spans: ReadonlyArray<readonly [number, number]>
}

/** Runs one client to completion and returns what it reported. */
const client = async (file: string, args: ReadonlyArray<string>, options: LaunchOptions = {}) => {
  const run = launch(file, [...args, ...planArgs], options)
  try {
    return JSON.parse(await run.line("RESULT", budgetMs)) as ClientResult
  } finally {
    await stop(run)
  }
}

// --- Running ----------------------------------------------------------------------------------------------------

const rows: Array<Row> = []
const failures: Array<string> = []

const units: Record<string, string> = {
  calls_per_s: "calls/s",
  p50_us: "µs",
  p99_us: "µs",
  bytes_per_endpoint: "bytes",
  bytes_per_endpoint_10k: "bytes",
  bytes_per_ask_local: "bytes",
  bytes_per_ask_tcp: "bytes",
  ms: "ms"
}

const record = (
  workload: string,
  system: string,
  placement: Placement,
  runs: ReadonlyArray<Record<string, number>>,
  extra: Partial<Row> = {}
) => {
  for (const metric of Object.keys(runs[0] ?? {})) {
    const values = runs.map((run) => run[metric]!).sort((a, b) => a - b)
    const mid = values.length >> 1
    const median = values.length % 2 === 1 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2
    rows.push({
      workload,
      system,
      placement,
      metric,
      median,
      min: values[0]!,
      max: values.at(-1)!,
      unit: units[metric] ?? metric,
      ...extra
    })
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

/** Pins a running process and all of its threads (`taskset -a`); threads it starts later inherit the cores. */
const pin = (pid: number, cpus: string) => {
  execFileSync("/usr/bin/taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" })
}

/**
 * Fan-in: `clients` client processes against one server. They start unpinned (8 Node processes starting on one
 * core take many seconds), connect, print `ARMED` and wait; once all are armed, each is pinned to its placement's
 * core and all are sent `GO <t>`, a moment 300 ms ahead. From t, every client keeps its calls in flight through
 * fixed slots of time, the warm-up and then the runs, and counts each call in the slot in which it completes
 * (bench/support/driver.ts), so run i of every client covers the same stretch of time. The row's figure for run i is
 * the sum of the clients' rates in their run i. `skew_ms` is the largest spread of the clients' start times of one
 * run as each client's clock saw them: what the alignment is worth.
 */
const fanIn = async (file: string, workload: string, clients: number, placement: Placement, port: string) => {
  const started = Array.from({ length: clients }, () =>
    launch(file, ["client", "--workload", workload, "--port", port, "--barrier", ...planArgs], { stdin: true }))
  try {
    await Promise.all(started.map((each) => each.line("ARMED", 120_000)))
    const core = cores(placement, "client")
    if (core !== undefined) for (const each of started) pin(each.child.pid!, core)
    const go = `GO ${Date.now() + 300}\n`
    for (const each of started) each.child.stdin!.end(go)
    const results = await Promise.all(
      started.map(async (each) => JSON.parse(await each.line("RESULT", budgetMs)) as ClientResult)
    )
    const count = Math.min(...results.map((result) => result.runs.length))
    const runs: Array<Record<string, number>> = []
    let skew = 0
    for (let i = 0; i < count; i++) {
      runs.push({ calls_per_s: results.reduce((sum, result) => sum + result.runs[i]!.calls_per_s!, 0) })
      const starts = results.map((result) => result.spans[i]![0])
      skew = Math.max(skew, Math.max(...starts) - Math.min(...starts))
    }
    if (skew > plan.seconds * 1000 * 0.1) {
      log(`  warning: the ${clients} clients' runs started up to ${skew.toFixed(0)} ms apart (${plan.seconds} s runs)`)
    }
    return { runs, skew }
  } finally {
    await Promise.all(started.map(stop))
  }
}

const remote = Object.keys(remoteWorkloads).filter(wanted)
const local = ["local-ask", "local-tell", "idle-endpoint-heap", "start-100k-endpoints", "memory-per-ask"].filter(wanted)
const startedAt = performance.now()
const elapsed = () => `${((performance.now() - startedAt) / 1000).toFixed(0).padStart(4)} s`

log(
  `bench: ${quick ? "quick" : "full"} plan, ${plan.runs} runs of ${plan.seconds} s after ${plan.warmup} s of ` +
    `warm-up; placement ${canPin ? placementOption : "none (cannot pin)"}; library ${library}`
)
// Workload by workload, every system in turn, so that a change in the machine's load over the run shifts the
// systems' figures of one workload together. A server per row: its core depends on the placement, and no row
// inherits another's heap.
for (const workload of remote) {
  const shape = remoteWorkloads[workload]!
  for (const placement of placementsOf(workload)) {
    for (const system of systems) {
      log(`${elapsed()}  ${workload.padEnd(19)} ${placement.padEnd(9)} ${system}`)
      await attempt(`${system} ${workload} (${placement})`, async () => {
        const file = systemFiles[system]!
        const server = launch(file, ["server", "--workload", workload], { cpus: cores(placement, "server") })
        try {
          const port = await server.line("READY", 60_000)
          if (shape.clients > 1) {
            const { runs, skew } = await fanIn(file, workload, shape.clients, placement, port)
            record(workload, system, placement, runs, { skew_ms: Math.round(skew) })
          } else {
            const result = await client(file, ["client", "--workload", workload, "--port", port], {
              cpus: cores(placement, "client")
            })
            record(workload, system, placement, result.runs)
          }
        } finally {
          await stop(server)
        }
      })
    }
  }
}
if (systems.includes("us")) {
  for (const workload of local) {
    log(`${elapsed()}  ${workload.padEnd(19)} ${"none".padEnd(9)} us`)
    await attempt(`us ${workload}`, async () => {
      const result = await client("local", ["--workload", workload], { nodeFlags: ["--expose-gc"] })
      record(workload, "us", "none", result.runs)
    })
  }
}
log(`${elapsed()}  done`)

// --- Report -----------------------------------------------------------------------------------------------------

console.log(table(rows))

const effectVersion =
  (JSON.parse(readFileSync(`${root}node_modules/effect/package.json`, "utf8")) as { version: string }).version
const cpus = os.cpus()
const results: Results = {
  machine: `${cpus[0]?.model ?? "unknown CPU"}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
    `${os.type()} ${os.release()}`,
  node: process.version,
  effect: effectVersion,
  plan: { quick, placement: canPin ? placementOption : "none", from, library, ...plan },
  rows
}
// A partial run (--only, --systems) prints its table but leaves the recorded results of the last full run alone.
const out = options.out ?? (only === undefined && options.systems === undefined ? "bench/results.json" : undefined)
if (out !== undefined) {
  writeFileSync(resolve(root, out), `${JSON.stringify(results, null, 2)}\n`)
  const svg = out === "bench/results.json" ? "docs/bench.svg" : out.replace(/\.json$/, "") + ".svg"
  writeFileSync(resolve(root, svg), chart(rows, Object.keys(remoteWorkloads), { ...results, from }))
  log(`wrote ${out} and ${svg}`)
}
if (baseline !== undefined) {
  const comparison = compare(baseline, results, { before: compareWith!, now: out ?? "this run" })
  console.log(`\n${comparison.text}`)
  if (comparison.regressions.length > 0) process.exitCode = 1
}
if (failures.length > 0) {
  log(`${failures.length} failure(s):\n${failures.join("\n")}`)
  process.exitCode = 1
}
