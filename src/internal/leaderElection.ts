/**
 * The engine-agnostic half of leader election (Flink's `DefaultLeaderElectionService`): one campaign of one contender
 * over a driver, and retrieval with deduplication.
 *
 * A campaign keeps the session the driver issued and the information confirmed for it, and delivers the contender's
 * events one at a time from a single fiber, under a lock that closing the campaign takes too: a close waits for the
 * event being delivered, then nothing more is delivered (a grant racing a close is either delivered before the close's
 * `Resigned` revocation or dropped). Confirmation does not take the lock, so a contender may confirm from inside its
 * `grant`; it checks the session before publishing and again after, undoing a publication that a revocation overtook.
 *
 * Each grant starts a watchdog on the local Clock: at the session's lease deadline (re-read each time it wakes, since
 * renewals move it forward) it revokes the session as `Expired` and tells the driver to drop it, whatever the driver
 * has noticed. This is where safety comes from when the engine's client is slow to see a lost lease.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { LeaderElectionError } from "../HaError.js"
import type {
  LeaderContender,
  LeaderElection,
  Leadership,
  LeaderRetrieval,
  RevocationReason
} from "../HaServices.js"
import * as LeaderInformation from "../LeaderInformation.js"
import type { DriverEvent, LeaderElectionDriver } from "../LeaderElectionDriver.js"
import * as LeaderToken from "../LeaderToken.js"

type Event = DriverEvent | { readonly _tag: "Expired"; readonly token: LeaderToken.LeaderToken }

interface Issued {
  readonly leadership: Leadership
  readonly watchdog: Fiber.Fiber<void>
}

/** The longest the watchdog sleeps before it reads the deadline again (an `Infinity` deadline is re-read this often). */
const WATCHDOG_MAX_SLEEP_MILLIS = 60_000
/** How long a resigning campaign waits for the engine to delete what it published before withdrawing anyway. */
const RESIGN_UNPUBLISH_LIMIT = "2 seconds"

/** Starts a campaign of `contender` for `component` over `driver`; the scope's close resigns. */
export const campaign = (
  driver: LeaderElectionDriver,
  services: { readonly closed: boolean },
  component: string,
  contender: LeaderContender
): Effect.Effect<LeaderElection, LeaderElectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const error = (reason: LeaderElectionError["reason"], detail: string) =>
      new LeaderElectionError({ component, engine: driver.engine, reason, detail })
    if (services.closed) return yield* Effect.fail(error("Closed", "the HA services are shut down"))
    if (component === "") return yield* Effect.fail(error("InvalidConfiguration", "the component name is empty"))

    const events = yield* Queue.unbounded<Event>()
    const lock = yield* Semaphore.make(1)
    let closed = false
    let issued: Issued | undefined
    let confirmed: LeaderInformation.LeaderInformation | undefined

    const log = Effect.annotateLogs({ module: "HaServices", component, engine: driver.engine })
    const isCurrent = (token: LeaderToken.LeaderToken) =>
      issued !== undefined && LeaderToken.Equivalence(issued.leadership.token, token)

    // The driver's campaign first: its finalizer (withdrawing) then runs after ours (resigning) and after the fibers'.
    const driverCampaign = yield* driver.campaign(component, (event) => {
      if (!closed) Queue.offerUnsafe(events, event)
    })
    const fibers = yield* FiberSet.make<void>()

    /** Runs a contender callback; a defect in it is logged, never ends the event loop. */
    const deliver = (what: string, callback: Effect.Effect<void>) =>
      Effect.flatMap(Effect.exit(callback), (exit) =>
        Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)
          ? Effect.void
          : Effect.logError(`The contender's ${what} callback failed`, exit.cause).pipe(log))

    const unpublishLater = (token: LeaderToken.LeaderToken) =>
      FiberSet.run(
        fibers,
        driverCampaign.unpublish(token).pipe(
          Effect.catch((error) => Effect.logDebug("Could not delete the published leader", error).pipe(log))
        )
      )

    /** Ends the issued session: stops its watchdog, forgets its confirmation, tells the contender. Under the lock. */
    const endSession = (reason: RevocationReason) =>
      Effect.gen(function*() {
        const ended = issued
        if (ended === undefined) return undefined
        issued = undefined
        confirmed = undefined
        yield* Fiber.interrupt(ended.watchdog)
        yield* Effect.logInfo(`Leadership ${ended.leadership.token} ended: ${reason}`).pipe(log)
        yield* deliver("revoke", contender.revoke({ component, token: ended.leadership.token, reason }))
        return ended.leadership.token
      })

    const watchdog = (token: LeaderToken.LeaderToken, leaseDeadline: () => number) =>
      Effect.gen(function*() {
        while (true) {
          const deadline = leaseDeadline()
          const now = yield* Clock.currentTimeMillis
          if (now >= deadline) {
            Queue.offerUnsafe(events, { _tag: "Expired", token })
            return
          }
          yield* Effect.sleep(Math.min(deadline - now, WATCHDOG_MAX_SLEEP_MILLIS))
        }
      })

    const handle = (event: Event): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (closed) return
        switch (event._tag) {
          case "Granted": {
            // A driver grants a new session only after the old one ended; should one not, the old one ends here.
            const previous = yield* endSession("Revoked")
            if (previous !== undefined) yield* unpublishLater(previous)
            const token = event.token
            const leadership: Leadership = {
              component,
              token,
              leaseDeadline: event.leaseDeadline,
              confirm: (address) => confirm(token, address)
            }
            const watch = yield* FiberSet.run(fibers, watchdog(event.token, event.leaseDeadline))
            issued = { leadership, watchdog: watch }
            yield* Effect.logInfo(`Leadership granted: ${event.token}`).pipe(log)
            yield* deliver("grant", contender.grant(leadership))
            return
          }
          case "Revoked":
          case "Expired": {
            if (!isCurrent(event.token)) return
            const token = yield* endSession(event._tag === "Expired" ? "Expired" : event.reason)
            if (token === undefined) return
            yield* unpublishLater(token)
            if (event._tag === "Expired") yield* driverCampaign.relinquish(token)
            return
          }
          case "LeaderInformationChanged": {
            // Flink's correction: while this contender's confirmation stands, the engine must hold exactly it.
            const current = confirmed
            if (current === undefined || issued === undefined) return
            if (Option.isSome(event.information) && LeaderInformation.Equivalence(event.information.value, current)) {
              return
            }
            yield* Effect.logInfo(`Published leader changed outside this contender; writing ${current} again`).pipe(log)
            yield* FiberSet.run(
              fibers,
              driverCampaign.publish(current).pipe(
                Effect.catch((error) => deliverError(error))
              )
            )
            return
          }
          case "Failed":
            return yield* deliverError(event.error)
        }
      }).pipe(lock.withPermits(1))

    const deliverError = (error: LeaderElectionError): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closed) return Effect.void
        return contender.error === undefined
          ? Effect.logWarning(error.message).pipe(log)
          : deliver("error", contender.error(error))
      })

    const confirm = (token: LeaderToken.LeaderToken, address: string) =>
      Effect.gen(function*() {
        if (closed) return yield* Effect.fail(error("Closed", "the campaign has closed"))
        if (!isCurrent(token)) {
          yield* Effect.logDebug(`Ignored a stale confirmation of ${token} at ${address}`).pipe(log)
          return false
        }
        const information = yield* Effect.try({
          try: () => LeaderInformation.make(address, token),
          catch: () => error("Rejected", `confirmed with an invalid address ${JSON.stringify(address)}`)
        })
        const published = yield* driverCampaign.publish(information)
        if (!published) return false
        if (!closed && isCurrent(token)) {
          confirmed = information
          yield* Effect.logInfo(`Leadership confirmed: ${information}`).pipe(log)
          return true
        }
        // The session ended while the write was in flight: take it back (guarded by the token in the driver).
        yield* driverCampaign.unpublish(token).pipe(Effect.ignore)
        return false
      })

    // Started last: it may deliver at once, and the contender may call `confirm` from its grant.
    yield* FiberSet.run(fibers, Effect.forever(Effect.flatMap(Queue.take(events), handle)))

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closed = true
        const token = yield* endSession("Resigned")
        if (token !== undefined) {
          yield* driverCampaign.unpublish(token).pipe(
            Effect.timeoutOption(RESIGN_UNPUBLISH_LIMIT),
            Effect.catch((error) => Effect.logDebug("Could not delete the published leader on resigning", error)),
            log
          )
        }
      }).pipe(lock.withPermits(1))
    )

    const leaderElection: LeaderElection = {
      component,
      confirm,
      hasLeadership: (token) =>
        Effect.map(Clock.currentTimeMillis, (now) =>
          !closed && issued !== undefined && LeaderToken.Equivalence(issued.leadership.token, token) &&
          now < issued.leadership.leaseDeadline()),
      leadership: Effect.sync(() => issued === undefined ? Option.none() : Option.some(issued.leadership))
    }
    return leaderElection
  })

/** Follows `component`'s published leader through `driver`, deduplicated, until the scope closes. */
export const retrieve = (
  driver: LeaderElectionDriver,
  component: string
): Effect.Effect<LeaderRetrieval, never, Scope.Scope> =>
  Effect.gen(function*() {
    const ref = yield* SubscriptionRef.make<Option.Option<LeaderInformation.LeaderInformation>>(Option.none())
    const same = Option.makeEquivalence(LeaderInformation.Equivalence)
    yield* driver.retrieve(component).pipe(
      Stream.runForEach((next) =>
        SubscriptionRef.update(ref, (current) => same(current, next) ? current : next).pipe(
          Effect.asVoid
        )
      ),
      Effect.forkScoped
    )
    const changes = SubscriptionRef.changes(ref).pipe(Stream.changesWith(same))
    const retrieval: LeaderRetrieval = {
      component,
      get: SubscriptionRef.get(ref),
      changes,
      await: changes.pipe(
        Stream.filter(Option.isSome),
        Stream.runHead,
        Effect.flatMap((first) => Option.isSome(first) ? Effect.succeed(first.value.value) : Effect.never)
      )
    }
    return retrieval
  })
