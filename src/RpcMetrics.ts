/**
 * The metrics an RpcService records, as Effect `Metric`s in the registry of the context the service was built in.
 * Read them with `Metric.snapshot` (or {@link snapshot}, which keeps only these), or export them with an
 * OpenTelemetry metrics exporter. Per-call figures (latency, mailbox wait, handler time, mailbox depth, frame
 * sizes) are recorded while `RpcConfig.metrics` is on (the default); the counters of rejections, heartbeat misses
 * and refused connections always are.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"

/**
 * The names of the metrics, with their attributes.
 *
 * @since 0.1.0
 */
export const names = {
  /** Histogram, caller side: milliseconds from an ask to its outcome. Attributes: `method`. */
  callLatency: "rpc_call_latency_ms",
  /** Histogram: milliseconds a call waited in the endpoint's mailbox before its handler started. `method`. */
  mailboxWait: "rpc_mailbox_wait_ms",
  /** Histogram: milliseconds a handler held the main thread (a `later` reply's work is not included). `method`. */
  handlerTime: "rpc_handler_time_ms",
  /** Histogram: the number of messages already queued when a call reached a mailbox. */
  mailboxDepth: "rpc_mailbox_depth",
  /** Histogram: the size of each frame body sent or received. Attributes: `direction` ("in" or "out"). */
  frameSize: "rpc_frame_bytes",
  /**
   * Counter: calls refused or dropped without running. Attributes: `reason`, one of "oversized" (a frame over
   * the limit), "fencing" (a wrong or missing token), "expired" (the deadline passed in the mailbox),
   * "cancelled" (the caller gave up first), "mailbox_full" (a bounded mailbox was full), "not_served" (the
   * endpoint's version of the gateway lacks the method called).
   */
  rejections: "rpc_rejections_total",
  /** Counter: connections declared dead because the peer fell silent for the heartbeat pause. */
  heartbeatMisses: "rpc_heartbeat_misses_total",
  /**
   * Counter: inbound connections refused. Attributes: `reason`, "max_connections" or "handshake_timeout" (no hello
   * within `RpcConfig.connectTimeout`).
   */
  connectionsRefused: "rpc_connections_refused_total"
} as const

/**
 * The reasons of `rpc_rejections_total`.
 *
 * @since 0.1.0
 */
export type RejectionReason = "oversized" | "fencing" | "expired" | "cancelled" | "mailbox_full" | "not_served"

const ids: ReadonlySet<string> = new Set(Object.values(names))

/**
 * The current values of this library's metrics (a filtered `Metric.snapshot`).
 *
 * @since 0.1.0
 */
export const snapshot: Effect.Effect<ReadonlyArray<Metric.Metric.Snapshot>> = Effect.map(
  Metric.snapshot,
  (all) => all.filter((metric) => ids.has(metric.id))
)
