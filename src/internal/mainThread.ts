/**
 * The MainThread handed to endpoint code (Flink's `MainThreadExecutor` and friends): runAsync, callAsync,
 * scheduleRunAsync, the main-thread checks, the self gateway and the fencing token, as a view over the runtime.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { MainThreadViolationError, RpcTimeoutError } from "../RpcError.js"
import type * as RpcEndpoint from "../RpcEndpoint.js"
import type * as RpcGateway from "../RpcGateway.js"
import type { EndpointRuntime } from "./endpoint.js"
import type { Resume } from "./invocation.js"

/**
 * The MainThread handed to endpoint code. A class over the runtime rather than an object of closures: every
 * endpoint has one, and its Effects are made when used.
 */
export class MainThreadImpl implements RpcEndpoint.MainThread<any, any> {
  constructor(private readonly runtime: EndpointRuntime) {}

  get endpointId(): string {
    return this.runtime.endpointId
  }

  get address(): string {
    return this.runtime.address
  }

  runAsync(effect: Effect.Effect<unknown, unknown>): Effect.Effect<void> {
    return Effect.sync(() => this.runtime.selfRun(effect, undefined))
  }

  callAsync<A, E>(effect: Effect.Effect<A, E>, timeout: Duration.Input): Effect.Effect<A, E | RpcEndpoint.CallAsyncError> {
    const runtime = this.runtime
    const duration = Duration.fromInputUnsafe(timeout)
    return Effect.callback<A, E | RpcEndpoint.CallAsyncError>((resume) => {
      runtime.selfRun(effect, resume as Resume)
    }).pipe(
      Effect.timeoutOrElse({
        duration,
        orElse: () =>
          Effect.fail(
            new RpcTimeoutError({ address: runtime.address, method: "callAsync", timeoutMillis: Duration.toMillis(duration) })
          )
      })
    )
  }

  scheduleRunAsync(effect: Effect.Effect<unknown, unknown>, delay: Duration.Input): Effect.Effect<RpcEndpoint.ScheduledRun> {
    return this.runtime.scheduleRun(effect, delay)
  }

  get isMainThread(): Effect.Effect<boolean> {
    return Effect.withFiber((fiber) => Effect.succeed(this.runtime.mailbox.isMainThread(fiber)))
  }

  get validateRunsInMainThread(): Effect.Effect<void> {
    return Effect.flatMap(this.isMainThread, (onMain) =>
      onMain ? Effect.void : Effect.die(new MainThreadViolationError({ address: this.runtime.address })))
  }

  get isRunning(): Effect.Effect<boolean> {
    return Effect.sync(() => this.runtime.state === "started")
  }

  self<G extends RpcGateway.Any>(gateway: G): RpcGateway.Client<G> {
    return this.runtime.owner.selfClient(this.runtime, gateway)
  }

  get fencingToken(): Effect.Effect<Option.Option<unknown>> {
    return Effect.sync(() => this.runtime.tokenState.token)
  }

  setFencingToken(token: unknown, options?: RpcEndpoint.TokenOptions | undefined): Effect.Effect<void> {
    return Effect.andThen(
      this.validateRunsInMainThread,
      Effect.sync(() => this.runtime.setToken(token, options?.validUntil))
    )
  }

  get clearFencingToken(): Effect.Effect<void> {
    return Effect.sync(() => this.runtime.clearToken())
  }
}
