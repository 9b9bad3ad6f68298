/**
 * The engine-specific half of leader election (Flink's `LeaderElectionDriver` and the retrieval side of its
 * `LeaderRetrievalDriver`). A driver campaigns in one engine (etcd, the embedded in-process one, the testing one) and
 * reports what happens as `DriverEvent`s; the engine-agnostic HaServices on top of it owns sessions, confirmations,
 * stale events, the lease-deadline timer and the contenders. Implement this interface to add an engine, and give it
 * to `HaServices.make` / `HaServices.layer`.
 *
 * A driver promises:
 * - a grant carries a token whose term is greater than every term granted before for that component, and a lease
 *   deadline: a function of the local Clock's milliseconds until which no other contender can be granted (the
 *   engine's lease, measured from before the last acknowledged renewal, minus a margin; `Infinity` without leases);
 * - `Revoked` is reported when the engine says the session is over, `Suspended` when contact with the engine is lost;
 *   after either it campaigns again on its own with a fresh session;
 * - `publish` writes only if the session still owns the leadership in the engine (a guarded write), so a deposed leader
 *   cannot overwrite its successor's information;
 * - closing a campaign's scope withdraws it: the engine forgets the candidate (and what it published) at once.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { LeaderElectionError } from "./HaError.js"
import type { LeaderInformation } from "./LeaderInformation.js"
import type { LeaderToken } from "./LeaderToken.js"

/**
 * What a driver reports about one campaign, in the order it happened.
 *
 * - `Granted`: the campaign's session became the leader; `leaseDeadline()` is the current deadline (it moves forward
 *   as the engine acknowledges renewals).
 * - `Revoked`: the session lost the leadership; `reason` says whether the engine said so ("Revoked") or contact with it
 *   was lost ("Suspended").
 * - `LeaderInformationChanged`: what the engine holds as the component's published leader changed (Flink corrects it
 *   when it differs from what the leader confirmed).
 * - `Failed`: an error the contender should hear about (the campaign goes on).
 *
 * @since 0.1.0
 */
export type DriverEvent =
  | {
    readonly _tag: "Granted"
    readonly token: LeaderToken
    readonly leaseDeadline: () => number
  }
  | {
    readonly _tag: "Revoked"
    readonly token: LeaderToken
    readonly reason: "Revoked" | "Suspended"
  }
  | {
    readonly _tag: "LeaderInformationChanged"
    readonly information: Option.Option<LeaderInformation>
  }
  | {
    readonly _tag: "Failed"
    readonly error: LeaderElectionError
  }

/**
 * A running campaign of one contender for one component.
 *
 * @since 0.1.0
 */
export interface DriverCampaign {
  /**
   * Publishes `information` if its token is the campaign's current session and that session still owns the
   * leadership in the engine; `false` (nothing written) otherwise.
   */
  readonly publish: (information: LeaderInformation) => Effect.Effect<boolean, LeaderElectionError>
  /** Deletes the published information if it is the one of `token`'s session. */
  readonly unpublish: (token: LeaderToken) => Effect.Effect<void, LeaderElectionError>
  /**
   * The election's own clock says `token`'s lease is over: the driver drops that session without reporting a
   * `Revoked` for it and campaigns again with a fresh one (whose term will be higher).
   */
  readonly relinquish: (token: LeaderToken) => Effect.Effect<void>
}

/**
 * An engine for leader election and retrieval.
 *
 * @since 0.1.0
 */
export interface LeaderElectionDriver {
  /** The engine, for messages: "embedded", "testing", "etcd 127.0.0.1:2379". */
  readonly engine: string
  /**
   * Starts campaigning for `component`; every event of the campaign goes to `onEvent`, in order. Closing the scope
   * withdraws the campaign. Fails only where campaigning cannot start at all (an unreachable engine is retried).
   */
  readonly campaign: (
    component: string,
    onEvent: (event: DriverEvent) => void
  ) => Effect.Effect<DriverCampaign, LeaderElectionError, Scope.Scope>
  /**
   * The published leader of `component` as it changes: `None` while there is none, and while contact with the engine
   * is lost. It may repeat a value; it never fails (an unreachable engine is `None` and retried).
   */
  readonly retrieve: (component: string) => Stream.Stream<Option.Option<LeaderInformation>>
}
