/**
 * The embedded leader election driver (Flink's `EmbeddedLeaderService`): elections among the contenders of this
 * process. Per component, candidates queue in the order they campaign; the first one leads, with a term one above
 * the component's last; when it withdraws (or relinquishes its session) the next one is granted. There are no leases:
 * a session lasts until it is given up, so its lease deadline is `Infinity`.
 *
 * Everything happens synchronously in the callers' fibers: JavaScript runs one of them at a time, so the maps need no
 * lock, and a withdrawal hands over to the next candidate before its finalizer returns.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { randomUUID } from "node:crypto"
import type { LeaderInformation } from "../LeaderInformation.js"
import type { DriverCampaign, DriverEvent, LeaderElectionDriver } from "../LeaderElectionDriver.js"
import * as LeaderToken from "../LeaderToken.js"

interface Candidate {
  readonly onEvent: (event: DriverEvent) => void
  session: LeaderToken.LeaderToken | undefined
}

interface Component {
  term: number
  readonly candidates: Array<Candidate>
  leader: Candidate | undefined
  readonly published: SubscriptionRef.SubscriptionRef<Option.Option<LeaderInformation>>
}

const noLease = () => Number.POSITIVE_INFINITY

/** An embedded driver; its components live as long as the scope. */
export const make: Effect.Effect<LeaderElectionDriver, never, Scope.Scope> = Effect.sync(() => {
  const components = new Map<string, Component>()

  const componentOf = (name: string) =>
    Effect.gen(function*() {
      const existing = components.get(name)
      if (existing !== undefined) return existing
      const published = yield* SubscriptionRef.make<Option.Option<LeaderInformation>>(Option.none())
      // Two fibers may have raced through the `yield*` above; the first one's component stays.
      const raced = components.get(name)
      if (raced !== undefined) return raced
      const component: Component = { term: 0, candidates: [], leader: undefined, published }
      components.set(name, component)
      return component
    })

  const publishedToken = (component: Component) => {
    const current = SubscriptionRef.getUnsafe(component.published)
    return Option.isSome(current) ? current.value.token : undefined
  }

  /** Clears the published leader if it is `token`'s. */
  const unpublish = (component: Component, token: LeaderToken.LeaderToken) =>
    Effect.suspend(() => {
      const published = publishedToken(component)
      return published !== undefined && LeaderToken.Equivalence(published, token)
        ? SubscriptionRef.set(component.published, Option.none())
        : Effect.void
    })

  /** Grants the first candidate if nobody leads. */
  const elect = (component: Component) =>
    Effect.sync(() => {
      if (component.leader !== undefined) return
      const next = component.candidates[0]
      if (next === undefined) return
      component.term += 1
      const token = LeaderToken.make(component.term, randomUUID())
      component.leader = next
      next.session = token
      next.onEvent({ _tag: "Granted", token, leaseDeadline: noLease })
    })

  /** Ends `candidate`'s leadership (if it leads), clearing what it published, and elects the next. */
  const stepDown = (component: Component, candidate: Candidate) =>
    Effect.gen(function*() {
      if (component.leader !== candidate) return
      const token = candidate.session
      component.leader = undefined
      candidate.session = undefined
      if (token !== undefined) yield* unpublish(component, token)
      yield* elect(component)
    })

  const remove = (component: Component, candidate: Candidate) => {
    const at = component.candidates.indexOf(candidate)
    if (at >= 0) component.candidates.splice(at, 1)
  }

  const holds = (candidate: Candidate, token: LeaderToken.LeaderToken) =>
    candidate.session !== undefined && LeaderToken.Equivalence(candidate.session, token)

  const driver: LeaderElectionDriver = {
    engine: "embedded",
    campaign: (name, onEvent) =>
      Effect.gen(function*() {
        const component = yield* componentOf(name)
        const candidate: Candidate = { onEvent, session: undefined }
        yield* Effect.acquireRelease(
          Effect.suspend(() => {
            component.candidates.push(candidate)
            return elect(component)
          }),
          () =>
            Effect.suspend(() => {
              remove(component, candidate)
              return stepDown(component, candidate)
            })
        )
        const campaign: DriverCampaign = {
          publish: (information) =>
            Effect.suspend(() =>
              component.leader === candidate && holds(candidate, information.token)
                ? Effect.as(SubscriptionRef.set(component.published, Option.some(information)), true)
                : Effect.succeed(false)
            ),
          unpublish: (token) => unpublish(component, token),
          relinquish: (token) =>
            Effect.suspend(() => {
              if (!holds(candidate, token)) return Effect.void
              // To the back of the queue, as a fresh candidate: its next session (if any) gets a higher term.
              remove(component, candidate)
              component.candidates.push(candidate)
              return stepDown(component, candidate)
            })
        }
        return campaign
      }),
    retrieve: (name) => Stream.unwrap(Effect.map(componentOf(name), (component) => SubscriptionRef.changes(component.published)))
  }
  return driver
})
