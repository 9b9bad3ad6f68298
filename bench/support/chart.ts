/**
 * Draws `docs/bench.svg`: one panel per remote workload and placement, each with the calls/s of raw, effect-rpc,
 * grpc-js and us as bars on the panel's own linear scale (the workloads differ by two orders of magnitude), the
 * median on each bar and a whisker from min to max. The panels wrap into rows.
 */
import type { Placement, Row } from "./results.js"

const systems = [
  { id: "raw", label: "raw node:net", color: "#9aa5b1" },
  { id: "effect-rpc", label: "effect/rpc", color: "#5b8def" },
  { id: "grpc-js", label: "@grpc/grpc-js", color: "#3aa17e" },
  { id: "us", label: "effect-actor-rpc", color: "#e8663d" }
] as const

const placementLabel: Readonly<Record<Placement, string>> = {
  same: "both on one core",
  separate: "one core each",
  none: "cores left to the OS"
}

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

const short = (value: number) =>
  value >= 1_000_000
    ? `${(value / 1_000_000).toFixed(1)}M`
    : value >= 10_000
    ? `${Math.round(value / 1000)}k`
    : value >= 1000
    ? `${(value / 1000).toFixed(1)}k`
    : `${Math.round(value)}`

/** The SVG text of the chart of `rows`' calls/s for `workloads` (in that order), captioned with where it ran. */
export const chart = (
  rows: ReadonlyArray<Row>,
  workloads: ReadonlyArray<string>,
  context: { readonly machine: string; readonly node: string; readonly effect: string; readonly from: string }
): string => {
  const calls = rows.filter((row) => row.metric === "calls_per_s" && workloads.includes(row.workload))
  const panels: Array<{ readonly workload: string; readonly placement: Placement }> = []
  for (const workload of workloads) {
    for (const placement of ["same", "separate", "none"] as const) {
      if (calls.some((row) => row.workload === workload && row.placement === placement)) {
        panels.push({ workload, placement })
      }
    }
  }
  const panel = { width: 150, height: 200, gap: 14, titles: 40 }
  const bar = { width: 26, gap: 6 }
  const perRow = Math.min(7, Math.max(1, panels.length))
  const top = 64
  const left = 16
  const rowHeight = panel.height + panel.titles + 20
  const width = Math.max(640, left * 2 + perRow * (panel.width + panel.gap) - panel.gap)
  const height = top + Math.max(1, Math.ceil(panels.length / perRow)) * rowHeight + 30
  const parts: Array<string> = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${left}" y="22" font-size="16" font-weight="600">Calls (tells: messages) per second over TCP on 127.0.0.1 (median of runs; whiskers: min–max)</text>`
  )
  systems.forEach((system, index) => {
    const x = left + index * 150
    parts.push(
      `<rect x="${x}" y="34" width="12" height="12" fill="${system.color}"/>`,
      `<text x="${x + 18}" y="44">${escape(system.label)}</text>`
    )
  })
  panels.forEach(({ placement, workload }, index) => {
    const x0 = left + (index % perRow) * (panel.width + panel.gap)
    const base = top + Math.floor(index / perRow) * rowHeight + panel.height
    const figures = systems.map((system) =>
      calls.find((row) => row.workload === workload && row.placement === placement && row.system === system.id)
    )
    const scale = Math.max(1, ...figures.map((row) => row?.max ?? 0)) * 1.15
    parts.push(`<line x1="${x0}" y1="${base}" x2="${x0 + panel.width}" y2="${base}" stroke="#333"/>`)
    const barsWidth = systems.length * bar.width + (systems.length - 1) * bar.gap
    figures.forEach((row, k) => {
      const x = x0 + (panel.width - barsWidth) / 2 + k * (bar.width + bar.gap)
      if (row === undefined) {
        parts.push(`<text x="${x + bar.width / 2}" y="${base - 4}" text-anchor="middle" font-size="10" fill="#999">n/a</text>`)
        return
      }
      const y = (value: number) => base - (value / scale) * (panel.height - 20)
      const cx = x + bar.width / 2
      parts.push(
        `<rect x="${x}" y="${y(row.median).toFixed(1)}" width="${bar.width}" height="${(base - y(row.median)).toFixed(1)}" fill="${systems[k]!.color}"><title>${escape(`${row.system} ${workload} (${placementLabel[placement]}): ${Math.round(row.median)} calls/s (min ${Math.round(row.min)}, max ${Math.round(row.max)})`)}</title></rect>`,
        `<line x1="${cx}" y1="${y(row.min).toFixed(1)}" x2="${cx}" y2="${y(row.max).toFixed(1)}" stroke="#222" stroke-width="1"/>`,
        `<text x="${cx}" y="${(y(row.max) - 4).toFixed(1)}" text-anchor="middle" font-size="9">${short(row.median)}</text>`
      )
    })
    parts.push(
      `<text x="${x0 + panel.width / 2}" y="${base + 17}" text-anchor="middle" font-weight="600">${escape(workload)}</text>`,
      `<text x="${x0 + panel.width / 2}" y="${base + 31}" text-anchor="middle" font-size="11" fill="#555">${escape(placementLabel[placement])}</text>`
    )
  })
  parts.push(
    `<text x="${left}" y="${height - 14}" fill="#555" font-size="11">${escape(`${context.machine} · Node ${context.node} · effect ${context.effect} · library from ${context.from}/ · each panel has its own scale · npm run bench`)}</text>`,
    `</svg>\n`
  )
  return parts.join("\n")
}
