/**
 * High availability: leader election and leader retrieval, after Flink's HA services.
 *
 * - A contender `campaign`s for a component ("resourcemanager", "jobmaster/job-1"). When it is granted a leadership
 *   session it receives the session's `LeaderToken` and its lease deadline; it confirms the leadership with the address
 *   its endpoint serves at (only then is `{ address, token }` published); it is told when the leadership is revoked,
 *   suspended (contact with the engine lost) or expired (the lease deadline passed by the local clock). Closing the
 *   campaign's scope resigns.
 * - Anyone can `retrieve` a component's confirmed leader: an `Option<LeaderInformation>` that changes, `None` while
 *   there is no confirmed leader or contact with the engine is suspended.
 * - Underneath, a `LeaderElectionDriver` talks to an engine: `layerEmbedded` (in process, the default for one process
 *   and for tests), `HaTesting.layer` (grants and revocations driven by a test), or the etcd driver of
 *   `effect-actor-rpc/etcd`.
 *
 * Safety comes from the leader's own clock: whatever the engine's client library has noticed, the election revokes a
 * leadership (reason "Expired") at its lease deadline, which an engine with leases sets before any other contender can
 * be granted. See docs/HA.md.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { LeaderElectionError } from "./HaError.js"
import * as embedded from "./internal/embeddedDriver.js"
import * as election from "./internal/leaderElection.js"
import type { LeaderInformation } from "./LeaderInformation.js"
import type { LeaderElectionDriver } from "./LeaderElectionDriver.js"
import type { LeaderToken } from "./LeaderToken.js"

/**
 * A granted leadership session.
 *
 * @since 0.1.0
 */
export interface Leadership {
  readonly component: string
  /** The session's token; use it as the leader endpoint's fencing token. */
  readonly token: LeaderToken
  /**
   * Until when (milliseconds since the epoch, by the Clock) the leadership is safe: no other contender can be granted
   * before it. It moves forward as the engine acknowledges renewals; `Infinity` for an engine without leases
   * (embedded). Read it again whenever it matters: it is a function, not a value.
   */
  readonly leaseDeadline: () => number
  /**
   * Confirms this session with the address the leader serves at: `election.confirm(token, address)` for this token,
   * usable from inside `grant` (where the campaign's handle may not be assigned yet).
   */
  readonly confirm: (address: string) => Effect.Effect<boolean, LeaderElectionError>
}

/**
 * Why a leadership ended.
 *
 * - `Revoked`: the engine says another session leads, or this one is over.
 * - `Suspended`: contact with the engine was lost; the leadership cannot be kept safely.
 * - `Expired`: the lease deadline passed by the local clock before a renewal was acknowledged.
 * - `Resigned`: the contender's campaign was closed.
 *
 * @since 0.1.0
 */
export type RevocationReason = "Revoked" | "Suspended" | "Expired" | "Resigned"

/**
 * The end of a leadership session.
 *
 * @since 0.1.0
 */
export interface Revocation {
  readonly component: string
  readonly token: LeaderToken
  readonly reason: RevocationReason
}

/**
 * What a contender is told. Calls come one at a time, in order, and never after its campaign closed (except the
 * `Resigned` revocation of that close itself). Keep them short: the next event waits for them.
 *
 * @since 0.1.0
 */
export interface LeaderContender {
  /** A leadership session was granted. Set up to serve under `leadership.token`, then `confirm`. */
  readonly grant: (leadership: Leadership) => Effect.Effect<void>
  /** The session ended; stop acting as the leader at once. */
  readonly revoke: (revocation: Revocation) => Effect.Effect<void>
  /** An error of the engine the contender may want to know of (the campaign goes on); logged when absent. */
  readonly error?: ((error: LeaderElectionError) => Effect.Effect<void>) | undefined
}

/**
 * A contender's handle on its campaign.
 *
 * @since 0.1.0
 */
export interface LeaderElection {
  readonly component: string
  /**
   * Confirms the leadership of `token`'s session with the address the leader serves at, which publishes
   * `{ address, token }` for retrieval. `false` (nothing published) when `token` is not the current session: a stale
   * confirmation is ignored.
   */
  readonly confirm: (token: LeaderToken, address: string) => Effect.Effect<boolean, LeaderElectionError>
  /** Is `token` the current session, with its lease deadline still ahead? */
  readonly hasLeadership: (token: LeaderToken) => Effect.Effect<boolean>
  /** The current leadership session, if any. */
  readonly leadership: Effect.Effect<Option.Option<Leadership>>
}

/**
 * A component's confirmed leader, followed.
 *
 * @since 0.1.0
 */
export interface LeaderRetrieval {
  readonly component: string
  /** The confirmed leader now (`None`: none, or contact with the engine suspended). */
  readonly get: Effect.Effect<Option.Option<LeaderInformation>>
  /** The current value, then every change (never the same value twice in a row). */
  readonly changes: Stream.Stream<Option.Option<LeaderInformation>>
  /** The confirmed leader as soon as there is one (now if there is). */
  readonly await: Effect.Effect<LeaderInformation>
}

/**
 * The shape of the HaServices service.
 *
 * @since 0.1.0
 */
export interface HaServicesShape {
  /** The engine underneath, for messages: "embedded", "testing", "etcd 127.0.0.1:2379". */
  readonly engine: string
  /**
   * Campaigns for `component` until the scope closes (closing resigns). Several contenders may campaign for one
   * component, in one process or many; the engine grants one session at a time.
   */
  readonly campaign: (
    component: string,
    contender: LeaderContender
  ) => Effect.Effect<LeaderElection, LeaderElectionError, Scope.Scope>
  /** Follows `component`'s confirmed leader until the scope closes. */
  readonly retrieve: (component: string) => Effect.Effect<LeaderRetrieval, never, Scope.Scope>
  /** `retrieve(component)`'s changes as a Stream that follows the leader while it is consumed. */
  readonly leader: (component: string) => Stream.Stream<Option.Option<LeaderInformation>>
}

/**
 * Leader election and retrieval over one engine.
 *
 * @since 0.1.0
 */
export class HaServices extends Context.Service<HaServices, HaServicesShape>()("effect-actor-rpc/HaServices") {}

/**
 * Builds the HA services over `driver`; campaigning fails with reason "Closed" once the scope has closed.
 *
 * @since 0.1.0
 */
export const make = (driver: LeaderElectionDriver): Effect.Effect<HaServicesShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state = { closed: false }
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        state.closed = true
      })
    )
    const retrieve = (component: string) => election.retrieve(driver, component)
    return HaServices.of({
      engine: driver.engine,
      campaign: (component, contender) => election.campaign(driver, state, component, contender),
      retrieve,
      leader: (component) => Stream.unwrap(Effect.map(retrieve(component), (retrieval) => retrieval.changes))
    })
  })

/**
 * The HA services over the driver that `driver` builds (its resources live as long as the Layer).
 *
 * @since 0.1.0
 */
export const layer = <E, R>(
  driver: Effect.Effect<LeaderElectionDriver, E, R>
): Layer.Layer<HaServices, E, Exclude<R, Scope.Scope>> =>
  Layer.effect(HaServices)(Effect.flatMap(driver, make))

/**
 * The embedded driver: elections within this process (one Layer, one set of components), in the order contenders
 * campaign, with a term counter per component and no lease (`leaseDeadline` is `Infinity`). The default for a single
 * process and for tests (Flink's `EmbeddedLeaderService`).
 *
 * @since 0.1.0
 */
export const makeEmbeddedDriver: Effect.Effect<LeaderElectionDriver, never, Scope.Scope> = embedded.make

/**
 * The HA services over the embedded driver.
 *
 * @since 0.1.0
 */
export const layerEmbedded: Layer.Layer<HaServices> = layer(makeEmbeddedDriver)
