/**
 * A leader election driver driven by the test (Flink's `TestingLeaderElectionDriver`): nothing is granted until the
 * test says so. `layer` provides `HaServices` over it together with the `HaTesting` controls: grant a campaigning
 * contender, revoke or suspend the leader, renew or shorten its lease deadline, change the published leader behind the
 * leader's back, fail the driver. For testing code that campaigns or follows a leader (your own contenders too).
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const ha = yield* HaServices.HaServices
 *   const testing = yield* HaTesting.HaTesting
 *   const election = yield* ha.campaign("resourcemanager", contender)
 *   const token = yield* testing.grant("resourcemanager", { leaseDeadline: 5_000 })
 *   yield* election.confirm(token, "rpc://127.0.0.1:6123/rm")
 *   yield* testing.suspend("resourcemanager")      // contender.revoke({ reason: "Suspended" }), retrieval None
 * }).pipe(Effect.scoped, Effect.provide(HaTesting.layer))
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { randomUUID } from "node:crypto"
import { LeaderElectionError } from "./HaError.js"
import * as HaServices from "./HaServices.js"
import type { LeaderInformation } from "./LeaderInformation.js"
import type { DriverCampaign, DriverEvent, LeaderElectionDriver } from "./LeaderElectionDriver.js"
import * as LeaderToken from "./LeaderToken.js"

/**
 * Options of a grant.
 *
 * @since 0.1.0
 */
export interface GrantOptions {
  /** Which campaigning contender, by the order in which they campaigned (0, the default, is the oldest). */
  readonly candidate?: number | undefined
  /** The lease deadline (Clock milliseconds), or a function read each time; `Infinity` by default. */
  readonly leaseDeadline?: number | (() => number) | undefined
  /** The term; one above the component's last by default. A test may repeat or lower it to play a stale driver. */
  readonly term?: number | undefined
}

/**
 * The controls of the testing driver.
 *
 * @since 0.1.0
 */
export interface HaTestingShape {
  /** How many contenders campaign for `component` now. */
  readonly candidates: (component: string) => Effect.Effect<number>
  /** The session granted now, if any. */
  readonly leader: (component: string) => Effect.Effect<Option.Option<LeaderToken.LeaderToken>>
  /**
   * Grants a campaigning contender a fresh session (revoking the current leader first, as "Revoked"); fails with
   * reason "Rejected" when there is no such contender.
   */
  readonly grant: (
    component: string,
    options?: GrantOptions | undefined
  ) => Effect.Effect<LeaderToken.LeaderToken, LeaderElectionError>
  /** The engine ends the leader's session ("Revoked"). Nothing is deleted: the published leader stays as it is. */
  readonly revoke: (component: string) => Effect.Effect<void>
  /**
   * Contact with the engine is lost: the leader's session ends ("Suspended"), retrieval shows `None` and publishing
   * fails with reason "Unreachable" until `reconnect`.
   */
  readonly suspend: (component: string) => Effect.Effect<void>
  /** Contact is back: retrieval shows the published leader again. */
  readonly reconnect: (component: string) => Effect.Effect<void>
  /** Moves the current session's lease deadline (a renewal, or a clock jump when earlier). */
  readonly renew: (component: string, leaseDeadline: number) => Effect.Effect<void>
  /** Reports an error to the component's contenders (the campaign goes on). */
  readonly fail: (component: string, detail: string) => Effect.Effect<void>
  /** Writes the published leader behind the contenders' backs (a stray write, an operator's delete). */
  readonly setPublished: (component: string, information: Option.Option<LeaderInformation>) => Effect.Effect<void>
  /** What the engine holds as the published leader (regardless of suspension). */
  readonly published: (component: string) => Effect.Effect<Option.Option<LeaderInformation>>
}

/**
 * The testing driver's controls.
 *
 * @since 0.1.0
 */
export class HaTesting extends Context.Service<HaTesting, HaTestingShape>()("effect-actor-rpc/HaTesting") {}

interface Candidate {
  readonly onEvent: (event: DriverEvent) => void
}

interface Session {
  readonly candidate: Candidate
  readonly token: LeaderToken.LeaderToken
  deadline: () => number
}

interface Component {
  term: number
  readonly candidates: Array<Candidate>
  session: Session | undefined
  suspended: boolean
  published: Option.Option<LeaderInformation>
  /** What retrieval shows: `published`, or `None` while suspended. */
  readonly visible: SubscriptionRef.SubscriptionRef<Option.Option<LeaderInformation>>
}

const ENGINE = "testing"

/**
 * Makes the testing driver and its controls; they live as long as the scope.
 *
 * @since 0.1.0
 */
export const make: Effect.Effect<
  { readonly driver: LeaderElectionDriver; readonly controls: HaTestingShape },
  never,
  Scope.Scope
> = Effect.sync(() => {
  const components = new Map<string, Component>()

  const componentOf = (name: string) =>
    Effect.gen(function*() {
      const existing = components.get(name)
      if (existing !== undefined) return existing
      const visible = yield* SubscriptionRef.make<Option.Option<LeaderInformation>>(Option.none())
      const raced = components.get(name)
      if (raced !== undefined) return raced
      const component: Component = {
        term: 0,
        candidates: [],
        session: undefined,
        suspended: false,
        published: Option.none(),
        visible
      }
      components.set(name, component)
      return component
    })

  const show = (component: Component) =>
    SubscriptionRef.set(component.visible, component.suspended ? Option.none() : component.published)

  const setPublished = (component: Component, information: Option.Option<LeaderInformation>) =>
    Effect.suspend(() => {
      component.published = information
      return show(component)
    })

  const end = (component: Component, reason: "Revoked" | "Suspended") =>
    Effect.sync(() => {
      const session = component.session
      if (session === undefined) return
      component.session = undefined
      session.candidate.onEvent({ _tag: "Revoked", token: session.token, reason })
    })

  const isSession = (component: Component, candidate: Candidate, token: LeaderToken.LeaderToken) =>
    component.session !== undefined && component.session.candidate === candidate &&
    LeaderToken.Equivalence(component.session.token, token)

  const publishedToken = (component: Component) =>
    Option.isSome(component.published) ? component.published.value.token : undefined

  const driver: LeaderElectionDriver = {
    engine: ENGINE,
    campaign: (name, onEvent) =>
      Effect.gen(function*() {
        const component = yield* componentOf(name)
        const candidate: Candidate = { onEvent }
        yield* Effect.acquireRelease(
          Effect.sync(() => component.candidates.push(candidate)),
          () =>
            Effect.sync(() => {
              const at = component.candidates.indexOf(candidate)
              if (at >= 0) component.candidates.splice(at, 1)
              if (component.session?.candidate === candidate) component.session = undefined
            })
        )
        const campaign: DriverCampaign = {
          publish: (information) =>
            Effect.suspend(() => {
              if (component.suspended) {
                return Effect.fail(
                  new LeaderElectionError({
                    component: name,
                    engine: ENGINE,
                    reason: "Unreachable",
                    detail: "the testing driver is suspended"
                  })
                )
              }
              if (!isSession(component, candidate, information.token)) return Effect.succeed(false)
              return Effect.as(setPublished(component, Option.some(information)), true)
            }),
          unpublish: (token) =>
            Effect.suspend(() => {
              const published = publishedToken(component)
              return !component.suspended && published !== undefined && LeaderToken.Equivalence(published, token)
                ? setPublished(component, Option.none())
                : Effect.void
            }),
          relinquish: (token) =>
            Effect.sync(() => {
              if (isSession(component, candidate, token)) component.session = undefined
            })
        }
        return campaign
      }),
    retrieve: (name) =>
      Stream.unwrap(Effect.map(componentOf(name), (component) => SubscriptionRef.changes(component.visible)))
  }

  const controls: HaTestingShape = {
    candidates: (name) => Effect.map(componentOf(name), (component) => component.candidates.length),
    leader: (name) =>
      Effect.map(componentOf(name), (component) => Option.fromUndefinedOr(component.session?.token)),
    grant: (name, options) =>
      Effect.gen(function*() {
        const component = yield* componentOf(name)
        const index = options?.candidate ?? 0
        const candidate = component.candidates[index]
        if (candidate === undefined) {
          return yield* Effect.fail(
            new LeaderElectionError({
              component: name,
              engine: ENGINE,
              reason: "Rejected",
              detail: `there is no campaigning contender number ${index} (${component.candidates.length} campaign)`
            })
          )
        }
        yield* end(component, "Revoked")
        const term = options?.term ?? component.term + 1
        component.term = Math.max(component.term, term)
        const token = LeaderToken.make(term, randomUUID())
        const deadline = options?.leaseDeadline ?? Number.POSITIVE_INFINITY
        const session: Session = {
          candidate,
          token,
          deadline: typeof deadline === "number" ? () => deadline : deadline
        }
        component.session = session
        candidate.onEvent({ _tag: "Granted", token, leaseDeadline: () => session.deadline() })
        return token
      }),
    revoke: (name) => Effect.flatMap(componentOf(name), (component) => end(component, "Revoked")),
    suspend: (name) =>
      Effect.flatMap(componentOf(name), (component) => {
        component.suspended = true
        return Effect.andThen(end(component, "Suspended"), show(component))
      }),
    reconnect: (name) =>
      Effect.flatMap(componentOf(name), (component) => {
        component.suspended = false
        return show(component)
      }),
    renew: (name, leaseDeadline) =>
      Effect.map(componentOf(name), (component) => {
        if (component.session !== undefined) component.session.deadline = () => leaseDeadline
      }),
    fail: (name, detail) =>
      Effect.map(componentOf(name), (component) => {
        const error = new LeaderElectionError({ component: name, engine: ENGINE, reason: "Rejected", detail })
        for (const candidate of component.candidates) candidate.onEvent({ _tag: "Failed", error })
      }),
    setPublished: (name, information) =>
      Effect.flatMap(componentOf(name), (component) =>
        Effect.andThen(
          setPublished(component, information),
          Effect.sync(() => {
            component.session?.candidate.onEvent({ _tag: "LeaderInformationChanged", information })
          })
        )),
    published: (name) => Effect.map(componentOf(name), (component) => component.published)
  }
  return { driver, controls }
})

/**
 * `HaServices` over the testing driver, with its `HaTesting` controls.
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<HaServices.HaServices | HaTesting> = Layer.effectContext(
  Effect.gen(function*() {
    const { controls, driver } = yield* make
    const services = yield* HaServices.make(driver)
    return Context.make(HaServices.HaServices, services).pipe(Context.add(HaTesting, controls))
  })
)
