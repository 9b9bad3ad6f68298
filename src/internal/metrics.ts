/**
 * Records the library's metrics (src/RpcMetrics.ts) for one service. Metric objects are made once per method,
 * direction and reason and kept here, so no call builds an attribute set.
 */
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import type { RejectionReason } from "../RpcMetrics.js"
import { names } from "../RpcMetrics.js"

// From 10 µs (a local ask) to about 80 s (a timed-out ask), doubling.
const MILLIS = Metric.exponentialBoundaries({ start: 0.01, factor: 2, count: 24 })
// 1, 2, 4, ... 65,536 messages.
const DEPTH = Metric.exponentialBoundaries({ start: 1, factor: 2, count: 17 })
// 16 B to 16 MiB.
const BYTES = Metric.exponentialBoundaries({ start: 16, factor: 4, count: 11 })

/** A histogram whose `update` is a few array operations: see {@link histogram}. */
export class FastHistogram {
  private readonly counts: Float64Array
  private count = 0
  private sum = 0
  private min = Number.MAX_VALUE
  private max = -Number.MAX_VALUE

  constructor(private readonly boundaries: ReadonlyArray<number>) {
    this.counts = new Float64Array(boundaries.length + 1)
  }

  update(value: number): void {
    const boundaries = this.boundaries
    let low = 0
    let high = boundaries.length
    while (low < high) {
      const mid = (low + high) >>> 1
      if (value <= boundaries[mid]!) high = mid
      else low = mid + 1
    }
    this.counts[low]!++
    this.count++
    this.sum += value
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
  }

  state(): Metric.HistogramState {
    let cumulated = 0
    return {
      buckets: this.boundaries.map((boundary, i): [number, number] => [boundary, cumulated += this.counts[i]!]),
      count: this.count,
      min: this.min,
      max: this.max,
      sum: this.sum
    }
  }
}

const histograms = new WeakMap<Metric.MetricRegistry, Map<string, FastHistogram>>()

/**
 * A histogram registered in the context's metric registry, so `Metric.snapshot` and exporters read it, but updated
 * directly: Effect's own `updateUnsafe` looks the series up in the registry on every update, which made the
 * per-call metrics cost a third of a local ask. Services sharing a registry share the series, as they would with
 * Effect's metrics. Like any registered metric, it is gone from a registry its owner clears.
 */
const histogram = (
  context: Context.Context<never>,
  name: string,
  boundaries: ReadonlyArray<number>,
  attributes?: Record<string, string>
): FastHistogram => {
  const registry = Context.get(context, Metric.MetricRegistry)
  let byKey = histograms.get(registry)
  if (byKey === undefined) histograms.set(registry, byKey = new Map())
  const key = attributes === undefined ? name : `${name}${JSON.stringify(attributes)}`
  let fast = byKey.get(key)
  if (fast === undefined) {
    const created = fast = new FastHistogram(boundaries)
    const descriptor = Metric.histogram(name, { boundaries, ...(attributes === undefined ? {} : { attributes }) })
    Metric.registerUnsafe(descriptor, context, { get: () => created.state(), update: ignore, modify: ignore })
    byKey.set(key, fast)
  }
  return fast
}

const ignore = () => {}

/** The per-method histograms. */
export interface MethodMetrics {
  readonly latency: FastHistogram
  readonly wait: FastHistogram
  readonly handler: FastHistogram
}

/** The instruments of one service. */
export class Instruments {
  private readonly methods = new Map<string, Map<string, MethodMetrics>>()
  private readonly rejections = new Map<string, Metric.Metric<number, unknown>>()
  private readonly refusals = new Map<string, Metric.Metric<number, unknown>>()
  private readonly depth: FastHistogram
  private readonly frameIn: FastHistogram
  private readonly frameOut: FastHistogram
  private readonly heartbeatMisses = Metric.counter(names.heartbeatMisses)

  constructor(
    /** The context whose metric registry receives the updates. */
    private readonly context: Context.Context<never>,
    /** Record the per-call histograms (`RpcConfig.metrics`). */
    readonly enabled: boolean
  ) {
    this.depth = histogram(context, names.mailboxDepth, DEPTH)
    this.frameIn = histogram(context, names.frameSize, BYTES, { direction: "in" })
    this.frameOut = histogram(context, names.frameSize, BYTES, { direction: "out" })
  }

  /** The histograms of `gateway.method`, made on first use. */
  method(gateway: string, method: string): MethodMetrics {
    let byMethod = this.methods.get(gateway)
    if (byMethod === undefined) this.methods.set(gateway, byMethod = new Map())
    let metrics = byMethod.get(method)
    if (metrics === undefined) {
      const attributes = { method: `${gateway}.${method}` }
      metrics = {
        latency: histogram(this.context, names.callLatency, MILLIS, attributes),
        wait: histogram(this.context, names.mailboxWait, MILLIS, attributes),
        handler: histogram(this.context, names.handlerTime, MILLIS, attributes)
      }
      byMethod.set(method, metrics)
    }
    return metrics
  }

  mailboxDepth(depth: number): void {
    this.depth.update(depth)
  }

  frame(direction: "in" | "out", bytes: number): void {
    ;(direction === "in" ? this.frameIn : this.frameOut).update(bytes)
  }

  reject(reason: RejectionReason): void {
    this.count(this.rejections, names.rejections, reason)
  }

  heartbeatMiss(): void {
    this.heartbeatMisses.updateUnsafe(1, this.context)
  }

  refuse(reason: "max_connections" | "handshake_timeout"): void {
    this.count(this.refusals, names.connectionsRefused, reason)
  }

  /** Increments counter `name{reason}`, made on first use. */
  private count(counters: Map<string, Metric.Metric<number, unknown>>, name: string, reason: string): void {
    let counter = counters.get(reason)
    if (counter === undefined) counters.set(reason, counter = Metric.counter(name, { attributes: { reason } }))
    counter.updateUnsafe(1, this.context)
  }
}
