/**
 * Gateway evolution: snapshots of gateways, and the checker that tells, for a rolling upgrade, what breaks between
 * an older and a newer version of a gateway, in each direction.
 *
 * During a rolling upgrade old callers call new endpoints and new callers call old endpoints. The callee reads
 * payloads and the caller reads successes and failures, so every Schema is compared as a writer's against a reader's,
 * with the rules Effect's SchemaBinary applies when it decodes (docs/PROTOCOL.md, "Gateway evolution").
 *
 * ```ts
 * const report = RpcCompatibility.check(JobMasterV1, JobMasterV2)
 * const verdict = RpcCompatibility.evaluate(report, "both")
 * if (!verdict.accept) console.log(verdict.message)
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { hasProperty } from "effect/Predicate"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Compatibility from "./internal/compatibility.js"
import * as Snapshot from "./internal/snapshot.js"
import type * as RpcGateway from "./RpcGateway.js"

// ---------------------------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------------------------

/**
 * The Schema of one method Schema in a snapshot: its `SchemaRepresentation` JSON (null when it has none), a
 * one-line description, how it crosses (`binary` or raw `bytes`) and the decoding steps the representation cannot
 * show (transformations and their checks, by path).
 *
 * @since 0.1.0
 */
export const SchemaSnapshot = Snapshot.SchemaSnapshot

/**
 * One method Schema in a snapshot.
 *
 * @since 0.1.0
 */
export type SchemaSnapshot = Snapshot.SchemaSnapshot

/**
 * The Schema of a method in a snapshot: kind, default timeout in milliseconds, payload, success and failure.
 *
 * @since 0.1.0
 */
export const MethodSnapshot = Snapshot.MethodSnapshot

/**
 * A method in a snapshot.
 *
 * @since 0.1.0
 */
export type MethodSnapshot = Snapshot.MethodSnapshot

/**
 * The Schema of a gateway snapshot: format and version, gateway name, fingerprint, the fencing token's Schema when
 * the gateway declares one, and the methods by name.
 *
 * @since 0.1.0
 */
export const GatewaySnapshot = Snapshot.GatewaySnapshot

/**
 * A gateway as the wire sees it, as JSON-ready data.
 *
 * @since 0.1.0
 */
export type GatewaySnapshot = Snapshot.GatewaySnapshot

/**
 * The snapshot format version this library writes and reads.
 *
 * @since 0.1.0
 */
export const SNAPSHOT_VERSION: number = Snapshot.VERSION

/**
 * The snapshot of a gateway.
 *
 * @since 0.1.0
 */
export const snapshot = (gateway: RpcGateway.Any): GatewaySnapshot => Snapshot.fromGateway(gateway)

/**
 * A snapshot as pretty-printed JSON, stable across runs (methods sorted by name), for a file kept in the repository.
 *
 * @since 0.1.0
 */
export const encodeSnapshot = (value: GatewaySnapshot): string =>
  JSON.stringify(Schema.encodeSync(GatewaySnapshot)(value), null, 2) + "\n"

const SnapshotErrorTypeId = "~effect-actor-rpc/RpcCompatibility/SnapshotError"

/**
 * A snapshot could not be read: not JSON, not a gateway snapshot, or a format version this library does not read.
 *
 * @since 0.1.0
 */
export class SnapshotError extends Schema.TaggedError<SnapshotError>()("SnapshotError", {
  reason: Schema.Literals(["InvalidJson", "InvalidSnapshot", "UnsupportedVersion"]),
  /** Where the snapshot came from: a file name, a peer, or `snapshot`. */
  source: Schema.String,
  detail: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [SnapshotErrorTypeId] = SnapshotErrorTypeId

  override get message(): string {
    const what = this.reason === "InvalidJson"
      ? "is not JSON"
      : this.reason === "UnsupportedVersion"
      ? "has a format version this library does not read"
      : "is not a valid gateway snapshot"
    return `The gateway snapshot from ${this.source} ${what}: ${this.detail}. ` +
      `Write it again with RpcCompatibility.snapshot and RpcCompatibility.encodeSnapshot (or describe --json).`
  }
}

/**
 * Is this a `SnapshotError`?
 *
 * @since 0.1.0
 */
export const isSnapshotError = (u: unknown): u is SnapshotError => hasProperty(u, SnapshotErrorTypeId)

/**
 * Reads a snapshot from JSON text (or an already parsed JSON value). A malformed snapshot is a `SnapshotError`
 * naming what is wrong and where.
 *
 * @since 0.1.0
 */
export const decodeSnapshot: (
  input: string | Schema.Json,
  options?: { readonly source?: string | undefined } | undefined
) => Effect.Effect<GatewaySnapshot, SnapshotError> = Effect.fn("RpcCompatibility.decodeSnapshot")(
  function*(input: string | Schema.Json, options?: { readonly source?: string | undefined } | undefined) {
    const parsed = Snapshot.parse(input)
    if (Result.isSuccess(parsed)) return parsed.success
    return yield* new SnapshotError({ ...parsed.failure, source: options?.source ?? "snapshot" })
  }
)

// ---------------------------------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------------------------------

/**
 * How bad an issue is: `error` breaks calls (a decode fails or misreads), `warning` may lose data silently or is a
 * change the checker cannot prove safe (a refinement, a transformation), `info` is harmless but worth knowing.
 *
 * @since 0.1.0
 */
export type Severity = Compatibility.Severity

/**
 * The calls an issue concerns: old callers calling new endpoints, new callers calling old endpoints, or both.
 *
 * @since 0.1.0
 */
export type Direction = Compatibility.Direction

/**
 * Who writes or reads a value (or calls and serves a method).
 *
 * @since 0.1.0
 */
export type Role = Compatibility.Role

/**
 * What an issue is about (docs/PROTOCOL.md lists every kind with its rule).
 *
 * @since 0.1.0
 */
export type IssueKind = Compatibility.IssueKind

/**
 * One finding: where (`Gateway.method.payload.field`), what, how bad, which direction, who writes and who reads,
 * what happens and what to do.
 *
 * @since 0.1.0
 */
export type Issue = Compatibility.Issue

/**
 * The outcome of a check: both versions' fingerprints and every issue, in gateway, token, method order.
 *
 * @since 0.1.0
 */
export interface Report {
  readonly gateway: string
  readonly older: { readonly gateway: string; readonly fingerprint: string }
  readonly newer: { readonly gateway: string; readonly fingerprint: string }
  readonly issues: ReadonlyArray<Issue>
}

/**
 * Compares an older and a newer version of a gateway (live gateways or snapshots, in any mix) and lists the issues
 * of a rolling upgrade between them, in both directions.
 *
 * To decide a connection, pass the caller's version as `older` and the endpoint's as `newer`: the issues marked
 * `oldCallerToNewEndpoint` are then exactly those of this caller's calls to this endpoint.
 *
 * @since 0.1.0
 */
export const check = (
  older: RpcGateway.Any | GatewaySnapshot,
  newer: RpcGateway.Any | GatewaySnapshot
): Report => {
  const before = toSnapshot(older)
  const after = toSnapshot(newer)
  return {
    gateway: after.gateway,
    older: { gateway: before.gateway, fingerprint: before.fingerprint },
    newer: { gateway: after.gateway, fingerprint: after.fingerprint },
    issues: Compatibility.check(before, after)
  }
}

// Tells the two apart by the snapshot's format field, so this module does not load RpcGateway (and the service).
const toSnapshot = (input: RpcGateway.Any | GatewaySnapshot): GatewaySnapshot =>
  hasProperty(input, "format") && input.format === Snapshot.FORMAT
    ? input as GatewaySnapshot
    : Snapshot.fromGateway(input as RpcGateway.Any)

/**
 * Which differences between two versions a side accepts:
 *
 * - `exact`: none; any fingerprint difference refuses (the behaviour before gateway evolution).
 * - `backward`: the newer version must serve the older one's callers: no error in the direction
 *   old caller → new endpoint (or both). Safe when endpoints are upgraded before their callers.
 * - `both`: no error in either direction, so the versions may be upgraded in any order.
 *
 * Warnings and infos never refuse.
 *
 * @since 0.1.0
 */
export type Policy = "exact" | "backward" | "both"

/**
 * A policy's decision on a report, with the issues that refuse and a message listing them by path.
 *
 * @since 0.1.0
 */
export interface Verdict {
  readonly accept: boolean
  readonly policy: Policy
  /** The issues that make the policy refuse (empty when it accepts; none for `exact`, which looks at fingerprints). */
  readonly refusing: ReadonlyArray<Issue>
  /** A multi-line message: the decision, then every refusing issue (or, when accepted, every warning) by path. */
  readonly message: string
}

/**
 * Decides a report under a policy.
 *
 * @since 0.1.0
 */
export const evaluate = (report: Report, policy: Policy): Verdict => {
  const errors = report.issues.filter((issue) => issue.severity === "error")
  const refusing = policy === "exact"
    ? []
    : policy === "backward"
    ? errors.filter((issue) => issue.direction !== "newCallerToOldEndpoint")
    : errors
  const accept = policy === "exact" ? report.older.fingerprint === report.newer.fingerprint : refusing.length === 0
  const warnings = report.issues.filter((issue) => issue.severity === "warning")
  const head = `${report.gateway} (older ${report.older.fingerprint}, newer ${report.newer.fingerprint}): ` +
    (accept ? "compatible" : "incompatible") + ` under the ${policy} policy (${policyText[policy]})`
  const listed = accept ? warnings : policy === "exact" ? errors : refusing
  const lines = [
    head + (listed.length === 0 ? "." : accept ? `, with ${count(listed.length, "warning")}:` : `: ${reasonText(policy, listed.length)}:`),
    ...listed.map(line)
  ]
  if (!accept && policy === "exact" && errors.length === 0) {
    lines.push("  the fingerprints differ; the checker finds no breaking change, so the backward or both policy would accept")
  }
  return { accept, policy, refusing, message: lines.join("\n") }
}

const policyText: Record<Policy, string> = {
  exact: "any fingerprint difference refuses",
  backward: "new endpoints must serve old callers",
  both: "calls must work in both directions"
}

const reasonText = (policy: Policy, n: number): string =>
  policy === "exact" ? `the fingerprints differ, and ${count(n, "breaking change")} were found` : count(n, "breaking change")

const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`

/**
 * A readable name for a direction: `old caller → new endpoint`.
 *
 * @since 0.1.0
 */
export const directionText = (direction: Direction): string =>
  direction === "oldCallerToNewEndpoint"
    ? "old caller → new endpoint"
    : direction === "newCallerToOldEndpoint"
    ? "new caller → old endpoint"
    : "both directions"

const line = (issue: Issue): string =>
  `  ${issue.severity} ${issue.path} [${issue.kind}, ${directionText(issue.direction)}]: ${issue.detail}.\n` +
  `    what to do: ${issue.advice}.`

/**
 * A report as text: a summary line, then every issue by path with its direction, what happens and what to do.
 *
 * @since 0.1.0
 */
export const format = (report: Report): string => {
  const by = (severity: Severity) => report.issues.filter((issue) => issue.severity === severity).length
  const summary = `${report.gateway} (older ${report.older.fingerprint}, newer ${report.newer.fingerprint}): ` +
    (report.issues.length === 0
      ? "no differences the wire can see."
      : `${count(by("error"), "error")}, ${count(by("warning"), "warning")}, ${count(by("info"), "note")}:`)
  return [summary, ...report.issues.map(line)].join("\n")
}
