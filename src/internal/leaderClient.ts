/**
 * A client that follows a component's leader (`HaServices.connectLeader`; Flink's `RegisteredRpcConnection` with
 * its `RetryingRegistration`).
 *
 * One fiber follows the confirmed leader (`HaServices.retrieve`). Each change starts a *session* for the new leader,
 * interrupting the previous one: connect with the leader's token (`connectFenced`), then run the registration effect
 * until it succeeds, as Flink retries it:
 *
 * - an attempt that times out is tried again at once with twice the timeout (100 ms doubling to 30 s);
 * - an attempt that fails with `RegistrationRefusedError` (the leader declined) is tried again after `delayOnRefusal`
 *   (30 s), with the initial timeout;
 * - any other failure of an attempt, and a connect that fails, are tried again after `delayOnError` (10 s).
 *
 * A session's state changes are published only while it is the latest one (an epoch counter), so a session being
 * interrupted can never overwrite its successor's state. Calls look at the state: registered → straight to that
 * leader's client; no leader → `NoLeaderError` at once, or (`whileNoLeader: "wait"`) wait for a registered leader
 * within the call's own timeout. In the waiting form an ask the leader rejected by fencing (it stepped down, or it
 * has a newer session than the one retrieved) never ran, so it is sent again to the next leader, still within its
 * timeout; no other failure is retried, since the message may have been applied.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberHandle from "effect/FiberHandle"
import { NodeInspectSymbol } from "effect/Inspectable"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { LeaderElectionError, NoLeaderError, RegistrationRefusedError } from "../HaError.js"
import type {
  ConnectLeaderOptions,
  HaServicesShape,
  LeaderConnection,
  LeaderConnectionState,
  RegistrationRetry
} from "../HaServices.js"
import type { LeaderInformation } from "../LeaderInformation.js"
import * as LeaderToken from "../LeaderToken.js"
import type { RpcConfig } from "../RpcConfig.js"
import { FencingTokenError, RecipientUnreachableError, RpcTimeoutError } from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { RpcServiceShape } from "./serviceTag.js"

/**
 * Flink's `RetryingRegistrationConfiguration` defaults (`cluster.registration.*`): initial timeout 100 ms, maximum
 * timeout 30 s, 10 s after an error, 30 s after a refusal.
 */
export const registrationDefaults = {
  initialTimeout: Duration.millis(100),
  maxTimeout: Duration.seconds(30),
  delayOnError: Duration.seconds(10),
  delayOnRefusal: Duration.seconds(30)
} as const

interface RetrySettings {
  readonly initialMillis: number
  readonly maxMillis: number
  readonly errorMillis: number
  readonly refusalMillis: number
}

/** The reserved names of a leader client: a gateway method must not use them. */
const RESERVED = ["address", "gateway", "connection"]

/** What the follower knows: the public state, and the client of a registered leader. */
interface Current<G extends RpcGateway.Any, A> {
  readonly state: LeaderConnectionState<A>
  readonly client: RpcGateway.Client<G> | undefined
}

const LeaderClientProto = {
  toJSON(this: { gateway: RpcGateway.Any; address: string; connection: { component: string } }): unknown {
    return {
      _id: "HaServices.LeaderClient",
      gateway: this.gateway.name,
      component: this.connection.component,
      address: this.address
    }
  },
  toString(this: { gateway: RpcGateway.Any; connection: { component: string } }): string {
    return `HaServices.LeaderClient(${this.gateway.name} at the leader of ${this.connection.component})`
  },
  [NodeInspectSymbol](this: { toJSON(): unknown }): unknown {
    return this.toJSON()
  }
}

const resolveRetry = (
  component: string,
  engine: string,
  retry: RegistrationRetry | undefined
): RetrySettings | LeaderElectionError => {
  const millis = (input: Duration.Input | undefined, fallback: Duration.Duration) =>
    Duration.toMillis(input === undefined ? fallback : Duration.fromInputUnsafe(input))
  const settings: RetrySettings = {
    initialMillis: millis(retry?.initialTimeout, registrationDefaults.initialTimeout),
    maxMillis: millis(retry?.maxTimeout, registrationDefaults.maxTimeout),
    errorMillis: millis(retry?.delayOnError, registrationDefaults.delayOnError),
    refusalMillis: millis(retry?.delayOnRefusal, registrationDefaults.delayOnRefusal)
  }
  const invalid = (detail: string) =>
    new LeaderElectionError({ component, engine, reason: "InvalidConfiguration", detail })
  if (!(settings.initialMillis > 0) || !Number.isFinite(settings.initialMillis)) {
    return invalid(`the registration's initial timeout must be positive and finite (got ${settings.initialMillis} ms)`)
  }
  if (!(settings.maxMillis >= settings.initialMillis) || !Number.isFinite(settings.maxMillis)) {
    return invalid(
      `the registration's maximum timeout (${settings.maxMillis} ms) must be finite and at least its initial ` +
        `timeout (${settings.initialMillis} ms)`
    )
  }
  if (!(settings.errorMillis >= 0) || !(settings.refusalMillis >= 0)) {
    return invalid("the registration's delays after an error and after a refusal must not be negative")
  }
  return settings
}

/** Follows `component`'s leader with clients of `gateway` until the scope closes. */
export const make = <G extends RpcGateway.Any, A, E>(
  ha: HaServicesShape,
  service: RpcServiceShape,
  config: RpcConfig,
  component: string,
  gateway: G,
  options: ConnectLeaderOptions<G, A, E> | undefined
): Effect.Effect<unknown, LeaderElectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const retry = resolveRetry(component, ha.engine, options?.retry)
    if (retry instanceof LeaderElectionError) return yield* Effect.fail(retry)
    const invalid = (detail: string) =>
      new LeaderElectionError({ component, engine: ha.engine, reason: "InvalidConfiguration", detail })
    const clash = RESERVED.find((name) => Object.hasOwn(gateway.methods, name))
    if (clash !== undefined) {
      return yield* Effect.fail(
        invalid(`gateway ${gateway.name} has a method named "${clash}", which a leader client reserves`)
      )
    }
    if (gateway.token !== undefined && gateway.token !== LeaderToken.LeaderToken) {
      return yield* Effect.fail(
        invalid(`gateway ${gateway.name} declares another token than LeaderToken; a leader's token is a LeaderToken`)
      )
    }
    const waitForLeader = options?.whileNoLeader === "wait"
    const register = options?.register
    const connectOptions = options?.connectTimeout === undefined ? undefined : { timeout: options.connectTimeout }
    const log = Effect.annotateLogs({ module: "HaServices.connectLeader", component, gateway: gateway.name })

    const current = yield* SubscriptionRef.make<Current<G, A>>({ state: { _tag: "NoLeader" }, client: undefined })
    let epoch = 0
    let latest: Option.Option<LeaderInformation> = Option.none()
    /** The latest leader's address, for messages and `client.address`. */
    let lastAddress = ""

    /** Publishes `next` if the session `of` is still the latest one. */
    const publish = (of: number, next: Current<G, A>) =>
      Effect.suspend(() => of === epoch ? SubscriptionRef.set(current, next) : Effect.void)

    const connecting = (of: number, leader: LeaderInformation, attempt: number) =>
      publish(of, { state: { _tag: "Connecting", leader, attempt }, client: undefined })

    /** Connects to `leader` and registers, retrying as Flink does; ends once registered (or when interrupted). */
    const session = (leader: LeaderInformation, of: number) =>
      Effect.gen(function*() {
        // `follow` has published Connecting (attempt 1) already.
        let attempt = 1
        let client: RpcGateway.Client<G>
        while (true) {
          const connected = yield* Effect.result(
            service.connectFenced(leader.address, leader.token as RpcGateway.TokenOf<G>, gateway, connectOptions)
          )
          if (connected._tag === "Success") {
            client = connected.success
            break
          }
          yield* Effect.logWarning(
            `Could not connect to the leader ${leader}; trying again in ${retry.errorMillis} ms`,
            connected.failure
          ).pipe(log)
          yield* Effect.sleep(retry.errorMillis)
          yield* connecting(of, leader, ++attempt)
        }
        if (register === undefined) {
          yield* publish(of, { state: { _tag: "Registered", leader, registration: undefined as A }, client })
          yield* Effect.logInfo(`Connected to the leader ${leader}`).pipe(log)
          return
        }
        let timeoutMillis = retry.initialMillis
        while (true) {
          const outcome = yield* register({ client, leader, attempt, timeout: Duration.millis(timeoutMillis) }).pipe(
            Effect.timeoutOption(timeoutMillis),
            Effect.exit
          )
          if (Exit.isSuccess(outcome) && Option.isSome(outcome.value)) {
            yield* publish(of, { state: { _tag: "Registered", leader, registration: outcome.value.value }, client })
            yield* Effect.logInfo(`Registered at the leader ${leader} (attempt ${attempt})`).pipe(log)
            return
          }
          const failure = Exit.isFailure(outcome) ? Option.getOrUndefined(Exit.findErrorOption(outcome)) : undefined
          if (Exit.isSuccess(outcome) || failure instanceof RpcTimeoutError) {
            yield* Effect.logDebug(`Registration attempt ${attempt} at ${leader} timed out after ${timeoutMillis} ms`)
              .pipe(log)
            timeoutMillis = Math.min(2 * timeoutMillis, retry.maxMillis)
          } else {
            const refused = failure instanceof RegistrationRefusedError
            const delay = refused ? retry.refusalMillis : retry.errorMillis
            const what = refused ? "was refused" : "failed"
            yield* Effect.logWarning(
              `Registration attempt ${attempt} at ${leader} ${what}; trying again in ${delay} ms`,
              Exit.isFailure(outcome) ? outcome.cause : undefined
            ).pipe(log)
            yield* Effect.sleep(delay)
            timeoutMillis = retry.initialMillis
          }
          yield* connecting(of, leader, ++attempt)
        }
      })

    const sessions = yield* FiberHandle.make<void>()
    const lock = yield* Semaphore.make(1)

    /** Starts over with `next`: the previous session ends, calls stop going to its leader at once. */
    const follow = (next: Option.Option<LeaderInformation>) =>
      Effect.gen(function*() {
        const of = ++epoch
        latest = next
        if (Option.isSome(next)) lastAddress = next.value.address
        yield* SubscriptionRef.set(
          current,
          Option.isNone(next)
            ? { state: { _tag: "NoLeader" }, client: undefined }
            : { state: { _tag: "Connecting", leader: next.value, attempt: 1 }, client: undefined }
        )
        yield* FiberHandle.clear(sessions)
        if (Option.isNone(next)) {
          yield* Effect.logInfo("No confirmed leader").pipe(log)
          return
        }
        yield* FiberHandle.run(sessions, session(next.value, of))
      }).pipe(lock.withPermits(1))

    const retrieval = yield* ha.retrieve(component)
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        epoch++
        return SubscriptionRef.set(current, { state: { _tag: "Closed" }, client: undefined })
      })
    )
    yield* Effect.forkScoped(Stream.runForEach(retrieval.changes, follow))

    const connection: LeaderConnection<A> = {
      component,
      state: Effect.map(SubscriptionRef.get(current), (now) => now.state),
      states: Stream.map(SubscriptionRef.changes(current), (now) => now.state),
      registered: SubscriptionRef.changes(current).pipe(
        Stream.filter((now) => now.state._tag === "Registered"),
        Stream.runHead,
        Effect.flatMap((first) =>
          Option.isSome(first)
            ? Effect.succeed(first.value.state as Extract<LeaderConnectionState<A>, { _tag: "Registered" }>)
            : Effect.never
        )
      ),
      reconnect: Effect.suspend(() => follow(latest))
    }

    // ---- calls ----

    const describeTarget = () => lastAddress === "" ? `the leader of ${component}` : lastAddress

    /** A registered leader's client (one other than the `rejected` session's), waiting at most `remainingMillis`. */
    const target = (
      qualified: string,
      timeoutMillis: number,
      remainingMillis: number,
      rejected: LeaderToken.LeaderToken | undefined
    ): Effect.Effect<
      { readonly client: RpcGateway.Client<G>; readonly leader: LeaderInformation },
      NoLeaderError | RpcTimeoutError | RecipientUnreachableError
    > => {
      const usable = (now: Current<G, A>) =>
        now.state._tag === "Registered" && now.client !== undefined &&
        (rejected === undefined || !LeaderToken.Equivalence(now.state.leader.token, rejected))
      type Target = { readonly client: RpcGateway.Client<G>; readonly leader: LeaderInformation }
      const settle = (
        now: Current<G, A>
      ): Effect.Effect<Target, NoLeaderError | RpcTimeoutError | RecipientUnreachableError> | undefined => {
        if (usable(now)) {
          const state = now.state as Extract<LeaderConnectionState<A>, { _tag: "Registered" }>
          return Effect.succeed({ client: now.client!, leader: state.leader })
        }
        if (now.state._tag === "Closed") {
          return Effect.fail(
            new RecipientUnreachableError({
              address: describeTarget(),
              method: qualified,
              reason: `the client following the leader of ${component} was closed`
            })
          )
        }
        if (!waitForLeader && now.state._tag === "NoLeader") return Effect.fail(new NoLeaderError({ component }))
        return undefined
      }
      const timedOut = Effect.suspend(() =>
        Effect.fail(new RpcTimeoutError({ address: describeTarget(), method: qualified, timeoutMillis }))
      )
      return Effect.suspend(() => {
        const now = settle(SubscriptionRef.getUnsafe(current))
        if (now !== undefined) return now
        if (!(remainingMillis > 0)) return timedOut
        return SubscriptionRef.changes(current).pipe(
          Stream.filter((next) => settle(next) !== undefined),
          Stream.runHead,
          Effect.timeoutOption(remainingMillis),
          Effect.flatMap((found) =>
            Option.isSome(found) && Option.isSome(found.value) ? settle(found.value.value)! : timedOut
          )
        )
      })
    }

    const client: Record<string, unknown> = Object.create(LeaderClientProto)
    Object.defineProperty(client, "address", { enumerable: true, get: describeTarget })
    client.gateway = gateway
    client.connection = connection
    for (const [name, method] of Object.entries(gateway.methods as RpcGateway.Methods)) {
      const qualified = `${gateway.name}.${name}`
      const call = (payload: unknown, callOptions?: RpcGateway.CallOptions): Effect.Effect<unknown, unknown> => {
        const fast = SubscriptionRef.getUnsafe(current)
        // The common case: a registered leader, and nothing to wait for or retry.
        if (!waitForLeader && fast.client !== undefined && fast.state._tag === "Registered") {
          return (fast.client[name] as (p: unknown, o?: RpcGateway.CallOptions) => Effect.Effect<unknown, unknown>)(
            payload,
            callOptions
          )
        }
        const timeoutMillis = Duration.toMillis(
          callOptions?.timeout !== undefined
            ? Duration.fromInputUnsafe(callOptions.timeout)
            : method.timeout ?? config.askTimeout
        )
        return Effect.gen(function*() {
          const startedAt = yield* Clock.currentTimeMillis
          let rejected: LeaderToken.LeaderToken | undefined
          while (true) {
            const remaining = timeoutMillis - ((yield* Clock.currentTimeMillis) - startedAt)
            const { client: to, leader } = yield* target(qualified, timeoutMillis, remaining, rejected)
            const left = Math.max(1, timeoutMillis - ((yield* Clock.currentTimeMillis) - startedAt))
            const send = to[name] as (p: unknown, o?: RpcGateway.CallOptions) => Effect.Effect<unknown, unknown>
            const exit = yield* Effect.exit(send(payload, { timeout: Number.isFinite(left) ? left : undefined }))
            if (Exit.isFailure(exit) && waitForLeader && method.kind === "ask") {
              const error = Option.getOrUndefined(Exit.findErrorOption(exit))
              // Rejected by fencing: it never ran. The leader stepped down or moved on; send it to the next one.
              if (error instanceof FencingTokenError && error.reason !== "Missing") {
                rejected = leader.token
                continue
              }
            }
            return yield* exit
          }
        })
      }
      client[name] = call
    }
    return client
  })
