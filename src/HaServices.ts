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
 * - `leaderEndpoint(component, endpoint)` binds a fenced endpoint to a component's leadership: each session's token is
 *   set on it (valid until the lease deadline) before the leadership is confirmed, and cleared when the session ends.
 * - `connectLeader(component, gateway)` is a client of whoever leads, with its token, registering with each new leader
 *   (Flink's `RegisteredRpcConnection` and `RetryingRegistration`).
 *
 * Safety comes from the leader's own clock: whatever the engine's client library has noticed, the election revokes a
 * leadership (reason "Expired") at its lease deadline, which an engine with leases sets before any other contender can
 * be granted, and a leader endpoint rejects every message from that deadline on. See docs/HA.md.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { LeaderElectionError, NoLeaderError } from "./HaError.js"
import * as embedded from "./internal/embeddedDriver.js"
import * as leaderClient from "./internal/leaderClient.js"
import * as election from "./internal/leaderElection.js"
import * as leaderEndpointImpl from "./internal/leaderEndpoint.js"
import { RpcService } from "./internal/serviceTag.js"
import type { LeaderInformation } from "./LeaderInformation.js"
import type { LeaderElectionDriver } from "./LeaderElectionDriver.js"
import type { LeaderToken } from "./LeaderToken.js"
import { RpcConfig } from "./RpcConfig.js"
import type * as RpcEndpoint from "./RpcEndpoint.js"
import type {
  EndpointIdInUseError,
  EndpointStartError,
  RpcCallError,
  RpcServiceStoppedError
} from "./RpcError.js"
import type * as RpcGateway from "./RpcGateway.js"
import type { RpcServer } from "./RpcServer.js"

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

// ---------------------------------------------------------------------------------------------------------------------
// Leadership-driven endpoints
// ---------------------------------------------------------------------------------------------------------------------

/**
 * Options of a leader endpoint.
 *
 * @since 0.2.0
 */
export interface LeaderEndpointOptions {
  /**
   * Runs once a session's token is in force and its leadership confirmed (in the contender's grant callback: keep it
   * short, the next event waits for it).
   */
  readonly onConfirmed?: ((leadership: Leadership) => Effect.Effect<void>) | undefined
  /** Runs once a session's token has been cleared, with why it ended (in the contender's revoke callback). */
  readonly onRevoked?: ((revocation: Revocation) => Effect.Effect<void>) | undefined
  /** Hears the engine's errors (the campaign goes on); they are logged as warnings when absent. */
  readonly onError?: ((error: LeaderElectionError) => Effect.Effect<void>) | undefined
}

/**
 * A running leader endpoint: the endpoint's server, its campaign, and whether it leads.
 *
 * @since 0.2.0
 */
export interface LeaderEndpoint<Gs extends ReadonlyArray<RpcGateway.Any>, EStop = unknown> {
  readonly component: string
  /** The endpoint's server; its fencing token is the current session's, or none between sessions. */
  readonly server: RpcServer<Gs, LeaderToken, EStop>
  /** The campaign (`hasLeadership`, `leadership`). */
  readonly election: LeaderElection
  /** The confirmed session's token while this endpoint leads; `None` before its confirmation and after its end. */
  readonly leading: Effect.Effect<Option.Option<LeaderToken>>
  /** `leading` now, then every change. */
  readonly changes: Stream.Stream<Option.Option<LeaderToken>>
}

/**
 * Starts a fenced endpoint whose fencing token follows `component`'s leadership, and campaigns with it until the scope
 * closes (closing resigns, then terminates the endpoint).
 *
 * The endpoint must be defined with `RpcEndpoint.makeFenced` for `LeaderToken` (by its gateways' declared token or
 * `token: LeaderToken.LeaderToken`), without an initial token and without `monotonic`; anything else fails with
 * reason `InvalidConfiguration`. On each grant the session's token is set on the endpoint's main thread, valid until
 * the lease deadline, and only then is the leadership confirmed with the endpoint's address; on each revocation
 * (revoked, suspended, expired, resigned) the token is cleared at once, before the election moves on. From the
 * deadline on, the endpoint rejects every message by its own clock (`FencingTokenError`, reason `Expired`), whatever
 * it has heard. An endpoint that terminates on its own resigns.
 *
 * @since 0.2.0
 */
export const leaderEndpoint = <Gs extends ReadonlyArray<RpcGateway.Any>, EStop, EInit, R>(
  component: string,
  endpoint: RpcEndpoint.RpcEndpoint<Gs, LeaderToken, EStop, EInit, R>,
  options?: LeaderEndpointOptions | undefined
): Effect.Effect<
  LeaderEndpoint<Gs, EStop>,
  EInit | EndpointIdInUseError | RpcServiceStoppedError | EndpointStartError | LeaderElectionError,
  R | HaServices | RpcService | Scope.Scope
> => Effect.flatMap(HaServices, (ha) => leaderEndpointImpl.make(ha, component, endpoint, options))

/**
 * A Layer that runs {@link leaderEndpoint} for as long as it is in scope.
 *
 * @since 0.2.0
 */
export const layerLeaderEndpoint = <Gs extends ReadonlyArray<RpcGateway.Any>, EStop, EInit, R>(
  component: string,
  endpoint: RpcEndpoint.RpcEndpoint<Gs, LeaderToken, EStop, EInit, R>,
  options?: LeaderEndpointOptions | undefined
): Layer.Layer<
  never,
  EInit | EndpointIdInUseError | RpcServiceStoppedError | EndpointStartError | LeaderElectionError,
  Exclude<R, Scope.Scope> | HaServices | RpcService
> => Layer.effectDiscard(leaderEndpoint(component, endpoint, options))

// ---------------------------------------------------------------------------------------------------------------------
// Clients that follow the leader
// ---------------------------------------------------------------------------------------------------------------------

/**
 * How a registration is retried (Flink's `RetryingRegistrationConfiguration`, `cluster.registration.*`).
 *
 * @since 0.2.0
 */
export interface RegistrationRetry {
  /**
   * The timeout of the first attempt (100 ms). An attempt that times out is tried again at once with twice the
   * timeout, up to `maxTimeout`: a leader that is still starting is found quickly, a slow one is not hammered.
   */
  readonly initialTimeout?: Duration.Input | undefined
  /** The longest an attempt may take (30 s). */
  readonly maxTimeout?: Duration.Input | undefined
  /**
   * The pause after an attempt failed otherwise, or a connect failed (10 s): the leader is there but something is
   * wrong, and retrying at once would only repeat it. A leader change ends the pause at once.
   */
  readonly delayOnError?: Duration.Input | undefined
  /** The pause after the leader refused the registration with `RegistrationRefusedError` (30 s). */
  readonly delayOnRefusal?: Duration.Input | undefined
}

/**
 * The defaults of {@link RegistrationRetry}: 100 ms doubling to 30 s per attempt, 10 s after an error, 30 s after a
 * refusal (Flink's).
 *
 * @since 0.2.0
 */
export const registrationDefaults: {
  readonly initialTimeout: Duration.Duration
  readonly maxTimeout: Duration.Duration
  readonly delayOnError: Duration.Duration
  readonly delayOnRefusal: Duration.Duration
} = leaderClient.registrationDefaults

/**
 * What a registration attempt is given: the new leader's client (calling it with the leader's token), the leader, the
 * attempt's number (from 1) and its timeout, to pass on to the registration call (`{ timeout }`).
 *
 * @since 0.2.0
 */
export interface Registration<G extends RpcGateway.Any> {
  readonly client: RpcGateway.Client<G>
  readonly leader: LeaderInformation
  readonly attempt: number
  readonly timeout: Duration.Duration
}

/**
 * Options of {@link connectLeader}.
 *
 * @since 0.2.0
 */
export interface ConnectLeaderOptions<G extends RpcGateway.Any, A, E> {
  /**
   * While there is no confirmed leader, calls fail at once with `NoLeaderError` (`"fail"`, the default), or wait for
   * one within their own timeout (`"wait"`; the client then has exactly the type `RpcGateway.Client<G>`). In the
   * waiting form an ask that a leader rejected by fencing (it never ran) is sent again to the next leader.
   */
  readonly whileNoLeader?: "fail" | "wait" | undefined
  /**
   * Registers with each new leader before calls go to it (Flink's `RetryingRegistration`); its success is the
   * `Registered` state's `registration`. Retried as `retry` says: a timeout doubles the next attempt's, a
   * `RegistrationRefusedError` pauses `delayOnRefusal`, any other failure `delayOnError`.
   */
  readonly register?: ((registration: Registration<G>) => Effect.Effect<A, E>) | undefined
  /** How registrations are retried (Flink's defaults). */
  readonly retry?: RegistrationRetry | undefined
  /** The timeout of each connect to a new leader (default `RpcConfig.connectTimeout`). */
  readonly connectTimeout?: Duration.Input | undefined
}

/**
 * Where a client that follows the leader stands.
 *
 * - `NoLeader`: no confirmed leader (or contact with the HA engine is suspended).
 * - `Connecting`: a leader is confirmed; connecting and registering with it (`attempt` counts from 1).
 * - `Registered`: calls go to `leader`; `registration` is what the registration effect returned.
 * - `Closed`: the client's scope has closed.
 *
 * @since 0.2.0
 */
export type LeaderConnectionState<A = void> =
  | { readonly _tag: "NoLeader" }
  | { readonly _tag: "Connecting"; readonly leader: LeaderInformation; readonly attempt: number }
  | { readonly _tag: "Registered"; readonly leader: LeaderInformation; readonly registration: A }
  | { readonly _tag: "Closed" }

/**
 * The connection behind a client that follows the leader (Flink's `RegisteredRpcConnection`).
 *
 * @since 0.2.0
 */
export interface LeaderConnection<A = void> {
  readonly component: string
  /** The state now. */
  readonly state: Effect.Effect<LeaderConnectionState<A>>
  /** The state now, then every change. */
  readonly states: Stream.Stream<LeaderConnectionState<A>>
  /** The `Registered` state, as soon as there is one (now if registered). */
  readonly registered: Effect.Effect<Extract<LeaderConnectionState<A>, { readonly _tag: "Registered" }>>
  /** Connects and registers again with the current leader (Flink's `tryReconnect`, after a heartbeat timeout). */
  readonly reconnect: Effect.Effect<void>
}

/**
 * The function a leader client exposes for one method: a client's, whose calls may also fail with `E`.
 *
 * @since 0.2.0
 */
export type LeaderClientMethod<M extends RpcGateway.Method, E> = M extends
  RpcGateway.Method<infer Kind, infer P, infer S, infer F> ? (
    ...args: [P["Type"]] extends [void] ? [payload?: P["Type"], options?: RpcGateway.CallOptions]
      : [payload: P["Type"], options?: RpcGateway.CallOptions]
  ) => Kind extends "ask" ? Effect.Effect<S["Type"], F["Type"] | RpcCallError | E>
    : Effect.Effect<void, RpcCallError | E>
  : never

/**
 * A client of `G` that follows a component's leader: a `RpcGateway.Client<G>` (one function per method, `address`,
 * `gateway`) whose calls go to the current leader with its token, plus its `connection`. With
 * `whileNoLeader: "wait"` its calls fail with nothing more than a client's (`E` is `never`), so it *is* a
 * `RpcGateway.Client<G>`; by default they may also fail with `NoLeaderError`. `address` is the latest leader's
 * address ("" before the first). A gateway method named `connection` is refused.
 *
 * @since 0.2.0
 */
export type LeaderClient<G extends RpcGateway.Any, E = NoLeaderError, A = void> =
  & { readonly [K in keyof G["methods"]]: LeaderClientMethod<G["methods"][K], E> }
  & {
    /** The latest confirmed leader's address ("" before the first). */
    readonly address: string
    readonly gateway: G
    readonly connection: LeaderConnection<A>
  }

/**
 * Follows `component`'s confirmed leader with a client of `gateway` until the scope closes (Flink's
 * `RegisteredRpcConnection` with `RetryingRegistration`). On every leader change the client connects to the new
 * leader with its token and runs `register` (retried with backoff) before calls go to it. While there is no leader,
 * calls fail at once with `NoLeaderError`, or with `whileNoLeader: "wait"` wait for one within their own timeout.
 * Options that cannot work fail with reason `InvalidConfiguration`.
 *
 * @since 0.2.0
 */
export const connectLeader: {
  <G extends RpcGateway.Any, A = void, E = never>(
    component: string,
    gateway: G,
    options: ConnectLeaderOptions<G, A, E> & { readonly whileNoLeader: "wait" }
  ): Effect.Effect<LeaderClient<G, never, A>, LeaderElectionError, HaServices | RpcService | Scope.Scope>
  <G extends RpcGateway.Any, A = void, E = never>(
    component: string,
    gateway: G,
    options?: ConnectLeaderOptions<G, A, E> | undefined
  ): Effect.Effect<LeaderClient<G, NoLeaderError, A>, LeaderElectionError, HaServices | RpcService | Scope.Scope>
} = <G extends RpcGateway.Any, A, E>(
  component: string,
  gateway: G,
  options?: ConnectLeaderOptions<G, A, E> | undefined
): Effect.Effect<any, LeaderElectionError, HaServices | RpcService | Scope.Scope> =>
  Effect.gen(function*() {
    const ha = yield* HaServices
    const service = yield* RpcService
    const config = yield* RpcConfig
    return yield* leaderClient.make(ha, service, config, component, gateway, options)
  })
