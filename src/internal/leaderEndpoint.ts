/**
 * A fenced endpoint bound to a component's leadership (`HaServices.leaderEndpoint`): the endpoint starts without a
 * token and campaigns; each grant sets the session's token on its main thread, valid until the lease deadline, and
 * only then confirms the leadership with the endpoint's address; each revocation clears the token at once, inside the
 * contender callback, so before the election can move on to another contender.
 *
 * Safety does not rest on the revocation arriving in time: the token is set with `validUntil: leaseDeadline`, so the
 * endpoint itself rejects every message checked at or after the deadline (`FencingTokenError`, reason `Expired`) by
 * its own clock, whether or not the election's watchdog, the driver or the contender callback has run yet.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { LeaderElectionError } from "../HaError.js"
import type { HaServicesShape, LeaderEndpoint, LeaderEndpointOptions, Leadership } from "../HaServices.js"
import * as LeaderToken from "../LeaderToken.js"
import * as RpcEndpoint from "../RpcEndpoint.js"
import type { EndpointIdInUseError, EndpointStartError, RpcServiceStoppedError } from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { RpcService } from "./serviceTag.js"

/** How often, at most, a confirmation that failed for want of the engine is tried again while the session stands. */
const CONFIRM_RETRIES = 5

/** Checks that `endpoint` can be driven by an election: fenced, exactly, and without a token of its own. */
const validate = (
  component: string,
  engine: string,
  endpoint: { readonly fencing: RpcEndpoint.Fencing<any> | undefined }
) => {
  const invalid = (detail: string) =>
    new LeaderElectionError({ component, engine, reason: "InvalidConfiguration", detail })
  if (endpoint.fencing === undefined) {
    return invalid(
      "a leader endpoint must be fenced (RpcEndpoint.makeFenced, token LeaderToken): its token is the leadership's"
    )
  }
  if (Option.isSome(endpoint.fencing.initial)) {
    return invalid(
      "a leader endpoint must start without a token (no initialToken): it would serve before any leadership is granted"
    )
  }
  if (endpoint.fencing.monotonic !== undefined) {
    return invalid("a leader endpoint admits only its own session's token; drop `monotonic` (it is for followers)")
  }
  return undefined
}

/** Starts `endpoint` and campaigns for `component` with it; see the module comment. */
export const make = <Gs extends ReadonlyArray<RpcGateway.Any>, EStop, EInit, R>(
  ha: HaServicesShape,
  component: string,
  endpoint: RpcEndpoint.RpcEndpoint<Gs, LeaderToken.LeaderToken, EStop, EInit, R>,
  options: LeaderEndpointOptions | undefined
): Effect.Effect<
  LeaderEndpoint<Gs, EStop>,
  EInit | EndpointIdInUseError | RpcServiceStoppedError | EndpointStartError | LeaderElectionError,
  R | RpcService | Scope.Scope
> =>
  Effect.gen(function*() {
    const invalid = validate(component, ha.engine, endpoint)
    if (invalid !== undefined) return yield* Effect.fail(invalid)
    const log = Effect.annotateLogs({ module: "HaServices.leaderEndpoint", component, engine: ha.engine })

    const server = yield* RpcEndpoint.scoped(endpoint)
    const leading = yield* SubscriptionRef.make<Option.Option<LeaderToken.LeaderToken>>(Option.none())
    const background = yield* FiberSet.make<void>()
    const address = server.address

    /** Confirms `token`'s session; an engine that could not be reached is asked again while the session stands. */
    const confirm = (leadership: Leadership) =>
      Effect.gen(function*() {
        const token = leadership.token
        const confirmOnce = leadership.confirm(address)
        const confirmed = yield* confirmOnce
        if (confirmed) {
          yield* SubscriptionRef.set(leading, Option.some(token))
          yield* Effect.logInfo(`Leading as ${token} at ${address}`).pipe(log)
          if (options?.onConfirmed !== undefined) yield* options.onConfirmed(leadership)
        }
        return confirmed
      })

    const grant = (leadership: Leadership) =>
      Effect.gen(function*() {
        const token = leadership.token
        // In mailbox order: whatever the endpoint was doing finishes first; from here on it serves under `token`.
        const set = yield* Effect.exit(server.setFencingToken(token, { validUntil: leadership.leaseDeadline }))
        if (Exit.isFailure(set)) {
          yield* Effect.logWarning(`Granted ${token}, but the endpoint has terminated; not confirming`).pipe(log)
          return
        }
        // The main thread may have been busy past the deadline: such a session is about to be revoked as Expired.
        if ((yield* Clock.currentTimeMillis) >= leadership.leaseDeadline()) {
          yield* Effect.logWarning(`Granted ${token}, but its lease deadline passed before the token was set`).pipe(log)
          return
        }
        const first = yield* Effect.result(confirm(leadership))
        if (first._tag === "Success") return
        // The engine could not be reached: try again, off the event loop (a revocation must not wait for this), while
        // the session stands. Meanwhile the endpoint serves under the token, but nobody has been told of it.
        yield* Effect.logWarning(`Could not confirm ${token}; trying again`, first.failure).pipe(log)
        yield* FiberSet.run(
          background,
          confirm(leadership).pipe(
            Effect.retry({
              schedule: Schedule.exponential("100 millis"),
              times: CONFIRM_RETRIES,
              while: () => Effect.map(Clock.currentTimeMillis, (now) => now < leadership.leaseDeadline())
            }),
            Effect.catch((error) => Effect.logWarning(`Gave up confirming ${token}`, error).pipe(log)),
            Effect.asVoid
          )
        )
      })

    const campaignScope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(campaignScope, Exit.void))
    const election = yield* ha.campaign(component, {
      grant,
      revoke: (revocation) =>
        Effect.gen(function*() {
          // At once, not in mailbox order: a message queued before this is rejected too.
          yield* server.clearFencingToken
          yield* SubscriptionRef.set(leading, Option.none())
          yield* Effect.logInfo(`Stepped down from ${revocation.token}: ${revocation.reason}`).pipe(log)
          if (options?.onRevoked !== undefined) yield* options.onRevoked(revocation)
        }),
      error: options?.onError
    }).pipe(Scope.provide(campaignScope))

    // An endpoint that terminates on its own (onStart failed, stopped) must not hold the leadership: resign.
    yield* Effect.forkScoped(
      Effect.andThen(
        Effect.ignore(server.awaitTermination),
        Effect.andThen(
          Effect.logInfo(`The endpoint ${server.address} terminated; resigning`).pipe(log),
          Scope.close(campaignScope, Exit.void)
        )
      )
    )

    const handle: LeaderEndpoint<Gs, EStop> = {
      component,
      server,
      election,
      leading: SubscriptionRef.get(leading),
      changes: SubscriptionRef.changes(leading).pipe(
        Stream.changesWith(Option.makeEquivalence(LeaderToken.Equivalence))
      )
    }
    return handle
  })
