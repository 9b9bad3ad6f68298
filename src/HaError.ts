/**
 * The typed errors of leader election and retrieval (HaServices and its drivers). Like RpcError's, each is a
 * `Schema.TaggedError` whose message names the component, the engine and what to do.
 *
 * @since 0.1.0
 */
import { hasProperty } from "effect/Predicate"
import * as Schema from "effect/Schema"

const TypeId = "~effect-actor-rpc/HaError"

/**
 * Marks every error of this module, for `isHaError`.
 *
 * @since 0.1.0
 */
export type TypeId = typeof TypeId

/**
 * Why a leader election operation failed.
 *
 * - `Unreachable`: the engine could not be reached, or did not answer in time (a campaign keeps retrying; this
 *   reaches the caller where an operation cannot wait, e.g. publishing a confirmation).
 * - `Rejected`: the engine answered with an error (permissions, a compacted revision, a malformed request).
 * - `InvalidConfiguration`: the driver's configuration cannot work (a margin not below the TTL, no endpoints).
 * - `Closed`: the HA services were shut down (their Layer's scope closed) before or during the operation.
 *
 * @since 0.1.0
 */
export const LeaderElectionErrorReason = Schema.Literals(["Unreachable", "Rejected", "InvalidConfiguration", "Closed"])

/**
 * One of the reasons of a `LeaderElectionError`.
 *
 * @since 0.1.0
 */
export type LeaderElectionErrorReason = typeof LeaderElectionErrorReason.Type

const advice: Record<LeaderElectionErrorReason, string> = {
  Unreachable: "Check that the engine is running and reachable from this process (endpoints, TLS, network); the " +
    "election retries on its own, and the contender stays without leadership meanwhile.",
  Rejected: "Check the engine's permissions for the key prefix and its logs; the request was refused as it was.",
  InvalidConfiguration: "Fix the driver's configuration (see docs/HA.md, Configuration).",
  Closed: "The HA services were shut down; campaign or confirm only while their Layer is in scope."
}

/**
 * A leader election or retrieval operation failed for `component` on `engine` (e.g. "embedded" or
 * "etcd 127.0.0.1:2379").
 *
 * @since 0.1.0
 */
export class LeaderElectionError extends Schema.TaggedError<LeaderElectionError>()("LeaderElectionError", {
  component: Schema.String,
  engine: Schema.String,
  reason: LeaderElectionErrorReason,
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    const component = this.component === "" ? "" : ` for component "${this.component}"`
    return `Leader election${component} on ${this.engine} failed (${this.reason}): ${this.detail}. ` +
      advice[this.reason]
  }
}

/**
 * There is no confirmed leader for `component` (none is elected and confirmed yet, or contact with the engine is
 * suspended). A client that follows the leader fails with it when it cannot wait for one.
 *
 * @since 0.1.0
 */
export class NoLeaderError extends Schema.TaggedError<NoLeaderError>()("NoLeaderError", {
  component: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `No confirmed leader for ${this.component}: none is elected and confirmed yet, or contact with the HA ` +
      `engine is suspended. Retry later, or wait for a leader within the call's timeout.`
  }
}

/**
 * A leader refused a follower's registration (Flink's `RegistrationResponse.Failure`, a decline). A client that
 * follows the leader (`HaServices.connectLeader`) retries a refused registration after `delayOnRefusal` (30 s by
 * default) rather than after the shorter delay of an error. Fail a registration effect with it, or declare it as the
 * failure of a gateway's registration method so that the leader's refusal arrives as it is.
 *
 * @since 0.2.0
 */
export class RegistrationRefusedError extends Schema.TaggedError<RegistrationRefusedError>()(
  "RegistrationRefusedError",
  {
    reason: Schema.String
  }
) {
  /** @since 0.2.0 */
  readonly [TypeId] = TypeId

  override get message(): string {
    return `The leader refused the registration: ${this.reason}. The follower retries after its refusal delay; ` +
      `check the leader's logs for why it refuses.`
  }
}

/**
 * Is `u` one of the errors of this module?
 *
 * @since 0.1.0
 */
export const isHaError = (u: unknown): u is LeaderElectionError | NoLeaderError | RegistrationRefusedError =>
  hasProperty(u, TypeId)
