/**
 * The text reports of bench/run.ts: the table of a run (every system side by side, with us's ratio to each), and the
 * comparison of two results files row by row (`--compare`).
 */
import { figure, lowerIsBetter, type Placement, type Results, type Row, rowKey } from "./results.js"

/** The systems, in the order of the table's columns. */
export const systemIds = ["raw", "effect-rpc", "grpc-js", "us"] as const

/** What each placement means, for the legend under a table. */
export const placementLegend: Readonly<Record<Placement, string>> = {
  same: "both processes on core 0",
  separate: "server on core 0, client process(es) on core 1",
  none: "left to the OS (in-process workloads: one process)"
}

/** a against b, oriented so that above 1 means a is better (for lower-is-better metrics, b / a). */
const oriented = (metric: string, a: number, b: number) => (lowerIsBetter(metric) ? b / a : a / b)

const ratio = (us: Row | undefined, other: Row | undefined) =>
  us === undefined || other === undefined || us.median === 0 || other.median === 0
    ? "—"
    : `${oriented(us.metric, us.median, other.median).toFixed(2)}×`

/** Lines of aligned columns: text columns (those in `left`) padded right, figures padded left. */
const align = (lines: ReadonlyArray<ReadonlyArray<string>>, left: ReadonlyArray<number>): Array<string> => {
  const widths = lines[0]!.map((_, column) => Math.max(...lines.map((line) => line[column]!.length)))
  const out: Array<string> = []
  for (const [index, line] of lines.entries()) {
    out.push(
      line.map((cell, column) => left.includes(column) ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))
        .join("  ")
        .trimEnd()
    )
    if (index === 0) out.push(widths.map((width) => "-".repeat(width)).join("  "))
  }
  return out
}

/** The table of a run: one line per workload, placement and metric, one column per system, then us's ratios. */
export const table = (rows: ReadonlyArray<Row>): string => {
  const header = [
    "workload",
    "placement",
    "metric",
    ...systemIds,
    "spread (us)",
    "us/raw",
    "us/effect-rpc",
    "us/grpc-js"
  ]
  const lines: Array<Array<string>> = [header]
  const byKey = new Map(rows.map((row) => [rowKey(row), row]))
  const find = (row: Row, system: string) => byKey.get(rowKey({ ...row, system }))
  const seen = new Set<string>()
  for (const row of rows) {
    const line = `${row.workload}\u0000${row.placement}\u0000${row.metric}`
    if (seen.has(line)) continue
    seen.add(line)
    const us = find(row, "us")
    const spread = us === undefined ? "—" : `${figure(us.min)}–${figure(us.max)}`
    lines.push([
      row.workload,
      row.placement,
      row.metric,
      ...systemIds.map((system) => figure(find(row, system)?.median)),
      spread,
      ratio(us, find(row, "raw")),
      ratio(us, find(row, "effect-rpc")),
      ratio(us, find(row, "grpc-js"))
    ])
  }
  const used = [...new Set(rows.map((row) => row.placement))]
  return [
    ...align(lines, [0, 1, 2]),
    "ratios: above 1× means us is better (for latencies, bytes and ms: lower)",
    ...used.map((placement) => `placement ${placement}: ${placementLegend[placement]}`)
  ].join("\n")
}

/** How much worse than before a `us` row may be before the comparison flags it. */
export const REGRESSION = 0.1

/** The comparison of `now` against `before`: its lines, and the `us` rows more than 10% worse. */
export interface Comparison {
  readonly text: string
  readonly regressions: ReadonlyArray<string>
}

/**
 * Compares every row present in both files (same workload, placement, system and metric): the ratio now / before,
 * oriented so that above 1× is better (inverted for lower-is-better metrics). A `us` row more than 10% worse is
 * flagged. Rows whose min–max ranges overlap are marked, since their difference is within the runs' own spread.
 */
export const compare = (before: Results, now: Results, names: { readonly before: string; readonly now: string }) => {
  const previous = new Map(before.rows.map((row) => [rowKey(row), row]))
  const header = ["workload", "placement", "metric", "system", "before", "now", "now/before", "note"]
  const lines: Array<Array<string>> = [header]
  const regressions: Array<string> = []
  const matched = new Set<string>()
  for (const row of now.rows) {
    const old = previous.get(rowKey(row))
    if (old === undefined) continue
    matched.add(rowKey(row))
    const worse = lowerIsBetter(row.metric)
      ? row.median > old.median * (1 + REGRESSION)
      : row.median < old.median * (1 - REGRESSION)
    const overlap = row.min <= old.max && old.min <= row.max
    const flagged = row.system === "us" && worse
    const ratioText = old.median === 0 || row.median === 0
      ? "—"
      : `${oriented(row.metric, row.median, old.median).toFixed(2)}×`
    if (flagged) {
      regressions.push(
        `${row.workload} (${row.placement}) ${row.metric}: ${figure(old.median)} → ${figure(row.median)} ${row.unit}`
      )
    }
    lines.push([
      row.workload,
      row.placement,
      row.metric,
      row.system,
      figure(old.median),
      figure(row.median),
      ratioText,
      [flagged ? "WORSE >10%" : "", overlap ? "(ranges overlap)" : ""].filter((word) => word !== "").join(" ")
    ])
  }
  const onlyNow = now.rows.filter((row) => !matched.has(rowKey(row)))
  const onlyBefore = before.rows.filter((row) => !matched.has(rowKey(row)))
  const describe = (rows: ReadonlyArray<Row>) =>
    [...new Set(rows.map((row) => `${row.workload} (${row.placement}) ${row.system}`))].join(", ")
  const plan = (results: Results) =>
    `${results.plan.quick ? "quick" : "full"} plan, library from ${results.plan.from ?? "src"}, ` +
    `node ${results.node}, ` +
    `effect ${results.effect}, ${results.machine}`
  const text = [
    `now: ${names.now} (${plan(now)})`,
    `before: ${names.before} (${plan(before)})`,
    ...(plan(now) === plan(before)
      ? []
      : ["warning: the two files were measured differently (above); compare with care"]),
    ...(lines.length > 1 ? align(lines, [0, 1, 2, 3, 7]) : ["no row is in both files"]),
    "now/before: above 1× means better now (for latencies, bytes and ms: lower)",
    ...(onlyNow.length > 0 ? [`only now: ${describe(onlyNow)}`] : []),
    ...(onlyBefore.length > 0 ? [`only before: ${describe(onlyBefore)}`] : []),
    regressions.length === 0
      ? "no us row is more than 10% worse"
      : `${regressions.length} us row(s) more than 10% worse:\n${regressions.map((line) => `  ${line}`).join("\n")}`
  ].join("\n")
  return { text, regressions } satisfies Comparison
}
