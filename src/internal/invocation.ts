/**
 * The vocabulary shared by whoever delivers calls to endpoints (clients in-process, connections from the wire) and
 * the endpoint runtime that runs them: an invocation, how its outcome comes back (`Resume`), the tokens an unfenced
 * or undecodable call carries, and the narrow view of an endpoint (`Recipient`) that a connection needs. Neither
 * side imports the other; both import this.
 */
import type * as Exit from "effect/Exit"
import type * as Tracer from "effect/Tracer"
import type { ConnectionFailureReason, MailboxFullError } from "../RpcError.js"
import type * as RpcGateway from "../RpcGateway.js"

/** The token carried by a message sent without fencing (an unfenced client, or unfenced self-work). */
export const NoToken: unique symbol = Symbol.for("effect-actor-rpc/NoToken")

/** A fencing token from the wire that the endpoint's token Schema does not accept: it matches no token. */
export class UndecodableToken {
  constructor(readonly raw: unknown) {}
}

/**
 * How a reply reaches its caller: called once with the outcome and, when the replier read the time anyway (an
 * in-process handler, for its metrics), when it replied, so that the caller need not read it again.
 */
export type Resume = (exit: Exit.Exit<unknown, unknown>, at?: number) => void

/** An ask on its way: `cancel` drops interest in its reply; `interrupted` also asks the endpoint to skip it. */
export interface Pending {
  readonly cancel: (interrupted: boolean) => void
}

/**
 * One call of a method, from a client or a connection. `resume` is present for asks and absent for tells. It is
 * also the ask's handle for its caller: `cancel` marks it so that the main thread skips it if it has not started.
 */
export class Invocation implements Pending {
  readonly _tag = "Invocation"
  /** The caller gave up before the handler started. */
  cancelled = false
  /** When it was queued (the service's metric time), for the mailbox-wait metric; 0 until known. */
  enqueuedAt = 0
  constructor(
    readonly gateway: string,
    readonly method: string,
    readonly payload: unknown,
    readonly token: unknown,
    readonly resume: Resume | undefined,
    /** The ask's timeout in milliseconds; Infinity for tells and asks without one. */
    readonly timeoutMillis: number,
    /** When, by the service's clock, nobody waits for the reply any more; Infinity when never. */
    readonly deadline: number,
    /** The caller's span (a local one, or the remote caller's context), when the call is traced. */
    readonly span: Tracer.AnySpan | undefined
  ) {}

  cancel(interrupted: boolean): void {
    if (interrupted) this.cancelled = true
  }
}

/** What a connection (or a local client) needs of an endpoint to deliver calls to it. */
export interface Recipient {
  readonly endpointId: string
  readonly address: string
  /** The gateways it serves, by name. */
  readonly served: ReadonlyMap<string, RpcGateway.Any>
  /** Is it a fenced endpoint? */
  readonly fenced: boolean
  /**
   * Delivers an invocation; an ask that cannot be queued (the endpoint has terminated, or its bounded mailbox is
   * full) is answered at once. Returns the error a tell's sender should see, if any.
   */
  readonly deliver: (invocation: Invocation) => MailboxFullError | undefined
  /** The token a remote message carried, as this endpoint's token Schema reads it. */
  readonly decodeToken: (raw: unknown) => unknown
  /**
   * Why a connect with `token` (`NoToken` for a plain connect) is refused, if it is: a token for an endpoint that
   * is not fenced, or one its token Schema does not read.
   */
  readonly checkConnectToken: (token: unknown) => Refusal | undefined
}

/** Why a recipient cannot be reached with a gateway: the reason a connect fails with, and a sentence saying why. */
export interface Refusal {
  readonly reason: ConnectionFailureReason
  readonly detail: string
}

/**
 * The gateway named `gateway` that `recipient` serves, or why it serves none: the first check of the per-gateway
 * handshake, made for local connects and for `Connect` frames alike. Equal fingerprints then accept at once;
 * different ones go through the compatibility exchange (./exchange.ts).
 */
export const servedGateway = (recipient: Recipient, gateway: string): RpcGateway.Any | Refusal => {
  const served = recipient.served.get(gateway)
  if (served !== undefined) return served
  return {
    reason: "GatewayNotServed",
    detail: `the endpoint serves ${[...recipient.served.keys()].join(", ")}, not ${gateway}`
  }
}

/** Is this a refusal rather than a gateway? */
export const isRefusal = (u: RpcGateway.Any | Refusal): u is Refusal => "reason" in u && "detail" in u

/** `Gateway.method`, as errors and logs name a call. */
export const qualified = (gateway: string, method: string): string => `${gateway}.${method}`
