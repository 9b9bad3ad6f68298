/**
 * The compatibility exchange at connect (docs/PROTOCOL.md, "Gateway evolution"). When the caller's and the
 * endpoint's fingerprints of a gateway differ, the two sides exchange their snapshots and each judges the pair under
 * its own `RpcConfig.gatewayCompatibility`; either can refuse. This module holds the judgement and the bounded cache
 * of verdicts; the connection (caller side) and serving (endpoint side) carry the messages, and the service judges
 * local connects the same way.
 *
 * A connect is judged as `RpcCompatibility.check(caller, endpoint)`: the caller's version as the older, the
 * endpoint's as the newer, so the issues marked "old caller → new endpoint" are exactly those of this caller's
 * calls. One kind of issue depends on which version really is the newer: a method only the caller has is an
 * addition the endpoint has not received yet, or a removal on the endpoint's side, and the connect cannot tell the
 * two apart. It is accepted (calls to that method alone fail with `MethodNotServedError`) unless the endpoint also
 * has a method the caller lacks: then, whichever version is newer, a method was removed or renamed.
 */
import * as Result from "effect/Result"
import * as RpcCompatibility from "../RpcCompatibility.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { Issue } from "./compatibility.js"
import * as Snapshot from "./snapshot.js"

/** A policy of `RpcConfig.gatewayCompatibility`. */
export type Policy = RpcCompatibility.Policy

/** A side's decision on a pair of versions. */
export interface Judgement {
  readonly accept: boolean
  /**
   * Refused: why, listing the refusing issues by path (the detail of the `RpcConnectionError`). Accepted: the
   * differences worth knowing (warnings, methods not served), or "" when there are none.
   */
  readonly message: string
  /** The caller's methods the endpoint does not serve: calls to them fail at once with `MethodNotServedError`. */
  readonly notServed: ReadonlyArray<string>
}

/**
 * How many verdicts a service keeps. A verdict is a few hundred bytes to a few KiB (its message); 256 of them cover
 * the pairs of a large cluster in the middle of an upgrade (each peer incarnation times the gateways whose versions
 * differ), and the oldest is dropped first, so a peer that sends made-up fingerprints only costs recomputations.
 */
export const CACHE_CAPACITY = 256

/** A method only the caller has, when that is an addition on its side as far as the connect can tell. */
const notServedIssue = (issue: Issue, name: string): Issue => ({
  ...issue,
  kind: "MethodAdded",
  severity: "warning",
  direction: "newCallerToOldEndpoint",
  writer: "new caller",
  reader: "old endpoint",
  detail: `the caller's version has ${name} and the endpoint's does not: calls to it fail with ` +
    `MethodNotServedError while the rest of the gateway works (an addition the endpoint has not received yet, or a ` +
    `removal on its side: a connect cannot tell them apart)`,
  advice: `call it once the endpoint is upgraded; a removal is an error that RpcCompatibility.check(old, new) ` +
    `reports in CI`
})

const methodName = (issue: Issue, gateway: string): string => issue.path.slice(gateway.length + 1)

/**
 * Judges a connect of `caller`'s version of a gateway to `endpoint`'s under `policy`; `who` names the side that
 * judges, for the message ("this service", "the endpoint's service").
 */
export const judge = (
  policy: Policy,
  caller: Snapshot.GatewaySnapshot,
  endpoint: Snapshot.GatewaySnapshot,
  who: string
): Judgement => {
  let report: RpcCompatibility.Report
  try {
    report = RpcCompatibility.check(caller, endpoint)
  } catch (error) {
    // A snapshot from the wire passed its Schema but may still be one the checker cannot walk.
    return {
      accept: false,
      message: `the two versions of ${endpoint.gateway} could not be compared (${
        error instanceof Error ? error.message : String(error)
      })`,
      notServed: []
    }
  }
  const gateway = report.gateway
  const callerOnly = report.issues.filter((issue) => issue.kind === "MethodRemoved")
  const endpointOnly = report.issues.filter((issue) => issue.kind === "MethodAdded")
  // Each side has a method the other lacks: whichever is newer, a method was removed or renamed.
  const renamed = callerOnly.length > 0 && endpointOnly.length > 0
  const issues = renamed ? report.issues : report.issues.map((issue) =>
    issue.kind === "MethodRemoved" ? notServedIssue(issue, methodName(issue, gateway)) : issue
  )
  const verdict = RpcCompatibility.evaluate({ ...report, issues }, policy)
  const notServed = callerOnly.map((issue) => methodName(issue, gateway))
  const head = `the caller's ${gateway} (fingerprint ${report.older.fingerprint}) and the endpoint's ` +
    `(fingerprint ${report.newer.fingerprint}) were built from different Schemas`
  const listed = verdict.message.split("\n").slice(1)
  if (!verdict.accept) {
    const why = policy === "exact"
      ? `${who} accepts only identical Schemas (RpcConfig.gatewayCompatibility "exact")`
      : `${who} refuses ${count(verdict.refusing.length, "breaking change")} under its "${policy}" policy ` +
        `(RpcConfig.gatewayCompatibility), comparing the caller's version as the older and the endpoint's as the newer`
    const renameNote = renamed
      ? [`  each version has a method the other lacks (${endpointOnly.map((i) => methodName(i, gateway)).join(", ")} ` +
        `only on the endpoint's side): a method was removed or renamed`]
      : []
    return { accept: false, message: [`${head}, and ${why}:`, ...listed, ...renameNote].join("\n"), notServed }
  }
  return {
    accept: true,
    message: listed.length === 0 ? "" : [`${head}; ${who} accepts them, with:`, ...listed].join("\n"),
    notServed
  }
}

const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`

/**
 * The verdicts of one service, by peer incarnation and fingerprint pair, under its policy: at most
 * {@link CACHE_CAPACITY}, least recently used dropped first. Keyed by the peer's incarnation, so what one peer sent
 * never decides for another, and a restarted peer is judged afresh; and by the side that judges (`who`), whose
 * name the verdict's message carries.
 */
export class Verdicts {
  private readonly entries = new Map<string, Judgement>()

  constructor(readonly policy: Policy, readonly capacity: number = CACHE_CAPACITY) {}

  get size(): number {
    return this.entries.size
  }

  private static key(who: string, peer: string, callerFingerprint: string, endpointFingerprint: string): string {
    return `${who}\u0000${peer}\u0000${callerFingerprint}\u0000${endpointFingerprint}`
  }

  /** The verdict already reached for this pair with this peer, if any. */
  cached(peer: string, callerFingerprint: string, endpointFingerprint: string, who: string): Judgement | undefined {
    const key = Verdicts.key(who, peer, callerFingerprint, endpointFingerprint)
    const hit = this.entries.get(key)
    if (hit !== undefined) {
      // Most recently used last: the first entry is the one to drop.
      this.entries.delete(key)
      this.entries.set(key, hit)
    }
    return hit
  }

  /** Judges the pair (or returns the cached verdict) and keeps the verdict. */
  judge(
    peer: string,
    caller: Snapshot.GatewaySnapshot,
    endpoint: Snapshot.GatewaySnapshot,
    who: string
  ): Judgement {
    const hit = this.cached(peer, caller.fingerprint, endpoint.fingerprint, who)
    if (hit !== undefined) return hit
    const judgement = judge(this.policy, caller, endpoint, who)
    this.entries.set(Verdicts.key(who, peer, caller.fingerprint, endpoint.fingerprint), judgement)
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!)
    return judgement
  }
}

/**
 * Reads a snapshot a peer sent for `gateway` with `fingerprint`: a `Refusal` detail when it is not a snapshot, or a
 * snapshot of another gateway or fingerprint than the connect names.
 */
export const readPeerSnapshot = (
  text: string,
  gateway: string,
  fingerprint: string | undefined,
  whose: string
): Result.Result<Snapshot.GatewaySnapshot, string> => {
  const parsed = Snapshot.parse(text)
  if (Result.isFailure(parsed)) {
    const { detail, reason } = parsed.failure
    return Result.fail(`${whose} snapshot of ${gateway} cannot be read (${reason}: ${detail})`)
  }
  const snapshot = parsed.success
  if (snapshot.gateway !== gateway) {
    return Result.fail(`${whose} snapshot is of gateway ${snapshot.gateway}, not ${gateway}`)
  }
  if (fingerprint !== undefined && snapshot.fingerprint !== fingerprint) {
    return Result.fail(
      `${whose} snapshot has fingerprint ${snapshot.fingerprint}, not the ${fingerprint} it connected with`
    )
  }
  return Result.succeed(snapshot)
}

/** The snapshot of a gateway, and its text for the wire. */
export const snapshotOf = (gateway: RpcGateway.Any): Snapshot.GatewaySnapshot => Snapshot.fromGateway(gateway)

/** The snapshot's JSON text, as a `Compare` or a `Connect` carries it. */
export const textOf = (gateway: RpcGateway.Any): string => Snapshot.toText(Snapshot.fromGateway(gateway))
