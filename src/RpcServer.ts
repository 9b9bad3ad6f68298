/**
 * The handle that starting an endpoint gives back (Flink's `RpcServer`): its address, self gateway, and
 * lifecycle controls.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as RpcEndpoint from "./RpcEndpoint.js"
import type { EndpointStartError, RecipientUnreachableError } from "./RpcError.js"
import type * as RpcGateway from "./RpcGateway.js"

/**
 * A started endpoint's server handle.
 *
 * @since 0.1.0
 */
export interface RpcServer<Gs extends ReadonlyArray<RpcGateway.Any> = ReadonlyArray<RpcGateway.Any>, Token = never, EStop = unknown> {
  /** The endpoint's id on its service. */
  readonly endpointId: string
  /** The endpoint's address. */
  readonly address: string
  /** A client of one of the endpoint's gateways, calling it directly (fenced: with its current token). */
  readonly self: <G extends Gs[number]>(gateway: G) => RpcGateway.Client<G>
  /**
   * Starts processing messages: enqueues the start, which runs `onStart` on the main thread, and returns at once
   * (as in Flink); await `awaitStarted` to know `onStart` has completed. Idempotent.
   */
  readonly start: Effect.Effect<void>
  /** Completes once `onStart` has run successfully; fails if it failed or the endpoint terminated unstarted. */
  readonly awaitStarted: Effect.Effect<void, EndpointStartError>
  /** Asks the endpoint to stop (runs `onStop` once); returns at once. Idempotent. */
  readonly stop: Effect.Effect<void>
  /** Stops the endpoint and waits for its termination. */
  readonly terminate: Effect.Effect<void, EStop | EndpointStartError>
  /** Completes when the endpoint has terminated; fails with the `onStop` failure or an `EndpointStartError`. */
  readonly awaitTermination: Effect.Effect<void, EStop | EndpointStartError>
  /** Has the endpoint terminated? */
  readonly isTerminated: Effect.Effect<boolean>
  /** The current fencing token (`None` for unfenced endpoints or while unset). */
  readonly fencingToken: Effect.Effect<Option.Option<Token>>
  /**
   * Sets the fencing token on the endpoint's main thread, in mailbox order, and completes once it is in force (a
   * granted leadership: set the token, then publish the endpoint). Work queued under the old token is dropped.
   * With `validUntil` the token stops admitting messages at that time. Fails `RecipientUnreachableError` once the
   * endpoint has terminated.
   */
  setFencingToken(token: Token, options?: RpcEndpoint.TokenOptions | undefined): Effect.Effect<void, RecipientUnreachableError>
  /**
   * Clears the fencing token *at once*, not in mailbox order: the next message the endpoint checks is rejected
   * (`NotSet`), even one queued before (a revoked leadership: a deposed leader must stop before its successor starts).
   */
  readonly clearFencingToken: Effect.Effect<void>
}

/**
 * Any server handle.
 *
 * @since 0.1.0
 */
export type Any = RpcServer<ReadonlyArray<RpcGateway.Any>, any, any>
