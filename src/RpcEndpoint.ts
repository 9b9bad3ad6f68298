/**
 * Endpoints: the implementations of one or more gateways (Flink's `RpcEndpoint` / `FencedRpcEndpoint`).
 *
 * An endpoint is built by an `init` Effect that receives the endpoint's {@link MainThread} and returns its
 * handlers and lifecycle hooks. State lives in `init`'s closure and is touched only by code that runs on the
 * main thread: handlers, `onStart`, `onStop`, and whatever is re-entered through `runAsync`, `callAsync` or
 * `scheduleRunAsync`. A handler that must wait on something (another endpoint, say) returns
 * `RpcEndpoint.later(effect)`: the effect runs off the main thread, the mailbox moves on, and the caller gets
 * the effect's result.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Order from "effect/Order"
import type { Ordering } from "effect/Ordering"
import { hasProperty } from "effect/Predicate"
import type * as Schema from "effect/Schema"
import * as SchemaRepresentation from "effect/SchemaRepresentation"
import type * as Scope from "effect/Scope"
import type { UnionToIntersection } from "effect/Types"
import type {
  EndpointIdInUseError,
  EndpointNotStartedError,
  EndpointStartError,
  FencingTokenError,
  RecipientUnreachableError,
  RpcCallError,
  RpcServiceStoppedError,
  RpcTimeoutError
} from "./RpcError.js"
import type * as RpcGateway from "./RpcGateway.js"
import type { RpcServer } from "./RpcServer.js"
import { RpcService } from "./internal/serviceTag.js"

const TypeId = "~effect-actor-rpc/RpcEndpoint"
const LaterTypeId = "~effect-actor-rpc/RpcEndpoint/Later"

/**
 * A reply that is produced off the main thread; see {@link later}.
 *
 * @since 0.1.0
 */
export interface Later<A, E> {
  readonly [LaterTypeId]: typeof LaterTypeId
  readonly effect: Effect.Effect<A, E>
}

/**
 * Replies later without holding the main thread: return it from a handler (or `onStop`) and `effect` runs on a
 * fiber of its own while the mailbox moves on. Its result is the reply. It must re-enter the endpoint's state
 * only through `runAsync` / `callAsync`. This is how two endpoints that ask each other avoid a deadlock.
 *
 * @since 0.1.0
 */
export const later = <A, E>(effect: Effect.Effect<A, E>): Later<A, E> => ({ [LaterTypeId]: LaterTypeId, effect })

/**
 * Is this a {@link Later} reply?
 *
 * @since 0.1.0
 */
export const isLater = (u: unknown): u is Later<unknown, unknown> => hasProperty(u, LaterTypeId)

/**
 * The errors `callAsync` can fail with besides the work's own.
 *
 * @since 0.1.0
 */
export type CallAsyncError = RpcTimeoutError | RecipientUnreachableError | EndpointNotStartedError | FencingTokenError

/**
 * What endpoint code can do with its main thread (Flink's `MainThreadExecutor` and friends).
 *
 * @since 0.1.0
 */
export interface MainThread<Gs extends ReadonlyArray<RpcGateway.Any>, Token = never> {
  /** The endpoint's id on its service. */
  readonly endpointId: string
  /** The endpoint's address; connect to it from anywhere. */
  readonly address: string
  /** Enqueues `effect` to run on the main thread; returns at once. Dropped before start and after a token change. */
  readonly runAsync: (effect: Effect.Effect<void, unknown>) => Effect.Effect<void>
  /** Runs `effect` on the main thread and waits for its result, failing with `RpcTimeoutError` after `timeout`. */
  readonly callAsync: <A, E>(
    effect: Effect.Effect<A, E>,
    timeout: Duration.Input
  ) => Effect.Effect<A, E | CallAsyncError>
  /** Enqueues `effect` on the main thread once `delay` has passed (a lower bound); returns at once. */
  readonly scheduleRunAsync: (effect: Effect.Effect<void, unknown>, delay: Duration.Input) => Effect.Effect<ScheduledRun>
  /** Dies with `MainThreadViolationError` unless it runs on this endpoint's main thread. */
  readonly validateRunsInMainThread: Effect.Effect<void>
  /** Does the current fiber run on this endpoint's main thread? */
  readonly isMainThread: Effect.Effect<boolean>
  /** Has the endpoint been started and not yet completed its `onStop`? */
  readonly isRunning: Effect.Effect<boolean>
  /** A client of one of the endpoint's own gateways (fenced endpoints: it sends the token current at each call). */
  readonly self: <G extends Gs[number]>(gateway: G) => RpcGateway.Client<G>
  /** The current fencing token (`None` when unfenced or not set). */
  readonly fencingToken: Effect.Effect<Option.Option<Token>>
  /**
   * Replaces the fencing token; must run on the main thread. Work enqueued under the old token is dropped. With
   * `validUntil`, the token stops admitting messages at that time (a leader's lease deadline).
   */
  setFencingToken(token: Token, options?: TokenOptions | undefined): Effect.Effect<void>
  /** Clears the fencing token: from now on every message is rejected (`NotSet`) until a new one is set. */
  readonly clearFencingToken: Effect.Effect<void>
}

/**
 * Options of a fencing token being set.
 *
 * @since 0.2.0
 */
export interface TokenOptions {
  /**
   * When the token stops admitting messages, in milliseconds by the service's `Clock` (read at every message, so it
   * may move forward, as a renewed lease does). A message checked at or after it fails `FencingTokenError`
   * (`Expired`): a leader steps down by its own clock, whatever it has heard.
   */
  readonly validUntil?: (() => number) | undefined
}

/**
 * A run scheduled with `scheduleRunAsync`; cancelling it before its delay expires means it never runs.
 *
 * @since 0.1.0
 */
export interface ScheduledRun {
  readonly cancel: Effect.Effect<void>
}

/**
 * A handler's result: the success value, or a {@link later} reply.
 *
 * @since 0.1.0
 */
export type HandlerResult<M extends RpcGateway.Method> =
  | RpcGateway.SuccessOf<M>
  | Later<RpcGateway.SuccessOf<M>, RpcGateway.FailureOf<M> | RpcCallError>

/**
 * The handler of one method: runs on the main thread, fails with the method's failure or a call error. It returns
 * an Effect, or a {@link later} reply directly (`(p) => RpcEndpoint.later(work(p))`).
 *
 * @since 0.1.0
 */
export type Handler<M extends RpcGateway.Method> = (
  payload: RpcGateway.PayloadOf<M>
) =>
  | Effect.Effect<HandlerResult<M>, RpcGateway.FailureOf<M> | RpcCallError>
  | Later<RpcGateway.SuccessOf<M>, RpcGateway.FailureOf<M> | RpcCallError>

/**
 * The handlers of one gateway.
 *
 * @since 0.1.0
 */
export type GatewayHandlers<G extends RpcGateway.Any> = {
  readonly [K in keyof G["methods"]]: Handler<G["methods"][K]>
}

/**
 * The handlers of every gateway an endpoint serves, in one flat record (a method shared by two gateways is
 * served by one handler, as in a Java class implementing two interfaces).
 *
 * @since 0.1.0
 */
export type Handlers<Gs extends ReadonlyArray<RpcGateway.Any>> = UnionToIntersection<
  { [I in keyof Gs]: GatewayHandlers<Gs[I]> }[number]
>

/**
 * What `init` returns: the handlers and the optional lifecycle hooks.
 *
 * @since 0.1.0
 */
export interface Behaviour<Gs extends ReadonlyArray<RpcGateway.Any>, EStop = never> {
  readonly handlers: Handlers<Gs>
  /** Runs on the main thread when the endpoint starts; a failure terminates the endpoint. */
  readonly onStart?: Effect.Effect<void, unknown> | undefined
  /**
   * Runs on the main thread once when the endpoint stops. Return `later(effect)` to finish asynchronously: calls
   * are still served until `effect` completes. A failure fails the endpoint's termination with that error.
   */
  readonly onStop?: Effect.Effect<void | Later<void, EStop>, EStop> | undefined
}

/**
 * The fencing of a fenced endpoint.
 *
 * @since 0.1.0
 */
export interface Fencing<Token> {
  /** The Schema of the token; used to compare, print and (remotely) send it. */
  readonly schema: Schema.Codec<Token, any>
  /** The token at start; omit it for an endpoint that gets its token later. */
  readonly initial: Option.Option<Token>
  /**
   * Monotonic fencing: instead of only its own current token, the endpoint admits any token not lower than the
   * highest it has admitted, by this order, and rejects lower ones (`Stale`). For a follower that receives from
   * successive leaders (order `LeaderToken.Order`): a deposed leader's messages are refused once its successor's
   * have arrived.
   */
  readonly monotonic: MonotonicOrder<Token> | undefined
}

/**
 * An `Order<Token>`, compared bivariantly so that an unfenced endpoint's `Fencing<never>` fits where any fencing
 * does.
 *
 * @since 0.1.0
 */
export type MonotonicOrder<Token> = { bivariant(self: Token, that: Token): Ordering }["bivariant"]

/**
 * An endpoint definition; start it with `RpcService.startServer` or provide it with {@link layer}.
 *
 * @since 0.1.0
 */
export interface RpcEndpoint<
  Gs extends ReadonlyArray<RpcGateway.Any> = ReadonlyArray<RpcGateway.Any>,
  Token = never,
  EStop = unknown,
  EInit = unknown,
  R = unknown
> {
  readonly [TypeId]: typeof TypeId
  /** The id on its service; a fresh random UUID per start when undefined. */
  readonly id: string | undefined
  readonly gateways: Gs
  readonly fencing: Fencing<Token> | undefined
  /**
   * The most calls its mailbox holds; a call beyond it fails at once with `MailboxFullError`. Unbounded when
   * undefined (the default, as in Flink): see docs/RELIABILITY.md for the trade-off.
   */
  readonly mailboxCapacity: number | undefined
  // Methods, here and for `setFencingToken`, are compared bivariantly: that lets an unfenced endpoint, whose token
  // type is `never`, be an `Any`, since nothing, not even `any`, is assignable to `never`.
  init(main: MainThread<Gs, Token>): Effect.Effect<Behaviour<Gs, EStop>, EInit, R>
}

/**
 * Any endpoint.
 *
 * @since 0.1.0
 */
export type Any = RpcEndpoint<ReadonlyArray<RpcGateway.Any>, any, any, any, any>

/**
 * Is this an endpoint definition?
 *
 * @since 0.1.0
 */
export const isRpcEndpoint = (u: unknown): u is Any => hasProperty(u, TypeId)

/**
 * Defines an endpoint serving `gateways`.
 *
 * @since 0.1.0
 */
export const make = <const Gs extends ReadonlyArray<RpcGateway.Any>, EStop = never, EInit = never, R = never>(
  options: {
    readonly id?: string | undefined
    readonly gateways: Gs
    /** Bound the mailbox to this many queued messages (default: unbounded). */
    readonly mailboxCapacity?: number | undefined
    readonly init: (main: MainThread<Gs, never>) => Effect.Effect<Behaviour<Gs, EStop>, EInit, R>
  }
): RpcEndpoint<Gs, never, EStop, EInit, R> => ({
  [TypeId]: TypeId,
  id: options.id,
  gateways: options.gateways,
  fencing: undefined,
  mailboxCapacity: capacityOf(options.mailboxCapacity),
  init: options.init
})

const capacityOf = (capacity: number | undefined): number | undefined => {
  if (capacity === undefined) return undefined
  if (!Number.isSafeInteger(capacity) || capacity < 1) {
    throw new RangeError(`mailboxCapacity must be a positive integer or undefined (unbounded), got ${capacity}`)
  }
  return capacity
}

/**
 * Defines a fenced endpoint: every message must carry the endpoint's current fencing token.
 *
 * @since 0.1.0
 */
export const makeFenced = <
  const Gs extends ReadonlyArray<RpcGateway.Any>,
  Token = GatewaysToken<Gs>,
  EStop = never,
  EInit = never,
  R = never
>(
  options: {
    readonly id?: string | undefined
    readonly gateways: Gs
    /** The token's Schema; may be omitted when a gateway declares it (`RpcGateway.make(name, methods, { token })`). */
    readonly token?: Schema.Codec<Token, any> | undefined
    readonly initialToken?: Token | undefined
    /** Admit any token not lower than the highest admitted, by this order (see {@link Fencing.monotonic}). */
    readonly monotonic?: Order.Order<Token> | undefined
    /** Bound the mailbox to this many queued messages (default: unbounded). */
    readonly mailboxCapacity?: number | undefined
    readonly init: (main: MainThread<Gs, Token>) => Effect.Effect<Behaviour<Gs, EStop>, EInit, R>
  }
): RpcEndpoint<Gs, Token, EStop, EInit, R> => ({
  [TypeId]: TypeId,
  id: options.id,
  gateways: options.gateways,
  fencing: {
    schema: tokenSchemaOf(options.gateways, options.token),
    initial: options.initialToken === undefined ? Option.none() : Option.some(options.initialToken),
    monotonic: options.monotonic
  },
  mailboxCapacity: capacityOf(options.mailboxCapacity),
  init: options.init
})

/**
 * The token type the gateways of a fenced endpoint declare (`unknown` when none declares one).
 *
 * @since 0.2.0
 */
export type GatewaysToken<Gs extends ReadonlyArray<RpcGateway.Any>> = UnionToIntersection<
  { [I in keyof Gs]: RpcGateway.TokenOf<Gs[I]> }[number]
>

/**
 * The token Schema of a fenced endpoint: the one given, else the one its gateways declare. A definition whose
 * gateways declare another token Schema than the one given, or that has none at all, is a programming error,
 * reported when the definition is made.
 */
const tokenSchemaOf = <Token>(
  gateways: ReadonlyArray<RpcGateway.Any>,
  given: Schema.Codec<Token, any> | undefined
): Schema.Codec<Token, any> => {
  const declared = gateways.filter((gateway) => gateway.token !== undefined)
  const schema = given ?? declared[0]?.token
  if (schema === undefined) {
    throw new TypeError(
      `RpcEndpoint.makeFenced needs the token's Schema: pass \`token\`, or serve a gateway declared with one ` +
        `(RpcGateway.make(name, methods, { token })); it serves ${gateways.map((g) => g.name).join(", ")}`
    )
  }
  for (const gateway of declared) {
    if (gateway.token !== schema && !sameSchema(gateway.token!, schema)) {
      throw new TypeError(
        `RpcEndpoint.makeFenced: gateway ${gateway.name} declares another token Schema than the endpoint's; ` +
          `an endpoint has one token, so every fenced gateway it serves must declare the same one`
      )
    }
  }
  return schema
}

const sameSchema = (a: Schema.Top, b: Schema.Top): boolean => {
  try {
    const json = (schema: Schema.Top) =>
      JSON.stringify(SchemaRepresentation.toJson(SchemaRepresentation.toRepresentation(schema.ast)))
    return json(a) === json(b)
  } catch {
    return false
  }
}

/**
 * Starts the endpoint on the RpcService in scope, waits for its `onStart`, and terminates it (awaiting `onStop`)
 * when the scope closes.
 *
 * @since 0.1.0
 */
export const scoped = <Gs extends ReadonlyArray<RpcGateway.Any>, Token, EStop, EInit, R>(
  endpoint: RpcEndpoint<Gs, Token, EStop, EInit, R>
): Effect.Effect<
  RpcServer<Gs, Token, EStop>,
  EInit | EndpointIdInUseError | RpcServiceStoppedError | EndpointStartError,
  R | RpcService | Scope.Scope
> =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const service = yield* RpcService
      const server = yield* service.startServer(endpoint)
      yield* server.start
      return server
    }),
    (server) =>
      server.terminate.pipe(
        Effect.catchCause((cause) =>
          Effect.logWarning("Endpoint terminated with a failure", cause).pipe(
            Effect.annotateLogs({ endpoint: server.endpointId, address: server.address })
          )
        )
      )
  ).pipe(Effect.tap((server) => server.awaitStarted))

/**
 * A Layer that starts the endpoint when built (it is built once `onStart` has completed; an `onStart` failure
 * fails the Layer) and terminates it when the Layer's scope closes.
 *
 * @since 0.1.0
 */
export const layer = <Gs extends ReadonlyArray<RpcGateway.Any>, Token, EStop, EInit, R>(
  endpoint: RpcEndpoint<Gs, Token, EStop, EInit, R>
): Layer.Layer<
  never,
  EInit | EndpointIdInUseError | RpcServiceStoppedError | EndpointStartError,
  Exclude<R, Scope.Scope> | RpcService
> =>
  Layer.effectDiscard(scoped(endpoint))

/**
 * The error an endpoint's termination can fail with.
 *
 * @since 0.1.0
 */
export type TerminationError<EStop> = EStop | EndpointStartError
