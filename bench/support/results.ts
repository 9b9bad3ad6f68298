/**
 * The results file (`bench/results.json`): its types, reading one back (files written before rows carried their
 * placement included), and the conventions every report shares: which metrics are better lower, and how a figure
 * is printed. The format is described in bench/README.md.
 */
import { readFileSync } from "node:fs"
import { isSequential, remoteWorkloads } from "./driver.js"

/**
 * Where a row's processes ran: `same` (server and client on core 0), `separate` (server on core 0, every client
 * process on core 1), `none` (left to the OS; also every in-process workload, which has one process).
 */
export type Placement = "same" | "separate" | "none"

export const placements: ReadonlyArray<Placement> = ["same", "separate", "none"]

/** One figure of the results file: the median of the runs, with their min and max. */
export interface Row {
  readonly workload: string
  readonly system: string
  readonly placement: Placement
  readonly metric: string
  readonly median: number
  readonly min: number
  readonly max: number
  readonly unit: string
  /** Fan-in only: the largest spread of the client processes' start times within one run, in ms. */
  readonly skew_ms?: number
}

/** The whole file. */
export interface Results {
  readonly machine: string
  readonly node: string
  readonly effect: string
  readonly plan: {
    readonly quick: boolean
    /** `auto`, or the placement forced with --placement. */
    readonly placement: string
    readonly warmup: number
    readonly seconds: number
    readonly runs: number
    /** Which build of the library the system processes loaded: `src` or `dist` (absent in older files: src). */
    readonly from?: string
    /** The file `effect-actor-rpc` resolved to, relative to the repository (`dist/index.js`). */
    readonly library?: string
  }
  readonly rows: ReadonlyArray<Row>
}

/** Metrics where a lower figure is the better one: latencies, bytes and durations. */
export const lowerIsBetter = (metric: string): boolean =>
  metric.endsWith("_us") || metric.startsWith("bytes_") || metric === "ms"

/** A figure as the tables print it: thousands separated from 100 up, one decimal below. */
export const figure = (value: number | undefined): string =>
  value === undefined ? "—" : value >= 100 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1)

/**
 * The placement of a row of a file written before rows recorded theirs: what that run's `--placement` gave the
 * workload (`auto` then meant core 0 for both processes of a sequential workload and one core each otherwise).
 */
const legacyPlacement = (workload: string, planPlacement: string): Placement => {
  if (remoteWorkloads[workload] === undefined) return "none"
  if (planPlacement === "same" || planPlacement === "separate" || planPlacement === "none") return planPlacement
  return isSequential(workload) ? "same" : "separate"
}

/** Reads a results file, with a message naming the file and what is wrong when it is not one. */
export const readResults = (path: string): Results => {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"))
  } catch (error) {
    throw new Error(`bench: cannot read ${path} as a results file: ${error instanceof Error ? error.message : error}`)
  }
  const file = parsed as Partial<Results>
  if (typeof file !== "object" || file === null || !Array.isArray(file.rows) || typeof file.plan !== "object") {
    throw new Error(`bench: ${path} is not a results file (no rows or plan); bench/README.md describes the format`)
  }
  const plan = file.plan
  const rows = file.rows.map((row, index): Row => {
    const { median, metric, system, workload } = row as Partial<Row>
    if (typeof workload !== "string" || typeof system !== "string" || typeof metric !== "string") {
      throw new Error(`bench: ${path}: row ${index} has no workload, system or metric`)
    }
    if (typeof median !== "number") throw new Error(`bench: ${path}: row ${index} (${workload}) has no median`)
    return { ...row, placement: row.placement ?? legacyPlacement(workload, plan.placement) }
  })
  return { ...file, rows } as Results
}

/** The key that identifies a row across files. */
export const rowKey = (row: Row): string =>
  `${row.workload}\u0000${row.placement}\u0000${row.system}\u0000${row.metric}`
